//! Periodic stats (`ProducerBuilder::on_stats`, rdkafka's `statistics.interval.ms`): a thread per
//! handler takes the same snapshot [`crate::Producer::stats`] returns every interval and hands
//! it over, so an application needs no polling loop of its own.
//!
//! ```text
//!  reporter thread ── every interval ──► stats(): one control job per core (off the send path)
//!                                        └─► handler(&ProducerStats)
//!  shutdown ──► stop flag + notify ──► the thread ends (no call after shutdown began)
//! ```

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::stats::ProducerStats;

/// What a reporter calls with each snapshot.
pub(crate) type StatsHandler = dyn Fn(&ProducerStats) + Send + Sync;

/// The shortest interval a reporter accepts: each snapshot costs one control job per core.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A handler registered on the builder, with its interval.
#[derive(Clone)]
pub(crate) struct StatsSubscription {
    pub interval: Duration,
    pub handler: Arc<StatsHandler>,
}

impl std::fmt::Debug for StatsSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSubscription")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// A running reporter thread; [`StatsReporter::stop`] ends it (it is never joined, so stopping
/// from inside a handler or from the reporter thread itself cannot deadlock).
pub(crate) struct StatsReporter {
    stop: Arc<Stop>,
}

impl StatsReporter {
    /// Starts a thread that calls `subscription.handler` with `snapshot()` every interval until
    /// stopped or until `snapshot` answers `None` (the producer is gone).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the thread cannot be started.
    pub(crate) fn start(
        subscription: StatsSubscription,
        snapshot: impl Fn() -> Option<Result<ProducerStats, Error>> + Send + 'static,
    ) -> Result<Self, Error> {
        let stop = Arc::new(Stop::default());
        let thread_stop = Arc::clone(&stop);
        let interval = subscription.interval.max(MIN_INTERVAL);
        std::thread::Builder::new()
            .name("rocketmq-tpc-stats".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while thread_stop.wait_until(next) {
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        // A slow snapshot or handler: skip the missed ticks instead of bursting.
                        next = now + interval;
                    }
                    match snapshot() {
                        None => return,
                        Some(Ok(stats)) => {
                            let handler = &subscription.handler;
                            let called = crate::engine::guarded::call_guarded(|| handler(&stats));
                            if let Err(panic) = called {
                                tracing::error!(%panic, "a stats handler panicked; reports go on");
                            }
                        }
                        Some(Err(Error::ShutDown { .. })) => return,
                        Some(Err(e)) => tracing::debug!(error = %e, "no stats this interval"),
                    }
                }
            })
            .map_err(|e| Error::InvalidConfig {
                reason: format!("cannot start the stats reporter thread: {e}"),
            })?;
        Ok(StatsReporter { stop })
    }

    /// Ends the reporter: no handler call starts after this returns (one already running
    /// finishes).
    pub(crate) fn stop(&self) {
        let mut stopped = self.stop.stopped.lock().unwrap_or_else(|e| e.into_inner());
        *stopped = true;
        self.stop.wake.notify_all();
    }
}

impl Stop {
    /// Sleeps until `at`; false once stopped.
    fn wait_until(&self, at: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *stopped {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, at - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for StatsReporter {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn empty() -> ProducerStats {
        ProducerStats {
            client_id: "test".into(),
            cores: Vec::new(),
        }
    }

    fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn reports_every_interval_until_stopped_and_survives_a_panicking_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let reporter = StatsReporter::start(
            StatsSubscription {
                interval: Duration::from_millis(10),
                handler: Arc::new(move |_| {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("first report");
                    }
                }),
            },
            || Some(Ok(empty())),
        )
        .unwrap();
        wait_for("three reports", Duration::from_secs(10), || {
            calls.load(Ordering::SeqCst) >= 3
        });
        reporter.stop();
        // A call that had started may still finish; none starts later.
        std::thread::sleep(Duration::from_millis(30));
        let after_stop = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after_stop,
            "no report after stop"
        );
    }

    #[test]
    fn ends_when_the_producer_is_gone_or_shut_down() {
        for answer in [
            None,
            Some(Err(Error::ShutDown {
                returned: crate::error::Returned::NOTHING,
                outcome: crate::Outcome::NotStored,
            })),
        ] {
            let asked = Arc::new(AtomicUsize::new(0));
            let seen = Arc::clone(&asked);
            let answer = Mutex::new(Some(answer));
            let _reporter = StatsReporter::start(
                StatsSubscription {
                    interval: Duration::from_millis(10),
                    handler: Arc::new(|_| panic!("no stats to report")),
                },
                move || {
                    seen.fetch_add(1, Ordering::SeqCst);
                    answer.lock().unwrap().take().unwrap_or(Some(Ok(empty())))
                },
            )
            .unwrap();
            wait_for("the first snapshot", Duration::from_secs(10), || {
                asked.load(Ordering::SeqCst) >= 1
            });
            std::thread::sleep(Duration::from_millis(60));
            assert_eq!(asked.load(Ordering::SeqCst), 1, "the reporter ended");
        }
    }
}
