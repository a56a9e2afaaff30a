//! Admission: a send's share of its core's caps (`max_inflight` messages and
//! `max_buffered_bytes`), taken at once or waited for within the send's budget.

use std::time::Instant;

use super::Core;
use crate::engine::deadline::until;

/// A message's share of its core's caps: one of `max_inflight` and its bytes of
/// `max_buffered_bytes`. Released when dropped.
pub(crate) struct InFlightPermit {
    _message: glommio::sync::StaticPermit,
    _bytes: glommio::sync::StaticPermit,
    _flush: crate::engine::flush_gate::FlushTicket,
}

impl Core {
    fn byte_units(&self, bytes: usize) -> u64 {
        bytes.clamp(1, self.core_config.max_buffered_bytes) as u64
    }

    /// Takes a permit at once if both caps allow it.
    pub(crate) fn try_permit(&self, bytes: usize) -> Option<InFlightPermit> {
        let message = self.permits.try_acquire_static_permit(1).ok()?;
        let bytes = self
            .byte_permits
            .try_acquire_static_permit(self.byte_units(bytes))
            .ok()?;
        Some(InFlightPermit {
            _message: message,
            _bytes: bytes,
            _flush: self.flush_gate.enter(),
        })
    }

    /// Waits for a permit until `deadline`.
    pub(crate) async fn permit_until(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Option<InFlightPermit> {
        let message = until(deadline, self.permits.acquire_static_permit(1))
            .await?
            .ok()?;
        let bytes = until(
            deadline,
            self.byte_permits
                .acquire_static_permit(self.byte_units(bytes)),
        )
        .await?
        .ok()?;
        Some(InFlightPermit {
            _message: message,
            _bytes: bytes,
            _flush: self.flush_gate.enter(),
        })
    }
}
