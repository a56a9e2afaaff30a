//! What a connection is given ([`ConnSettings`], copied from the producer config) and what it
//! counts ([`ConnCounters`], for the core's metrics).

use std::cell::Cell;
use std::sync::Arc;

use crate::protocol::{HeaderEncoding, LanguageCode};

/// Per-connection settings copied from the producer config.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub encoding: HeaderEncoding,
    pub language: LanguageCode,
    pub version: i32,
    pub max_frame_bytes: usize,
    pub max_in_flight: usize,
    /// What to do with requests the peer sends (check-backs, pushed replies).
    pub broker_requests: Option<Arc<crate::engine::broker_requests::BrokerRequests>>,
    /// The producer's hooks (request hooks run on every request written here).
    pub hooks: Arc<crate::hooks::Hooks>,
    /// Host names to addresses, on a helper thread.
    pub resolver: crate::engine::resolve::Resolver,
    /// Most bytes queued for writing (queued + the write in progress); a request that would
    /// go past it fails at once, not stored.
    pub max_queued_bytes: usize,
    /// TLS to every peer, when configured.
    pub tls: Option<crate::tls::TlsSetup>,
    /// A connection whose writes make no progress for this long is closed (its peer stopped
    /// reading), which fails its requests and frees what was queued.
    pub stall_timeout: std::time::Duration,
}

/// Counters a connection keeps for the core's metrics.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    pub writes: Cell<u64>,
    pub frames_written: Cell<u64>,
    pub bytes_written: Cell<u64>,
    pub reads: Cell<u64>,
}

impl ConnCounters {
    pub(crate) fn absorb(&self, other: &ConnCounters) {
        self.writes.set(self.writes.get() + other.writes.get());
        self.frames_written
            .set(self.frames_written.get() + other.frames_written.get());
        self.bytes_written
            .set(self.bytes_written.get() + other.bytes_written.get());
        self.reads.set(self.reads.get() + other.reads.get());
    }
}
