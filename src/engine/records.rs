//! Send records: the state of a plain send (or of an automatic batch whose members are due
//! together) in flight, kept in a per-core slab instead of a future per message (the fast path).
//!
//! ```text
//!  try_start: cached route ─► queue ─► open connection ─► frame encoded into its write buffer,
//!             the request's in-flight slot names record i of the slab (no task, no future)
//!  answer / deadline / connection lost ─► the connection hands (i, answer) to complete():
//!      stored or a final error ─► permit released, the record's reply target (delivery
//!                                 handler, reply slot, an application thread's channel, or
//!                                 an automatic batch's members)
//!      retryable error ─────────► the slow path resumes it (`send::send_message`, attempt 2..)
//! ```
//!
//! Anything the fast path does not cover (no route or connection yet, hooks, chosen queues,
//! namespaces, ordered sends, shutdown) goes to the slow path from the start, with the same
//! reply target: every send still ends in exactly one outcome.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::{Rc, Weak};
use std::time::Instant;

use super::connection::failure_to_error;
use super::core::{attempt_timeout, Core, CoreRoute, InFlightPermit};
use super::deadline::deadline_after;
use super::in_flight::{Answer, ConnFailure};
use super::inbox::SendMode;
use super::prepared::{Outgoing, Reply};
use super::send::{send_message, Resume};
use super::send_wire::{one_result_into, send_header, stored, to_reply};
use super::wall_clock::now_and_unix_millis;
use crate::error::Error;
use crate::protocol::send_response_header::SendResponse;
use crate::route::PublishQueue;
use crate::send_result::SendResult;

pub(crate) use super::reply_target::{Delivery, ReplyTarget};
pub use super::reply_target::{DeliveryHandler, SharedDeliveryHandler};

/// A plain send whose request is on a connection, waiting for its answer.
struct SendRecord {
    message: Outgoing,
    mode: SendMode,
    started: Instant,
    deadline: Instant,
    attempt_deadline: Instant,
    /// The topic as results name it (without the namespace) when that is not the message's own
    /// topic object: `None` without a namespace (see [`SendRecord::result_topic`]).
    caller_topic: Option<crate::Topic>,
    /// The route the queue was chosen from, and the queue's index in it (the route is
    /// immutable: the index stays valid).
    route: Rc<CoreRoute>,
    queue_index: usize,
    /// Always set until the record completes (taken out when it completes in its slot).
    permit: Option<InFlightPermit>,
    /// As `permit`.
    reply: Option<ReplyTarget>,
}

impl SendRecord {
    fn queue(&self) -> &PublishQueue {
        &self.route.queues[self.queue_index]
    }

    /// The topic as results name it: without a namespace, the message's own (a record's
    /// message has no extras, so it is also the topic sent).
    fn result_topic(&self) -> &crate::Topic {
        match (&self.caller_topic, &self.message) {
            (Some(topic), _) => topic,
            (None, Outgoing::One(m)) => &m.original.topic,
            (None, Outgoing::Batch(b)) => &b.topic,
        }
    }
}

/// One core's send records, indexed by the number their request's in-flight slot carries.
pub(crate) struct RecordBook {
    core: Weak<Core>,
    slab: RefCell<Slab>,
    /// The result last lent to a delivery handler, rewritten for the next one (a handler that
    /// sends again and sees an answer meanwhile gets a result of its own).
    lent: RefCell<Option<SendResult>>,
    /// The coarse clock: the time of the read whose answers are being dispatched (monotonic,
    /// and Unix milliseconds), so the sends and outcomes of one read share two clock reads.
    clock: Cell<Option<(Instant, i64)>>,
}

/// Keeps the coarse clock valid; dropping it (also by unwinding) ends it.
pub(crate) struct ClockHold<'a>(&'a RecordBook);

impl Drop for ClockHold<'_> {
    fn drop(&mut self) {
        self.0.clock.set(None);
    }
}

#[derive(Default)]
struct Slab {
    records: Vec<Option<SendRecord>>,
    free: Vec<u32>,
}

impl RecordBook {
    pub(crate) fn new(core: Weak<Core>) -> Self {
        RecordBook {
            core,
            slab: RefCell::default(),
            lent: RefCell::new(None),
            clock: Cell::new(None),
        }
    }

