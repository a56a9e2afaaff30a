//! [`Producer`] and [`ProducerBuilder`]: the `Send + Sync` handle application threads use.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_channel::oneshot;

use crate::batch_result::BatchResult;
use crate::config::{ProducerConfig, QueueFullPolicy};
use crate::engine::core::{current_core, CoreReport, Shared};
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::{Inbox, Job, RemoteReply, SendMode};
use crate::engine::prepared::{prepare, prepare_batch, random_u32, Outgoing, Reply, SendExtras};
use crate::error::{Error, Outcome, Returned};
use crate::local_producer::LocalProducer;
use crate::message::Message;
use crate::send_future::SendFuture;
use crate::send_options::SendOptions;
use crate::send_result::{MessageQueue, SendResult};
use crate::stats_reporter::StatsReporter;

mod builder;
mod control;
mod reported;
mod shutdown;

pub use builder::ProducerBuilder;
pub use control::RunHandle;
pub use shutdown::ShutdownReport;

struct CoreSlot {
    inbox: Arc<Inbox>,
    join: Mutex<Option<glommio::ExecutorJoinHandle<CoreReport>>>,
}

struct Inner {
    shared: Arc<Shared>,
    cores: Vec<CoreSlot>,
    shutdown_done: Mutex<Option<ShutdownReport>>,
    /// Periodic stats reporters (`ProducerBuilder::on_stats`), stopped at shutdown.
    reporters: Mutex<Vec<StatsReporter>>,
}

/// A RocketMQ producer running one pinned glommio executor per core.
///
/// Cheap to clone; every clone is the same producer. `Send + Sync`: share it between threads.
/// The last clone to be dropped shuts the producer down (waiting up to the send timeout for
/// messages in flight).
///
/// # Example
///
/// ```no_run
/// use rocketmq_tpc::{Message, Producer};
///
/// # fn main() -> Result<(), rocketmq_tpc::Error> {
/// let producer = Producer::builder()
///     .namesrv("127.0.0.1:9876")
///     .producer_group("my_group")
///     .cores(2)
///     .build()?;
/// let result = producer.send(Message::new("orders", "hello"))?;
/// println!("{} stored at {:?} offset {}", result.msg_id, result.queue, result.queue_offset);
/// producer.shutdown(std::time::Duration::from_secs(5));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

thread_local! {
    static NEXT_CORE: Cell<usize> = Cell::new(random_u32() as usize);
}

