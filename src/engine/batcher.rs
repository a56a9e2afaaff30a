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
//! stored) while the batch goes on for the others. A send whose budget would end within the
//! linger does not join at all: it goes alone at once ([`Batcher::fits_linger`]), so a linger
//! never holds a message past its timeout; a member whose deadline still passed before its
//! batch went (a core kept busy past the linger) is left out of it (`Timeout`, `NotStored`).
//! Members whose deadlines lie within a millisecond of each other (the expiry granularity:
//! sends with one timeout made within a millisecond, as a busy core's are with linger 0) share
//! the earliest one: such a batch goes as one send record, like a single message, instead of a
//! task watching each member's deadline.
//!
//! Each message joins with its in-flight permit, so `max_inflight` bounds the messages a core
//! holds (open batches included) and a stalled broker cannot grow memory without bound. A
//! batch's permits become one ([`InFlightPermit::absorb`]), released when the batch's answer is
//! in; a member left out for its deadline releases its own share first.
//!
//! A message joining a batch is encoded straight into the batch's body (the records of
//! SEND_BATCH_MESSAGE); what stays of it is its unique id, the caller's message (handed back on
//! failure) and a member entry (reply target, deadline). The first message stays as it
//! is until a second joins, so a batch of one goes out as a plain send, through a send record
//! when it can. Sending a closed batch and handing out its outcomes is [`closed`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use super::core::{Core, InFlightPermit};
use super::inbox::SendMode;
use super::prepared::{prepare_plain, Outgoing, PreparedMessage};
use super::records::ReplyTarget;
use crate::config::AutoBatch;
use crate::message::Message;
use crate::protocol::batch::RECORD_OVERHEAD;
use crate::topic::Topic;

mod closed;
mod open;

use open::{BatchTopic, OpenBatch, OpenBatches, PlainParts};

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

/// A caller waiting on a batch: where its outcome goes and its own deadline. Its share of the
/// core's caps is in the batch's permit: one message and `bytes` byte units (set as it joins).
struct Member {
    reply: Option<ReplyTarget>,
    deadline: Instant,
    bytes: u64,
}

/// The members of a batch sent as one send record ([`ReplyTarget::Members`]): its outcome fans
/// out to them. Dropped unanswered, each member's own reply target answers `CoreStopped`.
pub(crate) struct BatchMembers(Vec<Member>);

impl BatchMembers {
    /// Hands the batch's outcome to every member, in order.
    pub(crate) fn answer(self, reply: super::inbox::SendReply) {
        closed::answer_members(self.0, reply);
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
    /// With a zero linger, the batches opened since the flush task last ran, in order; the task
    /// is on its way while this is not empty ([`Batcher::flush_soon`]).
    due: RefCell<Vec<(Topic, BatchKind, u64)>>,
    next_id: Cell<u64>,
    /// How many messages the batch sent last held: the room a forming batch makes at once
    /// (growing a large batch's body by doubling copied it several times over).
    last_size: Cell<usize>,
}

impl Batcher {
    pub(crate) fn new(config: AutoBatch) -> Self {
        Batcher {
            config,
            open: RefCell::new(OpenBatches::default()),
            properties: RefCell::new(String::new()),
            closing: RefCell::new(VecDeque::new()),
            due: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            last_size: Cell::new(64),
        }
    }

    /// Whether a send whose budget ends at `deadline` may join a batch at `now`: always with a
    /// zero linger; with a longer one only if its budget outlasts the linger. One that does not
    /// goes alone at once, as without batching, instead of lingering past its own timeout.
    #[inline]
    pub(crate) fn fits_linger(&self, now: impl FnOnce() -> Instant, deadline: Instant) -> bool {
        let linger = self.config.linger;
        // Past the clock's range a linger is longer than any budget but an endless one: the
        // batch closes by count or size (what such a setting asks for), as before.
        linger.is_zero() || now().checked_add(linger).is_none_or(|end| end <= deadline)
    }

