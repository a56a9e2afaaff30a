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
//! Each message carries its in-flight permit, so `max_inflight` bounds the messages a core holds
//! (open batches included) and a stalled broker cannot grow memory without bound.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use futures_channel::oneshot;

use super::core::Core;
use super::inbox::{SendMode, SendReply};
use super::prepared::{join_prepared, Outgoing, PreparedMessage, Reply};
use super::reply_slots::ReplySender;
use super::send::send_message;
use crate::config::AutoBatch;
use crate::protocol::batch::RECORD_OVERHEAD;

/// One message waiting in an open batch.
pub(crate) struct BatchItem {
    pub message: PreparedMessage,
    pub reply: ReplyTo,
    pub deadline: Instant,
    pub permit: super::core::InFlightPermit,
}

/// Where a batched message's own outcome goes.
pub(crate) enum ReplyTo {
    /// An application thread's channel (sends that came through the inbox).
    Remote(oneshot::Sender<SendReply>),
    /// A caller on this core, through a reusable reply slot (no allocation per message).
    Local(ReplySender),
}

impl ReplyTo {
    fn send(self, reply: SendReply) {
        match self {
            // A caller that gave up (dropped its future) simply does not read it.
            ReplyTo::Remote(tx) => {
                let _ = tx.send(reply);
            }
            ReplyTo::Local(tx) => tx.send(reply),
        }
    }
}

/// What messages must share to go in one batch besides their topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BatchKind {
    sys_flag: i32,
    wait: bool,
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
pub(crate) fn add(core: &Rc<Core>, batcher: &Batcher, item: BatchItem) {
    let size = item.message.body.len() + item.message.properties.len() + RECORD_OVERHEAD;
    let kind = BatchKind {
        sys_flag: item.message.sys_flag,
        wait: item.message.original.wait_store_ok,
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
        spawn_send(core, overflowed.items);
    }
    if let Some((topic, id)) = linger {
        schedule_linger(core, topic, kind, id, config.linger);
    }
    if let Some(full) = full {
        spawn_send(core, full.items);
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
            glommio::timer::sleep(linger).await;
        }
        let Some(batcher) = core.batcher.as_ref() else {
            return;
        };
        if let Some(batch) = batcher.take(&topic, kind, |b| b.id == id) {
            spawn_send(&core, batch.items);
        }
    };
    super::guarded::spawn_guarded("batch linger", linger_task, |_| {});
}

/// Sends a closed batch; a panic drops its items, so each caller gets `CoreStopped`.
fn spawn_send(core: &Rc<Core>, items: Vec<BatchItem>) {
    let core = Rc::clone(core);
    super::guarded::spawn_guarded(
        "batch send",
        async move { send_items(&core, items).await },
        |_| {},
    );
}

async fn send_items(core: &Rc<Core>, items: Vec<BatchItem>) {
    let deadline = items
        .iter()
        .map(|i| i.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    let mut replies = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut permits = Vec::with_capacity(items.len());
    for item in items {
        replies.push(item.reply);
        messages.push(item.message);
        permits.push(item.permit);
    }
    let outgoing = if messages.len() == 1 {
        Outgoing::One(messages.pop().expect("one message"))
    } else {
        Outgoing::Batch(join_prepared(messages))
    };
    let result = send_message(
        core,
        outgoing,
        SendMode::Async,
        (Instant::now(), deadline),
        None,
    )
    .await;
    drop(permits);
    match result {
        Ok(Reply::Batch(results)) => {
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(Ok(Reply::One(result)));
            }
        }
        Ok(other) => {
            for reply in replies {
                reply.send(Ok(other.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                reply.send(Err(e.clone()));
            }
        }
    }
}
