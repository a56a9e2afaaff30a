//! Producer metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! ```text
//!  cores: plain per-core counters (the send path is unchanged: nothing per message here)
//!    └─ every interval: stats() snapshot ─► publish(): counters set absolute, gauges set,
//!                                           latency histogram fed the interval's new samples
//!  the application's recorder (metrics-exporter-prometheus, OpenTelemetry, …) exports them
//! ```
//!
//! Names, units and labels are listed in [`METRICS`]; every series carries `client` (the
//! producer's client id, unique per producer in a process) and `core`; broker errors add
//! `broker` (a broker name, at most 256 per core, the rest under `"(other)"`) and failures
//! `kind` ([`crate::Error::kind`], a fixed set). Topics are never a label: their number is up to
//! the application and would make the series unbounded.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use metrics::{Label, Unit};

use crate::latency_histogram::LatencyHistogram;
use crate::stats::{CoreStatsSnapshot, ProducerStats};

/// Whether a metric is a counter, a gauge or a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of samples.
    Histogram,
}

/// One published metric: name, kind, unit and meaning.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// The metric's name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// What one unit is.
    pub unit: &'static str,
    /// What it counts.
    pub help: &'static str,
}

const fn info(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit,
        help,
    }
}

const STARTED: &str = "rocketmq_tpc_messages_started_total";
const ACKED: &str = "rocketmq_tpc_messages_acked_total";
const FAILED: &str = "rocketmq_tpc_messages_failed_total";
const REFUSED: &str = "rocketmq_tpc_messages_refused_total";
const RETRIES: &str = "rocketmq_tpc_retries_total";
const BROKER_ERRORS: &str = "rocketmq_tpc_broker_attempt_errors_total";
const BYTES_WRITTEN: &str = "rocketmq_tpc_bytes_written_total";
const FRAMES_WRITTEN: &str = "rocketmq_tpc_frames_written_total";
const WRITES: &str = "rocketmq_tpc_writes_total";
const READS: &str = "rocketmq_tpc_reads_total";
const IN_FLIGHT: &str = "rocketmq_tpc_in_flight";
const BUFFERED: &str = "rocketmq_tpc_buffered_bytes";
const CONNECTIONS: &str = "rocketmq_tpc_connections";
const ROUTES: &str = "rocketmq_tpc_routes";
const LATENCY: &str = "rocketmq_tpc_send_latency_seconds";

/// Every metric the producer publishes.
pub const METRICS: &[MetricInfo] = &[
    info(STARTED, MetricKind::Counter, "messages", "sends started"),
    info(
        ACKED,
        MetricKind::Counter,
        "messages",
        "sends that got a SendResult (oneway: written)",
    ),
    info(
        FAILED,
        MetricKind::Counter,
        "messages",
        "sends that ended in an error, by `kind`",
    ),
    info(
        REFUSED,
        MetricKind::Counter,
        "messages",
        "sends refused with QueueFull (never started)",
    ),
    info(
        RETRIES,
        MetricKind::Counter,
        "attempts",
        "attempts after the first",
    ),
    info(
        BROKER_ERRORS,
        MetricKind::Counter,
        "attempts",
        "failed attempts, by `broker`",
    ),
    info(
        BYTES_WRITTEN,
        MetricKind::Counter,
        "bytes",
        "bytes written to brokers and NameServers",
    ),
    info(
        FRAMES_WRITTEN,
        MetricKind::Counter,
        "frames",
        "request frames written",
    ),
    info(WRITES, MetricKind::Counter, "calls", "send(2) calls"),
    info(
        READS,
        MetricKind::Counter,
        "calls",
        "recv(2) calls that returned data",
    ),
    info(
        IN_FLIGHT,
        MetricKind::Gauge,
        "messages",
        "sends in progress",
    ),
    info(
        BUFFERED,
        MetricKind::Gauge,
        "bytes",
        "bytes queued in connections, not yet written",
    ),
    info(
        CONNECTIONS,
        MetricKind::Gauge,
        "connections",
        "open connections",
    ),
    info(
        ROUTES,
        MetricKind::Gauge,
        "topics",
        "topic routes held (shared by the cores)",
    ),
    info(
        LATENCY,
        MetricKind::Histogram,
        "seconds",
        "send latency, retries included",
    ),
];

/// Publishes snapshots to the installed `metrics` recorder.
pub(crate) struct MetricsPublisher {
    /// Each core's latency histogram at the last publish, so each publish records only the
    /// samples that came since.
    previous: Mutex<Vec<Option<LatencyHistogram>>>,
}

