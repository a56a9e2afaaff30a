//! [`LocalProducer`]: the producer as seen from code already running on one of its cores.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::engine::core::{current_core, Core};
use crate::engine::inbox::SendMode;
use crate::engine::prepared::prepare;
use crate::engine::send::send_message;
use crate::error::Error;
use crate::message::Message;
use crate::send_result::SendResult;

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
        self.run(message, SendMode::Async, timeout)
            .await
            .map(|r| r.expect("a two-way send always has a result"))
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
    ) -> Result<Option<SendResult>, Error> {
        let deadline = Instant::now() + timeout;
        if self.core.aborting.get()
            || self
                .core
                .shared
                .closing
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::ShutDown {
                message: Some(Box::new(message)),
                outcome: crate::Outcome::NotStored,
            });
        }
        let prepared = prepare(message, &self.core.shared.config).map_err(|refused| refused.0)?;
        let permit = match crate::engine::deadline::until(
            deadline,
            self.core.permits.acquire_static_permit(1),
        )
        .await
        {
            Some(Ok(permit)) => permit,
            _ => {
                return Err(Error::QueueFull {
                    message: Some(Box::new(prepared.original)),
                })
            }
        };
        let result = send_message(&self.core, &prepared, mode, deadline).await;
        drop(permit);
        result
    }
}
