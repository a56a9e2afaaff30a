//! Automatic batching on one core: messages for the same topic that arrive close together go out
//! as one SEND_BATCH_MESSAGE, and each caller still gets its own result or error.
//!
//! ```text
//!  send ─► open batch for (topic, compression, wait flag) ─┬─ count or bytes reached ─► send now
//!                                                          └─ linger elapsed (0: once the core has
//!                                                             run everything already runnable) ─► send
//!  batch answer ─► result i to caller i   |   batch error ─► the same error to every caller
//! ```
//!
//! Each message keeps its own budget and retry count. Only messages sent in the same mode
//! (sync or async) share a batch, so the batch retries as often as its callers asked. The
//! batch's request runs until its *latest* member's deadline; a member whose own deadline comes
//! first gets [`Error::Timeout`] then (outcome `Unknown`: the batch carrying it may still be
//! stored) while the batch goes on for the others, and a member whose deadline passed while the
//! batch lingered is left out of it (`Timeout`, `NotStored`; it learns so when the linger ends,
//! which `linger < send_timeout` bounds).
//!
//! Each message carries its in-flight permit, so `max_inflight` bounds the messages a core holds
//! (open batches included) and a stalled broker cannot grow memory without bound.
//!
//! A message joining a batch is encoded straight into the batch's body (the records of
//! SEND_BATCH_MESSAGE); what stays of it is its unique id, the caller's message (handed back on
//! failure) and a member entry (reply target, deadline, permit). The first message stays as it
//! is until a second joins, so a batch of one goes out as a plain send, through a send record
//! when it can. Sending a closed batch and handing out its outcomes is [`closed`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::core::{Core, InFlightPermit};
use super::inbox::SendMode;
use super::prepared::{prepare_plain, Outgoing, PreparedMessage};
use super::records::ReplyTarget;
use super::text_hasher::TextHasher;
use crate::config::AutoBatch;
use crate::message::Message;
use crate::protocol::batch::{encode_record, RECORD_OVERHEAD};
use crate::protocol::ShortString;
use crate::topic::Topic;

mod closed;

/// One message on its way into an open batch.
pub(crate) struct BatchItem {
    pub message: PreparedMessage,
    pub reply: ReplyTarget,
    pub deadline: Instant,
    /// Sync or async: decides the retry count of the batch it joins.
    pub mode: SendMode,
    pub permit: InFlightPermit,
}

/// What messages must share to go in one batch besides their topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BatchKind {
    sys_flag: i32,
    wait: bool,
    /// Sync callers retry `retries_when_send_failed` times, async ones
    /// `retries_when_send_async_failed`: they do not share a batch.
    sync: bool,
}

impl BatchKind {
    /// The send mode of a batch of this kind (oneway sends are never batched).
    fn mode(self) -> SendMode {
        if self.sync {
            SendMode::Sync
        } else {
            SendMode::Async
        }
    }
}

/// A caller waiting on a batch: where its outcome goes, its own deadline, and its share of the
/// core's caps (released when the batch's answer is in, before the outcomes go out).
struct Member {
    reply: Option<ReplyTarget>,
    deadline: Instant,
    permit: Option<InFlightPermit>,
}

/// A batch still taking messages.
struct OpenBatch {
    id: u64,
    /// The topic as sent.
    topic: Topic,
    kind: BatchKind,
    /// When its first message joined: the start of every member's send.
    opened: Instant,
    /// The first message, as it is while it is alone (a batch of one goes as a plain send).
    first: Option<PreparedMessage>,
    /// The encoded records of every message but a lone first one.
    body: BytesMut,
    /// Unique ids and callers' messages of the encoded records, in order.
    uniq_keys: Vec<ShortString>,
    originals: Vec<Message>,
    /// One per message, in order (the first one's too).
    members: Vec<Member>,
    /// Encoded size, the lone first message included.
    bytes: usize,
}

/// A message joining a batch: prepared ([`PreparedMessage`]), or plain ([`PlainJoining`]) with
/// its properties still in the batcher's scratch. Generic, so that each kind moves only itself.
trait Joining {
    /// Whether it goes to `topic` (a pointer comparison when both share one [`Topic`]).
    fn goes_to(&self, topic: &Topic) -> bool;
    /// The topic as sent, looked up by name.
    fn topic(&self) -> &str;
    /// The topic as sent, for a batch it opens.
    fn shared_topic(&self) -> Topic;
    /// As a batch's first message (kept as it is while it is alone).
    fn into_first(self) -> PreparedMessage;
    /// Appended to `batch`'s body as a record.
    fn encode_into(self, batch: &mut OpenBatch);
}

