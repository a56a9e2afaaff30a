//! [`SendFuture`]: the answer to a send made from any thread, usable as a `Future` on any runtime
//! or as a blocking wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_channel::oneshot;

use crate::config::QueueFullPolicy;
use crate::engine::core::Shared;
use crate::engine::inbox::{Inbox, Job, SendReply};
use crate::engine::prepared::Reply;
use crate::error::Error;
use std::sync::atomic::Ordering;

/// How long [`SendFuture::wait`] waits past a send's deadline before it gives the core up.
pub const WAIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Polls `future` on this thread until it is ready, or until `limit` (`None`: no limit).
pub(crate) fn block_on_until<F: Future + Unpin>(
    mut future: F,
    limit: Option<Instant>,
) -> Option<F::Output> {
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return Some(output);
        }
        match limit {
            Some(limit) => {
                let now = Instant::now();
                if now >= limit {
                    return None;
                }
                std::thread::park_timeout(limit - now);
            }
            None => std::thread::park(),
        }
    }
}

/// Unparks the thread blocked in [`SendFuture::wait`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[allow(clippy::large_enum_variant)]
enum State {
    /// Refused before queueing.
    Failed(Option<Error>),
    /// Waiting for space in the core's queue.
    Queueing {
        job: Option<Job>,
        inbox: Arc<Inbox>,
        shared: Arc<Shared>,
        deadline: Instant,
        policy: QueueFullPolicy,
        reply: Option<oneshot::Receiver<SendReply>>,
    },
    /// Queued; waiting for the core's answer, which comes by the deadline.
    Waiting(oneshot::Receiver<SendReply>, Instant),
    Done,
}

/// The pending outcome of one message sent from an application thread.
///
/// Poll it from any async runtime (tokio, async-std, a glommio executor...) or call
/// [`SendFuture::wait`] to block. Dropping it does not cancel the send: the message still goes
/// out; only its outcome is discarded. A future dropped while it still waits for room in its
/// core's queue (the core is overloaded) hands its message over in `drop`, blocking the
/// dropping thread until there is room or the message's budget runs out.
#[must_use = "a SendFuture reports the outcome only when awaited or waited on"]
pub struct SendFuture<T> {
    state: State,
    map: fn(Reply) -> Result<T, Error>,
}

impl<T> SendFuture<T> {
    pub(crate) fn failed(error: Error, map: fn(Reply) -> Result<T, Error>) -> Self {
        SendFuture {
            state: State::Failed(Some(error)),
            map,
        }
    }

    pub(crate) fn queueing(
        job: Job,
        inbox: Arc<Inbox>,
        shared: Arc<Shared>,
        deadline: Instant,
        policy: QueueFullPolicy,
        reply: oneshot::Receiver<SendReply>,
        map: fn(Reply) -> Result<T, Error>,
    ) -> Self {
        SendFuture {
            state: State::Queueing {
                job: Some(job),
                inbox,
                shared,
                deadline,
                policy,
                reply: Some(reply),
            },
            map,
        }
    }

    /// Blocks the calling thread until the outcome is known.
    ///
    /// Never longer than the send's budget plus [`WAIT_MARGIN`]: should the core fail to answer
    /// by then (it stopped), this returns [`Error::CoreStopped`] (outcome unknown).
    ///
    /// Do not call this on a producer core's thread (it would stop the core that has to answer);
    /// use [`crate::LocalProducer`] there.
    pub fn wait(self) -> Result<T, Error> {
        let limit = self.due().and_then(|due| due.checked_add(WAIT_MARGIN));
        block_on_until(self, limit).unwrap_or_else(|| {
            Err(Error::CoreStopped { returned: crate::error::Returned::NOTHING,
                reason: format!(
                    "no outcome {WAIT_MARGIN:?} past the send's deadline; its core stopped answering"
                ),
            })
        })
    }
}

impl<T> Unpin for SendFuture<T> {}

