//! [`Producer`] and [`ProducerBuilder`]: the `Send + Sync` handle application threads use.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::config::{CoreSelection, ProducerConfig, QueueFullPolicy};
use crate::engine::broker_requests::BrokerRequests;
use crate::engine::connection::ConnSettings;
use crate::engine::core::{current_core, spawn_core, CoreReport, Shared};
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::{ControlJob, Inbox, Job, RemoteReply, SendMode};
use crate::engine::prepared::{prepare, prepare_batch, random_u32, Outgoing, Reply, SendExtras};
use crate::engine::records::SharedDeliveryHandler;
use crate::engine::resolve::Resolver;
use crate::error::{Error, Outcome};
use crate::hooks::{CheckForbiddenHook, Hooks, RequestHook, SendHook};
use crate::local_producer::LocalProducer;
use crate::message::Message;
use crate::protocol::frame::MAX_FRAME_BYTES;
use crate::route::RouteTable;
use crate::send_future::SendFuture;
use crate::send_options::SendOptions;
use crate::send_result::{MessageQueue, SendResult};
use crate::stats_reporter::{StatsReporter, StatsSubscription};

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

/// Builds a [`Producer`]; validates the configuration in [`ProducerBuilder::build`].
#[derive(Debug, Clone, Default)]
pub struct ProducerBuilder {
    config: ProducerConfig,
    hooks: Hooks,
    resolver: Option<ResolverSetting>,
    delivery: Option<DeliverySetting>,
    stats_subscriptions: Vec<StatsSubscription>,
}

/// The delivery handler, kept apart so the builder stays `Debug`.
#[derive(Clone)]
struct DeliverySetting(Arc<SharedDeliveryHandler>);

impl std::fmt::Debug for DeliverySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryHandler(..)")
    }
}

/// A custom resolver, kept apart so the builder stays `Debug`.
#[derive(Clone)]
struct ResolverSetting(Resolver);

impl std::fmt::Debug for ResolverSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver(..)")
    }
}

impl ProducerBuilder {
    /// A builder with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a whole configuration.
    pub fn config(mut self, config: ProducerConfig) -> Self {
        self.config = config;
        self
    }

    /// NameServer address(es): `host:port`, several separated by `;`.
    pub fn namesrv(mut self, addrs: &str) -> Self {
        self.config.namesrv_addrs = addrs
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// The producer group.
    pub fn producer_group(mut self, group: impl Into<String>) -> Self {
        self.config.producer_group = group.into();
        self
    }

    /// Runs on the first `n` CPUs this process may use.
    pub fn cores(mut self, n: usize) -> Self {
        self.config.cores = CoreSelection::Count(n);
        self
    }

    /// Runs on exactly these CPUs.
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.config.cores = CoreSelection::List(cpus);
        self
    }

