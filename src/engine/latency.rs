//! Latency fault avoidance, one table per core (Java `MQFaultStrategy` + `LatencyFaultToleranceImpl`).
//!
//! After each attempt the broker's latency maps to a "not available" period: the largest `i` with
//! `latency >= latency_max[i]` gives `not_available[i]`. A failed attempt counts as the isolation
//! latency (Java 5.x: 10 s → 10 s away). Selection prefers available brokers and falls back to
//! plain round robin when none is, so a recovered broker comes back into use once its period ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) use crate::fault_table::FaultTable;

/// Per-core broker availability.
#[derive(Debug, Default)]
pub(crate) struct FaultTracker {
    table: FaultTable,
    until: HashMap<String, Instant>,
}

impl FaultTracker {
    pub(crate) fn new(table: FaultTable) -> Self {
        FaultTracker {
            table,
            until: HashMap::new(),
        }
    }

    /// Records an attempt on `broker` that took `latency` (or failed) at `now`.
    pub(crate) fn record(&mut self, broker: &str, latency: Duration, failed: bool, now: Instant) {
        let latency = if failed {
            self.table.isolation_latency
        } else {
            latency
        };
        let period = self.table.period(latency);
        if period.is_zero() {
            self.until.remove(broker);
        } else {
            let until = super::deadline::deadline_after(now, period);
            self.until.insert(broker.to_owned(), until);
        }
    }

    /// Whether `broker` may be chosen at `now`.
    pub(crate) fn is_available(&self, broker: &str, now: Instant) -> bool {
        self.until.get(broker).is_none_or(|t| *t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_then_recovery() {
        let mut f = FaultTracker::new(FaultTable::default());
        let now = Instant::now();
        assert!(f.is_available("a", now));
        f.record("a", Duration::ZERO, true, now);
        assert!(!f.is_available("a", now + Duration::from_secs(9)));
        assert!(f.is_available("a", now + Duration::from_secs(10)));
        f.record("a", Duration::from_millis(700), false, now);
        assert!(!f.is_available("a", now + Duration::from_secs(1)));
        f.record("a", Duration::from_millis(5), false, now);
        assert!(f.is_available("a", now));
    }

    #[test]
    fn a_huge_period_does_not_panic() {
        let mut f = FaultTracker::new(FaultTable {
            latency_max: vec![Duration::ZERO],
            not_available: vec![Duration::MAX],
            isolation_latency: Duration::MAX,
        });
        let now = Instant::now();
        f.record("a", Duration::from_millis(1), true, now);
        assert!(!f.is_available("a", now + Duration::from_secs(86_400)));
    }
}