impl Joining for PreparedMessage {
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

    fn into_first(self) -> PreparedMessage {
        self
    }

    fn encode_into(self, batch: &mut OpenBatch) {
        batch.encode(self);
    }
}

/// A plain message ([`crate::engine::prepared::is_plain`]) written straight into the batch
/// body: no [`PreparedMessage`] is built unless it opens a batch.
struct PlainJoining<'a> {
    original: Message,
    properties: &'a str,
    uniq_key: ShortString,
    born_millis: i64,
}

impl Joining for PlainJoining<'_> {
    #[inline]
    fn goes_to(&self, topic: &Topic) -> bool {
        self.original.topic == *topic
    }

    fn topic(&self) -> &str {
        &self.original.topic
    }

    fn shared_topic(&self) -> Topic {
        self.original.topic.clone()
    }

    fn into_first(self) -> PreparedMessage {
        PreparedMessage::plain(
            self.original,
            self.properties,
            self.uniq_key,
            self.born_millis,
        )
    }

    #[inline]
    fn encode_into(self, batch: &mut OpenBatch) {
        // Its own body, no system flag.
        let original = self.original;
        encode_record(
            &mut batch.body,
            original.flag,
            &original.body,
            self.properties,
        );
        batch.uniq_keys.push(self.uniq_key);
        batch.originals.push(original);
    }
}

