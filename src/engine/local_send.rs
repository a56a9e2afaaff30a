//! The core-local send path: admission (refused while closing, a permit or a wait for one, the
//! automatic batcher) and the drive from a prepared request to its reply. `LocalProducer` is a
//! thin layer over it. Plain messages sent on a core skip most of it: with automatic batching
//! they join their batch at once (`batcher::add_plain`), without it they go out from
//! [`start_plain`] with their properties written straight into the request.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::engine::arena_text::ArenaText;
use crate::engine::batcher::{add_plain, PlainRefusal};
use crate::engine::core::start_unbatched;
use crate::engine::core::{Core, InFlightPermit};
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::SendMode;
use crate::engine::order_gate::OrderTicket;
use crate::engine::prepared::{
    prepare, prepare_plain, Outgoing, PreparedMessage, Reply, SendExtras,
};
use crate::engine::records::{try_start, try_start_unkept, ReplyTarget};
use crate::engine::reply_slots::{reply_pair, ReplyReceiver};
use crate::engine::send::send_message;
use crate::error::Error;
use crate::message::Message;

/// Now, and the deadline `timeout` from now (one clock read serves both).
#[inline]
pub(crate) fn budget(timeout: Duration) -> (Instant, Instant) {
    let started = Instant::now();
    (started, deadline_after(started, timeout))
}

/// Where a send stands once its synchronous part is done.
///
/// The hot path (a permit free, no automatic batching) goes from the caller straight to
/// [`send_message`]: one state machine around it instead of one per layer of the public API,
/// so less of each send's future is built and moved.
pub(crate) enum Step {
    /// Finished before any I/O (refused, or failed to prepare).
    Done(Result<Reply, Error>),
    /// Ready to go out with its in-flight permit (and its place in the core's order, when it
    /// goes to a chosen queue).
    Send(Outgoing, InFlightPermit, Option<OrderTicket>),
    /// Waiting for an in-flight permit.
    WaitPermit(Outgoing),
    /// Handed to this core's automatic batcher or started as a send record: the answer comes
    /// through a reply slot.
    Waiting(ReplyReceiver),
    /// A large body to compress on the blocking pool first.
    Compress(Message, Option<Box<SendExtras>>),
}

/// Whether `core` stopped taking new sends (shutdown started or its deadline passed).
#[inline]
pub(crate) fn is_closing(core: &Core) -> bool {
    core.aborting.get()
        || core
            .shared
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
}

/// Hands over a plain message ([`crate::engine::prepared::is_plain`]) sent from code on `core`:
/// into its open batch with automatic batching ([`crate::engine::batcher::add_plain`]) when its
/// budget outlasts the linger, else started as a send record ([`start_plain`]). The caller has
/// checked that the core is not closing.
#[allow(clippy::result_large_err)] // as start_plain
#[inline]
pub(crate) fn hand_over_plain(
    core: &Rc<Core>,
    message: Message,
    mode: SendMode,
    (started, deadline): (Instant, Instant),
    born_millis: i64,
    reply: impl FnOnce() -> ReplyTarget,
) -> Result<(), PlainRefusal> {
    match core.batcher.as_ref() {
        Some(batcher) if batcher.fits_linger(|| started, deadline) => {
            add_plain(core, batcher, message, mode, deadline, born_millis, reply)
        }
        _ => start_plain(core, message, mode, (started, deadline), born_millis, reply),
    }
}

/// Starts a plain message ([`crate::engine::prepared::is_plain`], no send options beyond a
/// timeout) sent from code on `core` without automatic batching: validated, given its unique
/// id born at `born_millis`, admitted, and started as a send record with its properties encoded
/// into the core's scratch and written straight into the request (no copy kept: a retry
/// rebuilds them). When it cannot start as a record it takes the usual path, properties kept.
/// The caller has checked that the core is not closing.
#[allow(clippy::result_large_err)] // refusals are rare; the message goes back by value anyway
fn start_plain(
    core: &Rc<Core>,
    message: Message,
    mode: SendMode,
    times: (Instant, Instant),
    born_millis: i64,
    reply: impl FnOnce() -> ReplyTarget,
) -> Result<(), PlainRefusal> {
    let config = &core.shared.config;
    // Taken out, not borrowed: nothing below holds it across callers' code.
    let mut props = core.plain_properties.take();
    let uniq_key = match prepare_plain(&message, config, born_millis, &mut props) {
        Ok(key) => key,
        Err(e) => {
            core.plain_properties.set(props);
            return Err(PlainRefusal::Invalid(e.with_message(message)));
        }
    };
    let Some(permit) = core.try_permit(message.body.len() + props.len()) else {
        core.plain_properties.set(props);
        return Err(PlainRefusal::NoRoom(message));
    };
    let prepared = PreparedMessage::plain_unkept(message, uniq_key, born_millis);
    let outgoing = Outgoing::One(prepared);
    let refused = try_start_unkept(core, outgoing, &props, mode, times, permit, reply);
    let (outgoing, permit, reply) = match refused {
        Ok(()) => {
            core.plain_properties.set(props);
            return Ok(());
        }
        Err(refused) => refused,
    };
    let outgoing = match outgoing {
        Outgoing::One(mut prepared) => {
            prepared.properties = ArenaText::copy(&props);
            Outgoing::One(prepared)
        }
        batch => batch,
    };
    core.plain_properties.set(props);
    start_unbatched(core, outgoing, mode, times, permit, reply());
    Ok(())
}