    /// Reads the clock once and makes it the coarse clock until the returned hold is dropped: a
    /// connection's reader holds it while it dispatches one read's answers (not across awaits).
    pub(crate) fn hold_clock(&self) -> ClockHold<'_> {
        self.clock.set(Some(now_and_unix_millis()));
        ClockHold(self)
    }

    /// Now: the coarse clock while a read is dispatched, else the clock.
    pub(crate) fn now(&self) -> Instant {
        match self.clock.get() {
            Some((now, _)) => now,
            None => Instant::now(),
        }
    }

    /// Now, and now in Unix milliseconds: the coarse clock while a read is dispatched, else one
    /// read of the clock ([`now_and_unix_millis`]).
    pub(crate) fn now_and_millis(&self) -> (Instant, i64) {
        self.clock.get().unwrap_or_else(now_and_unix_millis)
    }

    fn reserve(&self) -> u32 {
        let mut slab = self.slab.borrow_mut();
        match slab.free.pop() {
            Some(index) => index,
            None => {
                slab.records.push(None);
                (slab.records.len() - 1) as u32
            }
        }
    }

    fn fill(&self, index: u32, record: SendRecord) {
        self.slab.borrow_mut().records[index as usize] = Some(record);
    }

    fn take(&self, index: u32) -> Option<SendRecord> {
        let mut slab = self.slab.borrow_mut();
        let record = slab.records.get_mut(index as usize)?.take()?;
        slab.free.push(index);
        Some(record)
    }

    fn release(&self, index: u32) {
        let mut slab = self.slab.borrow_mut();
        if let Some(slot) = slab.records.get_mut(index as usize) {
            *slot = None;
            slab.free.push(index);
        }
    }

    /// Completes record `index` with the answer its connection (`peer`) got.
    pub(crate) fn complete(&self, index: u32, answer: Answer, peer: &str) {
        match answer {
            Ok(Some(response)) => self.complete_with(
                index,
                RecordAnswer::Response(SendResponse::of(&response)),
                peer,
            ),
            Ok(None) => self.complete_with(index, RecordAnswer::Written, peer),
            Err(failure) => self.complete_with(index, RecordAnswer::Failed(failure), peer),
        }
    }

    /// Completes record `index` with `answer`, which may borrow the connection's read buffer
    /// (a response read in place).
    ///
    /// A stored single message, the common case, completes in its slot: its result is built from
    /// the record where it lies (for a delivery handler, over the result lent last) and only its
    /// reply target and permit are taken out. Anything else takes the whole record out first.
    pub(crate) fn complete_with(&self, index: u32, answer: RecordAnswer<'_>, peer: &str) {
        let Some(core) = self.core.upgrade() else {
            // Dropping the record's reply target answers CoreStopped.
            drop(self.take(index));
            return;
        };
        let mut slab = self.slab.borrow_mut();
        let Some(record) = slab
            .records
            .get_mut(index as usize)
            .and_then(Option::as_mut)
        else {
            tracing::trace!(index, "no send record for an answer");
            return;
        };
        // A reported single message stored, the common case: its result is written over the one
        // this core lent last (same topic and broker: nothing cloned) and lent to the handler.
        let ending = match (&answer, &record.reply, &record.message) {
            (RecordAnswer::Response(response), Some(ReplyTarget::Report(_)), Outgoing::One(m)) => {
                match self.lent.try_borrow_mut() {
                    // An error answer ends here too: `outcome` would read it the same way.
                    Ok(mut lent) => match stored(response, peer, record.queue()) {
                        Ok(stored) => {
                            let queue = (record.result_topic(), record.queue());
                            one_result_into(&mut lent, &stored, queue, &m.uniq_key);
                            Ending::Lent(lent)
                        }
                        Err(e) => Ending::Result(Err(e)),
                    },
                    Err(_) => Ending::Result(outcome(record, answer, peer)),
                }
            }
            _ => Ending::Result(outcome(record, answer, peer)),
        };
        let now = self.now();
        let started = record.started;
        if core.shared.config.send_latency_fault_enable {
            let failed = matches!(
                ending,
                Ending::Result(Err(Error::Connection { .. }
                    | Error::Protocol { .. }
                    | Error::Timeout { .. }))
            );
            core.faults.borrow_mut().record(
                &record.queue().broker_name,
                now - started,
                failed,
                now,
            );
        }
        let micros = now.saturating_duration_since(started).as_micros() as u64;
        match ending {
            Ending::Lent(lent) => {
                let reply = end_stored(&core, slab, index, micros);
                if let (Some(reply), Some(result)) = (reply, &*lent) {
                    reply.send_shared_result(result);
                }
            }
            Ending::Result(Ok(Reply::One(result))) => {
                if let Some(reply) = end_stored(&core, slab, index, micros) {
                    // A reported send's handler gets the result without the reply's wrapping.
                    reply.send_result(result);
                }
            }
            Ending::Result(result) => {
                drop(slab);
                if let Some(record) = self.take(index) {
                    finish(&core, record, result, micros, peer);
                }
            }
        }
    }
}

