//! Requests awaiting an answer on one connection, keyed by opaque.
//!
//! Core-local (`RefCell`, no locks). A slot lives from the moment a request is queued until its
//! answer is taken or its waiter gives up (a dropped `ResponseFuture` removes it, so a late reply
//! is dropped as "unknown opaque", like Java does).

use std::collections::HashMap;
use std::task::{Context, Poll, Waker};

use crate::protocol::RemotingCommand;

/// Why a request on a connection got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnFailure {
    /// What happened.
    pub reason: String,
    /// Whether the request's bytes had been handed to the socket.
    pub written: bool,
    /// Whether the peer sent something unparseable (else the transport failed).
    pub protocol: bool,
}

/// Answer of a request: the response, or `None` for a written oneway.
pub(crate) type Answer = Result<Option<RemotingCommand>, ConnFailure>;

enum SlotState {
    Waiting(Option<Waker>),
    Done(Answer),
}

struct Slot {
    seq: u64,
    oneway: bool,
    state: SlotState,
}

#[derive(Default)]
pub(crate) struct InFlight {
    slots: HashMap<i32, Slot>,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn contains(&self, opaque: i32) -> bool {
        self.slots.contains_key(&opaque)
    }

    pub(crate) fn insert(&mut self, opaque: i32, seq: u64, oneway: bool) {
        self.slots.insert(
            opaque,
            Slot {
                seq,
                oneway,
                state: SlotState::Waiting(None),
            },
        );
    }

    pub(crate) fn seq(&self, opaque: i32) -> Option<u64> {
        self.slots.get(&opaque).map(|s| s.seq)
    }

    /// Delivers a response. Returns `false` for an unknown opaque (dropped by the caller) or for a
    /// oneway slot (a peer must not answer those; the stray reply is ignored).
    pub(crate) fn complete(&mut self, opaque: i32, response: RemotingCommand) -> bool {
        match self.slots.get_mut(&opaque) {
            Some(slot) if !slot.oneway => {
                if let SlotState::Waiting(Some(waker)) =
                    std::mem::replace(&mut slot.state, SlotState::Done(Ok(Some(response))))
                {
                    waker.wake();
                }
                true
            }
            _ => false,
        }
    }

    /// Resolves every oneway slot whose frame is now written (`seq <= written`).
    pub(crate) fn complete_written_oneways(&mut self, written: u64) {
        for slot in self.slots.values_mut() {
            if slot.oneway && slot.seq <= written {
                if let SlotState::Waiting(waker) = &mut slot.state {
                    let waker = waker.take();
                    slot.state = SlotState::Done(Ok(None));
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Fails every waiting slot; `attempted` is the last sequence handed to the socket.
    pub(crate) fn fail_all(&mut self, reason: &str, protocol: bool, attempted: u64) {
        for slot in self.slots.values_mut() {
            if let SlotState::Waiting(waker) = &mut slot.state {
                let waker = waker.take();
                slot.state = SlotState::Done(Err(ConnFailure {
                    reason: reason.to_owned(),
                    written: slot.seq <= attempted,
                    protocol,
                }));
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }

    /// Polls the slot of `opaque`; takes it out once done.
    pub(crate) fn poll(&mut self, opaque: i32, cx: &mut Context<'_>) -> Poll<Answer> {
        let Some(slot) = self.slots.get_mut(&opaque) else {
            return Poll::Ready(Err(ConnFailure {
                reason: "request slot vanished".into(),
                written: true,
                protocol: false,
            }));
        };
        match &mut slot.state {
            SlotState::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            SlotState::Done(_) => match self.slots.remove(&opaque).map(|s| s.state) {
                Some(SlotState::Done(answer)) => Poll::Ready(answer),
                _ => unreachable!("state checked above"),
            },
        }
    }

    pub(crate) fn remove(&mut self, opaque: i32) {
        self.slots.remove(&opaque);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LanguageCode;
    use std::task::Waker;

    fn cx_poll(table: &mut InFlight, opaque: i32) -> Poll<Answer> {
        let mut cx = Context::from_waker(Waker::noop());
        table.poll(opaque, &mut cx)
    }

    #[test]
    fn response_then_poll() {
        let mut t = InFlight::default();
        t.insert(1, 1, false);
        assert!(cx_poll(&mut t, 1).is_pending());
        assert!(t.complete(1, RemotingCommand::request(0, 1, LanguageCode::JAVA, 1)));
        assert!(matches!(cx_poll(&mut t, 1), Poll::Ready(Ok(Some(_)))));
        assert_eq!(t.len(), 0);
        assert!(!t.complete(1, RemotingCommand::request(0, 1, LanguageCode::JAVA, 1)));
    }

    #[test]
    fn failure_marks_written() {
        let mut t = InFlight::default();
        t.insert(1, 1, false);
        t.insert(2, 2, false);
        t.insert(3, 3, true);
        t.complete_written_oneways(2);
        assert!(cx_poll(&mut t, 3).is_pending());
        t.fail_all("gone", false, 1);
        match cx_poll(&mut t, 1) {
            Poll::Ready(Err(f)) => assert!(f.written),
            _ => panic!(),
        }
        match cx_poll(&mut t, 2) {
            Poll::Ready(Err(f)) => assert!(!f.written),
            _ => panic!(),
        }
    }
}
