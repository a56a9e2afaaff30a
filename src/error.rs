//! The public [`Error`](enum@Error): what failed, whether a retry can help, and whether the message may be stored.

use std::time::Duration;

use thiserror::Error;

use crate::message::Message;
use crate::protocol::ResponseCode;

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
    },
    /// The queue a send was targeted at is not one of its topic's publish queues (another
    /// topic, an unknown broker or queue id, or a selector that picked none). Never retried.
    #[error("invalid target queue: {reason}")]
    InvalidTarget {
        /// What was wrong.
        reason: String,
    },
    /// A [`crate::CheckForbiddenHook`] refused the message. Never retried.
    #[error("refused by a check-forbidden hook: {reason}")]
    Forbidden {
        /// The hook's reason.
        reason: String,
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
        /// The refused message.
        message: Option<Box<Message>>,
    },
    /// The producer is shutting down or shut down; the message was not accepted (or was accepted
    /// and could not finish before the shutdown deadline, see `outcome`).
    #[error("the producer is shut down")]
    ShutDown {
        /// The refused message, when it was refused before any attempt.
        message: Option<Box<Message>>,
        /// Whether an attempt had been written when the shutdown deadline cut it off.
        outcome: Outcome,
    },
    /// No NameServer answered.
    #[error("no NameServer answered ({addrs}): {reason}")]
    NameServerUnavailable {
        /// The addresses tried.
        addrs: String,
        /// The last failure.
        reason: String,
    },
    /// The topic has no usable route (unknown topic and no `TBW102`, or no writable master queue).
    #[error("no route for topic {topic}: {reason}")]
    NoRoute {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
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
    },
    /// The broker answered with an error code.
    #[error("broker {broker} answered {code}: {remark}")]
    Broker {
        /// `ip:port` of the broker.
        broker: String,
        /// The response code.
        code: ResponseCode,
        /// The broker's remark.
        remark: String,
        /// `NotStored`, unless an earlier attempt of the same message had an unknown outcome.
        outcome: Outcome,
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
        /// The broker's remark.
        remark: String,
    },
    /// The message cannot be framed within the peer's frame limit.
    #[error("the request would be {size} bytes, over the {limit}-byte frame limit")]
    FrameTooLarge {
        /// Frame size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// A producer core stopped without answering (it panicked or was torn down).
    #[error("a producer core stopped before answering: {reason}")]
    CoreStopped {
        /// What is known.
        reason: String,
    },
    /// The producer could not start.
    #[error("the producer could not start: {reason}")]
    Startup {
        /// Why.
        reason: String,
    },
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
        match self {
            Error::Connection { outcome, .. }
            | Error::Broker { outcome, .. }
            | Error::Protocol { outcome, .. }
            | Error::Timeout { outcome, .. }
            | Error::ShutDown { outcome, .. } => *outcome,
            Error::CoreStopped { .. } | Error::ReplyTimeout { .. } => Outcome::Unknown,
            _ => Outcome::NotStored,
        }
    }

    /// The message handed back by a refusal (`QueueFull`, `ShutDown` before acceptance).
    pub fn into_message(self) -> Option<Message> {
        match self {
            Error::QueueFull { message } | Error::ShutDown { message, .. } => message.map(|m| *m),
            _ => None,
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
        match &mut self {
            Error::Connection { outcome, .. }
            | Error::Broker { outcome, .. }
            | Error::Protocol { outcome, .. }
            | Error::Timeout { outcome, .. }
            | Error::ShutDown { outcome, .. } => *outcome = Outcome::Unknown,
            _ => {}
        }
        self
    }

    /// A short stable name of the variant, for metrics and loadgen's error counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidMessage { .. } => "invalid_message",
            Error::InvalidTarget { .. } => "invalid_target",
            Error::Forbidden { .. } => "forbidden",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::QueueFull { .. } => "queue_full",
            Error::ShutDown { .. } => "shut_down",
            Error::NameServerUnavailable { .. } => "nameserver_unavailable",
            Error::NoRoute { .. } => "no_route",
            Error::Connection { .. } => "connection",
            Error::Broker { .. } => "broker",
            Error::Protocol { .. } => "protocol",
            Error::Timeout { .. } => "timeout",
            Error::FrameTooLarge { .. } => "frame_too_large",
            Error::ReplyTimeout { .. } => "reply_timeout",
            Error::NotSupported { .. } => "not_supported",
            Error::CoreStopped { .. } => "core_stopped",
            Error::Startup { .. } => "startup",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_and_outcome() {
        let busy = Error::Broker {
            broker: "b".into(),
            code: ResponseCode::SystemBusy,
            remark: String::new(),
            outcome: Outcome::NotStored,
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
            remark: String::new(),
            outcome: Outcome::NotStored,
        };
        assert!(!illegal.is_retryable());
        let full = Error::QueueFull {
            message: Some(Box::new(Message::new("T", "b"))),
        };
        assert_eq!(full.into_message().unwrap().topic, "T");
    }
}
