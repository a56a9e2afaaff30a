//! The public [`Error`](enum@Error): what failed, whether a retry can help, and whether the message may be stored.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::message::Message;
use crate::protocol::ResponseCode;

mod kind;
mod returned;

pub use kind::ErrorKind;
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
        match self {
            Error::Connection { outcome, .. }
            | Error::Broker { outcome, .. }
            | Error::Protocol { outcome, .. }
            | Error::Timeout { outcome, .. }
            | Error::ShutDown { outcome, .. }
            | Error::NoRoute { outcome, .. }
            | Error::NameServerUnavailable { outcome, .. } => *outcome,
            Error::CoreStopped { .. } | Error::ReplyTimeout { .. } => Outcome::Unknown,
            _ => Outcome::NotStored,
        }
    }

    /// The message of a failed single send, handed back: every error a send ends with carries
    /// it (validation, refusal, queue full, shutdown, timeout, broker and connection errors),
    /// so the caller can retry or park it. `None` for errors that are not about one message
    /// (configuration, startup) and for batches ([`Error::into_messages`]).
    pub fn into_message(self) -> Option<Message> {
        self.into_returned().into_message()
    }

    /// The messages of a failed batch (or the single message, as a one-element `Vec`), handed
    /// back in the order they were given.
    pub fn into_messages(self) -> Vec<Message> {
        self.into_returned().into_messages()
    }

    /// What the error hands back, by reference.
    pub fn returned(&self) -> &Returned {
        const NOTHING: &Returned = &Returned::NOTHING;
        match self.returned_slot() {
            Some(returned) => returned,
            None => NOTHING,
        }
    }

    /// The error without what it hands back, and that.
    pub(crate) fn split_returned(mut self) -> (Error, Returned) {
        let returned = self
            .returned_slot_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        (self, returned)
    }

    /// The same error handing back `returned`, unless it already holds something.
    pub(crate) fn with_returned(mut self, given: Returned) -> Error {
        if let Some(slot) = self.returned_slot_mut() {
            if slot.is_empty() {
                *slot = given;
            }
        }
        self
    }

    fn into_returned(mut self) -> Returned {
        self.returned_slot_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn returned_slot(&self) -> Option<&Returned> {
        match self {
            Error::InvalidMessage { returned, .. }
            | Error::InvalidTarget { returned, .. }
            | Error::Forbidden { returned, .. }
            | Error::QueueFull { returned }
            | Error::ShutDown { returned, .. }
            | Error::NameServerUnavailable { returned, .. }
            | Error::NoRoute { returned, .. }
            | Error::Connection { returned, .. }
            | Error::Broker { returned, .. }
            | Error::Protocol { returned, .. }
            | Error::Timeout { returned, .. }
            | Error::NotSupported { returned, .. }
            | Error::AccessDenied { returned, .. }
            | Error::FrameTooLarge { returned, .. }
            | Error::CoreStopped { returned, .. } => Some(returned),
            Error::InvalidConfig { .. } | Error::ReplyTimeout { .. } | Error::Startup { .. } => {
                None
            }
        }
    }

    fn returned_slot_mut(&mut self) -> Option<&mut Returned> {
        match self {
            Error::InvalidMessage { returned, .. }
            | Error::InvalidTarget { returned, .. }
            | Error::Forbidden { returned, .. }
            | Error::QueueFull { returned }
            | Error::ShutDown { returned, .. }
            | Error::NameServerUnavailable { returned, .. }
            | Error::NoRoute { returned, .. }
            | Error::Connection { returned, .. }
            | Error::Broker { returned, .. }
            | Error::Protocol { returned, .. }
            | Error::Timeout { returned, .. }
            | Error::NotSupported { returned, .. }
            | Error::AccessDenied { returned, .. }
            | Error::FrameTooLarge { returned, .. }
            | Error::CoreStopped { returned, .. } => Some(returned),
            Error::InvalidConfig { .. } | Error::ReplyTimeout { .. } | Error::Startup { .. } => {
                None
            }
        }
    }

    /// An [`Error::InvalidMessage`] without the message (attached later with `with_message`).
    pub(crate) fn invalid_message(reason: impl Into<String>) -> Error {
        Error::InvalidMessage {
            reason: reason.into(),
            returned: Returned::NOTHING,
        }
    }

    /// The same error handing back `message` (kept: a message it already holds).
    pub(crate) fn with_message(self, message: Message) -> Error {
        self.with_returned(Returned::one(message))
    }

    /// The same error handing back `messages` (a batch).
    pub(crate) fn with_messages(self, messages: Vec<Message>) -> Error {
        self.with_returned(Returned::batch(messages))
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
            | Error::ShutDown { outcome, .. }
            | Error::NoRoute { outcome, .. }
            | Error::NameServerUnavailable { outcome, .. } => *outcome = Outcome::Unknown,
            _ => {}
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

/// Longest broker or NameServer remark an [`Error`](enum@Error) keeps, in bytes, before the
/// note of its original length. A peer may send up to 16 MiB; each caller's error (and every log
/// line of a retry) would carry a copy.
pub const MAX_REMARK_BYTES: usize = 512;

/// A peer's remark the way an [`Error`](enum@Error) carries it: control and
/// bidirectional-override characters escaped (errors get logged), cut after
/// [`MAX_REMARK_BYTES`] with the original length noted, and behind an `Arc` so the callers of
/// one batch share one copy.
pub(crate) fn bounded_remark(remark: &str) -> Arc<str> {
    let mut out = String::with_capacity(remark.len().min(MAX_REMARK_BYTES) + 40);
    for c in remark.chars() {
        let before = out.len();
        if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > MAX_REMARK_BYTES {
            out.truncate(before);
            let _ = write!(out, "... (truncated, {} bytes in all)", remark.len());
            break;
        }
    }
    Arc::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn remarks_are_escaped_and_bounded() {
        assert_eq!(
            &*bounded_remark("topic 'T' not exist"),
            "topic 'T' not exist"
        );
        assert_eq!(
            &*bounded_remark("a\nb\r\t\u{1b}[0m\u{202e}é"),
            "a\\nb\\r\\t\\u{1b}[0m\\u{202e}é"
        );
        let long = "é".repeat(1 << 20);
        let bounded = bounded_remark(&long);
        assert!(bounded.len() <= MAX_REMARK_BYTES + 48, "{}", bounded.len());
        assert!(bounded.starts_with("éé"));
        assert!(
            bounded.ends_with("... (truncated, 2097152 bytes in all)"),
            "{bounded}"
        );
        let escapes = "\n".repeat(1000);
        assert!(bounded_remark(&escapes).len() <= MAX_REMARK_BYTES + 48);
        let exact = "x".repeat(MAX_REMARK_BYTES);
        assert_eq!(&*bounded_remark(&exact), exact);
    }

    #[test]
    fn debug_of_a_refused_message_shows_sizes_not_the_body() {
        let body = vec![b'x'; 4 << 20];
        let message = Message::new("T", body)
            .with_tags("tag")
            .with_keys(["k1"])
            .with_property("secret", "p".repeat(10_000));
        for e in [
            Error::QueueFull {
                returned: Returned::one(message.clone()),
            },
            Error::ShutDown {
                returned: Returned::one(message.clone()),
                outcome: Outcome::NotStored,
            },
        ] {
            let debug = format!("{e:?}");
            assert!(debug.len() < 400, "{} bytes of Debug", debug.len());
            assert!(debug.contains("4194304"), "{debug}");
            assert!(debug.contains("\"T\"") && debug.contains("tag"), "{debug}");
            assert!(
                !debug.contains("xxxx") && !debug.contains("pppp"),
                "{debug}"
            );
            assert_eq!(e.into_message().unwrap(), message);
        }
    }
}
