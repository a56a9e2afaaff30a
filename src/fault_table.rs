//! [`FaultTable`]: the setting behind latency fault avoidance (Java `MQFaultStrategy`'s
//! `latencyMax` / `notAvailableDuration`); the engine's per-core tracker applies it.

use std::time::Duration;

/// The latency → not-available table (defaults: the Java 5.x values).
///
/// In a config file: `[fault_table]` with `latency_max = ["50ms", …]`, `not_available = […]`,
/// `isolation_latency = "10s"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultTable {
    /// Latency thresholds, ascending.
    #[serde(deserialize_with = "crate::config::units::durations")]
    pub latency_max: Vec<Duration>,
    /// Not-available period for each threshold (same length).
    #[serde(deserialize_with = "crate::config::units::durations")]
    pub not_available: Vec<Duration>,
    /// Latency assumed for a failed attempt.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub isolation_latency: Duration,
}

impl Default for FaultTable {
    fn default() -> Self {
        let ms = |v: &[u64]| v.iter().map(|m| Duration::from_millis(*m)).collect();
        FaultTable {
            latency_max: ms(&[50, 100, 550, 1800, 3000, 5000, 15000]),
            not_available: ms(&[0, 0, 2000, 5000, 6000, 10000, 30000]),
            isolation_latency: Duration::from_millis(10_000),
        }
    }
}

impl FaultTable {
    /// The not-available period for an attempt of `latency`.
    pub fn period(&self, latency: Duration) -> Duration {
        self.latency_max
            .iter()
            .zip(&self.not_available)
            .rev()
            .find(|(max, _)| latency >= **max)
            .map(|(_, period)| *period)
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_5_table() {
        let t = FaultTable::default();
        assert_eq!(t.period(Duration::from_millis(10)), Duration::ZERO);
        assert_eq!(
            t.period(Duration::from_millis(600)),
            Duration::from_millis(2000)
        );
        assert_eq!(
            t.period(Duration::from_millis(10_000)),
            Duration::from_millis(10_000)
        );
        assert_eq!(
            t.period(Duration::from_secs(60)),
            Duration::from_millis(30_000)
        );
    }
}
