//! How an [`Error`](enum@crate::Error) hands its message(s) back: taking them out, attaching
//! them where the engine ends a send, and the one slot per variant that holds them.

use super::{Error, Returned};
use crate::message::Message;

/// The `returned` field of the variants that have one, by reference or mutable reference
/// (match ergonomics bind it as the scrutinee is borrowed): one list of variants for both.
macro_rules! returned_slot {
    ($error:expr) => {
        match $error {
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
    };
}

impl Error {
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
        returned_slot!(self)
    }

    fn returned_slot_mut(&mut self) -> Option<&mut Returned> {
        returned_slot!(self)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Outcome;

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
