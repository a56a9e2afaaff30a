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
    /// Queued; waiting for the core's answer.
    Waiting(oneshot::Receiver<SendReply>),
    Done,
}

/// The pending outcome of one message sent from an application thread.
///
/// Poll it from any async runtime (tokio, async-std, a glommio executor...) or call
/// [`SendFuture::wait`] to block. Dropping it does not cancel the send: the message still goes
/// out; only its outcome is discarded.
#[must_use = "a SendFuture reports the outcome only when awaited or waited on"]
pub struct SendFuture<T> {
    state: State,
    map: fn(Reply) -> T,
}

impl<T> SendFuture<T> {
    pub(crate) fn failed(error: Error, map: fn(Reply) -> T) -> Self {
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
        map: fn(Reply) -> T,
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
    /// Do not call this on a producer core's thread (it would stop the core that has to answer);
    /// use [`crate::LocalProducer`] there.
    pub fn wait(self) -> Result<T, Error> {
        futures_lite::future::block_on(self)
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
                        let message = match pending {
                            Job::Send { message, .. } => message.into_message().map(Box::new),
                            Job::Run(_) => None,
                        };
                        self.state = State::Done;
                        return Poll::Ready(Err(Error::ShutDown {
                            message,
                            outcome: crate::Outcome::NotStored,
                        }));
                    }
                    let pushed = inbox.push(pending);
                    inbox.leave();
                    match pushed {
                        Ok(()) => {
                            let reply = reply.take().expect("reply present while queueing");
                            self.state = State::Waiting(reply);
                        }
                        Err(back) => {
                            if *policy == QueueFullPolicy::Fail || Instant::now() >= *deadline {
                                let message = match back {
                                    Job::Send { message, .. } => {
                                        message.into_message().map(Box::new)
                                    }
                                    Job::Run(_) => None,
                                };
                                self.state = State::Done;
                                return Poll::Ready(Err(Error::QueueFull { message }));
                            }
                            *job = Some(back);
                            inbox.wait_for_space(cx.waker());
                            return Poll::Pending;
                        }
                    }
                }
                State::Waiting(reply) => {
                    return match Pin::new(reply).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(answer) => {
                            self.state = State::Done;
                            Poll::Ready(match answer {
                                Ok(result) => result.map(map),
                                Err(oneshot::Canceled) => Err(Error::CoreStopped {
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

impl<T> SendFuture<T> {
    pub(crate) fn queueing_done(reply: oneshot::Receiver<SendReply>, map: fn(Reply) -> T) -> Self {
        SendFuture {
            state: State::Waiting(reply),
            map,
        }
    }
}
