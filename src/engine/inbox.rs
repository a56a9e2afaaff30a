//! The bounded lock-free queue through which application threads hand work to one core.
//!
//! ```text
//!  app thread ── push(job) ──► ArrayQueue ──► drain task on the core (pop, or park on AtomicWaker)
//!             └─ waker.wake() (glommio writes the eventfd only if the core is going to sleep)
//! ```
//!
//! No mutex on either side: one CAS to push, one to pop, plus `AtomicWaker`'s atomic. A full
//! queue hands the job back to the caller, who waits on `space_waiters` (async) or parks briefly
//! (blocking).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use std::sync::Arc;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use futures_channel::oneshot;

use super::prepared::{Outgoing, Reply};
use super::records::SharedDeliveryHandler;
use crate::error::Error;

/// How a send wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// Blocking caller; `retries_when_send_failed` retries.
    Sync,
    /// Future caller; `retries_when_send_async_failed` retries.
    Async,
    /// Resolved once written to the socket; one attempt, no broker answer.
    Oneway,
}

/// What a send resolves to.
pub(crate) type SendReply = Result<Reply, Error>;

/// One unit of work for a core.
///
/// Kept inline (not boxed) on purpose: the queue slot holds it, so the hand-off allocates nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    /// Send a prepared message.
    Send {
        message: Outgoing,
        mode: SendMode,
        deadline: Instant,
        reply: RemoteReply,
    },
}

/// Where the outcome of an application thread's send goes.
pub(crate) enum RemoteReply {
    /// The caller's future or blocking call.
    Channel(oneshot::Sender<SendReply>),
    /// The producer's delivery handler, with the caller's token (`send_reported`).
    Report(u64),
}

fn core_gone() -> Error {
    Error::CoreStopped {
        returned: crate::error::Returned::NOTHING,
        reason: "the producer core stopped before taking the send".into(),
    }
}

/// A closure to run on the core with its engine (`run_on_core`, `stats()`, flush: the API wraps
/// it in a `LocalProducer`).
pub(crate) type ControlJob = Box<dyn FnOnce(std::rc::Rc<super::core::Core>) + Send>;

/// Room for control jobs: they are few (stats, flush, transactions' END_TRANSACTION), and a
/// full queue makes the submitter retry shortly.
const CONTROL_CAPACITY: usize = 1024;

/// A core's inbox.
pub(crate) struct Inbox {
    queue: ArrayQueue<Job>,
    waker: AtomicWaker,
    /// Control jobs travel apart from sends, drained by their own task: a full send queue or a
    /// core waiting for in-flight room never holds them up.
    control: ArrayQueue<ControlJob>,
    control_waker: AtomicWaker,
    space_waiters: ArrayQueue<Waker>,
    stop: AtomicBool,
    /// Set when the core's thread is gone (stopped, or a panic unwound it).
    dead: AtomicBool,
    submitters: AtomicUsize,
    /// The producer's delivery handler, for reported sends that never reach the core.
    delivery: Option<Arc<SharedDeliveryHandler>>,
    /// Sends from application threads refused because this inbox stayed full.
    refused: AtomicU64,
}

impl Inbox {
    pub(crate) fn new(capacity: usize, delivery: Option<Arc<SharedDeliveryHandler>>) -> Self {
        Inbox {
            queue: ArrayQueue::new(capacity),
            waker: AtomicWaker::new(),
            control: ArrayQueue::new(CONTROL_CAPACITY),
            control_waker: AtomicWaker::new(),
            space_waiters: ArrayQueue::new(1024),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            submitters: AtomicUsize::new(0),
            delivery,
            refused: AtomicU64::new(0),
        }
    }

    /// Counts a send refused because this inbox stayed full ([`Error::QueueFull`]).
    pub(crate) fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends refused because this inbox stayed full.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Pushes a job and wakes the core; a full queue hands the job back.
    ///
    /// Once the core is gone the job is dropped instead, which drops its reply channel: the
    /// submitter's future or handle fails with [`Error::CoreStopped`] rather than waiting forever.
    #[allow(clippy::result_large_err)]
    pub(crate) fn push(&self, job: Job) -> Result<(), Job> {
        if self.dead.load(Ordering::Acquire) {
            let Job::Send { reply, message, .. } = job;
            self.fail(reply, core_gone().with_returned(message.into_returned()));
            return Ok(());
        }
        self.queue.push(job)?;
        self.waker.wake();
        // The core may have died between the check above and the push: nobody would take it.
        if self.dead.load(Ordering::Acquire) {
            self.drop_all();
        }
        Ok(())
    }

