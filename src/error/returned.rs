//! [`Returned`]: the message(s) a failed send hands back to its caller.

use crate::message::Message;

/// The message or messages of a failed send, held by the error so the caller gets them back
/// ([`crate::Error::into_message`], [`crate::Error::into_messages`]). `Debug` shows sizes, not
/// bodies.
#[derive(Clone, Default, PartialEq)]
pub struct Returned(Held);

#[derive(Clone, Default, PartialEq)]
enum Held {
    #[default]
    Nothing,
    One(Box<Message>),
    Batch(Vec<Message>),
}

impl Returned {
    /// Nothing handed back.
    pub const NOTHING: Returned = Returned(Held::Nothing);

    /// Hands back one message.
    pub fn one(message: Message) -> Returned {
        Returned(Held::One(Box::new(message)))
    }

    /// Hands back the messages of a batch.
    pub fn batch(messages: Vec<Message>) -> Returned {
        Returned(Held::Batch(messages))
    }

    /// Whether nothing is handed back.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Held::Nothing => true,
            Held::One(_) => false,
            Held::Batch(messages) => messages.is_empty(),
        }
    }

    /// How many messages are handed back.
    pub fn len(&self) -> usize {
        match &self.0 {
            Held::Nothing => 0,
            Held::One(_) => 1,
            Held::Batch(messages) => messages.len(),
        }
    }

    /// The single message, if one is held.
    pub fn message(&self) -> Option<&Message> {
        match &self.0 {
            Held::One(message) => Some(message),
            _ => None,
        }
    }

    pub(crate) fn into_message(self) -> Option<Message> {
        match self.0 {
            Held::One(message) => Some(*message),
            _ => None,
        }
    }

    pub(crate) fn into_messages(self) -> Vec<Message> {
        match self.0 {
            Held::Nothing => Vec::new(),
            Held::One(message) => vec![*message],
            Held::Batch(messages) => messages,
        }
    }
}

impl std::fmt::Debug for Returned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Held::Nothing => f.write_str("Nothing"),
            Held::One(message) => f.debug_tuple("One").field(message).finish(),
            Held::Batch(messages) => write!(f, "Batch({} messages)", messages.len()),
        }
    }
}