    /// Sends the batches closed and schedules the lingers opened since the last call.
    fn close(&self, core: &Rc<Core>) {
        loop {
            // Taken one at a time: what runs here may join (and close) batches itself.
            let next = self.closing.borrow_mut().pop_front();
            match next {
                Some(Closing::Send(batch)) => self.send(core, batch),
                Some(Closing::Linger(topic, kind, id)) if self.config.linger.is_zero() => {
                    self.flush_soon(core, topic, kind, id)
                }
                Some(Closing::Linger(topic, kind, id)) => {
                    schedule_linger(core, topic, kind, id, self.config.linger)
                }
                None => return,
            }
        }
    }

    /// With a zero linger, batch `id` of `topic` and `kind` goes once the executor has run
    /// what else is ready (what is already waiting joins it first), unless it filled before.
    /// One task per turn takes every batch opened meanwhile, instead of a task per batch.
    fn flush_soon(&self, core: &Rc<Core>, topic: Topic, kind: BatchKind, id: u64) {
        let mut due = self.due.borrow_mut();
        let task_on_its_way = !due.is_empty();
        due.push((topic, kind, id));
        drop(due);
        if task_on_its_way {
            return;
        }
        let core = Rc::clone(core);
        let flush = async move {
            futures_lite::future::yield_now().await;
            let Some(batcher) = core.batcher.as_ref() else {
                return;
            };
            // Taken out first: batches opened from here on (by handlers that send again) are
            // the next task's, and a panic below leaves no task believed on its way.
            let mut due = std::mem::take(&mut *batcher.due.borrow_mut());
            for (topic, kind, id) in due.drain(..) {
                batcher.send_if_open(&core, &topic, kind, id);
            }
            // Its room kept for the next turn's.
            let mut next = batcher.due.borrow_mut();
            if next.capacity() == 0 {
                *next = due;
            }
        };
        super::guarded::spawn_guarded("batch flush", flush, |_| {});
    }

    /// Sends `batch`, remembering its size.
    fn send(&self, core: &Rc<Core>, batch: OpenBatch) {
        self.last_size.set(batch.members.len());
        closed::send(core, batch);
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

    /// Sends batch `id` of `topic` and `kind` if it is still open (it may have filled and gone).
    fn send_if_open(&self, core: &Rc<Core>, topic: &Topic, kind: BatchKind, id: u64) {
        if let Some(batch) = self.take(topic, kind, id) {
            self.send(core, batch);
        }
    }

    /// Puts a prepared `message` (`size` encoded bytes, a batch of `kind`) with its member entry
    /// and permit (`None`: tests) in its open batch, opening one when there is none; what closed
    /// waits for [`Batcher::close`].
    #[inline(always)]
    fn enter(
        &self,
        now: Instant,
        message: PreparedMessage,
        kind: BatchKind,
        size: usize,
        joined: (Member, Option<InFlightPermit>),
    ) {
        let mut place = self.place_for(now, &message, kind, size);
        let room = (self.last_size.get(), &self.config);
        place.batch().join(message, joined, size, room);
        place.joined();
    }

    /// [`Batcher::enter`] for a plain message written straight into the batch body
    /// ([`OpenBatch::join_plain`]).
    #[inline(always)]
    fn enter_plain(
        &self,
        now: Instant,
        message: Message,
        plain: PlainParts<'_>,
        kind: BatchKind,
        size: usize,
        joined: (Member, Option<InFlightPermit>),
    ) {
        let mut place = self.place_for(now, &message, kind, size);
        let room = (self.last_size.get(), &self.config);
        place.batch().join_plain(message, plain, joined, size, room);
        place.joined();
    }

    /// Where a message for `topic` of `kind` and `size` encoded bytes joins: its open batch
    /// among the hot ones (one it would push over the byte limit goes as it is first), or a
    /// batch opened for it. The message itself does not pass through here: it moves once, into
    /// the batch.
    #[inline(always)]
    fn place_for(
        &self,
        now: Instant,
        topic: &impl BatchTopic,
        kind: BatchKind,
        size: usize,
    ) -> JoinPlace<'_> {
        let config = &self.config;
        let mut closing = self.closing.borrow_mut();
        let mut open = self.open.borrow_mut();
        let mut at = open.find(topic, kind);
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
                let topic = topic.shared_topic();
                closing.push_back(Closing::Linger(topic.clone(), kind, id));
                open.heat(OpenBatch::new(id, topic, kind, now))
            }
        };
        let batch = &open.hot[at];
        let fills = batch.members.len() + 1 >= config.max_messages
            || batch.bytes + size >= config.max_bytes;
        JoinPlace {
            open,
            closing,
            at,
            fills,
        }
    }
}

