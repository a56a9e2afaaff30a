//! A core's life: the pinned executor, the drain of the inbox into sends (the batcher, a send
//! record, or a send task), control jobs, and the stop with an outcome for every send.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use super::{shut_down, Core, CoreReport, InFlightPermit, Shared, CURRENT_CORE};
use crate::engine::batcher::BatchItem;
use crate::engine::deadline::until;
use crate::engine::inbox::{Inbox, Job, RemoteReply, SendMode};
use crate::engine::prepared::Outgoing;
use crate::engine::records::{Delivery, ReplyTarget};
use crate::engine::send::send_message;
use crate::error::{Error, Outcome};

/// Starts core `index` pinned to `cpu`; returns once the executor runs (or failed to start).
pub(crate) fn spawn_core(
    index: usize,
    cpu: usize,
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
) -> Result<glommio::ExecutorJoinHandle<CoreReport>, Error> {
    let cfg = shared.config.core_for(cpu).clone();
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("rmq-tpc-{index}"))
        .io_memory(cfg.io_memory)
        .ring_depth(cfg.ring_depth);
    if !cfg.spin_before_park.is_zero() {
        builder = builder.spin_before_park(cfg.spin_before_park);
    }
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let handle = builder
        .spawn(move || {
            // However the thread ends, the inbox is marked dead when its thread-locals go, even
            // if a panic left this core's tasks (and the guard below) undropped.
            CORE_THREAD_EXIT.with(|g| *g.borrow_mut() = Some(MarkDeadOnDrop(Arc::clone(&inbox))));
            async move {
                // However this future ends (a panic unwinding the executor included), the inbox is
                // marked dead so no submitter waits for this core forever.
                let _dead_on_exit = MarkDeadOnDrop(Arc::clone(&inbox));
                let _ = started_tx.send(());
                run_core(index, cpu, shared, inbox).await
            }
        })
        .map_err(|e| Error::Startup {
            reason: format!("core {index} on CPU {cpu}: {e}"),
        })?;
    if started_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(Error::Startup {
            reason: format!(
                "core {index} on CPU {cpu} did not start (io_uring or locked memory unavailable? see `ulimit -l`)"
            ),
        });
    }
    Ok(handle)
}

thread_local! {
    /// Marks this core's inbox dead when the core's thread ends.
    static CORE_THREAD_EXIT: RefCell<Option<MarkDeadOnDrop>> = const { RefCell::new(None) };
}

/// Marks a core's inbox dead when dropped.
struct MarkDeadOnDrop(Arc<Inbox>);

impl Drop for MarkDeadOnDrop {
    fn drop(&mut self) {
        self.0.mark_dead();
    }
}

async fn run_core(index: usize, cpu: usize, shared: Arc<Shared>, inbox: Arc<Inbox>) -> CoreReport {
    let core = Rc::new_cyclic(|this| Core::new(index, cpu, shared, this.clone()));
    CURRENT_CORE.with(|c| *c.borrow_mut() = Some(Rc::clone(&core)));
    let span = tracing::debug_span!("core", core = index);
    let _enter = span.enter();
    tracing::debug!("producer core started");
    if index == 0 {
        crate::engine::control::spawn(Rc::clone(&core));
    }
    spawn_control_jobs(&core, &inbox);
    while let Some(job) = futures_lite::future::poll_fn(|cx| inbox.poll_next(cx)).await {
        match job {
            Job::Send {
                message,
                mode,
                deadline,
                reply,
            } => {
                let permit = match wait_for_permit(
                    &core,
                    &inbox,
                    deadline,
                    message.buffered_bytes(),
                )
                .await
                {
                    Ok(permit) => permit,
                    Err(error) => {
                        match error {
                            Error::ShutDown { .. } => core
                                .stats
                                .refused_at_shutdown
                                .set(core.stats.refused_at_shutdown.get() + 1),
                            _ => core.stats.refused.set(core.stats.refused.get() + 1),
                        }
                        // Through this core's handler (a core may have replaced the
                        // producer's), as a send it had started would be.
                        if let Some(reply) = core.reply_target(reply) {
                            reply.send(Err(error.with_returned(message.into_returned())));
                        }
                        continue;
                    }
                };
                let Some(reply) = core.reply_target(reply) else {
                    continue;
                };
                start_send(&core, message, mode, deadline, permit, reply);
            }
        }
    }
    let report = stop_core(&core).await;
    CURRENT_CORE.with(|c| c.borrow_mut().take());
    report
}

/// Starts a permitted send: into the automatic batcher, as a send record (the fast path), or
/// as a task running the full send loop.
pub(crate) fn start_send(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    deadline: Instant,
    permit: InFlightPermit,
    reply: ReplyTarget,
) {
    start_send_at(
        core,
        message,
        mode,
        (Instant::now(), deadline),
        permit,
        reply,
    );
}

