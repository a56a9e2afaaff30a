//! The batches still taking messages on one core ([`OpenBatch`]), how a message joins one
//! (prepared, or plain and written straight into the body; [`BatchTopic`] finds it), and where
//! they are kept ([`OpenBatches`]: a few hot ones found by comparing topics, the rest in a map).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Instant;

use bytes::BytesMut;

use super::{BatchKind, Member};
use crate::config::AutoBatch;
use crate::engine::core::InFlightPermit;
use crate::engine::prepared::PreparedMessage;
use crate::engine::text_hasher::TextHasher;
use crate::message::Message;
use crate::protocol::batch::encode_record;
use crate::protocol::ShortString;
use crate::topic::Topic;

/// A batch still taking messages.
pub(super) struct OpenBatch {
    pub(super) id: u64,
    /// The topic as sent.
    pub(super) topic: Topic,
    pub(super) kind: BatchKind,
    /// When its first message joined: the start of every member's send.
    pub(super) opened: Instant,
    /// The first message, as it is while it is alone (a batch of one goes as a plain send).
    pub(super) first: Option<PreparedMessage>,
    /// The encoded records of every message but a lone first one.
    pub(super) body: BytesMut,
    /// Unique ids and callers' messages of the encoded records, in order.
    pub(super) uniq_keys: Vec<ShortString>,
    pub(super) originals: Vec<Message>,
    /// One per message, in order (the first one's too).
    pub(super) members: Vec<Member>,
    /// The members' permits as one (`None` only in tests).
    pub(super) permit: Option<InFlightPermit>,
    /// Encoded size, the lone first message included.
    pub(super) bytes: usize,
}

/// What finds a message's open batch: its topic as sent. Prepared ([`PreparedMessage`]) and
/// plain ([`Message`], written straight into the body) messages join alike.
pub(super) trait BatchTopic {
    /// Whether it goes to `topic` (a pointer comparison when both share one [`Topic`]).
    fn goes_to(&self, topic: &Topic) -> bool;
    /// The topic as sent, looked up by name.
    fn topic(&self) -> &str;
    /// The topic as sent, for a batch it opens.
    fn shared_topic(&self) -> Topic;
}

impl BatchTopic for PreparedMessage {
    fn goes_to(&self, topic: &Topic) -> bool {
        match self.extras.as_ref().and_then(|e| e.wire_topic.as_deref()) {
            Some(wire) => topic == wire,
            None => self.original.topic == *topic,
        }
    }

    fn topic(&self) -> &str {
        PreparedMessage::topic(self)
    }

    fn shared_topic(&self) -> Topic {
        match self.extras.as_ref().and_then(|e| e.wire_topic.as_deref()) {
            Some(wire) => Topic::from(wire),
            None => self.original.topic.clone(),
        }
    }
}

/// A plain message ([`crate::engine::prepared::is_plain`]): its topic is its own.
impl BatchTopic for Message {
    #[inline]
    fn goes_to(&self, topic: &Topic) -> bool {
        self.topic == *topic
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn shared_topic(&self) -> Topic {
        self.topic.clone()
    }
}

/// What a plain message joins with besides itself: its properties (in the batcher's scratch),
/// unique id and birth time, as [`crate::engine::prepared::prepare_plain`] made them.
pub(super) struct PlainParts<'a> {
    pub(super) properties: &'a str,
    pub(super) uniq_key: ShortString,
    pub(super) born_millis: i64,
}

impl OpenBatch {
    pub(super) fn new(id: u64, topic: Topic, kind: BatchKind, opened: Instant) -> Self {
        OpenBatch {
            id,
            topic,
            kind,
            opened,
            first: None,
            body: BytesMut::new(),
            uniq_keys: Vec::new(),
            originals: Vec::new(),
            members: Vec::new(),
            permit: None,
            bytes: 0,
        }
    }

    /// Adds a prepared message of `size` encoded bytes with its member entry and permit (`None`:
    /// tests); the second one encodes the first too, and makes room for `room` messages (the
    /// batch's likely size) in one go.
    #[inline]
    pub(super) fn join(
        &mut self,
        message: PreparedMessage,
        joined: (Member, Option<InFlightPermit>),
        size: usize,
        room: (usize, &AutoBatch),
    ) {
        if self.members.is_empty() {
            self.first = Some(message);
        } else {
            self.encode_first(room);
            self.encode(message);
        }
        self.admit(joined, size);
    }

    /// [`OpenBatch::join`] for a plain message written straight into the body: no
    /// [`PreparedMessage`] unless it is the first. It moves once, into `originals`, and is
    /// encoded from there (moved through the join it was copied three times: ~5 % of a core
    /// batching 128-byte messages).
    #[inline]
    pub(super) fn join_plain(
        &mut self,
        message: Message,
        plain: PlainParts<'_>,
        joined: (Member, Option<InFlightPermit>),
        size: usize,
        room: (usize, &AutoBatch),
    ) {
        let PlainParts {
            properties,
            uniq_key,
            born_millis,
        } = plain;
        if self.members.is_empty() {
            self.first = Some(PreparedMessage::plain(
                message,
                properties,
                uniq_key,
                born_millis,
            ));
        } else {
            self.encode_first(room);
            self.originals.push(message);
            // Just pushed: the last one. Its own body, no system flag.
            let original = &self.originals[self.originals.len() - 1];
            encode_record(&mut self.body, original.flag, &original.body, properties);
            self.uniq_keys.push(uniq_key);
        }
        self.admit(joined, size);
    }