/// The open batch a message is joining ([`Batcher::place_for`]), the batcher's lists borrowed
/// meanwhile.
struct JoinPlace<'b> {
    open: std::cell::RefMut<'b, OpenBatches>,
    closing: std::cell::RefMut<'b, VecDeque<Closing>>,
    at: usize,
    /// Whether the message fills it.
    fills: bool,
}

impl JoinPlace<'_> {
    #[inline(always)]
    fn batch(&mut self) -> &mut OpenBatch {
        &mut self.open.hot[self.at]
    }

    /// The message joined: a batch it filled goes to the closing queue.
    #[inline(always)]
    fn joined(mut self) {
        if self.fills {
            let full = self.open.hot.remove(self.at);
            self.closing.push_back(Closing::Send(full));
        }
    }
}

/// The one decision, for sends from application threads and from the core alike, whether a send
/// joins an automatic batch: a single message (not oneway, no delay or chosen queue) whose
/// budget, ending at `deadline`, outlasts the linger ([`Batcher::fits_linger`]), on a core whose
/// batcher is on. Hands the message and the batcher out, or the request back.
#[inline]
#[allow(clippy::result_large_err)] // moved, not copied: the request goes on by value either way
pub(crate) fn for_batcher(
    core: &Core,
    outgoing: Outgoing,
    mode: SendMode,
    deadline: Instant,
) -> Result<(PreparedMessage, &Batcher), Outgoing> {
    match (outgoing, core.batcher.as_ref()) {
        (Outgoing::One(message), Some(batcher))
            if mode != SendMode::Oneway
                && message.batchable()
                && batcher.fits_linger(|| core.records.now(), deadline) =>
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
        bytes: 0,
    };
    let now = core.records.now();
    batcher.enter(now, item.message, kind, size, (member, Some(item.permit)));
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
/// its in-flight permit here; `reply` is built only once it is in, while the batcher's scratch is
/// borrowed (so it must not send). The send's own budget ends at `deadline`; its unique id is
/// born at `born_millis`.
#[allow(clippy::result_large_err)] // refusals are rare; the message goes back by value anyway
pub(crate) fn add_plain(
    core: &Rc<Core>,
    batcher: &Batcher,
    message: Message,
    mode: SendMode,
    deadline: Instant,
    born_millis: i64,
    reply: impl FnOnce() -> ReplyTarget,
) -> Result<(), PlainRefusal> {
    let config = &core.shared.config;
    // The batcher's own scratch: nothing below runs callers' code while it is borrowed.
    let mut props = batcher.properties.borrow_mut();
    let uniq_key = match prepare_plain(&message, config, born_millis, &mut props) {
        Ok(key) => key,
        Err(e) => return Err(PlainRefusal::Invalid(e.with_message(message))),
    };
    // Read where the message lies, before it moves on.
    let (body_len, wait) = (message.body.len(), message.wait_store_ok);
    let Some(permit) = core.try_permit(body_len + props.len()) else {
        return Err(PlainRefusal::NoRoom(message));
    };
    let kind = BatchKind {
        sys_flag: 0,
        wait,
        sync: mode == SendMode::Sync,
    };
    let size = body_len + props.len() + RECORD_OVERHEAD;
    let member = Member {
        reply: Some(reply()),
        deadline,
        bytes: 0,
    };
    let plain = PlainParts {
        properties: &props,
        uniq_key,
        born_millis,
    };
    let now = core.records.now();
    batcher.enter_plain(now, message, plain, kind, size, (member, Some(permit)));
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

/// With a linger above zero: batch `id` of `topic` and `kind` goes when its linger is over,
/// unless it filled before.
fn schedule_linger(
    core: &Rc<Core>,
    topic: Topic,
    kind: BatchKind,
    id: u64,
    linger: std::time::Duration,
) {
    let core = Rc::clone(core);
    let linger_task = async move {
        super::deadline::sleep(linger).await;
        if let Some(batcher) = core.batcher.as_ref() {
            batcher.send_if_open(&core, &topic, kind, id);
        }
    };
    super::guarded::spawn_guarded("batch linger", linger_task, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProducerConfig;
    use crate::engine::prepared::{is_plain, prepare_at, prepare_plain};
    use crate::protocol::batch;
    use std::time::Duration;

    /// A producer configuration for the batcher's tests.
    pub(super) fn config() -> ProducerConfig {
        ProducerConfig {
            producer_group: "pg".into(),
            namesrv_addrs: vec!["127.0.0.1:1".into()],
            ..Default::default()
        }
    }

    /// The kind of an uncompressed batch waiting for the store, of sync or async sends.
    pub(super) fn kind(sync: bool) -> BatchKind {
        BatchKind {
            sys_flag: 0,
            wait: true,
            sync,
        }
    }

    fn member() -> (Member, Option<InFlightPermit>) {
        let member = Member {
            reply: None,
            deadline: Instant::now(),
            bytes: 0,
        };
        (member, None)
    }

    /// A budget shorter than the linger does not join; one as long as it, a zero linger, or a
    /// linger past the clock's range (closing by count) does.
    #[test]
    fn only_budgets_that_outlast_the_linger_join() {
        let now = Instant::now();
        let lingering = |linger| {
            Batcher::new(AutoBatch {
                linger,
                ..Default::default()
            })
        };
        let ms = Duration::from_millis;
        assert!(lingering(Duration::ZERO).fits_linger(|| now, now));
        let ten = lingering(ms(10));
        assert!(!ten.fits_linger(|| now, now + ms(5)));
        assert!(ten.fits_linger(|| now, now + ms(10)));
        assert!(lingering(Duration::MAX).fits_linger(|| now, now + ms(1)));
    }

    /// What each join left to do, in order (`L`: a linger to schedule, `S`: a batch to send, with
    /// the number of its members).
    fn drain(batcher: &Batcher) -> Vec<String> {
        batcher
            .closing
            .borrow_mut()
            .drain(..)
            .map(|c| match c {
                Closing::Send(b) => format!("S{}", b.members.len()),
                Closing::Linger(..) => "L".to_owned(),
            })
            .collect()
    }

    /// Joins close batches in order: a new batch's linger, a full batch, a batch the next
    /// message would overflow before the batch that message opens; prepared and plain messages
    /// share a batch; a linger whose batch already went takes nothing.
    #[test]
    fn joins_close_batches_in_order() {
        let config = config();
        let batcher = Batcher::new(AutoBatch {
            max_messages: 3,
            max_bytes: 1_000,
            ..AutoBatch::default()
        });
        let now = Instant::now();
        let topic = Topic::from("T");
        let mut props = String::new();
        let mut plain = |body: usize| {
            let m = Message::new(topic.clone(), "x".repeat(body));
            let uniq_key = prepare_plain(&m, &config, 0, &mut props).unwrap();
            let size = m.body.len() + props.len() + RECORD_OVERHEAD;
            let plain = PlainParts {
                properties: &props,
                uniq_key,
                born_millis: 0,
            };
            batcher.enter_plain(now, m, plain, kind(false), size, member());
        };
        // A prepared first message (as from an application thread), then plain ones.
        let first = prepare_at(Message::new(topic.clone(), "p"), &config, None, 0).unwrap();
        let size = first.body().len() + first.properties.len() + RECORD_OVERHEAD;
        batcher.enter(now, first, kind(false), size, member());
        assert_eq!(drain(&batcher), ["L"]);
        plain(1);
        assert_eq!(drain(&batcher), Vec::<String>::new());
        plain(1);
        assert_eq!(drain(&batcher), ["S3"], "full at three messages");
        assert!(batcher.take(&topic, kind(false), 0).is_none(), "it went");
        plain(400);
        plain(400);
        assert_eq!(drain(&batcher), ["L"]);
        plain(400);
        assert_eq!(
            drain(&batcher),
            ["S2", "L"],
            "the third would overflow the bytes"
        );
        let open = batcher
            .take(&topic, kind(false), 2)
            .expect("the last batch is open");
        assert_eq!(open.members.len(), 1);
        let records = batch::decode(open.body.clone().freeze()).unwrap();
        assert!(
            records.is_empty() && open.first.is_some(),
            "a lone message stays as it is"
        );
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
