//! [`ReplySlots`]: a core's reusable slots through which the automatic batcher hands each local
//! caller its own outcome, instead of a channel (and its allocation) per message.
//!
//! ```text
//!  caller ── reply_pair() ──► (ReplySender in the BatchItem, ReplyReceiver awaited by the caller)
//!  batch answered ── sender.send(reply) ──► slot Done ──► receiver's next poll takes it, slot freed
//!  sender dropped unsent (batch dropped) ──► the receiver gets CoreStopped, never waits forever
//!  receiver dropped first ──► slot Abandoned ──► freed when the sender completes it
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::inbox::SendReply;
use crate::error::Error;

enum Slot {
    Free,
    Waiting(Option<Waker>),
    Done(SendReply),
    /// The receiver is gone; the slot is freed when the sender completes it.
    Abandoned,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// One core's reply slots (single-threaded: `Rc` + `RefCell`).
#[derive(Default)]
pub(crate) struct ReplySlots {
    inner: RefCell<Slots>,
}

impl ReplySlots {
    fn open(&self) -> u32 {
        let mut inner = self.inner.borrow_mut();
        match inner.free.pop() {
            Some(index) => {
                inner.slots[index as usize] = Slot::Waiting(None);
                index
            }
            None => {
                inner.slots.push(Slot::Waiting(None));
                (inner.slots.len() - 1) as u32
            }
        }
    }

    fn complete(&self, index: u32, reply: SendReply) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            let slot = &mut inner.slots[index as usize];
            match std::mem::replace(slot, Slot::Free) {
                Slot::Waiting(waker) => {
                    *slot = Slot::Done(reply);
                    waker
                }
                Slot::Abandoned => {
                    inner.free.push(index);
                    None
                }
                other => {
                    // A sender completes its slot once; anything else is a bug, kept visible.
                    *slot = other;
                    debug_assert!(false, "reply slot {index} completed twice");
                    None
                }
            }
        };
        // Woken after the borrow ends: the woken task may open or poll slots itself.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll(&self, index: u32, cx: &mut Context<'_>) -> Poll<SendReply> {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.slots[index as usize];
        match std::mem::replace(slot, Slot::Free) {
            Slot::Done(reply) => {
                inner.free.push(index);
                Poll::Ready(reply)
            }
            Slot::Waiting(_) => {
                *slot = Slot::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            other => {
                *slot = other;
                unreachable!("reply slot {index} polled after it was released")
            }
        }
    }

    fn abandon(&self, index: u32) {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.slots[index as usize];
        match std::mem::replace(slot, Slot::Abandoned) {
            Slot::Waiting(_) => {}
            Slot::Done(_) => {
                *slot = Slot::Free;
                inner.free.push(index);
            }
            other => *slot = other,
        }
    }

    /// Slots in use (tests).
    #[cfg(test)]
    fn in_use(&self) -> usize {
        let inner = self.inner.borrow();
        inner.slots.len() - inner.free.len()
    }
}

/// Opens a slot: the sender goes with the message, the receiver is awaited by its caller.
pub(crate) fn reply_pair(slots: &Rc<ReplySlots>) -> (ReplySender, ReplyReceiver) {
    let index = slots.open();
    (
        ReplySender {
            slots: Rc::clone(slots),
            index,
            sent: false,
        },
        ReplyReceiver {
            slots: Rc::clone(slots),
            index,
            done: false,
        },
    )
}

/// Completes one caller's slot; dropped unsent, it answers `CoreStopped`.
pub(crate) struct ReplySender {
    slots: Rc<ReplySlots>,
    index: u32,
    sent: bool,
}

impl ReplySender {
    /// Hands the caller its outcome.
    pub(crate) fn send(mut self, reply: SendReply) {
        self.sent = true;
        self.slots.complete(self.index, reply);
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        if !self.sent {
            self.slots.complete(
                self.index,
                Err(Error::CoreStopped {
                    returned: crate::error::Returned::NOTHING,
                    reason: "the batch was dropped without an outcome".into(),
                }),
            );
        }
    }
}

/// The caller's side: resolves to the outcome its sender hands over.
pub(crate) struct ReplyReceiver {
    slots: Rc<ReplySlots>,
    index: u32,
    done: bool,
}

impl Future for ReplyReceiver {
    type Output = SendReply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SendReply> {
        let poll = self.slots.poll(self.index, cx);
        if poll.is_ready() {
            self.done = true;
        }
        poll
    }
}

impl Drop for ReplyReceiver {
    fn drop(&mut self) {
        if !self.done {
            self.slots.abandon(self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prepared::Reply;

    fn poll_once(receiver: &mut ReplyReceiver) -> Poll<SendReply> {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        Pin::new(receiver).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn every_path_answers_once_and_frees_its_slot() {
        let slots = Rc::new(ReplySlots::default());
        // Sent, then received.
        let (tx, mut rx) = reply_pair(&slots);
        assert!(poll_once(&mut rx).is_pending());
        tx.send(Ok(Reply::Written));
        assert!(matches!(
            poll_once(&mut rx),
            Poll::Ready(Ok(Reply::Written))
        ));
        drop(rx);
        assert_eq!(slots.in_use(), 0);
        // Sender dropped unsent: the receiver hears CoreStopped.
        let (tx, mut rx) = reply_pair(&slots);
        drop(tx);
        assert!(matches!(
            poll_once(&mut rx),
            Poll::Ready(Err(Error::CoreStopped { .. }))
        ));
        drop(rx);
        assert_eq!(slots.in_use(), 0);
        // Receiver gone first, either before or after the answer.
        let (tx, rx) = reply_pair(&slots);
        drop(rx);
        assert_eq!(slots.in_use(), 1);
        tx.send(Ok(Reply::Written));
        assert_eq!(slots.in_use(), 0);
        let (tx, rx) = reply_pair(&slots);
        tx.send(Ok(Reply::Written));
        drop(rx);
        assert_eq!(slots.in_use(), 0);
        // Freed slots are reused.
        let pairs: Vec<_> = (0..3).map(|_| reply_pair(&slots)).collect();
        assert_eq!(slots.inner.borrow().slots.len(), 3);
        drop(pairs);
        assert_eq!(slots.in_use(), 0);
    }
}
