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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::core::Core;
use super::deadline::until;
use super::inbox::SendMode;
use super::prepared::{join_prepared, Outgoing, PreparedMessage, Reply};
use super::records::ReplyTarget;
use super::send::send_message;
use crate::config::AutoBatch;
use crate::error::{Error, Outcome};
use crate::protocol::batch::RECORD_OVERHEAD;

/// One message waiting in an open batch.
pub(crate) struct BatchItem {
    pub message: PreparedMessage,
    pub reply: ReplyTarget,
    pub deadline: Instant,
    /// Sync or async: decides the retry count of the batch it joins.
    pub mode: SendMode,
    pub permit: super::core::InFlightPermit,
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

struct OpenBatch {
    id: u64,
    kind: BatchKind,
    items: Vec<BatchItem>,
    bytes: usize,
}

/// The open batches of one core: per topic (looked up by `&str`, so adding a message allocates
/// nothing), the few kinds of batch open for it.
pub(crate) struct Batcher {
    config: AutoBatch,
    open: RefCell<HashMap<String, Vec<OpenBatch>>>,
    next_id: Cell<u64>,
}

impl Batcher {
    pub(crate) fn new(config: AutoBatch) -> Self {
        Batcher {
            config,
            open: RefCell::new(HashMap::new()),
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

/// Adds `item` to its open batch on `core`, sending the batch when it is full.
///
/// glommio's `spawn_local` polls a new task before returning, so nothing is spawned while the
/// open batches are borrowed (a linger task that finds its time already up would take them).
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

pub(crate) fn add(core: &Rc<Core>, batcher: &Batcher, item: BatchItem) {
    let size = item.message.body.len() + item.message.properties.len() + RECORD_OVERHEAD;
    let kind = BatchKind {
        sys_flag: item.message.sys_flag,
        wait: item.message.original.wait_store_ok,
        sync: item.mode == SendMode::Sync,
    };
    let config = &batcher.config;
    let mut linger = None;
    let (overflowed, full) = {
        let mut open = batcher.open.borrow_mut();
        let topic = item.message.topic();
        if !open.contains_key(topic) {
            open.insert(topic.to_owned(), Vec::new());
        }
        let batches = open.get_mut(topic).expect("just ensured");
        let mut at = batches.iter().position(|b| b.kind == kind);
        let mut overflowed = None;
        if let Some(i) = at {
            // A batch this message would push over the byte limit goes as it is.
            if batches[i].bytes + size > config.max_bytes {
                overflowed = Some(batches.swap_remove(i));
                at = None;
            }
        }
        let at = at.unwrap_or_else(|| {
            let id = batcher.next_id.get();
            batcher.next_id.set(id + 1);
            linger = Some((topic.to_owned(), id));
            batches.push(OpenBatch {
                id,
                kind,
                items: Vec::with_capacity(config.max_messages.min(1024)),
                bytes: 0,
            });
            batches.len() - 1
        });
        let batch = &mut batches[at];
        batch.items.push(item);
        batch.bytes += size;
        let full = (batch.items.len() >= config.max_messages || batch.bytes >= config.max_bytes)
            .then(|| batches.swap_remove(at));
        // Only taking the full batch can empty the topic's list.
        if let (Some(full), true) = (&full, batches.is_empty()) {
            open.remove(full.items[0].message.topic());
        }
        (overflowed, full)
    };
    if let Some(overflowed) = overflowed {
        spawn_send(core, overflowed.kind, overflowed.items);
    }
    if let Some((topic, id)) = linger {
        schedule_linger(core, topic, kind, id, config.linger);
    }
    if let Some(full) = full {
        spawn_send(core, kind, full.items);
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
            spawn_send(&core, kind, batch.items);
        }
    };
    super::guarded::spawn_guarded("batch linger", linger_task, |_| {});
}

/// Sends a closed batch; a panic drops its items, so each caller gets `CoreStopped`.
fn spawn_send(core: &Rc<Core>, kind: BatchKind, items: Vec<BatchItem>) {
    let core = Rc::clone(core);
    let mode = if kind.sync {
        SendMode::Sync
    } else {
        SendMode::Async
    };
    super::guarded::spawn_guarded(
        "batch send",
        async move { send_items(&core, mode, items).await },
        |_| {},
    );
}

/// A member's own budget ran out (`started`: when its batch began to go out).
fn member_timeout(started: Instant, deadline: Instant, outcome: Outcome) -> Error {
    Error::Timeout {
        returned: crate::error::Returned::NOTHING,
        elapsed: started.elapsed(),
        budget: deadline.saturating_duration_since(started),
        attempts: u32::from(outcome == Outcome::Unknown),
        outcome,
        last_error: None,
    }
}

async fn send_items(core: &Rc<Core>, mode: SendMode, items: Vec<BatchItem>) {
    let started = Instant::now();
    // Each member's deadline, and its reply until it is answered.
    let mut replies = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut permits = Vec::with_capacity(items.len());
    for item in items {
        if item.deadline <= started {
            // Its budget ran out while the batch lingered: it is not sent at all.
            let timeout = member_timeout(started, item.deadline, Outcome::NotStored);
            item.reply
                .send(Err(timeout.with_message(item.message.original)));
            continue;
        }
        replies.push((item.deadline, Some(item.reply)));
        messages.push(item.message);
        permits.push(item.permit);
    }
    let Some(latest) = replies.iter().map(|(deadline, _)| *deadline).max() else {
        return;
    };
    let outgoing = if messages.len() == 1 {
        Outgoing::One(messages.pop().expect("one message"))
    } else {
        Outgoing::Batch(join_prepared(messages))
    };
    let send = send_message(core, outgoing, mode, (started, latest), None, None);
    let mut send = std::pin::pin!(send);
    let result = loop {
        // The next member deadline before the batch's own (none: just wait for the batch).
        let next = replies
            .iter()
            .filter(|(deadline, reply)| reply.is_some() && *deadline < latest)
            .map(|(deadline, _)| *deadline)
            .min();
        let Some(next) = next else {
            break send.as_mut().await;
        };
        if let Some(result) = until(next, send.as_mut()).await {
            break result;
        }
        let now = Instant::now();
        for (deadline, reply) in &mut replies {
            if *deadline <= now {
                if let Some(reply) = reply.take() {
                    reply.send(Err(member_timeout(started, *deadline, Outcome::Unknown)));
                }
            }
        }
    };
    drop(permits);
    let replies = replies.into_iter().map(|(_, reply)| reply);
    match result {
        Ok(Reply::Batch(results, _)) => {
            for (reply, result) in replies.zip(results) {
                if let Some(reply) = reply {
                    reply.send(Ok(Reply::One(result)));
                }
            }
        }
        Ok(other) => {
            for reply in replies.flatten() {
                reply.send(Ok(other.clone()));
            }
        }
        Err(e) => {
            // Each caller gets its own message back; clones share the bounded remark (an
            // `Arc`): no per-caller copy of broker text.
            let (e, returned) = e.split_returned();
            let mut messages = returned.into_messages().into_iter();
            for reply in replies {
                let message = messages.next();
                if let Some(reply) = reply {
                    reply.send(Err(match message {
                        Some(message) => e.clone().with_message(message),
                        None => e.clone(),
                    }));
                }
            }
        }
    }
}