    /// Marks the core gone and drops every queued job (their submitters get `CoreStopped`).
    /// Runs when the core's thread ends, normally or by unwinding.
    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
        self.drop_all();
        while let Some(w) = self.space_waiters.pop() {
            w.wake();
        }
    }

    /// Gives a send that will not be made its outcome: `error`.
    pub(crate) fn fail(&self, reply: RemoteReply, error: Error) {
        match reply {
            RemoteReply::Channel(tx) => {
                let _ = tx.send(Err(error));
            }
            RemoteReply::Report(token) => match &self.delivery {
                Some(handler) => {
                    super::reply_target::call_delivery_handler(&**handler, token, Err(error))
                }
                None => tracing::error!(token, "a reported send without a delivery handler"),
            },
        }
    }

    fn drop_all(&self) {
        while let Some(Job::Send { reply, message, .. }) = self.queue.pop() {
            self.fail(reply, core_gone().with_returned(message.into_returned()));
        }
        while let Some(job) = self.control.pop() {
            drop(job);
        }
    }

    /// Pushes a control job and wakes its task; a full queue hands it back. Once the core is
    /// gone the job is dropped (its handle fails with `CoreStopped`).
    pub(crate) fn push_control(&self, job: ControlJob) -> Result<(), ControlJob> {
        if self.dead.load(Ordering::Acquire) {
            drop(job);
            return Ok(());
        }
        self.control.push(job)?;
        self.control_waker.wake();
        if self.dead.load(Ordering::Acquire) {
            self.drop_all();
        }
        Ok(())
    }

    /// The next control job (pending while there is none).
    pub(crate) fn poll_control(&self, cx: &mut Context<'_>) -> Poll<ControlJob> {
        if let Some(job) = self.control.pop() {
            return Poll::Ready(job);
        }
        self.control_waker.register(cx.waker());
        match self.control.pop() {
            Some(job) => Poll::Ready(job),
            None => Poll::Pending,
        }
    }

    /// Registers a task to be woken when space frees up. If too many wait already, the task is
    /// woken at once and simply polls again (bounded busy-wait instead of unbounded memory).
    pub(crate) fn wait_for_space(&self, waker: &Waker) {
        if self.space_waiters.push(waker.clone()).is_err() {
            waker.wake_by_ref();
        }
        // The core may have drained everything between our failed push and the registration.
        if !self.queue.is_full() {
            if let Some(w) = self.space_waiters.pop() {
                w.wake();
            }
        }
    }

    /// The next job, or `None` once a stop was requested and the queue is empty.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        if let Some(job) = self.take() {
            return Poll::Ready(Some(job));
        }
        self.waker.register(cx.waker());
        if let Some(job) = self.take() {
            return Poll::Ready(Some(job));
        }
        if self.stop.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn take(&self) -> Option<Job> {
        let job = self.queue.pop()?;
        if let Some(w) = self.space_waiters.pop() {
            w.wake();
        }
        Some(job)
    }

    /// Pops without waiting (used to fail leftovers after the core stopped).
    pub(crate) fn try_pop(&self) -> Option<Job> {
        self.queue.pop()
    }

    /// Whether a stop was requested.
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Asks the drain task to finish once the queue is empty.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
        while let Some(w) = self.space_waiters.pop() {
            w.wake();
        }
    }

    /// Counts a submitter in; shutdown waits until none is between its check and its push.
    pub(crate) fn enter(&self) {
        self.submitters.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a submitter out.
    pub(crate) fn leave(&self) {
        self.submitters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Submitters currently between their closing check and their push.
    pub(crate) fn submitters(&self) -> usize {
        self.submitters.load(Ordering::SeqCst)
    }
}
