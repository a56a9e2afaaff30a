//! Per-core counters: plain `Cell`s written only by their core, read on demand.

use std::cell::Cell;

/// Counters of one core.
#[derive(Debug, Default)]
pub(crate) struct CoreStats {
    pub started: Cell<u64>,
    pub acked: Cell<u64>,
    pub failed: Cell<u64>,
    pub retries: Cell<u64>,
}