/// How a record's attempt ended: a stored result written into the core's lent one, or a reply
/// or error of its own.
enum Ending<'a> {
    Lent(RefMut<'a, Option<SendResult>>),
    Result(Result<Reply, Error>),
}

/// Ends record `index`, whose message(s) `slab` holds stored, in its slot: its permit released
/// first (callers sending again from their handlers find room), its reply target handed out.
fn end_stored(
    core: &Core,
    mut slab: RefMut<'_, Slab>,
    index: u32,
    micros: u64,
) -> Option<ReplyTarget> {
    let record = slab.records.get_mut(index as usize)?.as_mut()?;
    let (reply, permit) = (record.reply.take(), record.permit.take());
    let count = message_count(&record.message);
    slab.records[index as usize] = None;
    slab.free.push(index);
    drop(slab);
    core.stats.record(count, true, None, micros);
    drop(permit);
    reply
}

/// What ended a record's request: an answer (borrowed), its oneway frame written, or a failure.
pub(crate) enum RecordAnswer<'a> {
    Response(SendResponse<'a>),
    Written,
    Failed(ConnFailure),
}

/// The outcome of `record`'s attempt given `answer`.
fn outcome(record: &SendRecord, answer: RecordAnswer<'_>, peer: &str) -> Result<Reply, Error> {
    match answer {
        RecordAnswer::Failed(failure) if failure.timed_out => {
            Err(attempt_timeout(record.started, record.attempt_deadline))
        }
        RecordAnswer::Failed(failure) => Err(failure_to_error(peer, failure)),
        RecordAnswer::Written => Ok(Reply::Written),
        RecordAnswer::Response(response) => to_reply(
            &response,
            peer,
            (record.result_topic(), record.queue()),
            &record.message,
        ),
    }
}

/// Hands out the outcome of a record taken out of its slot: a final one to its reply target, a
/// retryable error to the slow path for attempt 2.
fn finish(
    core: &Rc<Core>,
    mut record: SendRecord,
    result: Result<Reply, Error>,
    micros: u64,
    peer: &str,
) {
    let count = message_count(&record.message);
    // A record completes once: without its reply target it already did. Its permit is always
    // there with it; were it not, the outcome would still go out (nothing to release).
    let Some(reply) = record.reply.take() else {
        return;
    };
    let permit = record.permit.take();
    let error = match result {
        Ok(reply_value) => {
            core.stats.record(count, true, None, micros);
            drop(permit);
            reply.send(Reply::finish(Ok(reply_value), record.message));
            return;
        }
        Err(e) => e,
    };
    core.stats.note_attempt_error(&record.queue().broker_name);
    if matches!(error, Error::Connection { .. } | Error::Protocol { .. })
        || error.response_code() == Some(crate::protocol::ResponseCode::TopicNotExist)
    {
        core.schedule_refresh(record.message.topic());
    }
    if !error.is_retryable() {
        core.stats.record(count, false, Some(error.kind()), micros);
        drop(permit);
        reply.send(Reply::finish(Err(error), record.message));
        return;
    }
    // Retries are rare: the slow path takes over from attempt 2, with the same budget.
    // Per message, so trace: the connection's own loss is logged once, at error.
    tracing::trace!(core = core.index, topic = record.message.topic(), broker = %peer, attempt = 1, code = ?error.response_code(), error = %error, "send attempt failed; retrying");
    let resume = Resume {
        attempts: 1,
        last_broker: Rc::from(&*record.queue().broker_name),
        any_unknown: error.outcome() == crate::Outcome::Unknown,
        last_error: error,
    };
    let SendRecord {
        mut message,
        mode,
        started,
        deadline,
        ..
    } = record;
    if let Outgoing::One(prepared) = &mut message {
        // A plain message whose properties went straight onto the wire (`start_plain`).
        prepared.restore_properties();
    }
    let core = Rc::clone(core);
    super::guarded::spawn_guarded(
        "send retry",
        async move {
            let result = send_message(
                &core,
                message,
                mode,
                (started, deadline),
                None,
                Some(resume),
            )
            .await;
            drop(permit);
            reply.send(result);
        },
        |_| {},
    );
}

fn message_count(message: &Outgoing) -> u64 {
    match message {
        Outgoing::One(_) => 1,
        Outgoing::Batch(b) => b.uniq_keys.len() as u64,
    }
}

