//! Unix time derived from the monotonic clock: one clock read serves a send's deadline and its
//! born timestamp.
//!
//! Each thread pairs a monotonic instant with the wall clock at most every
//! [`WALL_CLOCK_REFRESH`] and derives Unix milliseconds for nearby instants from that pair (in
//! microseconds, so no millisecond is lost to rounding). The two clocks are slewed alike by NTP;
//! a step of the wall clock shows within one refresh.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How old a thread's pairing of the two clocks may get before the wall clock is read again.
pub(crate) const WALL_CLOCK_REFRESH: Duration = Duration::from_millis(100);

thread_local! {
    /// A monotonic instant and the Unix time in microseconds read right after it.
    static PAIRING: Cell<Option<(Instant, i64)>> = const { Cell::new(None) };
}

fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Unix time in milliseconds at `now` (an instant read lately), without a wall-clock read unless
/// this thread's pairing is older than [`WALL_CLOCK_REFRESH`].
pub(crate) fn unix_millis_at(now: Instant) -> i64 {
    PAIRING.with(|pairing| {
        let (at, micros) = match pairing.get() {
            Some((at, micros)) if now.saturating_duration_since(at) < WALL_CLOCK_REFRESH => {
                (at, micros)
            }
            _ => {
                let at = Instant::now();
                let micros = unix_micros_now();
                pairing.set(Some((at, micros)));
                (at, micros)
            }
        };
        let micros = if now >= at {
            micros.saturating_add(now.duration_since(at).as_micros() as i64)
        } else {
            micros.saturating_sub(at.duration_since(now).as_micros() as i64)
        };
        micros.div_euclid(1000)
    })
}

/// One read of the monotonic clock, and Unix milliseconds at it ([`unix_millis_at`]).
pub(crate) fn now_and_unix_millis() -> (Instant, i64) {
    let now = Instant::now();
    (now, unix_millis_at(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prepared::unix_millis;

    #[test]
    fn derived_millis_stay_between_wall_clock_reads() {
        for round in 0..200 {
            let before = unix_millis();
            let derived = unix_millis_at(Instant::now());
            let after = unix_millis();
            // The pairing may be up to a refresh old: the clocks' relative slew over 100 ms is
            // far below a millisecond, rounding adds at most one.
            assert!(
                before - 1 <= derived && derived <= after + 1,
                "round {round}: {before} <= {derived} <= {after}"
            );
            if round % 50 == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
    }

    #[test]
    fn an_instant_before_the_pairing_counts_back() {
        let earlier = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let now_millis = unix_millis_at(Instant::now());
        let then = unix_millis_at(earlier);
        // At least the 5 ms slept, less one for rounding (more when the host was slow).
        assert!(now_millis - then >= 4, "{then} .. {now_millis}");
    }
}