/// [`start_send`] for a send that started at `started` (a recent clock reading).
pub(crate) fn start_send_at(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    times: (Instant, Instant),
    permit: InFlightPermit,
    reply: ReplyTarget,
) {
    match crate::engine::batcher::for_batcher(core, message, mode, times.1) {
        Ok((message, batcher)) => {
            let item = BatchItem {
                message,
                reply,
                deadline: times.1,
                mode,
                permit,
            };
            crate::engine::batcher::add(core, batcher, item);
        }
        Err(message) => start_unbatched(core, message, mode, times, permit, reply),
    }
}

/// Starts a permitted send that does not go through the batcher (or leaves it as a batch of
/// one): as a send record when it can, else as a task running the full send loop.
pub(crate) fn start_unbatched(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    times: (Instant, Instant),
    permit: InFlightPermit,
    reply: ReplyTarget,
) {
    let (message, permit, reply) = match crate::engine::records::try_start(
        core,
        message,
        mode,
        times,
        permit,
        move || reply,
    ) {
        Ok(()) => return,
        Err((message, permit, reply)) => (message, permit, reply()),
    };
    // Sends to chosen queues keep the order they reach the core in.
    let ticket = message.keeps_order().then(|| core.order_gate.ticket());
    let core = Rc::clone(core);
    // A panic drops `reply`: the caller gets CoreStopped, not silence.
    crate::engine::guarded::spawn_guarded(
        "send",
        async move {
            let result = send_message(&core, message, mode, times, ticket, None).await;
            drop(permit);
            reply.send(result);
        },
        |_| {},
    );
}

impl Core {
    /// The reply target of an application thread's send on this core (`None`, logged, for a
    /// reported send on a producer without a delivery handler, which `send_reported` refuses).
    fn reply_target(&self, reply: RemoteReply) -> Option<ReplyTarget> {
        match reply {
            RemoteReply::Channel(tx) => Some(ReplyTarget::Channel(tx)),
            RemoteReply::Report(token) => match self.delivery.borrow().as_ref() {
                Some(handler) => Some(ReplyTarget::Report(Delivery::new(
                    Rc::clone(handler),
                    token,
                ))),
                None => {
                    tracing::error!(
                        token,
                        "a reported send on a core without a delivery handler"
                    );
                    None
                }
            },
        }
    }
}

/// Runs control jobs (`run_on_core`, `stats()`, flush) as they come, apart from sends.
fn spawn_control_jobs(core: &Rc<Core>, inbox: &Arc<Inbox>) {
    let (core, inbox) = (Rc::clone(core), Arc::clone(inbox));
    let jobs = async move {
        loop {
            let job = futures_lite::future::poll_fn(|cx| inbox.poll_control(cx)).await;
            job(Rc::clone(&core));
        }
    };
    crate::engine::guarded::spawn_guarded("control jobs", jobs, |_| {});
}

/// The shutdown deadline, once a shutdown set it.
fn shutdown_deadline(core: &Core) -> Option<Instant> {
    core.shared
        .shutdown_deadline
        .lock()
        .map(|d| *d)
        .unwrap_or_else(|e| *e.into_inner())
}

/// Waits for an in-flight permit until the message's deadline (then `QueueFull`, as on the
/// core-local path), or until a shutdown deadline passes (then `ShutDown`); either way the
/// message is definitely not stored.
async fn wait_for_permit(
    core: &Rc<Core>,
    inbox: &Inbox,
    deadline: Instant,
    bytes: usize,
) -> Result<InFlightPermit, Error> {
    const RECHECK: Duration = Duration::from_millis(20);
    loop {
        if let Some(permit) = core.try_permit(bytes) {
            return Ok(permit);
        }
        if inbox.stop_requested() && shutdown_deadline(core).is_some_and(|d| Instant::now() >= d) {
            return Err(shut_down(Outcome::NotStored));
        }
        let now = Instant::now();
        if now >= deadline {
            // The same error as the core-local path's: no room within the message's budget.
            return Err(Error::QueueFull {
                returned: crate::error::Returned::NOTHING,
            });
        }
        // Wake at the earlier of the deadline and a short recheck (a shutdown may start meanwhile).
        if let Some(permit) = core.permit_until(bytes, deadline.min(now + RECHECK)).await {
            return Ok(permit);
        }
    }
}

async fn stop_core(core: &Rc<Core>) -> CoreReport {
    let deadline = shutdown_deadline(core).unwrap_or_else(Instant::now);
    let all = core.core_config.max_inflight as u64;
    let mut report = CoreReport {
        refused_at_shutdown: core.stats.refused_at_shutdown.get(),
        ..CoreReport::default()
    };
    if until(deadline, core.caps.messages.acquire(all))
        .await
        .is_none()
    {
        report.cut_at_deadline = all - core.caps.messages.available();
        tracing::warn!(
            core = core.index,
            sends = report.cut_at_deadline,
            "shutdown deadline passed; failing the sends still in flight"
        );
        core.aborting.set(true);
        core.close_all("the producer shut down before an answer arrived");
        let _ = until(
            Instant::now() + Duration::from_secs(2),
            core.caps.messages.acquire(all),
        )
        .await;
    } else {
        core.caps.messages.signal(all);
    }
    if core.index == 0 {
        crate::engine::control::unregister(core).await;
    }
    core.close_all("the producer shut down");
    report
}
