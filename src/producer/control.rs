//! Work run on a core apart from sends: [`Producer::run_on_core`], [`Producer::stats`] and
//! [`Producer::flush`], all through the core's control queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::{enter_open, shut_down_refusal, Producer};
use crate::engine::inbox::ControlJob;
use crate::error::Error;
use crate::local_producer::LocalProducer;

impl Producer {
    /// A snapshot of every core's counters, gathered from the cores on demand (no counter is
    /// shared between cores on the send path). Blocks briefly; do not call it on a producer core.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown, [`Error::CoreStopped`] if a core does not answer.
    pub fn stats(&self) -> Result<crate::stats::ProducerStats, Error> {
        let mut handles = Vec::with_capacity(self.cores());
        for core in 0..self.cores() {
            handles.push(
                self.run_on_core(core, |local: LocalProducer| async move { local.snapshot() })?,
            );
        }
        // A core that stopped answering does not hold this caller forever.
        let limit = Instant::now()
            + self.config().send_timeout.min(Duration::from_secs(60))
            + crate::send_future::WAIT_MARGIN;
        let mut cores = Vec::with_capacity(handles.len());
        for (h, slot) in handles.into_iter().zip(&self.inner.cores) {
            let mut core = h.wait_until(limit)?;
            core.refused += slot.inbox.refused();
            cores.push(core);
        }
        Ok(crate::stats::ProducerStats {
            client_id: self.inner.shared.client_id.to_string(),
            cores,
        })
    }

    /// Runs `f` on core `core` with that core's [`LocalProducer`]; the returned handle yields
    /// `f`'s output. This is how code gets onto a producer core without a hop per message.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a core index out of range, [`Error::ShutDown`] after shutdown.
    pub fn run_on_core<F, Fut, T>(&self, core: usize, f: F) -> Result<RunHandle<T>, Error>
    where
        F: FnOnce(LocalProducer) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let slot = self
            .inner
            .cores
            .get(core)
            .ok_or_else(|| Error::InvalidConfig {
                reason: format!(
                    "core {core} does not exist (the producer has {})",
                    self.cores()
                ),
            })?;
        let (tx, rx) = oneshot::channel();
        // A panic in `f` ends its task only (the core goes on); the dropped `tx` makes the
        // handle fail with CoreStopped.
        let mut job: ControlJob = Box::new(move |core| {
            let local = LocalProducer::from_core(core);
            crate::engine::guarded::spawn_guarded(
                "run_on_core",
                async move {
                    let _ = tx.send(f(local).await);
                },
                |_| {},
            );
        });
        loop {
            if !enter_open(&self.inner.shared, slot) {
                return Err(shut_down_refusal(crate::error::Returned::NOTHING));
            }
            let pushed = slot.inbox.push_control(job);
            slot.inbox.leave();
            match pushed {
                Ok(()) => return Ok(RunHandle { rx }),
                Err(back) => {
                    job = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }

    /// Waits until every message handed over before the call has its outcome (its future or
    /// callback resolved), or until `timeout` passes; the producer stays usable, and messages
    /// sent meanwhile are not waited for.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when some were still in progress at the deadline (they go on),
    /// [`Error::ShutDown`] after shutdown. Do not call it on a producer core (use
    /// [`LocalProducer::flush`] there).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.reject_on_core("flush")?;
        // Each core's inbox is FIFO: the flush job runs after every job pushed before it took
        // its permit, so the core's flush covers them.
        let mut handles = Vec::with_capacity(self.cores());
        for core in 0..self.cores() {
            handles.push(self.run_on_core(core, move |local| local.flush(timeout))?);
        }
        let mut result = Ok(());
        for handle in handles {
            if let Err(e) = handle.wait()? {
                result = Err(e);
            }
        }
        result
    }
}

/// The output of a closure run on a core by [`Producer::run_on_core`].
pub struct RunHandle<T> {
    rx: oneshot::Receiver<T>,
}

impl<T> RunHandle<T> {
    /// Blocks until the closure's future completes.
    ///
    /// # Errors
    ///
    /// [`Error::CoreStopped`] when the core stopped before the future completed.
    pub fn wait(self) -> Result<T, Error> {
        futures_lite::future::block_on(self)
    }

    /// [`RunHandle::wait`] for at most `timeout`: `None` when the future has not completed by
    /// then (it goes on running on its core; its output is dropped).
    ///
    /// ```no_run
    /// # use rocketmq_tpc::Producer;
    /// # use std::time::Duration;
    /// # fn f(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
    /// let core = producer.run_on_core(0, |local| async move { local.core_index() })?;
    /// match core.wait_timeout(Duration::from_secs(1)) {
    ///     Some(index) => println!("ran on core {}", index?),
    ///     None => eprintln!("core 0 did not run the task within 1 s"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<T, Error>> {
        let limit = Instant::now().checked_add(timeout);
        crate::send_future::block_on_until(self, limit)
    }

    /// [`RunHandle::wait`], giving up at `limit` with [`Error::CoreStopped`].
    pub(crate) fn wait_until(self, limit: Instant) -> Result<T, Error> {
        crate::send_future::block_on_until(self, Some(limit)).unwrap_or_else(|| {
            Err(Error::CoreStopped {
                returned: crate::error::Returned::NOTHING,
                reason: "the core did not run the task in time".into(),
            })
        })
    }
}

impl<T> Future for RunHandle<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.map_err(|_| Error::CoreStopped {
                returned: crate::error::Returned::NOTHING,
                reason: "the core stopped before the task completed".into(),
            })
        })
    }
}