    /// The per-message budget (default 3 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_timeout = timeout;
        self
    }

    /// Adds a hook called before and after every attempt of every send.
    pub fn send_hook(mut self, hook: Arc<dyn SendHook>) -> Self {
        self.hooks.send.push(hook);
        self
    }

    /// Adds a hook that may refuse a message before each attempt.
    pub fn check_forbidden_hook(mut self, hook: Arc<dyn CheckForbiddenHook>) -> Self {
        self.hooks.check_forbidden.push(hook);
        self
    }

    /// Adds a hook called for every request the producer writes (sends, heartbeats, route
    /// lookups), which may add header fields.
    pub fn request_hook(mut self, hook: Arc<dyn RequestHook>) -> Self {
        self.hooks.request.push(hook);
        self
    }

    /// Traces every send to Java's trace topic `RMQ_SYS_TRACE_TOPIC` (`true`), or not (the
    /// default). See `ProducerConfig::trace_topic` for another topic.
    pub fn trace(mut self, on: bool) -> Self {
        self.config.trace_topic = on.then(|| crate::trace::DEFAULT_TRACE_TOPIC.to_owned());
        self
    }

    /// Talks TLS to every NameServer and broker (see [`crate::TlsOptions`]).
    pub fn tls(mut self, options: crate::tls::TlsOptions) -> Self {
        self.config.tls = Some(options);
        self
    }

    /// Signs every request with ACL `credentials` (Java `AclClientRPCHook`).
    pub fn acl(mut self, credentials: crate::acl::AclCredentials) -> Self {
        self.hooks.request.push(Arc::new(credentials));
        self
    }

    /// Resolves host names of NameServers and brokers with `resolver` instead of the system's
    /// (`getaddrinfo`). It runs on a helper thread, never on a producer core; a connect gives
    /// up at its attempt deadline whether or not the resolver answered.
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(ResolverSetting(resolver));
        self
    }

    /// Mutable access to the whole configuration.
    pub fn config_mut(&mut self) -> &mut ProducerConfig {
        &mut self.config
    }

    /// Sets the delivery handler of [`Producer::send_reported`] and
    /// [`LocalProducer::send_reported`]: called once per reported send, on the producer core that
    /// sent it, with the caller's token and the outcome (rdkafka's delivery report).
    ///
    /// This is the fastest way to send: no future, channel or task per message. The handler runs
    /// on a producer core and must not block; it may send more messages (through
    /// [`LocalProducer::current`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::{Message, Producer};
    /// # fn main() -> Result<(), rocketmq_tpc::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    ///
    /// let stored = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&stored);
    /// let producer = Producer::builder()
    ///     .namesrv("127.0.0.1:9876")
    ///     .on_delivery(move |token, result| match result {
    ///         Ok(_) => {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///         Err(e) => eprintln!("message {token} failed: {e}"),
    ///     })
    ///     .build()?;
    /// for n in 0..1000 {
    ///     producer.send_reported(Message::new("TopicTest", format!("m{n}")), n)?;
    /// }
    /// producer.flush(std::time::Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    pub fn on_delivery(
        mut self,
        handler: impl Fn(u64, Result<SendResult, Error>) + Send + Sync + 'static,
    ) -> Self {
        self.delivery = Some(DeliverySetting(Arc::new(handler)));
        self
    }

    /// Calls `handler` every `interval` with the snapshot [`Producer::stats`] returns, on a
    /// thread of its own (off the cores' send path), from `build()` until shutdown begins
    /// (rdkafka's `statistics.interval.ms`). Call it again for more handlers; intervals under
    /// 10 ms count as 10 ms. A panicking handler is logged and called again next interval.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::Producer;
    /// # fn main() -> Result<(), rocketmq_tpc::Error> {
    /// use std::time::Duration;
    ///
    /// let producer = Producer::builder()
    ///     .namesrv("127.0.0.1:9876")
    ///     .on_stats(Duration::from_secs(10), |stats| {
    ///         let p99 = stats.latency_us().value_at_quantile(0.99);
    ///         println!("acked {} failed {} p99 {p99} µs", stats.acked(), stats.failed());
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn on_stats(
        mut self,
        interval: Duration,
        handler: impl Fn(&crate::stats::ProducerStats) + Send + Sync + 'static,
    ) -> Self {
        self.stats_subscriptions.push(StatsSubscription {
            interval,
            handler: Arc::new(handler),
        });
        self
    }

    /// Publishes the producer's metrics through the [`metrics`](https://docs.rs/metrics)
    /// facade every `interval` (feature `metrics`): counters, gauges and the latency histogram
    /// listed in [`crate::metrics::METRICS`], labelled by client id and core. Install the
    /// recorder (e.g. `metrics-exporter-prometheus`) before `build()`. The send path is
    /// unchanged: the figures come from the same per-core counters as [`Producer::stats`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::Producer;
    /// # fn main() -> Result<(), rocketmq_tpc::Error> {
    /// // metrics_exporter_prometheus::PrometheusBuilder::new().install()?; (or any recorder)
    /// let producer = Producer::builder()
    ///     .namesrv("127.0.0.1:9876")
    ///     .publish_metrics(std::time::Duration::from_secs(5))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(self, interval: Duration) -> Self {
        let publisher = crate::metrics::MetricsPublisher::new();
        self.on_stats(interval, move |stats| publisher.publish(stats))
    }

    /// Validates the configuration and starts the cores. Does not contact the NameServer: the
    /// first send fetches its route (and fails within its budget if none answers).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad settings, [`Error::Startup`] when an executor cannot start
    /// (CPU not available, io_uring refused, locked memory below glommio's minimum).
    pub fn build(self) -> Result<Producer, Error> {
        let mut config = self.config;
        config.validate()?;
        let mut hooks = self.hooks;
        if let Some(topic) = &config.trace_topic {
            crate::message::validate_topic(topic)?;
            hooks.send.push(Arc::new(crate::trace::TraceHook::new(
                topic.clone(),
                config.producer_group.clone(),
            )));
        }
        if let Some(namespace) = &config.namespace {
            // The group is registered, sent and checked back in its namespace (Java
            // `ClientConfig.withNamespace(producerGroup)`).
            config.producer_group = crate::namespace::wrap(namespace, &config.producer_group);
        }
        let cpus = resolve_cpus(&config.cores)?;
        // Message ids and the client id carry this host's address (Java `UtilAll.getIP`), so ids
        // from two hosts cannot collide and brokers can tell clients apart.
        let ip = crate::client_address::client_ip(config.client_ip);
        config.client_ip = Some(ip);
        let instance = config.instance_name.clone().unwrap_or_else(|| {
            format!(
                "{}#{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )
        });
        let client_id = format!("{ip}@{instance}");
        let hooks = Arc::new(hooks);
        let max_topics = config.max_topics;
        let broker_requests = Arc::new(BrokerRequests::new(
            config.producer_group.clone(),
            config.namespace.clone(),
        ));
        let conn_settings = ConnSettings {
            encoding: config.header_encoding,
            language: config.language,
            version: config.version,
            max_frame_bytes: MAX_FRAME_BYTES,
            max_in_flight: config.core.max_inflight_per_connection,
            broker_requests: Some(Arc::clone(&broker_requests)),
            hooks: Arc::clone(&hooks),
            resolver: self
                .resolver
                .map(|r| r.0)
                .unwrap_or_else(crate::engine::resolve::system_resolver),
            tls: config
                .tls
                .as_ref()
                .map(crate::tls::TlsSetup::new)
                .transpose()?,
            max_queued_bytes: config.core.max_buffered_bytes,
            // Capped like every deadline (see `deadline_after`): the writer adds it to now.
            stall_timeout: config
                .attempt_timeout
                .min(crate::engine::deadline::FAR_FUTURE),
        };
        let shared = Arc::new(Shared {
            config,
            routes: RouteTable::with_max_topics(max_topics),
            client_id,
            closing: Default::default(),
            shutdown_deadline: Mutex::new(None),
            conn_settings,
            broker_requests,
            hooks,
            delivery: self.delivery.map(|d| d.0),
        });
        let mut cores = Vec::with_capacity(cpus.len());
        for (index, cpu) in cpus.into_iter().enumerate() {
            let inbox = Arc::new(Inbox::new(
                shared.config.core_for(cpu).inbox_capacity,
                shared.delivery.clone(),
            ));
            match spawn_core(index, cpu, Arc::clone(&shared), Arc::clone(&inbox)) {
                Ok(join) => cores.push(CoreSlot {
                    inbox,
                    join: Mutex::new(Some(join)),
                }),
                Err(e) => {
                    let partial = Inner {
                        shared,
                        cores,
                        shutdown_done: Mutex::new(None),
                        reporters: Mutex::default(),
                    };
                    partial.shutdown(Duration::ZERO);
                    return Err(e);
                }
            }
        }
        tracing::info!(cores = cores.len(), client_id = %shared.client_id, "producer started");
        let producer = Producer {
            inner: Arc::new(Inner {
                shared,
                cores,
                shutdown_done: Mutex::new(None),
                reporters: Mutex::default(),
            }),
        };
        for subscription in self.stats_subscriptions {
            // The reporter holds the producer weakly: dropping the last handle still shuts it down.
            let weak = Arc::downgrade(&producer.inner);
            let snapshot = move || weak.upgrade().map(|inner| Producer { inner }.stats());
            let reporter = StatsReporter::start(subscription, snapshot)?;
            producer
                .inner
                .reporters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(reporter);
        }
        Ok(producer)
    }
}

fn resolve_cpus(selection: &CoreSelection) -> Result<Vec<usize>, Error> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if available.is_empty() {
        return Err(Error::Startup {
            reason: "cannot read the CPUs this process may run on".into(),
        });
    }
    match selection {
        CoreSelection::All => Ok(available),
        CoreSelection::Count(n) if *n <= available.len() => Ok(available[..*n].to_vec()),
        CoreSelection::Count(n) => Err(Error::InvalidConfig {
            reason: format!(
                "cores = {n}, but this process may only use {} CPUs ({available:?})",
                available.len()
            ),
        }),
        CoreSelection::List(list) => {
            if let Some(cpu) = list.iter().find(|c| !available.contains(c)) {
                return Err(Error::InvalidConfig {
                    reason: format!("CPU {cpu} is not one this process may use ({available:?})"),
                });
            }
            Ok(list.clone())
        }
    }
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
    /// is full under [`QueueFullPolicy::Wait`], up to the send timeout.
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
        let result = loop {
            match slot.inbox.push(job) {
                Ok(()) => break Ok(()),
                Err(back) => {
                    let full = shared.config.queue_full == QueueFullPolicy::Fail
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
