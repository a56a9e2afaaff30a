//! The answer of one request as a future, and a connection failure as the public error.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::Connection;
use crate::engine::in_flight::{Answer, ConnFailure};
use crate::error::{Error, Outcome};

/// The answer of one request; dropping it abandons the request (a late reply is ignored).
pub(crate) struct ResponseFuture {
    pub(super) conn: Rc<Connection>,
    pub(super) opaque: i32,
    pub(super) done: bool,
}

impl Future for ResponseFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let poll = self.conn.in_flight.borrow_mut().poll(self.opaque, cx);
        if poll.is_ready() {
            self.done = true;
        }
        poll
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if !self.done {
            self.conn.in_flight.borrow_mut().remove(self.opaque);
        }
    }
}

/// Maps a connection-level failure of a request to the public error.
pub(crate) fn failure_to_error(peer: &str, failure: ConnFailure) -> Error {
    let outcome = if failure.written {
        Outcome::Unknown
    } else {
        Outcome::NotStored
    };
    if failure.protocol {
        Error::Protocol {
            returned: crate::error::Returned::NOTHING,
            peer: peer.to_owned(),
            reason: failure.reason,
            outcome,
        }
    } else {
        Error::Connection {
            returned: crate::error::Returned::NOTHING,
            peer: peer.to_owned(),
            reason: failure.reason,
            outcome,
        }
    }
}
