//! [`ProducerStats`]: a snapshot of every core's counters, merged on demand.

use std::collections::BTreeMap;

use crate::latency_histogram::LatencyHistogram;

/// Counters of one core at the moment of the snapshot.
#[derive(Debug, Clone)]
pub struct CoreStatsSnapshot {
    /// Core index.
    pub core: usize,
    /// Messages whose send started on this core.
    pub started: u64,
    /// Messages that got a `SendResult` (or, oneway, were written).
    pub acked: u64,
    /// Messages that got an error.
    pub failed: u64,
    /// Failures by [`crate::Error::kind`].
    pub failed_by_kind: BTreeMap<crate::ErrorKind, u64>,
    /// Failed attempts (each try of a send that got an error, retried or not) by broker name;
    /// past 256 brokers the rest count under `"(other)"`.
    pub attempt_errors_by_broker: BTreeMap<String, u64>,
    /// Attempts after the first.
    pub retries: u64,
    /// Sends refused with [`crate::Error::QueueFull`] (no room on the core or in its inbox);
    /// they never started, so they are in neither `acked` nor `failed`.
    pub refused: u64,
    /// Sends in progress.
    pub in_flight: u64,
    /// Open connections.
    pub connections: usize,
    /// `send(2)` calls made by this core's connections.
    pub writes: u64,
    /// Frames those writes carried.
    pub frames_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// `recv(2)` calls that returned data.
    pub reads: u64,
    /// Bytes waiting in this core's connections to be written (bounded by
    /// `max_buffered_bytes` per connection).
    pub queued_write_bytes: u64,
    /// Topic routes the producer holds (shared by all cores; at most `max_topics`).
    pub routes: usize,
    /// Send latency (microseconds, retries included).
    pub latency_us: LatencyHistogram,
}

/// Counters of the whole producer.
#[derive(Debug, Clone)]
pub struct ProducerStats {
    /// The producer's client id (`ip@instance`), unique per producer in a process.
    pub client_id: String,
    /// Per core.
    pub cores: Vec<CoreStatsSnapshot>,
}

impl ProducerStats {
    /// Sum of `acked` over all cores.
    pub fn acked(&self) -> u64 {
        self.cores.iter().map(|c| c.acked).sum()
    }

    /// Sum of `failed` over all cores.
    pub fn failed(&self) -> u64 {
        self.cores.iter().map(|c| c.failed).sum()
    }

    /// Sum of `retries` over all cores.
    pub fn retries(&self) -> u64 {
        self.cores.iter().map(|c| c.retries).sum()
    }

    /// Sum of `refused` over all cores.
    pub fn refused(&self) -> u64 {
        self.cores.iter().map(|c| c.refused).sum()
    }

    /// Sum of `started` over all cores.
    pub fn started(&self) -> u64 {
        self.cores.iter().map(|c| c.started).sum()
    }

    /// Sum of `frames_written` over all cores.
    pub fn frames_written(&self) -> u64 {
        self.cores.iter().map(|c| c.frames_written).sum()
    }

    /// Sum of `bytes_written` over all cores.
    pub fn bytes_written(&self) -> u64 {
        self.cores.iter().map(|c| c.bytes_written).sum()
    }

    /// Sum of `queued_write_bytes` over all cores.
    pub fn queued_write_bytes(&self) -> u64 {
        self.cores.iter().map(|c| c.queued_write_bytes).sum()
    }

    /// Sum of `in_flight` over all cores.
    pub fn in_flight(&self) -> u64 {
        self.cores.iter().map(|c| c.in_flight).sum()
    }

    /// Latency of all cores merged.
    pub fn latency_us(&self) -> LatencyHistogram {
        let mut merged = LatencyHistogram::default();
        for core in &self.cores {
            merged.merge(&core.latency_us);
        }
        merged
    }

    /// Frames per `send(2)` over all cores (how well writes coalesce).
    pub fn frames_per_write(&self) -> f64 {
        let writes: u64 = self.cores.iter().map(|c| c.writes).sum();
        let frames: u64 = self.cores.iter().map(|c| c.frames_written).sum();
        if writes == 0 {
            0.0
        } else {
            frames as f64 / writes as f64
        }
    }
}