/// Admits a prepared request: refused while closing, else with a permit if one is free.
#[inline]
pub(crate) fn admit(
    core: &Rc<Core>,
    outgoing: Outgoing,
    mode: SendMode,
    deadline: Instant,
) -> Step {
    if is_closing(core) {
        return Step::Done(Err(Error::ShutDown {
            returned: outgoing.into_returned(),
            outcome: crate::Outcome::NotStored,
        }));
    }
    match core.try_permit(outgoing.buffered_bytes()) {
        Some(permit) => with_permit(core, outgoing, permit, mode, deadline),
        None => Step::WaitPermit(outgoing),
    }
}

/// Sends a permitted request, or hands a single message to the automatic batcher when it is on.
#[inline]
fn with_permit(
    core: &Rc<Core>,
    outgoing: Outgoing,
    permit: InFlightPermit,
    mode: SendMode,
    deadline: Instant,
) -> Step {
    match crate::engine::batcher::for_batcher(core, outgoing, mode, deadline) {
        Ok((message, batcher)) => {
            let (reply, answer) = reply_pair(&core.reply_slots);
            let item = crate::engine::batcher::BatchItem {
                message,
                reply: ReplyTarget::Slot(reply),
                deadline,
                mode,
                permit,
            };
            crate::engine::batcher::add(core, batcher, item);
            Step::Waiting(answer)
        }
        Err(outgoing) => {
            let ticket = outgoing.keeps_order().then(|| core.order_gate.ticket());
            Step::Send(outgoing, permit, ticket)
        }
    }
}

/// A record started without opening its caller's reply slot: a bug, reported as a typed error.
#[cold]
pub(crate) fn no_reply_slot() -> Error {
    Error::CoreStopped {
        returned: crate::error::Returned::NOTHING,
        reason: "a started send record has no reply slot (a bug in the engine)".into(),
    }
}

/// Drives `step` to the send's outcome and maps the reply with `finish`.
pub(crate) async fn drive<T>(
    core: Rc<Core>,
    mut step: Step,
    mode: SendMode,
    (mut started, deadline): (Instant, Instant),
    finish: fn(Reply) -> Result<T, Error>,
) -> Result<T, Error> {
    loop {
        step = match step {
            Step::Done(result) => return result.and_then(finish),
            Step::Send(outgoing, permit, None) => {
                let mut answer = None;
                let open_slot = || {
                    let (reply, receiver) = reply_pair(&core.reply_slots);
                    answer = Some(receiver);
                    ReplyTarget::Slot(reply)
                };
                let times = (started, deadline);
                match try_start(&core, outgoing, mode, times, permit, open_slot) {
                    // A started record opened its reply slot.
                    Ok(()) => match answer {
                        Some(answer) => return answer.await.and_then(finish),
                        None => return Err(no_reply_slot()),
                    },
                    Err((outgoing, permit, _)) => {
                        // The slow path is rare: boxed, so every send's future stays small.
                        let send = send_message(&core, outgoing, mode, times, None, None);
                        let result = Box::pin(send).await;
                        drop(permit);
                        return result.and_then(finish);
                    }
                }
            }
            Step::Send(outgoing, permit, ticket) => {
                let send = send_message(&core, outgoing, mode, (started, deadline), ticket, None);
                let result = Box::pin(send).await;
                drop(permit);
                return result.and_then(finish);
            }
            Step::Waiting(answer) => return answer.await.and_then(finish),
            // Rare: boxed, so their futures do not enlarge every send's.
            Step::WaitPermit(outgoing) => {
                let bytes = outgoing.buffered_bytes();
                let permit = Box::pin(core.permit_until(bytes, deadline)).await;
                started = Instant::now();
                match permit {
                    Some(permit) => with_permit(&core, outgoing, permit, mode, deadline),
                    None => {
                        core.stats.refused.set(core.stats.refused.get() + 1);
                        return Err(Error::QueueFull {
                            returned: outgoing.into_returned(),
                        });
                    }
                }
            }
            Step::Compress(message, extras) => {
                // Compressing a large body takes milliseconds (1 MiB ≈ 15 ms at level 5): do it
                // on glommio's blocking pool so this core keeps serving its other sends meanwhile.
                let shared = std::sync::Arc::clone(&core.shared);
                let prepared = Box::pin(
                    glommio::executor()
                        .spawn_blocking(move || prepare(message, &shared.config, extras)),
                )
                .await;
                started = Instant::now();
                match prepared {
                    Ok(prepared) => admit(&core, Outgoing::One(prepared), mode, deadline),
                    Err(refused) => Step::Done(Err(refused)),
                }
            }
        }
    }
}