impl MetricsPublisher {
    /// A publisher; describes every metric to the recorder installed now.
    pub(crate) fn new() -> Self {
        for m in METRICS {
            let unit = match m.unit {
                "bytes" => Some(Unit::Bytes),
                "seconds" => Some(Unit::Seconds),
                "messages" | "attempts" | "frames" | "calls" | "connections" | "topics" => {
                    Some(Unit::Count)
                }
                _ => None,
            };
            match (m.kind, unit) {
                (MetricKind::Counter, Some(u)) => metrics::describe_counter!(m.name, u, m.help),
                (MetricKind::Counter, None) => metrics::describe_counter!(m.name, m.help),
                (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
                (MetricKind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
                (MetricKind::Histogram, Some(u)) => {
                    metrics::describe_histogram!(m.name, u, m.help)
                }
                (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
            }
        }
        MetricsPublisher {
            previous: Mutex::new(Vec::new()),
        }
    }

    /// Sets every metric from `stats`.
    pub(crate) fn publish(&self, stats: &ProducerStats) {
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        for core in &stats.cores {
            if previous.len() <= core.core {
                previous.resize(core.core + 1, None);
            }
            let labels = vec![
                Label::new("client", stats.client_id.clone()),
                Label::new("core", core.core.to_string()),
            ];
            publish_core(core, &labels, &mut previous[core.core]);
        }
    }
}

fn publish_core(
    core: &CoreStatsSnapshot,
    labels: &[Label],
    previous: &mut Option<LatencyHistogram>,
) {
    let with = |key: &'static str, value: &str| {
        let mut l = labels.to_vec();
        l.push(Label::new(key, value.to_owned()));
        l
    };
    for (name, value) in [
        (STARTED, core.started),
        (ACKED, core.acked),
        (REFUSED, core.refused),
        (RETRIES, core.retries),
        (BYTES_WRITTEN, core.bytes_written),
        (FRAMES_WRITTEN, core.frames_written),
        (WRITES, core.writes),
        (READS, core.reads),
    ] {
        metrics::counter!(name, labels.to_vec()).absolute(value);
    }
    for (kind, n) in &core.failed_by_kind {
        metrics::counter!(FAILED, with("kind", kind.as_str())).absolute(*n);
    }
    for (broker, n) in &core.attempt_errors_by_broker {
        metrics::counter!(BROKER_ERRORS, with("broker", broker)).absolute(*n);
    }
    for (name, value) in [
        (IN_FLIGHT, core.in_flight as f64),
        (BUFFERED, core.queued_write_bytes as f64),
        (CONNECTIONS, core.connections as f64),
        (ROUTES, core.routes as f64),
    ] {
        metrics::gauge!(name, labels.to_vec()).set(value);
    }
    let latency = metrics::histogram!(LATENCY, labels.to_vec());
    for (micros, count) in new_samples(core.latency_us.hdr(), previous.as_ref().map(|p| p.hdr())) {
        latency.record_many(micros as f64 / 1e6, count);
    }
    *previous = Some(core.latency_us.clone());
}

/// The (value, count) pairs recorded in `now` since `before` (all of `now` when there is no
/// `before`, or when `now` is not a continuation of it).
fn new_samples(now: &Histogram<u64>, before: Option<&Histogram<u64>>) -> Vec<(u64, usize)> {
    let mut delta = now.clone();
    if let Some(before) = before {
        if before.len() <= now.len() && delta.subtract(before).is_err() {
            delta = now.clone();
        }
    }
    delta
        .iter_recorded()
        .map(|v| {
            let count = usize::try_from(v.count_since_last_iteration()).unwrap_or(usize::MAX);
            (delta.highest_equivalent(v.value_iterated_to()), count)
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn only_samples_since_the_last_publish_are_recorded() {
        let before = histogram(&[100, 100, 2000]);
        let now = histogram(&[100, 100, 2000, 100, 50_000]);
        let samples = new_samples(&now, Some(&before));
        let total: usize = samples.iter().map(|s| s.1).sum();
        assert_eq!(total, 2, "{samples:?}");
        assert!(samples
            .iter()
            .any(|&(v, n)| (100..=101).contains(&v) && n == 1));
        assert!(samples
            .iter()
            .any(|&(v, n)| (49_900..=50_100).contains(&v) && n == 1));
        assert_eq!(
            new_samples(&now, None).iter().map(|s| s.1).sum::<usize>(),
            5
        );
        assert!(new_samples(&now, Some(&now)).is_empty());
    }

    #[test]
    fn every_metric_name_is_unique_and_prefixed() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            assert!(m.name.starts_with("rocketmq_tpc_"), "{}", m.name);
            assert_eq!(
                m.kind == MetricKind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }
}