/// Starts `message` as a send record when all it needs is at hand: a plain send (no chosen
/// queue, namespace or hooks), its topic's route cached on this core, and an open connection to
/// the chosen queue's broker. Otherwise hands everything back for the slow path.
///
/// `reply` makes the reply target once the record is certain (so a caller that would open a
/// reply slot opens none when the send takes the slow path).
#[allow(clippy::result_large_err)]
pub(crate) fn try_start<F: FnOnce() -> ReplyTarget>(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    times: (Instant, Instant),
    permit: InFlightPermit,
    reply: F,
) -> Result<(), (Outgoing, InFlightPermit, F)> {
    try_start_with(core, message, None, mode, times, permit, reply)
}

/// [`try_start`] for a message that keeps no properties ([`PreparedMessage::plain_unkept`]):
/// `properties` go on the wire in their place. The record keeps none either: a retry restores
/// them. A message handed back must have them restored before it goes anywhere else.
///
/// [`PreparedMessage::plain_unkept`]: super::prepared::PreparedMessage::plain_unkept
#[allow(clippy::result_large_err)]
pub(crate) fn try_start_unkept<F: FnOnce() -> ReplyTarget>(
    core: &Rc<Core>,
    message: Outgoing,
    properties: &str,
    mode: SendMode,
    times: (Instant, Instant),
    permit: InFlightPermit,
    reply: F,
) -> Result<(), (Outgoing, InFlightPermit, F)> {
    try_start_with(core, message, Some(properties), mode, times, permit, reply)
}

#[allow(clippy::result_large_err)]
#[inline(always)]
fn try_start_with<F: FnOnce() -> ReplyTarget>(
    core: &Rc<Core>,
    message: Outgoing,
    properties: Option<&str>,
    mode: SendMode,
    (started, deadline): (Instant, Instant),
    permit: InFlightPermit,
    reply: F,
) -> Result<(), (Outgoing, InFlightPermit, F)> {
    let config = &core.shared.config;
    let hooks = &core.shared.hooks;
    if message.extras().is_some()
        || core.aborting.get()
        || hooks.any_attempt_hook()
        || config.retry_another_broker_when_not_store_ok
    {
        return Err((message, permit, reply));
    }
    let topic = message.topic();
    let Some(route) = core.cached_route_here(topic) else {
        return Err((message, permit, reply));
    };
    // Where the round robin stood: a send handed to the slow path selects again from there,
    // so falling back does not skip a queue.
    let (queue_index, mark) = {
        let mut selector = core.selector.borrow_mut();
        let selected = if config.send_latency_fault_enable {
            let faults = core.faults.borrow();
            selector.select_marked(topic, &route, None, &|b| faults.is_available(b, started))
        } else {
            selector.select_marked(topic, &route, None, &|_| true)
        };
        match selected {
            Some(selected) => (selected.index, selected.mark),
            None => return Err((message, permit, reply)),
        }
    };
    let queue = &route.queues[queue_index];
    let rewind = || core.selector.borrow_mut().rewind(topic, mark);
    let Some(conn) = core.open_queue_connection(&route, queue_index) else {
        rewind();
        return Err((message, permit, reply));
    };
    let attempt_deadline = deadline.min(deadline_after(started, config.attempt_timeout));
    let born_millis = match &message {
        Outgoing::One(m) => m.born_millis,
        Outgoing::Batch(_) => super::prepared::unix_millis(),
    };
    let book = &core.records;
    let index = book.reserve();
    let (code, mut header, body) = send_header(core, &route, queue, &message, born_millis);
    if let Some(properties) = properties {
        header.properties = properties;
    }
    let oneway = mode == SendMode::Oneway;
    if conn
        .request_record(
            code.as_i32(),
            &header,
            body,
            oneway,
            attempt_deadline,
            index,
        )
        .is_err()
    {
        // The slow path makes this attempt again and reports its error properly.
        book.release(index);
        rewind();
        return Err((message, permit, reply));
    }
    let count = message_count(&message);
    core.stats.started.set(core.stats.started.get() + count);
    let caller_topic = config
        .namespace
        .as_deref()
        .map(|namespace| crate::namespace::caller_topic(Some(namespace), &route.topic));
    book.fill(
        index,
        SendRecord {
            message,
            mode,
            started,
            deadline,
            attempt_deadline,
            caller_topic,
            route,
            queue_index,
            permit: Some(permit),
            reply: Some(reply()),
        },
    );
    Ok(())
}
