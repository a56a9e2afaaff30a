//! Per-core counters: plain `Cell`s written only by their core, copied out on demand.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Counters of one core.
pub(crate) struct CoreStats {
    pub started: Cell<u64>,
    pub acked: Cell<u64>,
    pub failed: Cell<u64>,
    pub retries: Cell<u64>,
    pub refused_at_shutdown: Cell<u64>,
    /// Sends refused on this core for lack of room ([`crate::Error::QueueFull`]).
    pub refused: Cell<u64>,
    pub failed_by_kind: RefCell<BTreeMap<crate::ErrorKind, u64>>,
    /// Failed attempts by broker name (at most [`MAX_BROKERS_COUNTED`] brokers).
    pub attempt_errors_by_broker: RefCell<BTreeMap<std::sync::Arc<str>, u64>>,
    /// Send latency in microseconds (whole send, retries included).
    pub latency_us: RefCell<crate::latency_histogram::LatencyHistogram>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            started: Cell::new(0),
            acked: Cell::new(0),
            failed: Cell::new(0),
            retries: Cell::new(0),
            refused_at_shutdown: Cell::new(0),
            refused: Cell::new(0),
            failed_by_kind: RefCell::new(BTreeMap::new()),
            attempt_errors_by_broker: RefCell::new(BTreeMap::new()),
            latency_us: RefCell::default(),
        }
    }
}

/// Brokers counted apart in `attempt_errors_by_broker`; errors of further brokers count under
/// [`OTHER_BROKERS`] (so a cluster that churns broker names cannot grow the map without bound).
pub(crate) const MAX_BROKERS_COUNTED: usize = 256;

/// The key that counts the errors of brokers past [`MAX_BROKERS_COUNTED`].
pub(crate) const OTHER_BROKERS: &str = "(other)";

impl CoreStats {
    /// Counts one failed attempt on `broker` (a broker name). Only failures pay for this.
    pub(crate) fn note_attempt_error(&self, broker: &std::sync::Arc<str>) {
        let mut by_broker = self.attempt_errors_by_broker.borrow_mut();
        if let Some(n) = by_broker.get_mut(broker) {
            *n += 1;
        } else if by_broker.len() < MAX_BROKERS_COUNTED {
            by_broker.insert(std::sync::Arc::clone(broker), 1);
        } else {
            *by_broker
                .entry(std::sync::Arc::from(OTHER_BROKERS))
                .or_insert(0) += 1;
        }
    }

    pub(crate) fn record(
        &self,
        messages: u64,
        ok: bool,
        kind: Option<crate::ErrorKind>,
        micros: u64,
    ) {
        if ok {
            self.acked.set(self.acked.get() + messages);
        } else {
            self.failed.set(self.failed.get() + messages);
            if let Some(kind) = kind {
                *self.failed_by_kind.borrow_mut().entry(kind).or_insert(0) += messages;
            }
        }
        self.latency_us.borrow_mut().record(micros);
    }
}