    /// With a second message joining: the lone first one encoded, and room made for `room`
    /// messages in one go.
    #[inline]
    fn encode_first(&mut self, (room, config): (usize, &AutoBatch)) {
        if let Some(first) = self.first.take() {
            let room = room.clamp(2, config.max_messages.max(2));
            self.body
                .reserve(self.bytes.saturating_mul(room).min(config.max_bytes));
            self.uniq_keys.reserve(room);
            self.originals.reserve(room);
            self.members.reserve(room);
            self.encode(first);
        }
    }

    /// The member entry and permit of a message of `size` encoded bytes that just joined.
    #[inline]
    fn admit(&mut self, (mut member, permit): (Member, Option<InFlightPermit>), size: usize) {
        member.bytes = permit.as_ref().map_or(0, InFlightPermit::bytes);
        self.members.push(member);
        match (&mut self.permit, permit) {
            (Some(all), Some(permit)) => all.absorb(permit),
            (all, permit) => *all = all.take().or(permit),
        }
        self.bytes += size;
    }

    fn encode(&mut self, message: PreparedMessage) {
        encode_record(
            &mut self.body,
            message.original.flag,
            message.body(),
            &message.properties,
        );
        self.uniq_keys.push(message.uniq_key);
        self.originals.push(message.original);
    }
}

/// Open batches found by comparing topics (their pointers, when the messages share one
/// [`Topic`]) before any hashing: a few topics sent to in turn never reach the map.
const HOT_BATCHES: usize = 4;

/// The open batches of one core.
#[derive(Default)]
pub(super) struct OpenBatches {
    /// The batches found or opened most recently (at most [`HOT_BATCHES`], in the order they
    /// became hot), kept out of the map.
    pub(super) hot: Vec<OpenBatch>,
    /// The others: per topic (looked up by `&str`), the few kinds of batch open for it. A
    /// topic's list stays when it empties (no allocation when its batches come and go); empty
    /// lists are dropped when a new topic would make the map twice as large as after the last
    /// such pruning (at least 64 topics).
    pub(super) cold: HashMap<Topic, Vec<OpenBatch>, BuildHasherDefault<TextHasher>>,
    /// When the map is pruned of empty lists next.
    prune_at: usize,
}

impl OpenBatches {
    /// Where the open batch of `kind` for `message`'s topic is among the hot ones, bringing it
    /// there from the map when it is open but cold.
    #[inline]
    pub(super) fn find(&mut self, message: &impl BatchTopic, kind: BatchKind) -> Option<usize> {
        if let Some(at) = self
            .hot
            .iter()
            .position(|b| b.kind == kind && message.goes_to(&b.topic))
        {
            return Some(at);
        }
        let batch = self.take_cold(message.topic(), kind)?;
        Some(self.heat(batch))
    }

    /// Makes `batch` hot (the oldest hot one goes to the map when there are too many); returns
    /// its place.
    pub(super) fn heat(&mut self, batch: OpenBatch) -> usize {
        if self.hot.len() >= HOT_BATCHES {
            let oldest = self.hot.remove(0);
            self.cool(oldest);
        }
        self.hot.push(batch);
        self.hot.len() - 1
    }

    fn cool(&mut self, batch: OpenBatch) {
        match self.cold.get_mut(batch.topic.as_str()) {
            Some(batches) => batches.push(batch),
            None => {
                self.cold.insert(batch.topic.clone(), vec![batch]);
                if self.cold.len() >= self.prune_at {
                    self.cold.retain(|_, batches| !batches.is_empty());
                    self.prune_at = (2 * self.cold.len()).max(64);
                }
            }
        }
    }

    /// Takes the open batch of `topic` and `kind` out of the map.
    fn take_cold(&mut self, topic: &str, kind: BatchKind) -> Option<OpenBatch> {
        let batches = self.cold.get_mut(topic)?;
        let at = batches.iter().position(|b| b.kind == kind)?;
        Some(batches.swap_remove(at))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, kind};
    use super::super::Batcher;
    use super::*;
    use crate::engine::prepared::{is_plain, prepare_at, prepare_plain};
    use crate::protocol::batch::{self, RECORD_OVERHEAD};
    use crate::protocol::properties;

    fn message(n: u32) -> Message {
        Message::new("T", format!("body {n}"))
            .with_tags("t")
            .with_keys([format!("k{n}")])
            .with_property("p", n.to_string())
    }

