//! Where a send's outcome goes: an application thread's channel, a reply slot on the core, the
//! delivery handler of reported sends (with the caller's token), or the members of an automatic
//! batch sent as one record.

use std::rc::Rc;

use futures_channel::oneshot;

use super::inbox::SendReply;
use super::prepared::Reply;
use super::reply_slots::ReplySender;
use crate::error::Error;
use crate::send_result::SendResult;

/// A delivery handler: called on the producer core with the caller's token and the outcome (a
/// result lent for the call, so that handing it over counts no references and copies nothing).
pub type DeliveryHandler = dyn Fn(u64, Result<&SendResult, Error>);

/// A delivery handler shared by every core (set on the builder).
pub type SharedDeliveryHandler = dyn Fn(u64, Result<&SendResult, Error>) + Send + Sync;

/// One outcome owed to a delivery handler; dropped undelivered, it reports `CoreStopped`.
pub(crate) struct Delivery {
    handler: Option<Rc<DeliveryHandler>>,
    token: u64,
}

impl Delivery {
    pub(crate) fn new(handler: Rc<DeliveryHandler>, token: u64) -> Self {
        Delivery {
            handler: Some(handler),
            token,
        }
    }

    fn deliver(mut self, result: Result<&SendResult, Error>) {
        if let Some(handler) = self.handler.take() {
            call_delivery_handler(&*handler, self.token, result);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(handler) = self.handler.take() {
            let stopped = Error::CoreStopped {
                returned: crate::error::Returned::NOTHING,
                reason: "the send was dropped on its core before it finished".into(),
            };
            call_delivery_handler(&*handler, self.token, Err(stopped));
        }
    }
}

/// Runs the caller's handler; a panic in it ends that call only, logged. Handlers run where
/// answers are read (the connection's reader, a batch's fan-out), where sends are dropped and
/// where the inbox refuses queued ones (the core's loop, shutdown): a panic let through would
/// close the connection, failing or resending every other send in flight on it, stop the core,
/// or abort the process when it struck while another panic unwound.
pub(crate) fn call_delivery_handler(
    handler: &DeliveryHandler,
    token: u64,
    result: Result<&SendResult, Error>,
) {
    if let Err(text) = super::guarded::call_guarded(|| handler(token, result)) {
        tracing::error!(token, panic = %text, "a delivery handler panicked; the core goes on");
    }
}

/// Where a send's outcome goes.
pub(crate) enum ReplyTarget {
    /// An application thread's future or blocking call.
    Channel(oneshot::Sender<SendReply>),
    /// A caller on this core, through a reusable reply slot.
    Slot(ReplySender),
    /// The core's delivery handler, with the caller's token (single messages only).
    Report(Delivery),
    /// The members of an automatic batch sent as one record (boxed: one allocation per batch
    /// keeps every target small).
    Members(Box<super::batcher::BatchMembers>),
}

impl ReplyTarget {
    /// Hands the outcome over (a caller that gave up simply does not read it).
    pub(crate) fn send(self, reply: SendReply) {
        match self {
            ReplyTarget::Channel(tx) => {
                let _ = tx.send(reply);
            }
            ReplyTarget::Slot(tx) => tx.send(reply),
            ReplyTarget::Report(delivery) => match reply.and_then(Reply::into_one) {
                Ok(result) => delivery.deliver(Ok(&result)),
                Err(e) => delivery.deliver(Err(e)),
            },
            ReplyTarget::Members(members) => members.answer(reply),
        }
    }

    /// Hands over one stored message's result (a reported send's handler borrows it).
    pub(crate) fn send_result(self, result: SendResult) {
        match self {
            ReplyTarget::Report(delivery) => delivery.deliver(Ok(&result)),
            other => other.send(Ok(Reply::One(result))),
        }
    }

    /// Hands over a result that serves several messages in turn (a batch's fan-out): lent to a
    /// delivery handler, copied for any other caller.
    pub(crate) fn send_shared_result(self, result: &SendResult) {
        match self {
            ReplyTarget::Report(delivery) => delivery.deliver(Ok(result)),
            other => other.send(Ok(Reply::One(result.clone()))),
        }
    }
}