impl<T> Future for SendFuture<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let map = self.map;
        loop {
            match &mut self.state {
                State::Failed(error) => {
                    let error = error.take().expect("polled after completion");
                    self.state = State::Done;
                    return Poll::Ready(Err(error));
                }
                State::Queueing {
                    job,
                    inbox,
                    shared,
                    deadline,
                    policy,
                    reply,
                } => {
                    let pending = job.take().expect("job present while queueing");
                    // Same protocol as the first push: shutdown waits for counted-in submitters,
                    // so a job can never land in the queue of a core that already stopped.
                    inbox.enter();
                    if shared.closing.load(Ordering::SeqCst) {
                        inbox.leave();
                        let Job::Send { message, .. } = pending;
                        self.state = State::Done;
                        return Poll::Ready(Err(Error::ShutDown {
                            returned: message.into_returned(),
                            outcome: crate::Outcome::NotStored,
                        }));
                    }
                    let pushed = inbox.push(pending);
                    inbox.leave();
                    match pushed {
                        Ok(()) => {
                            let reply = reply.take().expect("reply present while queueing");
                            let deadline = *deadline;
                            self.state = State::Waiting(reply, deadline);
                        }
                        Err(back) => {
                            if *policy == QueueFullPolicy::Fail || Instant::now() >= *deadline {
                                let Job::Send { message, .. } = back;
                                inbox.note_refused();
                                self.state = State::Done;
                                return Poll::Ready(Err(Error::QueueFull {
                                    returned: message.into_returned(),
                                }));
                            }
                            *job = Some(back);
                            inbox.wait_for_space(cx.waker());
                            return Poll::Pending;
                        }
                    }
                }
                State::Waiting(reply, _) => {
                    return match Pin::new(reply).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(answer) => {
                            self.state = State::Done;
                            Poll::Ready(match answer {
                                Ok(result) => result.and_then(map),
                                Err(oneshot::Canceled) => Err(Error::CoreStopped {
                                    returned: crate::error::Returned::NOTHING,
                                    reason: "the core dropped the message without an outcome"
                                        .into(),
                                }),
                            })
                        }
                    };
                }
                State::Done => panic!("SendFuture polled after completion"),
            }
        }
    }
}

impl<T> Drop for SendFuture<T> {
    fn drop(&mut self) {
        let State::Queueing {
            job,
            inbox,
            shared,
            deadline,
            ..
        } = &mut self.state
        else {
            return;
        };
        let Some(mut pending) = job.take() else {
            return;
        };
        if crate::engine::core::current_core().is_some() {
            // Blocking here would stop the core that has to make room.
            tracing::error!("a SendFuture waiting for queue space was dropped on a producer core; its message is not sent");
            return;
        }
        loop {
            inbox.enter();
            if shared.closing.load(Ordering::SeqCst) {
                inbox.leave();
                tracing::warn!("a dropped send was still waiting for queue space at shutdown; its message is not sent");
                return;
            }
            let pushed = inbox.push(pending);
            inbox.leave();
            match pushed {
                Ok(()) => return,
                Err(back) if Instant::now() < *deadline => {
                    pending = back;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                Err(_) => {
                    tracing::warn!("a dropped send found no queue space before its deadline; its message is not sent (QueueFull)");
                    return;
                }
            }
        }
    }
}

impl<T> SendFuture<T> {
    pub(crate) fn queueing_done(
        reply: oneshot::Receiver<SendReply>,
        deadline: Instant,
        map: fn(Reply) -> Result<T, Error>,
    ) -> Self {
        SendFuture {
            state: State::Waiting(reply, deadline),
            map,
        }
    }

    /// When the outcome is due at the latest (the send's deadline; a core fails its sends then).
    fn due(&self) -> Option<Instant> {
        match &self.state {
            State::Queueing { deadline, .. } | State::Waiting(_, deadline) => Some(*deadline),
            State::Failed(_) | State::Done => None,
        }
    }
}
