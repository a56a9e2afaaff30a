//! [`ProducerBuilder`]: settings, hooks and handlers; `build()` (in `startup.rs`) validates them
//! and starts the cores.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{CoreSelection, ProducerConfig};
use crate::engine::records::SharedDeliveryHandler;
use crate::engine::resolve::Resolver;
use crate::error::Error;
use crate::hooks::{CheckForbiddenHook, Hooks, RequestHook, SendHook};
use crate::send_result::SendResult;
use crate::stats_reporter::StatsSubscription;

mod startup;

/// Builds a [`Producer`](crate::Producer); validates the configuration in
/// [`ProducerBuilder::build`].
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

    /// Sets the delivery handler of
    /// [`Producer::send_reported`](crate::Producer::send_reported) and
    /// [`crate::LocalProducer::send_reported`]: called once per reported send, on the producer core that
    /// sent it, with the caller's token and the outcome (rdkafka's delivery report). A result is
    /// lent for the call (the engine rewrites one result for all the messages of a batch's
    /// answer): clone it (`result.cloned()`) to keep it; an error is the handler's, with the
    /// message handed back where it may not be stored.
    ///
    /// This is the fastest way to send: no future, channel or task per message. The handler runs
    /// on a producer core and must not block; it may send more messages (through
    /// [`crate::LocalProducer::current`]). A panic in it ends that call only: it is logged
    /// (`tracing`, error) and every other send goes on.
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
        handler: impl Fn(u64, Result<&SendResult, Error>) + Send + Sync + 'static,
    ) -> Self {
        self.delivery = Some(DeliverySetting(Arc::new(handler)));
        self
    }

    /// Calls `handler` every `interval` with the snapshot
    /// [`Producer::stats`](crate::Producer::stats) returns, on a thread of its own (off the
    /// cores' send path), from `build()` until shutdown begins
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
    ///         let p99 = stats.latency_us().percentile_us(99.0);
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
    /// unchanged: the figures come from the same per-core counters as
    /// [`Producer::stats`](crate::Producer::stats).
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
}
