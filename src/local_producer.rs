//! [`LocalProducer`]: the producer as seen from code already running on one of its cores.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::engine::core::{current_core, Core};
use crate::engine::inbox::SendMode;
use crate::engine::prepared::{prepare, prepare_batch, Outgoing, Reply};
use crate::engine::send::send_message;
use crate::error::Error;
use crate::message::Message;
use crate::send_result::SendResult;

/// Bodies at least this large are compressed off the core (on glommio's blocking pool).
const OFFLOAD_COMPRESSION_OVER: usize = 64 * 1024;

/// A core-local handle: sends go straight into this core's engine, with no cross-thread hop and
/// no lock. It is `!Send` on purpose; get one with [`LocalProducer::current`] or from
/// [`crate::Producer::run_on_core`].
///
/// # Example
///
/// ```no_run
/// # use rocketmq_tpc::{Message, Producer};
/// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
/// let handle = producer.run_on_core(0, |local| async move {
///     local.send(Message::new("orders", "from the core")).await
/// })?;
/// let result = handle.wait()??;
/// println!("stored at offset {}", result.queue_offset);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalProducer {
    core: Rc<Core>,
}

impl LocalProducer {
    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        LocalProducer { core }
    }

    /// The producer of the core this thread runs, or `None` off the producer's cores.
    pub fn current() -> Option<LocalProducer> {
        current_core().map(LocalProducer::from_core)
    }

    /// Index of this core (0-based).
    pub fn core_index(&self) -> usize {
        self.core.index
    }

    /// This core's counters.
    pub fn snapshot(&self) -> crate::stats::CoreStatsSnapshot {
        self.core.snapshot()
    }

    /// Sends and waits for the broker's answer, with the producer's send timeout and retries.
    ///
    /// # Errors
    ///
    /// Any [`Error`]; see [`Error::is_retryable`] and [`Error::outcome`].
    pub async fn send(&self, message: Message) -> Result<SendResult, Error> {
        self.send_with_timeout(message, self.core.shared.config.send_timeout)
            .await
    }

    /// Like [`LocalProducer::send`] with another budget.
    ///
    /// # Errors
    ///
    /// Any [`Error`].
    pub async fn send_with_timeout(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, Error> {
        match self.run(message, SendMode::Async, timeout).await? {
            Reply::One(result) => Ok(result),
            Reply::Batch(mut results) if results.len() == 1 => Ok(results.remove(0)),
            other => unreachable!("a single send got {other:?}"),
        }
    }

    /// Sends `messages` as one batch; see [`crate::Producer::send_batch`] for the rules.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] when the batch breaks a rule, else any send error.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<Vec<SendResult>, Error> {
        let deadline = Instant::now() + self.core.shared.config.send_timeout;
        let batch = prepare_batch(messages, &self.core.shared.config)?;
        match self
            .dispatch(Outgoing::Batch(batch), SendMode::Async, deadline)
            .await?
        {
            Reply::Batch(results) => Ok(results),
            Reply::One(result) => Ok(vec![result]),
            Reply::Written => unreachable!("a batch is never oneway"),
        }
    }

    /// Sends without waiting for the broker: resolves once the request is written to the socket.
    ///
    /// # Errors
    ///
    /// Validation, route and connection errors.
    pub async fn send_oneway(&self, message: Message) -> Result<(), Error> {
        self.run(
            message,
            SendMode::Oneway,
            self.core.shared.config.send_timeout,
        )
        .await
        .map(|_| ())
    }

    async fn run(
        &self,
        message: Message,
        mode: SendMode,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let deadline = Instant::now() + timeout;
        let prepared = if message.body.len() >= self.core.shared.config.compress_over
            && message.body.len() >= OFFLOAD_COMPRESSION_OVER
        {
            // Compressing a large body takes milliseconds (1 MiB ≈ 15 ms at level 5): do it on
            // glommio's blocking pool so this core keeps serving its other sends meanwhile.
            let shared = std::sync::Arc::clone(&self.core.shared);
            Box::pin(glommio::executor().spawn_blocking(move || prepare(message, &shared.config)))
                .await
        } else {
            prepare(message, &self.core.shared.config)
        };
        let prepared = prepared.map_err(|refused| refused.0)?;
        self.dispatch(Outgoing::One(prepared), mode, deadline).await
    }

    /// Whether this core stopped taking new sends (shutdown started or its deadline passed).
    fn is_closing(&self) -> bool {
        self.core.aborting.get()
            || self
                .core
                .shared
                .closing
                .load(std::sync::atomic::Ordering::Acquire)
    }

    async fn dispatch(
        &self,
        outgoing: Outgoing,
        mode: SendMode,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        if self.is_closing() {
            return Err(Error::ShutDown {
                message: outgoing.into_message().map(Box::new),
                outcome: crate::Outcome::NotStored,
            });
        }
        let bytes = outgoing.buffered_bytes();
        let permit = match self.core.try_permit(bytes) {
            Some(permit) => Some(permit),
            None => Box::pin(self.core.permit_until(bytes, deadline)).await,
        };
        let permit = match permit {
            Some(permit) => permit,
            None => {
                return Err(Error::QueueFull {
                    message: outgoing.into_message().map(Box::new),
                })
            }
        };
        let outgoing = match (outgoing, self.core.batcher.as_ref()) {
            (Outgoing::One(message), Some(batcher)) if mode != SendMode::Oneway => {
                let (reply, answer) = futures_channel::oneshot::channel();
                let item = crate::engine::batcher::BatchItem {
                    message,
                    reply,
                    deadline,
                    permit,
                };
                crate::engine::batcher::add(&self.core, batcher, item);
                return answer.await.unwrap_or_else(|_| {
                    Err(Error::CoreStopped {
                        reason: "the batch was dropped without an outcome".into(),
                    })
                });
            }
            (other, _) => other,
        };
        let result = send_message(&self.core, outgoing, mode, deadline).await;
        drop(permit);
        result
    }
}
