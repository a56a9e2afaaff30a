//! [`Producer`] and [`ProducerBuilder`]: the `Send + Sync` handle application threads use.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::config::{ProducerConfig, QueueFullPolicy};
use crate::engine::core::{current_core, CoreReport, Shared};
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::{ControlJob, Inbox, Job, RemoteReply, SendMode};
use crate::engine::prepared::{prepare, prepare_batch, random_u32, Outgoing, Reply, SendExtras};
use crate::error::{Error, Outcome};
use crate::local_producer::LocalProducer;
use crate::message::Message;
use crate::send_future::SendFuture;
use crate::send_options::SendOptions;
use crate::send_result::{MessageQueue, SendResult};
use crate::stats_reporter::StatsReporter;

mod builder;

pub use builder::ProducerBuilder;

/// What [`Producer::shutdown`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sends still running at the deadline; each was failed with [`Error::ShutDown`].
    pub cut_at_deadline: u64,
    /// Queued messages that could not start before the deadline; each was failed with
    /// [`Error::ShutDown`] (definitely not stored).
    pub refused_at_deadline: u64,
    /// Messages found queued after the cores stopped; each was failed with [`Error::ShutDown`].
    pub refused_after_stop: u64,
    /// Whether the cores were joined (false when called from a producer core, which must not block).
    pub joined: bool,
}

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
    /// `max_message_size` encoded. Each message gets its own id and offset in the result. When
    /// the bodies together reach `compress_over`, every inner body is zlib-compressed.
    ///
    /// Errors (and retries) apply to the whole batch.
    pub fn send_batch(&self, messages: Vec<Message>) -> SendFuture<Vec<SendResult>> {
        self.send_batch_with(messages, SendOptions::default())
    }

    /// [`Producer::send_batch`] with per-call options.
    pub fn send_batch_with(
        &self,
        messages: Vec<Message>,
        options: SendOptions,
    ) -> SendFuture<Vec<SendResult>> {
        let shared = &self.inner.shared;
        let deadline = deadline_after(
            Instant::now(),
            options.timeout.unwrap_or(shared.config.send_timeout),
        );
        let slot = &self.inner.cores[self.pick_core(&options)];
        if !enter_open(shared, slot) {
            return SendFuture::failed(shut_down_refusal(None), Reply::into_batch);
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
        self.submit(message, SendMode::Oneway, &options, |_| ())
    }

    /// Sends `message` and reports its outcome to the delivery handler set with
    /// [`ProducerBuilder::on_delivery`], with `token` (the fast path: no future or channel per
    /// message). Returns once the message is handed to a core; blocks while that core's inbox
    /// is full under [`QueueFullPolicy::Wait`], up to the send timeout (on a producer core it
    /// never waits: a full inbox refuses at once, since that core may be the one to drain it).
    ///
    /// Every message handed over gets exactly one call of the handler; a message refused here
    /// gets none (it comes back in the error).
    ///
    /// # Errors
    ///
    /// Refusals before hand-over: [`Error::InvalidConfig`] without a delivery handler,
    /// [`Error::InvalidMessage`], [`Error::QueueFull`], [`Error::ShutDown`] (the last two hand
    /// the message back).
    pub fn send_reported(&self, message: Message, token: u64) -> Result<(), Error> {
        let shared = &self.inner.shared;
        if shared.delivery.is_none() {
            return Err(Error::InvalidConfig {
                reason: "send_reported needs a delivery handler (ProducerBuilder::on_delivery)"
                    .into(),
            });
        }
        let deadline = deadline_after(Instant::now(), shared.config.send_timeout);
        let slot = &self.inner.cores[self.pick_core(&SendOptions::default())];
        if !enter_open(shared, slot) {
            return Err(shut_down_refusal(Some(message)));
        }
        let prepared = match prepare(message, &shared.config, None) {
            Ok(p) => Outgoing::One(p),
            Err(refused) => {
                slot.inbox.leave();
                return Err(refused.0);
            }
        };
        let mut job = Job::Send {
            message: prepared,
            mode: SendMode::Async,
            deadline,
            reply: RemoteReply::Report(token),
        };
        // On a producer core, waiting would stall the very core that drains the inbox.
        let may_wait =
            shared.config.queue_full == QueueFullPolicy::Wait && current_core().is_none();
        let result = loop {
            match slot.inbox.push(job) {
                Ok(()) => break Ok(()),
                Err(back) => {
                    let full = !may_wait
                        || Instant::now() >= deadline
                        || shared.closing.load(Ordering::SeqCst);
                    if full {
                        let Job::Send { message, .. } = back;
                        slot.inbox.note_refused();
                        break Err(Error::QueueFull {
                            message: message.into_message().map(Box::new),
                        });
                    }
                    job = back;
                    // The core frees room quickly; a short park instead of a waker per caller.
                    std::thread::park_timeout(std::time::Duration::from_micros(50));
                }
            }
        };
        slot.inbox.leave();
        result
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
        map: fn(Reply) -> T,
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
        map: fn(Reply) -> T,
    ) -> SendFuture<T> {
        let shared = &self.inner.shared;
        let deadline = deadline_after(
            Instant::now(),
            options.timeout.unwrap_or(shared.config.send_timeout),
        );
        let slot = &self.inner.cores[self.pick_core(options)];
        if !enter_open(shared, slot) {
            return SendFuture::failed(shut_down_refusal(Some(message)), map);
        }
        let prepared = match prepare(message, &shared.config, extras) {
            Ok(p) => Outgoing::One(p),
            Err(refused) => {
                let (e, _) = *refused;
                slot.inbox.leave();
                return SendFuture::failed(e, map);
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
        map: fn(Reply) -> T,
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
                        message: message.into_message().map(Box::new),
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

    /// A snapshot of every core's counters, gathered from the cores on demand (no counter is
    /// shared between cores on the send path). Blocks briefly; do not call it on a producer core.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown, [`Error::CoreStopped`] if a core does not answer.
    pub fn stats(&self) -> Result<crate::stats::ProducerStats, Error> {
        let mut handles = Vec::with_capacity(self.cores());
        for core in 0..self.cores() {
            handles.push(
                self.run_on_core(core, |local: LocalProducer| async move { local.snapshot() })?,
            );
        }
        // A core that stopped answering does not hold this caller forever.
        let limit = Instant::now()
            + self.config().send_timeout.min(Duration::from_secs(60))
            + crate::send_future::WAIT_MARGIN;
        let mut cores = Vec::with_capacity(handles.len());
        for (h, slot) in handles.into_iter().zip(&self.inner.cores) {
            let mut core = h.wait_until(limit)?;
            core.refused += slot.inbox.refused();
            cores.push(core);
        }
        Ok(crate::stats::ProducerStats {
            client_id: self.inner.shared.client_id.to_string(),
            cores,
        })
    }

    /// Runs `f` on core `core` with that core's [`LocalProducer`]; the returned handle yields
    /// `f`'s output. This is how code gets onto a producer core without a hop per message.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a core index out of range, [`Error::ShutDown`] after shutdown.
    pub fn run_on_core<F, Fut, T>(&self, core: usize, f: F) -> Result<RunHandle<T>, Error>
    where
        F: FnOnce(LocalProducer) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let slot = self
            .inner
            .cores
            .get(core)
            .ok_or_else(|| Error::InvalidConfig {
                reason: format!(
                    "core {core} does not exist (the producer has {})",
                    self.cores()
                ),
            })?;
        let (tx, rx) = oneshot::channel();
        // A panic in `f` ends its task only (the core goes on); the dropped `tx` makes the
        // handle fail with CoreStopped.
        let mut job: ControlJob = Box::new(move |local: LocalProducer| {
            crate::engine::guarded::spawn_guarded(
                "run_on_core",
                async move {
                    let _ = tx.send(f(local).await);
                },
                |_| {},
            );
        });
        loop {
            if !enter_open(&self.inner.shared, slot) {
                return Err(shut_down_refusal(None));
            }
            let pushed = slot.inbox.push_control(job);
            slot.inbox.leave();
            match pushed {
                Ok(()) => return Ok(RunHandle { rx }),
                Err(back) => {
                    job = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }

    /// Waits until every message handed over before the call has its outcome (its future or
    /// callback resolved), or until `timeout` passes; the producer stays usable, and messages
    /// sent meanwhile are not waited for.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when some were still in progress at the deadline (they go on),
    /// [`Error::ShutDown`] after shutdown. Do not call it on a producer core (use
    /// [`LocalProducer::flush`] there).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.reject_on_core("flush")?;
        // Each core's inbox is FIFO: the flush job runs after every job pushed before it took
        // its permit, so the core's flush covers them.
        let mut handles = Vec::with_capacity(self.cores());
        for core in 0..self.cores() {
            handles.push(self.run_on_core(core, move |local| local.flush(timeout))?);
        }
        let mut result = Ok(());
        for handle in handles {
            if let Err(e) = handle.wait()? {
                result = Err(e);
            }
        }
        result
    }

    /// Stops accepting messages, waits up to `timeout` for every accepted message to get its
    /// outcome, fails whatever is left with [`Error::ShutDown`], unregisters from the brokers and
    /// stops the cores. Later calls return the first call's report.
    ///
    /// Called on a producer core's own thread it only signals the cores (it must not block the
    /// core it runs on) and reports `joined: false`.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.inner.shutdown(timeout)
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

impl Inner {
    fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut done = self.shutdown_done.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(report) = done.as_ref() {
            return report.clone();
        }
        for reporter in self
            .reporters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            reporter.stop();
        }
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        // Submitters that passed the closing check before we set it finish their push first.
        for slot in &self.cores {
            while slot.inbox.submitters() > 0 {
                std::thread::yield_now();
            }
        }
        *shared
            .shutdown_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline_after(Instant::now(), timeout));
        for slot in &self.cores {
            slot.inbox.request_stop();
        }
        let mut report = ShutdownReport::default();
        if current_core().is_some() {
            tracing::warn!(
                "Producer::shutdown called on a producer core; not waiting for the cores"
            );
            *done = Some(report.clone());
            return report;
        }
        for slot in &self.cores {
            let join = slot.join.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(join) = join {
                match join.join() {
                    Ok(core_report) => {
                        report.cut_at_deadline += core_report.cut_at_deadline;
                        report.refused_at_deadline += core_report.refused_at_shutdown;
                    }
                    Err(e) => tracing::error!(error = %e, "a producer core ended abnormally"),
                }
            }
        }
        for slot in &self.cores {
            while let Some(job) = slot.inbox.try_pop() {
                report.refused_after_stop += 1;
                let Job::Send { message, reply, .. } = job;
                let error = Error::ShutDown {
                    message: message.into_message().map(Box::new),
                    outcome: Outcome::NotStored,
                };
                slot.inbox.fail(reply, error);
            }
        }
        report.joined = true;
        tracing::info!(client_id = %shared.client_id, ?report, "producer shut down");
        *done = Some(report.clone());
        report
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

fn shut_down_refusal(message: Option<Message>) -> Error {
    Error::ShutDown {
        message: message.map(Box::new),
        outcome: Outcome::NotStored,
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown(self.shared.config.send_timeout);
    }
}

/// The output of a closure run on a core by [`Producer::run_on_core`].
pub struct RunHandle<T> {
    rx: oneshot::Receiver<T>,
}

impl<T> RunHandle<T> {
    /// Blocks until the closure's future completes.
    ///
    /// # Errors
    ///
    /// [`Error::CoreStopped`] when the core stopped before the future completed.
    pub fn wait(self) -> Result<T, Error> {
        futures_lite::future::block_on(self)
    }

    /// [`RunHandle::wait`], giving up at `limit` with [`Error::CoreStopped`].
    pub(crate) fn wait_until(self, limit: Instant) -> Result<T, Error> {
        crate::send_future::block_on_until(self, Some(limit)).unwrap_or_else(|| {
            Err(Error::CoreStopped {
                reason: "the core did not run the task in time".into(),
            })
        })
    }
}

impl<T> Future for RunHandle<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.map_err(|_| Error::CoreStopped {
                reason: "the core stopped before the task completed".into(),
            })
        })
    }
}
