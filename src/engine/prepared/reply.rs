//! [`Reply`]: what a send resolves to inside the engine, and its mapping to what each kind of
//! caller gets (a result, a batch's results, or "written" for oneway).

use super::{BatchAnswer, Outgoing};
use crate::batch_result::BatchResult;
use crate::error::{Error, Returned};
use crate::message::Message;

/// What a send resolves to.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// One message stored.
    One(crate::send_result::SendResult),
    /// A batch stored: its answer, which gives one result per message, in order, once the
    /// send's end has moved the batch's ids into it (`Reply::finish`); and the callers'
    /// messages, riding back so that they are freed on the caller's thread, not on the
    /// core (64 message drops per batch cost the core ~0.05 µs a message).
    /// (Boxed: one allocation per batch keeps every reply as small as a single result.)
    Batch(Box<BatchAnswer>, Vec<Message>),
    /// A oneway request written to the socket.
    Written,
}

impl Reply {
    /// The final outcome of sending `outgoing`: a stored batch's answer gets the batch's ids
    /// and takes its messages along (to be freed by its caller), a failure hands them back.
    #[inline]
    pub(crate) fn finish(result: Result<Reply, Error>, outgoing: Outgoing) -> Result<Reply, Error> {
        match (result, outgoing) {
            (Ok(Reply::Batch(mut answer, _)), Outgoing::Batch(batch)) => {
                answer.uniq_keys = batch.uniq_keys;
                Ok(Reply::Batch(answer, batch.originals))
            }
            (Ok(reply), _) => Ok(reply),
            (Err(e), outgoing) => Err(e.with_returned(outgoing.into_returned())),
        }
    }

    /// The result of a single send. A reply of another shape (a oneway send's, a batch's of
    /// several) means the engine paired a request with the wrong caller: a typed error, not a
    /// panic.
    pub(crate) fn into_one(self) -> Result<crate::send_result::SendResult, Error> {
        match self {
            Reply::One(result) => Ok(result),
            Reply::Batch(answer, messages) if answer.len() == 1 => {
                let first = answer.results().next();
                first.ok_or_else(|| mismatch("a single send", &Reply::Batch(answer, messages)))
            }
            other => Err(mismatch("a single send", &other)),
        }
    }

    /// The results of a batch send, one per message (a batch of one may come back as one).
    pub(crate) fn into_batch(self) -> Result<BatchResult, Error> {
        match self {
            // The messages are freed here, on the caller's thread.
            Reply::Batch(answer, _messages) => Ok(BatchResult::new(answer)),
            Reply::One(result) => Ok(BatchResult::new(Box::new(BatchAnswer::from_one(result)))),
            Reply::Written => Err(mismatch("a batch send", &Reply::Written)),
        }
    }

    /// A oneway send's outcome: written (any answer will do).
    pub(crate) fn into_written(self) -> Result<(), Error> {
        Ok(())
    }
}

fn mismatch(what: &str, got: &Reply) -> Error {
    let shape = match got {
        Reply::One(_) => "one result",
        Reply::Batch(..) => "a batch's results",
        Reply::Written => "a oneway write",
    };
    tracing::error!(what, shape, "a send got a reply of another shape");
    Error::CoreStopped {
        returned: Returned::NOTHING,
        reason: format!("{what} got {shape} (a bug in the engine; the message may be stored)"),
    }
}