impl OpenBatch {
    fn new(id: u64, topic: Topic, kind: BatchKind, opened: Instant) -> Self {
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
            bytes: 0,
        }
    }

    /// Adds a message of `size` encoded bytes; the second one encodes the first too.
    #[inline]
    fn join(&mut self, message: impl Joining, member: Member, size: usize, config: &AutoBatch) {
        if self.members.is_empty() {
            self.first = Some(message.into_first());
        } else {
            if let Some(first) = self.first.take() {
                // A batch is forming: room for the records it will likely hold, in one go.
                let room = config.max_messages.min(64);
                self.body
                    .reserve(self.bytes.saturating_mul(room).min(config.max_bytes));
                self.uniq_keys.reserve(room);
                self.originals.reserve(room);
                self.members.reserve(room);
                self.encode(first);
            }
            message.encode_into(self);
        }
        self.members.push(member);
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
struct OpenBatches {
    /// The batches the latest messages joined (at most [`HOT_BATCHES`], oldest first), kept out
    /// of the map.
    hot: Vec<OpenBatch>,
    /// The others: per topic (looked up by `&str`), the few kinds of batch open for it. A
    /// topic's list stays when it empties (no allocation when its batches come and go); empty
    /// lists are dropped once they are half the map.
    cold: HashMap<Topic, Vec<OpenBatch>, BuildHasherDefault<TextHasher>>,
    /// When the map is pruned of empty lists next.
    prune_at: usize,
}

impl OpenBatches {
    /// Where the open batch of `kind` for `message`'s topic is among the hot ones, bringing it
    /// there from the map when it is open but cold.
    #[inline]
    fn find(&mut self, message: &impl Joining, kind: BatchKind) -> Option<usize> {
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
    fn heat(&mut self, batch: OpenBatch) -> usize {
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

/// The open batches of one core, and what joining messages left to do.
pub(crate) struct Batcher {
    config: AutoBatch,
    open: RefCell<OpenBatches>,
    /// Scratch for the properties of plain messages joining ([`add_plain`]).
    properties: RefCell<String>,
    /// What joins left to do, for [`Batcher::close`].
    closing: RefCell<VecDeque<Closing>>,
    next_id: Cell<u64>,
}

impl Batcher {
    pub(crate) fn new(config: AutoBatch) -> Self {
        Batcher {
            config,
            open: RefCell::new(OpenBatches::default()),
            properties: RefCell::new(String::new()),
            closing: RefCell::new(VecDeque::new()),
            next_id: Cell::new(0),
        }
    }

    /// Takes open batch `id` of `topic` and `kind` out, if it is still open.
    fn take(&self, topic: &Topic, kind: BatchKind, id: u64) -> Option<OpenBatch> {
        let mut open = self.open.borrow_mut();
        if let Some(at) = open.hot.iter().position(|b| b.id == id) {
            return Some(open.hot.remove(at));
        }
        let batches = open.cold.get_mut(topic.as_str())?;
        let at = batches.iter().position(|b| b.kind == kind && b.id == id)?;
        Some(batches.swap_remove(at))
    }
}

/// The one decision, for sends from application threads and from the core alike, whether a send
/// joins an automatic batch: a single message (not oneway, no delay or chosen queue) on a core
/// whose batcher is on. Hands the message and the batcher out, or the request back.
#[inline]
#[allow(clippy::result_large_err)] // moved, not copied: the request goes on by value either way
pub(crate) fn for_batcher(
    core: &Core,
    outgoing: Outgoing,
    mode: SendMode,
) -> Result<(PreparedMessage, &Batcher), Outgoing> {
    match (outgoing, core.batcher.as_ref()) {
        (Outgoing::One(message), Some(batcher))
            if mode != SendMode::Oneway && message.batchable() =>
        {
            Ok((message, batcher))
        }
        (outgoing, _) => Err(outgoing),
    }
}

/// Adds `item` to its open batch on `core`, sending the batch when it is full.
pub(crate) fn add(core: &Rc<Core>, batcher: &Batcher, item: BatchItem) {
    let size = item.message.body().len() + item.message.properties.len() + RECORD_OVERHEAD;
    let kind = BatchKind {
        sys_flag: item.message.sys_flag,
        wait: item.message.original.wait_store_ok,
        sync: item.mode == SendMode::Sync,
    };
    let member = Member {
        reply: Some(item.reply),
        deadline: item.deadline,
        permit: Some(item.permit),
    };
    batcher.enter(core, item.message, kind, size, member);
    batcher.close(core);
}

/// Why [`add_plain`] did not take a message.
pub(crate) enum PlainRefusal {
    /// It breaks a rule (the error hands it back).
    Invalid(crate::Error),
    /// No in-flight permit is free: the caller refuses it or waits for one.
    NoRoom(Message),
}

/// A plain message ([`crate::engine::prepared::is_plain`]) from code on `core`, validated and
/// written straight into its open batch: no [`PreparedMessage`] unless it opens the batch. Takes
/// its in-flight permit here; `reply` is built only once it is in. The send's own budget ends
/// at `deadline`.
#[allow(clippy::result_large_err)] // refusals are rare; the message goes back by value anyway
pub(crate) fn add_plain(
    core: &Rc<Core>,
    batcher: &Batcher,
    message: Message,
    mode: SendMode,
    (deadline, born_millis): (Instant, i64),
    reply: impl FnOnce() -> ReplyTarget,
) -> Result<(), PlainRefusal> {
    let config = &core.shared.config;
    // The batcher's own scratch: nothing below runs callers' code while it is borrowed.
    let mut props = batcher.properties.borrow_mut();
    let uniq_key = match prepare_plain(&message, config, born_millis, &mut props) {
        Ok(key) => key,
        Err(e) => return Err(PlainRefusal::Invalid(e.with_message(message))),
    };
    let original = message;
    let Some(permit) = core.try_permit(original.body.len() + props.len()) else {
        return Err(PlainRefusal::NoRoom(original));
    };
    let kind = BatchKind {
        sys_flag: 0,
        wait: original.wait_store_ok,
        sync: mode == SendMode::Sync,
    };
    let size = original.body.len() + props.len() + RECORD_OVERHEAD;
    let member = Member {
        reply: Some(reply()),
        deadline,
        permit: Some(permit),
    };
    let joining = PlainJoining {
        original,
        properties: &props,
        uniq_key,
        born_millis,
    };
    batcher.enter(core, joining, kind, size, member);
    drop(props);
    // What closes may run delivery handlers that send again.
    batcher.close(core);
    Ok(())
}

/// What joining a message left to do once the open batches are no longer borrowed (glommio's
/// `spawn_local` polls a new task before returning, and a linger task that finds its time
/// already up would take them): in order, a batch it would have overflowed, the linger of the
/// batch it opened, its own batch when full.
#[allow(clippy::large_enum_variant)] // a few at a time, in a queue that keeps its room: no box
enum Closing {
    Send(OpenBatch),
    Linger(Topic, BatchKind, u64),
}

impl Batcher {
    /// Sends the batches closed and schedules the lingers opened since the last call.
    fn close(&self, core: &Rc<Core>) {
        loop {
            // Taken one at a time: what runs here may join (and close) batches itself.
            let next = self.closing.borrow_mut().pop_front();
            match next {
                Some(Closing::Send(batch)) => closed::send(core, batch),
                Some(Closing::Linger(topic, kind, id)) => {
                    schedule_linger(core, topic, kind, id, self.config.linger)
                }
                None => return,
            }
        }
    }
}

impl Batcher {
    /// Puts `message` (`size` encoded bytes, a batch of `kind`) in its open batch, opening one
    /// when there is none; what closed waits for [`Batcher::close`].
    #[inline]
    fn enter(
        &self,
        core: &Core,
        message: impl Joining,
        kind: BatchKind,
        size: usize,
        member: Member,
    ) {
        let config = &self.config;
        let mut closing = self.closing.borrow_mut();
        let mut open = self.open.borrow_mut();
        let mut at = open.find(&message, kind);
        if let Some(i) = at {
            // A batch this message would push over the byte limit goes as it is.
            if open.hot[i].bytes + size > config.max_bytes {
                closing.push_back(Closing::Send(open.hot.remove(i)));
                at = None;
            }
        }
        let at = match at {
            Some(at) => at,
            None => {
                let id = self.next_id.get();
                self.next_id.set(id + 1);
                let topic = message.shared_topic();
                closing.push_back(Closing::Linger(topic.clone(), kind, id));
                open.heat(OpenBatch::new(id, topic, kind, core.records.now()))
            }
        };
        let batch = &mut open.hot[at];
        let fills = batch.members.len() + 1 >= config.max_messages
            || batch.bytes + size >= config.max_bytes;
        batch.join(message, member, size, config);
        if fills {
            closing.push_back(Closing::Send(open.hot.remove(at)));
        }
    }
}

fn schedule_linger(
    core: &Rc<Core>,
    topic: Topic,
    kind: BatchKind,
    id: u64,
    linger: std::time::Duration,
) {
    let core = Rc::clone(core);
    let linger_task = async move {
        if linger.is_zero() {
            futures_lite::future::yield_now().await;
        } else {
            super::deadline::sleep(linger).await;
        }
        let Some(batcher) = core.batcher.as_ref() else {
            return;
        };
        if let Some(batch) = batcher.take(&topic, kind, id) {
            closed::send(&core, batch);
        }
    };
    super::guarded::spawn_guarded("batch linger", linger_task, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProducerConfig;
    use crate::engine::prepared::{is_plain, prepare_at};
    use crate::protocol::{batch, properties};

    fn message(n: u32) -> Message {
        Message::new("T", format!("body {n}"))
            .with_tags("t")
            .with_keys([format!("k{n}")])
            .with_property("p", n.to_string())
    }

    /// A producer configuration for the batcher's tests.
    pub(super) fn config() -> ProducerConfig {
        ProducerConfig {
            producer_group: "pg".into(),
            namesrv_addrs: vec!["127.0.0.1:1".into()],
            ..Default::default()
        }
    }

    /// A plain message written straight into a batch makes the same record as the prepared
    /// path would (its own unique id in its properties), the first one included.
    #[test]
    fn plain_joins_encode_what_prepared_joins_do() {
        let config = config();
        let kind = kind(false);
        let member = || Member {
            reply: None,
            deadline: Instant::now(),
            permit: None,
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
            let joining = PlainJoining {
                original: m,
                properties: &props,
                uniq_key,
                born_millis: born,
            };
            plain.join(joining, member(), size, &AutoBatch::default());
            let p = prepare_at(message(n), &config, None, born).unwrap();
            let size = p.body().len() + p.properties.len() + RECORD_OVERHEAD;
            prepared.join(p, member(), size, &AutoBatch::default());
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

    /// The kind of an uncompressed batch waiting for the store, of sync or async sends.
    pub(super) fn kind(sync: bool) -> BatchKind {
        BatchKind {
            sys_flag: 0,
            wait: true,
            sync,
        }
    }

    /// A plain message for `topic`, as the batcher looks it up.
    fn joining(topic: &Topic) -> PlainJoining<'static> {
        PlainJoining {
            original: Message::new(topic.clone(), "x"),
            properties: "",
            uniq_key: "K".into(),
            born_millis: 0,
        }
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

    #[test]
    fn only_messages_sent_as_they_are_are_plain() {
        let config = ProducerConfig {
            compress_over: 16,
            ..config()
        };
        assert!(is_plain(&Message::new("T", "short"), &config));
        assert!(!is_plain(&Message::new("T", "x".repeat(16)), &config));
        assert!(!is_plain(
            &Message::new("T", "x").with_delay_level(2),
            &config
        ));
        let namespaced = ProducerConfig {
            namespace: Some("ns".into()),
            ..config
        };
        assert!(!is_plain(&Message::new("T", "x"), &namespaced));
    }
}
