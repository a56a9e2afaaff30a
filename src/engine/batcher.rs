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
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::core::{Core, InFlightPermit};
use super::inbox::SendMode;
use super::prepared::{Outgoing, PreparedMessage};
use super::records::ReplyTarget;
use super::text_hasher::TextMap;
use crate::config::AutoBatch;
use crate::message::Message;
use crate::protocol::batch::{encode_record, RECORD_OVERHEAD};
use crate::protocol::ShortString;

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

impl OpenBatch {
    fn new(id: u64, kind: BatchKind, opened: Instant) -> Self {
        OpenBatch {
            id,
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
    fn join(&mut self, message: PreparedMessage, member: Member, size: usize, config: &AutoBatch) {
        if self.members.is_empty() {
            self.first = Some(message);
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
            self.encode(message);
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

/// The open batches of one core: per topic (looked up by `&str`, so adding a message allocates
/// nothing), the few kinds of batch open for it.
pub(crate) struct Batcher {
    config: AutoBatch,
    open: RefCell<TextMap<Vec<OpenBatch>>>,
    next_id: Cell<u64>,
}

impl Batcher {
    pub(crate) fn new(config: AutoBatch) -> Self {
        Batcher {
            config,
            open: RefCell::new(TextMap::default()),
            next_id: Cell::new(0),
        }
    }

    /// Takes the open batch of `topic` and `kind` out, if `want` says so.
    fn take(
        &self,
        topic: &str,
        kind: BatchKind,
        want: impl FnOnce(&OpenBatch) -> bool,
    ) -> Option<OpenBatch> {
        let mut open = self.open.borrow_mut();
        let batches = open.get_mut(topic)?;
        let at = batches.iter().position(|b| b.kind == kind)?;
        if !want(&batches[at]) {
            return None;
        }
        let batch = batches.swap_remove(at);
        if batches.is_empty() {
            open.remove(topic);
        }
        Some(batch)
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
///
/// glommio's `spawn_local` polls a new task before returning, so nothing is spawned while the
/// open batches are borrowed (a linger task that finds its time already up would take them).
pub(crate) fn add(core: &Rc<Core>, batcher: &Batcher, item: BatchItem) {
    let size = item.message.body().len() + item.message.properties.len() + RECORD_OVERHEAD;
    let kind = BatchKind {
        sys_flag: item.message.sys_flag,
        wait: item.message.original.wait_store_ok,
        sync: item.mode == SendMode::Sync,
    };
    let config = &batcher.config;
    let mut linger = None;
    // At most two batches close here: one this message would overflow, and its own when full.
    let mut overflowed = None;
    let mut full = None;
    {
        let mut open = batcher.open.borrow_mut();
        let topic = item.message.topic();
        // One lookup when the topic has open batches (the usual case); the name is copied only
        // when it has none.
        let batches = match open.get_mut(topic) {
            Some(batches) => batches,
            None => open.entry(topic.to_owned()).or_default(),
        };
        let mut at = batches.iter().position(|b| b.kind == kind);
        if let Some(i) = at {
            // A batch this message would push over the byte limit goes as it is.
            if batches[i].bytes + size > config.max_bytes {
                overflowed = Some((topic.to_owned(), batches.swap_remove(i)));
                at = None;
            }
        }
        let at = at.unwrap_or_else(|| {
            let id = batcher.next_id.get();
            batcher.next_id.set(id + 1);
            linger = Some((topic.to_owned(), id));
            batches.push(OpenBatch::new(id, kind, core.records.now()));
            batches.len() - 1
        });
        let batch = &batches[at];
        let fills = batch.members.len() + 1 >= config.max_messages
            || batch.bytes + size >= config.max_bytes;
        // Owned only when the batch closes (once per batch, not per message).
        let full_topic = fills.then(|| topic.to_owned());
        let BatchItem {
            message,
            reply,
            deadline,
            permit,
            ..
        } = item;
        let member = Member {
            reply: Some(reply),
            deadline,
            permit: Some(permit),
        };
        batches[at].join(message, member, size, config);
        if let Some(topic) = full_topic {
            let batch = batches.swap_remove(at);
            // Only taking the full batch can empty the topic's list.
            if batches.is_empty() {
                open.remove(&topic);
            }
            full = Some((topic, batch));
        }
    }
    if let Some((topic, batch)) = overflowed {
        closed::send(core, topic, batch);
    }
    if let Some((topic, id)) = linger {
        schedule_linger(core, topic, kind, id, config.linger);
    }
    if let Some((topic, batch)) = full {
        closed::send(core, topic, batch);
    }
}

fn schedule_linger(
    core: &Rc<Core>,
    topic: String,
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
        if let Some(batch) = batcher.take(&topic, kind, |b| b.id == id) {
            closed::send(&core, topic, batch);
        }
    };
    super::guarded::spawn_guarded("batch linger", linger_task, |_| {});
}
