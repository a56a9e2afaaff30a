//! Deadlines: computed from user or peer durations without overflow, and bounding a future by
//! one on the core's timer.

use std::future::Future;
use std::time::{Duration, Instant};

/// The furthest any deadline is set: 100 years. A longer duration (up to `Duration::MAX`, which
/// `Instant + Duration` cannot represent and panics on) means "no limit" in practice.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, capped at `now + FAR_FUTURE`: never panics, whatever the configuration, a caller's
/// `SendOptions::timeout` or a peer asks for. Every `Instant` computed from such a duration goes
/// through here (or [`sleep`]).
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR_FUTURE))
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// `glommio::timer::sleep(d)` that does not panic on huge durations (glommio adds `d` to now).
pub(crate) async fn sleep(d: Duration) {
    glommio::timer::sleep(d.min(FAR_FUTURE)).await
}

/// Runs `fut` until `deadline`; `None` when the deadline came first (the future is dropped).
pub(crate) async fn until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    let now = Instant::now();
    if deadline <= now {
        return None;
    }
    let timer = glommio::timer::Timer::new(deadline - now);
    futures_lite::future::or(async { Some(fut.await) }, async {
        timer.await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        for d in [
            FAR_FUTURE,
            Duration::MAX,
            Duration::MAX - Duration::from_nanos(1),
        ] {
            assert_eq!(deadline_after(now, d), now + FAR_FUTURE);
        }
    }
}
