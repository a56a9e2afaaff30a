//! [`ReceivedMessage`]: a message a broker hands to the producer (the half message of a
//! transaction check-back, the reply of a request), Java `MessageExt` as far as a producer sees it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::properties::keys;
use crate::topic::Topic;

/// A message a broker sent to this producer: a half message it asks about
/// ([`crate::TransactionListener::check_local_transaction`]) or the reply to a
/// [`crate::Producer::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedMessage {
    /// Topic (the namespace removed, when the producer has one).
    pub topic: Topic,
    /// Body, decompressed.
    pub body: Bytes,
    /// Every property, the broker's and the client's included (`UNIQ_KEY`, `TAGS`, ...).
    pub properties: BTreeMap<String, String>,
    /// Queue id, when the broker said.
    pub queue_id: i32,
    /// Queue offset, when the broker said (-1 otherwise).
    pub queue_offset: i64,
    /// When the sender created it (Unix ms; 0 when unknown).
    pub born_timestamp: i64,
    /// The transaction id of a check-back (the broker's, else the unique id).
    pub transaction_id: Option<String>,
    /// The broker's offset message id, when it sent one.
    pub offset_msg_id: Option<String>,
}

impl ReceivedMessage {
    /// A message of `topic` with `body` and `properties`, everything else unknown. Tests and
    /// responders build one from what a consumer pulled, to answer it with
    /// [`crate::Producer::send_reply`].
    pub fn new(
        topic: impl Into<Topic>,
        body: impl Into<Bytes>,
        properties: BTreeMap<String, String>,
    ) -> Self {
        ReceivedMessage {
            topic: topic.into(),
            body: body.into(),
            properties,
            queue_id: -1,
            queue_offset: -1,
            born_timestamp: 0,
            transaction_id: None,
            offset_msg_id: None,
        }
    }

    /// The client-side unique id (`UNIQ_KEY`).
    pub fn msg_id(&self) -> Option<&str> {
        self.property(keys::UNIQ_KEY)
    }

    /// The tag (`TAGS`).
    pub fn tags(&self) -> Option<&str> {
        self.property(keys::TAGS)
    }

    /// The keys (`KEYS`, space-separated).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(keys::KEYS)
            .unwrap_or_default()
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// One property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }
}