impl Producer {
    /// A builder with default settings.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::new()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.inner.cores.len()
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.shared.config
    }

    /// Sends and blocks until the broker answers (or the send timeout runs out), retrying on
    /// another broker like the Java client's sync send.
    ///
    /// # Errors
    ///
    /// Any [`Error`]: invalid messages at once, otherwise after the retries the budget allows.
    /// On a producer core's own thread this returns [`Error::InvalidConfig`] instead of blocking
    /// the core: use [`LocalProducer`] there.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::{Message, Producer};
    /// # fn demo(producer: &Producer) {
    /// match producer.send(Message::new("orders", "hello").with_tags("new")) {
    ///     Ok(result) => println!("stored: {}", result.msg_id),
    ///     Err(e) if e.is_retryable() => eprintln!("try again later: {e}"),
    ///     Err(e) => eprintln!("giving up: {e}"),
    /// }
    /// # }
    /// ```
    pub fn send(&self, message: Message) -> Result<SendResult, Error> {
        self.send_with(message, SendOptions::default())
    }

    /// [`Producer::send`] with per-call options.
    ///
    /// # Errors
    ///
    /// As [`Producer::send`].
    pub fn send_with(&self, message: Message, options: SendOptions) -> Result<SendResult, Error> {
        self.reject_on_core("send")?;
        self.submit(message, SendMode::Sync, &options, Reply::into_one)
            .wait()
    }

    /// Sends without blocking; the future resolves with the broker's answer. Poll it on any
    /// runtime or call [`SendFuture::wait`]. Retries like [`Producer::send`], with
    /// `retries_when_send_async_failed`.
    ///
    /// When the core's queue is full the future waits for space (or fails with
    /// [`Error::QueueFull`] under `QueueFullPolicy::Fail`), so memory stays bounded.
    pub fn send_async(&self, message: Message) -> SendFuture<SendResult> {
        self.submit(
            message,
            SendMode::Async,
            &SendOptions::default(),
            Reply::into_one,
        )
    }

    /// [`Producer::send_async`] with per-call options.
    pub fn send_async_with(
        &self,
        message: Message,
        options: SendOptions,
    ) -> SendFuture<SendResult> {
        self.submit(message, SendMode::Async, &options, Reply::into_one)
    }

    /// Sends `messages` as one SEND_BATCH_MESSAGE (Java `DefaultMQProducer.send(Collection)`):
    /// one topic, no delay level, no retry topic, one wait-store flag, at most
    /// `max_message_size` encoded. Each message gets its own id and offset in the
    /// [`BatchResult`] (built when asked for). When the bodies' mean size reaches
    /// `compress_over`, every inner body is compressed.
    ///
    /// Errors (and retries) apply to the whole batch.
    pub fn send_batch(&self, messages: Vec<Message>) -> SendFuture<BatchResult> {
        self.send_batch_with(messages, SendOptions::default())
    }

    /// [`Producer::send_batch`] with per-call options.
    pub fn send_batch_with(
        &self,
        messages: Vec<Message>,
        options: SendOptions,
    ) -> SendFuture<BatchResult> {
        let shared = &self.inner.shared;
        let deadline = deadline_after(
            Instant::now(),
            options.timeout.unwrap_or(shared.config.send_timeout),
        );
        let slot = &self.inner.cores[self.pick_core(&options)];
        if !enter_open(shared, slot) {
            return SendFuture::failed(
                shut_down_refusal(Returned::batch(messages)),
                Reply::into_batch,
            );
        }
        match prepare_batch(messages, &shared.config, SendExtras::from_options(&options)) {
            Ok(batch) => self.enqueue(
                slot,
                Outgoing::Batch(batch),
                SendMode::Async,
                deadline,
                Reply::into_batch,
            ),
            Err(e) => {
                slot.inbox.leave();
                SendFuture::failed(e, Reply::into_batch)
            }
        }
    }

    /// Sends without a broker answer: the future resolves `Ok(())` once the request is written
    /// to the socket. It can be dropped; the message is still sent.
    pub fn send_oneway(&self, message: Message) -> SendFuture<()> {
        self.send_oneway_with(message, SendOptions::default())
    }

    /// [`Producer::send_oneway`] with per-call options (a target queue, a sharding key).
    pub fn send_oneway_with(&self, message: Message, options: SendOptions) -> SendFuture<()> {
        self.submit(message, SendMode::Oneway, &options, Reply::into_written)
    }

    /// The queues a message of `topic` may be sent to (Java `fetchPublishMessageQueues`):
    /// writable queues of master brokers, brokers in name order. Fetches the route from the
    /// NameServer when the producer has none yet; nothing is sent to the topic.
    ///
    /// # Errors
    ///
    /// [`Error::NoRoute`] / [`Error::NameServerUnavailable`] when no route can be had within
    /// the send timeout; [`Error::InvalidMessage`] for an invalid topic name.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::{Message, Producer, SendOptions, SendTarget};
    /// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
    /// let queues = producer.fetch_publish_queues("orders")?;
    /// let last = queues.last().cloned().expect("a route has queues");
    /// producer.send_with(
    ///     Message::new("orders", "to the last queue"),
    ///     SendOptions::new().target(SendTarget::Queue(last)),
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn fetch_publish_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, Error> {
        crate::message::validate_topic(topic)?;
        self.reject_on_core("fetch_publish_queues")?;
        let topic = topic.to_owned();
        self.run_on_core(0, move |local: LocalProducer| async move {
            local.fetch_publish_queues(&topic).await
        })?
        .wait()?
    }

    fn pick_core(&self, options: &SendOptions) -> usize {
        let n = self.inner.cores.len();
        match options.sharding_key.or_else(|| options.target.core_hint()) {
            Some(key) => (key % n as u64) as usize,
            None => NEXT_CORE.with(|c| {
                let i = c.get();
                c.set(i.wrapping_add(1));
                i % n
            }),
        }
    }

    fn submit<T>(
        &self,
        message: Message,
        mode: SendMode,
        options: &SendOptions,
        map: fn(Reply) -> Result<T, Error>,
    ) -> SendFuture<T> {
        let extras = SendExtras::from_options(options);
        self.submit_with_extras(message, mode, options, extras, map)
    }

    /// [`Producer::submit`] with what a transaction or a request adds to the message.
    pub(crate) fn submit_with_extras<T>(
        &self,
        message: Message,
        mode: SendMode,
        options: &SendOptions,
        extras: Option<Box<SendExtras>>,
        map: fn(Reply) -> Result<T, Error>,
    ) -> SendFuture<T> {
        let shared = &self.inner.shared;
        let deadline = deadline_after(
            Instant::now(),
            options.timeout.unwrap_or(shared.config.send_timeout),
        );
        let slot = &self.inner.cores[self.pick_core(options)];
        if !enter_open(shared, slot) {
            return SendFuture::failed(shut_down_refusal(Returned::one(message)), map);
        }
        let prepared = match prepare(message, &shared.config, extras) {
            Ok(p) => Outgoing::One(p),
            Err(refused) => {
                slot.inbox.leave();
                return SendFuture::failed(refused, map);
            }
        };
        self.enqueue(slot, prepared, mode, deadline, map)
    }

    /// Pushes a prepared request. Called counted in (after `inbox.enter()`); counts out.
    fn enqueue<T>(
        &self,
        slot: &CoreSlot,
        prepared: Outgoing,
        mode: SendMode,
        deadline: Instant,
        map: fn(Reply) -> Result<T, Error>,
    ) -> SendFuture<T> {
        let shared = &self.inner.shared;
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = Job::Send {
            message: prepared,
            mode,
            deadline,
            reply: RemoteReply::Channel(reply_tx),
        };
        // Try once while counted in; waiting for space happens outside, in the future.
        let result = match slot.inbox.push(job) {
            Ok(()) => SendFuture::queueing_done(reply_rx, deadline, map),
            Err(Job::Send { message, .. }) if shared.config.queue_full == QueueFullPolicy::Fail => {
                slot.inbox.note_refused();
                SendFuture::failed(
                    Error::QueueFull {
                        returned: message.into_returned(),
                    },
                    map,
                )
            }
            Err(job) => SendFuture::queueing(
                job,
                Arc::clone(&slot.inbox),
                Arc::clone(shared),
                deadline,
                shared.config.queue_full,
                reply_rx,
                map,
            ),
        };
        slot.inbox.leave();
        result
    }
}

impl Producer {
    /// Refuses a blocking call on a producer core's own thread (it would stall the core).
    pub(crate) fn reject_on_core(&self, what: &str) -> Result<(), Error> {
        if current_core().is_some() {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "blocking {what} called on a producer core; use LocalProducer there"
                ),
            });
        }
        Ok(())
    }

    /// State shared with the cores.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

/// Counts a submitter in on `slot`'s inbox unless the producer is closing (then counts it back
/// out). Shutdown waits for counted-in submitters, so a job pushed while counted in is always seen
/// by its core.
fn enter_open(shared: &Shared, slot: &CoreSlot) -> bool {
    slot.inbox.enter();
    if shared.closing.load(Ordering::SeqCst) {
        slot.inbox.leave();
        return false;
    }
    true
}

fn shut_down_refusal(returned: Returned) -> Error {
    Error::ShutDown {
        returned,
        outcome: Outcome::NotStored,
    }
}