    /// A plain message written straight into a batch makes the same record as the prepared
    /// path would (its own unique id in its properties), the first one included.
    #[test]
    fn plain_joins_encode_what_prepared_joins_do() {
        let config = config();
        let kind = kind(false);
        let member = || {
            let member = Member {
                reply: None,
                deadline: Instant::now(),
                bytes: 0,
            };
            (member, None)
        };
        let now = Instant::now();
        let born = 1_700_000_000_000;
        let (mut plain, mut prepared) = (
            OpenBatch::new(0, "T".into(), kind, now),
            OpenBatch::new(1, "T".into(), kind, now),
        );
        let mut props = String::new();
        for n in 0..3 {
            let m = message(n);
            assert!(is_plain(&m, &config));
            let uniq_key = prepare_plain(&m, &config, born, &mut props).unwrap();
            let size = m.body.len() + props.len() + RECORD_OVERHEAD;
            let parts = PlainParts {
                properties: &props,
                uniq_key,
                born_millis: born,
            };
            plain.join_plain(m, parts, member(), size, (64, &AutoBatch::default()));
            let p = prepare_at(message(n), &config, None, born).unwrap();
            let size = p.body().len() + p.properties.len() + RECORD_OVERHEAD;
            prepared.join(p, member(), size, (64, &AutoBatch::default()));
        }
        assert_eq!(plain.bytes, plain.body.len());
        assert_eq!(plain.bytes, prepared.bytes);
        let records = |b: &OpenBatch| batch::decode(b.body.clone().freeze()).unwrap();
        let (a, b) = (records(&plain), records(&prepared));
        assert_eq!(a.len(), 3);
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!((a.flag, &a.body), (b.flag, &b.body));
            let (mut pa, mut pb) = (
                properties::decode(&a.properties),
                properties::decode(&b.properties),
            );
            assert_eq!(pa.remove("UNIQ_KEY").unwrap(), plain.uniq_keys[i]);
            assert_eq!(pb.remove("UNIQ_KEY").unwrap(), prepared.uniq_keys[i]);
            assert_eq!(pa, pb);
        }
        assert_ne!(plain.uniq_keys[0], plain.uniq_keys[1]);
        let originals: Vec<_> = plain.originals.iter().map(|m| m.body.clone()).collect();
        assert_eq!(originals, [&b"body 0"[..], b"body 1", b"body 2"]);
    }

    /// A plain message for `topic`, as the batcher looks it up.
    fn joining(topic: &Topic) -> Message {
        Message::new(topic.clone(), "x")
    }

    /// Topics sent to in turn, more than stay hot: each message still finds the one open
    /// batch of its topic and kind (by pointer or by name), wherever it is, and a linger takes
    /// exactly its own batch.
    #[test]
    fn open_batches_are_found_hot_or_cold() {
        let batcher = Batcher::new(AutoBatch::default());
        let topics: Vec<Topic> = (0..7).map(|i| Topic::from(format!("T{i}"))).collect();
        let now = Instant::now();
        let mut open = batcher.open.borrow_mut();
        let mut ids = Vec::new();
        for (i, topic) in topics.iter().enumerate() {
            for sync in [false, true] {
                let id = (2 * i + usize::from(sync)) as u64;
                open.heat(OpenBatch::new(id, topic.clone(), kind(sync), now));
                ids.push((topic.clone(), sync, id));
                assert!(open.hot.len() <= HOT_BATCHES);
            }
        }
        let open_count =
            |o: &OpenBatches| o.hot.len() + o.cold.values().map(Vec::len).sum::<usize>();
        assert_eq!(open_count(&open), 14);
        for round in 0..3 {
            for (topic, sync, id) in &ids {
                // A name equal to the topic but not the same `Topic` finds it too.
                let by_name = Topic::from(topic.as_str());
                let message = joining(if round == 1 { &by_name } else { topic });
                let at = open.find(&message, kind(*sync)).expect("open");
                assert_eq!((open.hot[at].id, &open.hot[at].topic), (*id, topic));
                assert_eq!(open_count(&open), 14, "nothing lost or doubled");
            }
        }
        assert!(open
            .find(&joining(&Topic::from("other")), kind(false))
            .is_none());
        drop(open);
        for (topic, sync, id) in ids.iter().rev() {
            assert!(batcher.take(topic, kind(*sync), id + 100).is_none());
            let taken = batcher.take(topic, kind(*sync), *id).expect("still open");
            assert_eq!(taken.id, *id);
        }
        let open = batcher.open.borrow();
        assert_eq!(open_count(&open), 0);
    }

    #[test]
    fn emptied_topics_leave_the_map() {
        let batcher = Batcher::new(AutoBatch::default());
        let mut open = batcher.open.borrow_mut();
        let now = Instant::now();
        for i in 0..10_000u64 {
            let topic = Topic::from(format!("T{i}"));
            open.cool(OpenBatch::new(i, topic.clone(), kind(false), now));
            assert!(open.take_cold(&topic, kind(false)).is_some());
        }
        assert!(open.cold.len() <= 64, "{} topics kept", open.cold.len());
    }
}
