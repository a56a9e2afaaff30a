//! Admission: a send's share of its core's caps (`max_inflight` messages and
//! `max_buffered_bytes`), taken at once or waited for within the send's budget.
//!
//! A permit is units of both semaphores and a count in the flush gate, behind one reference to
//! the core's [`Caps`]: taking or dropping one touches one reference count. The permits of the
//! messages of an automatic batch become one ([`InFlightPermit::absorb`]), released at once when
//! the batch's answer is in.

use std::rc::Rc;
use std::time::Instant;

use glommio::sync::Semaphore;

use super::Core;
use crate::engine::deadline::until;
use crate::engine::flush_gate::FlushGate;

/// A core's caps: messages in progress (`max_inflight`), their bytes (`max_buffered_bytes`),
/// and which of them a `flush()` waits for.
pub(crate) struct Caps {
    pub messages: Semaphore,
    pub bytes: Semaphore,
    pub flush: Rc<FlushGate>,
}

impl Caps {
    pub(crate) fn new(max_inflight: usize, max_buffered_bytes: usize) -> Self {
        Caps {
            messages: Semaphore::new(max_inflight as u64),
            bytes: Semaphore::new(max_buffered_bytes as u64),
            flush: Rc::default(),
        }
    }
}

/// Messages' share of their core's caps: one of `max_inflight` each and their bytes of
/// `max_buffered_bytes`. Released when dropped.
pub(crate) struct InFlightPermit {
    caps: Rc<Caps>,
    messages: u64,
    bytes: u64,
    /// The flush epoch its messages count in.
    epoch: u64,
}

impl InFlightPermit {
    /// Takes `other`'s share into this one: both are released together, when this one is.
    /// For messages that end at the same moment (an automatic batch's).
    pub(crate) fn absorb(&mut self, mut other: InFlightPermit) {
        debug_assert!(Rc::ptr_eq(&self.caps, &other.caps), "permits of two cores");
        self.epoch = self
            .caps
            .flush
            .merge((self.epoch, self.messages), (other.epoch, other.messages));
        self.messages += std::mem::take(&mut other.messages);
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Takes one message's share out of this one (`bytes` of its byte units at most), to be
    /// released on its own: a batch member that leaves before the batch ends.
    pub(crate) fn split_off(&mut self, bytes: u64) -> InFlightPermit {
        let messages = self.messages.min(1);
        let bytes = bytes.min(self.bytes);
        self.messages -= messages;
        self.bytes -= bytes;
        InFlightPermit {
            caps: Rc::clone(&self.caps),
            messages,
            bytes,
            epoch: self.epoch,
        }
    }

    /// Byte units it holds.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages it counts.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> u64 {
        self.messages
    }

    /// The permit of one message whose unit and `bytes` byte units were just taken from `caps`,
    /// counted into the current flush epoch.
    fn acquired(caps: &Rc<Caps>, bytes: u64) -> InFlightPermit {
        InFlightPermit {
            caps: Rc::clone(caps),
            messages: 1,
            bytes,
            epoch: caps.flush.enter(),
        }
    }

    /// A permit of one message and `bytes` byte units taken from `caps` (tests).
    #[cfg(test)]
    pub(crate) fn for_tests(caps: &Rc<Caps>, bytes: u64) -> InFlightPermit {
        assert!(caps.messages.try_acquire(1).unwrap());
        assert!(caps.bytes.try_acquire(bytes).unwrap());
        InFlightPermit::acquired(caps, bytes)
    }
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        if self.messages > 0 {
            self.caps.messages.signal(self.messages);
        }
        if self.bytes > 0 {
            self.caps.bytes.signal(self.bytes);
        }
        self.caps.flush.leave(self.epoch, self.messages);
    }
}

impl Core {
    fn byte_units(&self, bytes: usize) -> u64 {
        bytes.clamp(1, self.core_config.max_buffered_bytes) as u64
    }

    /// Takes a permit at once if both caps allow it (and nobody waits for one).
    #[inline]
    pub(crate) fn try_permit(&self, bytes: usize) -> Option<InFlightPermit> {
        let caps = &self.caps;
        if !caps.messages.try_acquire(1).unwrap_or(false) {
            return None;
        }
        let units = self.byte_units(bytes);
        if !caps.bytes.try_acquire(units).unwrap_or(false) {
            caps.messages.signal(1);
            return None;
        }
        Some(InFlightPermit::acquired(caps, units))
    }

    /// Waits for a permit until `deadline`.
    pub(crate) async fn permit_until(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Option<InFlightPermit> {
        let caps = &self.caps;
        until(deadline, caps.messages.acquire(1)).await?.ok()?;
        let units = self.byte_units(bytes);
        match until(deadline, caps.bytes.acquire(units)).await {
            Some(Ok(())) => Some(InFlightPermit::acquired(caps, units)),
            _ => {
                caps.messages.signal(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[test]
    fn absorbed_permits_are_released_together_and_a_flush_waits_for_them() {
        let caps = Rc::new(Caps::new(8, 1000));
        let mut merged = InFlightPermit::for_tests(&caps, 100);
        let before_flush = InFlightPermit::for_tests(&caps, 10);
        let flush = caps.flush.flush();
        let mut flush = Box::pin(flush);
        // Taken after the flush started: a newer epoch, counted in the older one once absorbed.
        let after_flush = InFlightPermit::for_tests(&caps, 20);
        merged.absorb(after_flush);
        merged.absorb(before_flush);
        assert_eq!(merged.messages(), 3);
        assert_eq!(
            (caps.messages.available(), caps.bytes.available()),
            (5, 870)
        );
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(flush.as_mut().poll(&mut cx).is_pending());
        // One member leaves early with its share; the flush still waits for the others.
        drop(merged.split_off(10));
        assert_eq!(merged.messages(), 2);
        assert_eq!(
            (caps.messages.available(), caps.bytes.available()),
            (6, 880)
        );
        assert!(flush.as_mut().poll(&mut cx).is_pending());
        drop(merged);
        assert_eq!(
            (caps.messages.available(), caps.bytes.available()),
            (8, 1000)
        );
        assert!(flush.as_mut().poll(&mut cx).is_ready());
        // Nothing is left counted: a new flush ends at once.
        let mut idle = Box::pin(caps.flush.flush());
        assert!(idle.as_mut().poll(&mut cx).is_ready());
    }
}
