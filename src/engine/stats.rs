//! Per-core counters: plain `Cell`s written only by their core, copied out on demand.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Counters of one core.
pub(crate) struct CoreStats {
    pub started: Cell<u64>,
    pub acked: Cell<u64>,
    pub failed: Cell<u64>,
    pub retries: Cell<u64>,
    pub refused_at_shutdown: Cell<u64>,
    pub failed_by_kind: RefCell<BTreeMap<&'static str, u64>>,
    /// Send latency in microseconds (whole send, retries included).
    pub latency_us: RefCell<Histogram<u64>>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            started: Cell::new(0),
            acked: Cell::new(0),
            failed: Cell::new(0),
            retries: Cell::new(0),
            refused_at_shutdown: Cell::new(0),
            failed_by_kind: RefCell::new(BTreeMap::new()),
            latency_us: RefCell::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

impl CoreStats {
    pub(crate) fn record(&self, messages: u64, ok: bool, kind: Option<&'static str>, micros: u64) {
        if ok {
            self.acked.set(self.acked.get() + messages);
        } else {
            self.failed.set(self.failed.get() + messages);
            if let Some(kind) = kind {
                *self.failed_by_kind.borrow_mut().entry(kind).or_insert(0) += messages;
            }
        }
        let _ = self.latency_us.borrow_mut().record(micros.max(1));
    }
}
