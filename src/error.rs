//! The public [`Error`](enum@Error): what failed, whether a retry can help, and whether the message may be stored.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::protocol::ResponseCode;

mod hand_back;
mod kind;
mod remark;
mod returned;

pub use kind::ErrorKind;
pub(crate) use remark::bounded_remark;
pub use remark::MAX_REMARK_BYTES;
pub use returned::Returned;

/// Whether a failed message may still have been stored by a broker.
///
/// RocketMQ has no idempotent producer: after an `Unknown` outcome a retry can store the message
/// twice. Callers that must not duplicate check this before resending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Definitely not stored: refused before sending, never written to a socket, or rejected by
    /// the broker with an error code, on every attempt.
    NotStored,
    /// At least one attempt was written, or queued for writing, and its answer never arrived
    /// (timeout, lost connection, unreadable reply): the broker may have stored it. An attempt
    /// that times out while its request still waits in the connection's write buffer counts
    /// here, because the request is written once the socket drains.
    Unknown,
}

/// Every way a send or a producer operation can fail.
///
/// [`Error::is_retryable`] says whether another attempt could succeed; the producer's own retry
/// loop asks the same question. [`Error::outcome`] says whether the message may have been stored.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The message breaks a rule (topic, body size, reserved property...). Never retried.
    #[error("invalid message: {reason}")]
    InvalidMessage {
        /// Which rule, and how.
        reason: String,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The queue a send was targeted at is not one of its topic's publish queues (another
    /// topic, an unknown broker or queue id, or a selector that picked none). Never retried.
    #[error("invalid target queue: {reason}")]
    InvalidTarget {
        /// What was wrong.
        reason: String,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// A [`crate::CheckForbiddenHook`] refused the message. Never retried.
    #[error("refused by a check-forbidden hook: {reason}")]
    Forbidden {
        /// The hook's reason.
        reason: String,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which setting, and why.
        reason: String,
    },
    /// The producer's queues are full and the configuration says to fail instead of waiting.
    /// The message comes back untouched.
    #[error("the producer's submission queue is full")]
    QueueFull {
        /// The refused message(s).
        returned: Returned,
    },
    /// The producer is shutting down or shut down; the message was not accepted (or was accepted
    /// and could not finish before the shutdown deadline, see `outcome`).
    #[error("the producer is shut down")]
    ShutDown {
        /// Whether an attempt had been written when the shutdown deadline cut it off.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// No NameServer answered.
    #[error("no NameServer answered ({addrs}): {reason}")]
    NameServerUnavailable {
        /// The addresses tried.
        addrs: String,
        /// The last failure.
        reason: String,
        /// `NotStored`, unless an earlier attempt of the same message had an unknown outcome.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The topic has no usable route (unknown topic and no `TBW102`, or no writable master queue).
    #[error("no route for topic {topic}: {reason}")]
    NoRoute {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
        /// `NotStored`, unless an earlier attempt of the same message had an unknown outcome.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// A broker connection could not be opened, was lost, or is over its in-flight limit.
    #[error("connection to {peer} failed: {reason}")]
    Connection {
        /// `ip:port` of the peer.
        peer: String,
        /// What happened.
        reason: String,
        /// Whether the request had been written before the failure.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The broker answered with an error code.
    #[error("broker {broker} answered {code}: {remark}")]
    Broker {
        /// `ip:port` of the broker.
        broker: String,
        /// The response code.
        code: ResponseCode,
        /// The broker's remark, bounded (see [`MAX_REMARK_BYTES`]); the callers of one batch
        /// share it.
        remark: Arc<str>,
        /// `NotStored`, unless an earlier attempt of the same message had an unknown outcome.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// A peer sent bytes that are not a valid RocketMQ frame or response; the connection was closed.
    #[error("malformed reply from {peer}: {reason}")]
    Protocol {
        /// `ip:port` of the peer.
        peer: String,
        /// What was wrong.
        reason: String,
        /// Whether the request may have been processed.
        outcome: Outcome,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The send timeout ran out before any attempt succeeded.
    #[error("send timed out after {elapsed:?} (budget {budget:?}, {attempts} attempt(s)){}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Timeout {
        /// Time spent.
        elapsed: Duration,
        /// The budget.
        budget: Duration,
        /// Attempts made.
        attempts: u32,
        /// Whether any attempt was written (or queued for writing) without an answer.
        outcome: Outcome,
        /// The last attempt's error, if one failed before the budget ran out.
        last_error: Option<Box<Error>>,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// A request of request-reply was sent, but no reply arrived within its timeout. The request
    /// message was stored; sending it again makes a second request.
    #[error("no reply within {elapsed:?} (correlation id {correlation_id})")]
    ReplyTimeout {
        /// Time waited.
        elapsed: Duration,
        /// The request's `CORRELATION_ID`.
        correlation_id: String,
    },
    /// The broker does not offer what the message needs (a RocketMQ 5.x timer message on a
    /// broker whose timer store is off). Never retried: every broker of the cluster is set alike.
    #[error("broker {broker} does not support this: {remark}")]
    NotSupported {
        /// `ip:port` of the broker.
        broker: String,
        /// The broker's remark, bounded (see [`MAX_REMARK_BYTES`]).
        remark: Arc<str>,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The broker refused the request for its ACL: a bad or missing signature, an unknown
    /// account, or no permission on the topic (Java 4.9.x answers SYSTEM_ERROR with an
    /// `AclException` remark, rocketmq-rust NO_PERMISSION). Never retried: every broker of a
    /// cluster shares the accounts.
    #[error("broker {broker} refused access ({code}): {remark}")]
    AccessDenied {
        /// `ip:port` of the broker.
        broker: String,
        /// The response code.
        code: ResponseCode,
        /// The broker's remark, bounded (see [`MAX_REMARK_BYTES`]).
        remark: Arc<str>,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The message cannot be framed within the peer's frame limit.
    #[error("the request would be {size} bytes, over the {limit}-byte frame limit")]
    FrameTooLarge {
        /// Frame size.
        size: usize,
        /// Limit.
        limit: usize,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// A producer core stopped without answering (it panicked or was torn down).
    #[error("a producer core stopped before answering: {reason}")]
    CoreStopped {
        /// What is known.
        reason: String,
        /// The message(s) of the failed send, handed back ([`Error::into_message`]).
        returned: Returned,
    },
    /// The producer could not start.
    #[error("the producer could not start: {reason}")]
    Startup {
        /// Why.
        reason: String,
    },
}

/// The `outcome` field of the variants that have one (by reference or mutable reference, as
/// the scrutinee is borrowed): one list of variants for reading and raising it.
macro_rules! outcome_slot {
    ($error:expr) => {
        match $error {
            Error::Connection { outcome, .. }
            | Error::Broker { outcome, .. }
            | Error::Protocol { outcome, .. }
            | Error::Timeout { outcome, .. }
            | Error::ShutDown { outcome, .. }
            | Error::NoRoute { outcome, .. }
            | Error::NameServerUnavailable { outcome, .. } => Some(outcome),
            _ => None,
        }
    };
}

impl Error {
    /// Whether another attempt (on another broker, or later) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidMessage { .. }
            | Error::InvalidTarget { .. }
            | Error::Forbidden { .. }
            | Error::InvalidConfig { .. }
            | Error::ShutDown { .. }
            | Error::FrameTooLarge { .. }
            | Error::CoreStopped { .. }
            | Error::NotSupported { .. }
            | Error::AccessDenied { .. }
            | Error::Startup { .. } => false,
            Error::ReplyTimeout { .. } => true,
            Error::QueueFull { .. }
            | Error::NameServerUnavailable { .. }
            | Error::NoRoute { .. }
            | Error::Connection { .. }
            | Error::Protocol { .. }
            | Error::Timeout { .. } => true,
            Error::Broker { code, .. } => code.is_retryable_for_send(),
        }
    }

    /// Whether the message may have been stored despite this error.
    pub fn outcome(&self) -> Outcome {
        match outcome_slot!(self) {
            Some(outcome) => *outcome,
            None if matches!(self, Error::CoreStopped { .. } | Error::ReplyTimeout { .. }) => {
                Outcome::Unknown
            }
            None => Outcome::NotStored,
        }
    }

    /// The broker response code, for broker errors.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Timeout {
                last_error: Some(e),
                ..
            } => e.response_code(),
            _ => None,
        }
    }

    /// The same error with its outcome raised to `Unknown` (an earlier attempt was unanswered).
    pub(crate) fn with_unknown_outcome(mut self) -> Self {
        if let Some(outcome) = outcome_slot!(&mut self) {
            *outcome = Outcome::Unknown;
        }
        self
    }

    /// Which kind of error this is (one per variant), for matching without the payload, metrics
    /// labels ([`ErrorKind::as_str`]) and per-kind counts in [`crate::CoreStatsSnapshot`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidMessage { .. } => ErrorKind::InvalidMessage,
            Error::InvalidTarget { .. } => ErrorKind::InvalidTarget,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Error::QueueFull { .. } => ErrorKind::QueueFull,
            Error::ShutDown { .. } => ErrorKind::ShutDown,
            Error::NameServerUnavailable { .. } => ErrorKind::NameServerUnavailable,
            Error::NoRoute { .. } => ErrorKind::NoRoute,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Broker { .. } => ErrorKind::Broker,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            Error::ReplyTimeout { .. } => ErrorKind::ReplyTimeout,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::CoreStopped { .. } => ErrorKind::CoreStopped,
            Error::Startup { .. } => ErrorKind::Startup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn retry_and_outcome() {
        let busy = Error::Broker {
            broker: "b".into(),
            code: ResponseCode::SystemBusy,
            remark: "".into(),
            outcome: Outcome::NotStored,
            returned: Returned::NOTHING,
        };
        assert!(busy.is_retryable());
        assert_eq!(busy.outcome(), Outcome::NotStored);
        assert_eq!(
            busy.clone().with_unknown_outcome().outcome(),
            Outcome::Unknown
        );
        let illegal = Error::Broker {
            broker: "b".into(),
            code: ResponseCode::MessageIllegal,
            remark: "".into(),
            outcome: Outcome::NotStored,
            returned: Returned::NOTHING,
        };
        assert!(!illegal.is_retryable());
        let full = Error::QueueFull {
            returned: Returned::one(Message::new("T", "b")),
        };
        assert_eq!(full.into_message().unwrap().topic, "T");
    }
}
