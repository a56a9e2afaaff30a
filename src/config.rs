//! Producer and per-core configuration: plain structs with documented defaults.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::Error;
use crate::protocol::{HeaderEncoding, LanguageCode};

/// Default whole-send budget (Java `sendMsgTimeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Default limit of one attempt, so a stalled broker leaves time for a retry elsewhere.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default retries of a sync send (Java `retryTimesWhenSendFailed`).
pub const DEFAULT_RETRIES: u32 = 2;
/// Default compression threshold in bytes (Java `compressMsgBodyOverHowmuch`).
pub const DEFAULT_COMPRESS_OVER: usize = 4096;
/// Default zlib level (Java `rocketmq.message.compressLevel`).
pub const DEFAULT_COMPRESS_LEVEL: u32 = 5;
/// Default largest body (Java `maxMessageSize`, 4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Version ordinal sent by default: 4.9.7 (makes NameServers ≥ 4.9.4 return standard JSON routes).
pub const DEFAULT_VERSION: i32 = 407;
/// Default route refresh and heartbeat period (Java `pollNameServerInterval`, `heartbeatBrokerInterval`).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default glommio locked io memory per executor: 1 MiB, so 2 executors × 3 rings fit an 8 MiB
/// `ulimit -l` (glommio's own default of 10 MiB does not).
pub const DEFAULT_IO_MEMORY: usize = 1024 * 1024;
/// Default io_uring depth per ring.
pub const DEFAULT_RING_DEPTH: usize = 128;
/// Default capacity of a core's submission queue from application threads.
pub const DEFAULT_INBOX_CAPACITY: usize = 8192;
/// Default cap of sends in progress on one core.
pub const DEFAULT_MAX_INFLIGHT: usize = 8192;
/// Default cap of requests awaiting an answer on one connection (the rocketmq-rust broker
/// refuses more than 4,096 with SYSTEM_BUSY).
pub const DEFAULT_MAX_INFLIGHT_PER_CONNECTION: usize = 4096;
/// Default cap of message bytes in progress on one core.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;
/// Default executor spin before parking.
pub const DEFAULT_SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// Which CPUs run producer cores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CoreSelection {
    /// Every CPU this process may run on (default).
    #[default]
    All,
    /// The first `n` CPUs this process may run on.
    Count(usize),
    /// Exactly these CPU numbers.
    List(Vec<usize>),
}

/// What a submission does when the target core's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFullPolicy {
    /// Wait for space, within the message's send timeout (default).
    #[default]
    Wait,
    /// Fail at once with [`Error::QueueFull`], handing the message back.
    Fail,
}

/// Automatic batching: messages for one topic arriving close together on a core are sent as one
/// SEND_BATCH_MESSAGE; every caller still gets its own result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoBatch {
    /// How long an open batch waits for more messages. 0 (default) = only what is already
    /// waiting on the core joins, so batching never adds latency. Must be below `send_timeout`.
    /// Each message keeps its own budget: one whose deadline passes first gets its timeout
    /// while the batch goes on (see the batcher's docs).
    pub linger: Duration,
    /// Most messages per batch (default 256).
    pub max_messages: usize,
    /// Most encoded bytes per batch (default 1 MiB; must stay under the broker's 4 MiB).
    pub max_bytes: usize,
}

impl Default for AutoBatch {
    fn default() -> Self {
        AutoBatch {
            linger: Duration::ZERO,
            max_messages: 256,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Settings of one producer core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// glommio locked io memory in bytes (default 1 MiB). glommio registers it in 3 rings, each
    /// charged against `ulimit -l` for non-root users: keep `cores × 3 × io_memory` under it.
    pub io_memory: usize,
    /// io_uring submission depth (default 128).
    pub ring_depth: usize,
    /// Capacity of the queue from application threads (default 8192 messages).
    pub inbox_capacity: usize,
    /// Sends in progress on this core, retries included (default 8192).
    pub max_inflight: usize,
    /// Requests awaiting an answer on one connection (default 4096).
    pub max_inflight_per_connection: usize,
    /// Message bytes (body as sent + properties) in progress on this core (default 64 MiB); at
    /// least `max_message_size`. With `max_inflight` it bounds the memory a stalled broker can pin.
    pub max_buffered_bytes: usize,
    /// Busy-poll this long before parking an idle core (default 50 µs).
    pub spin_before_park: Duration,
    /// Automatic batching (default off).
    pub auto_batch: Option<AutoBatch>,
    /// TCP connections this core opens to each broker (default 1); sends rotate over them. More
    /// than one helps when a broker serialises the requests of one connection.
    pub connections_per_broker: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            io_memory: DEFAULT_IO_MEMORY,
            ring_depth: DEFAULT_RING_DEPTH,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_inflight_per_connection: DEFAULT_MAX_INFLIGHT_PER_CONNECTION,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            spin_before_park: DEFAULT_SPIN_BEFORE_PARK,
            auto_batch: None,
            connections_per_broker: 1,
        }
    }
}

/// Everything a producer needs to know.
///
/// Durations may be as large as `Duration::MAX`: a deadline is never set more than 100 years
/// ahead, so a huge timeout or interval means "no limit" and never overflows a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Producer group (required; `DEFAULT_PRODUCER` is refused like Java does).
    pub producer_group: String,
    /// NameServer addresses `host:port`, tried in order with fail-over (required).
    pub namesrv_addrs: Vec<String>,
    /// Budget of one message: route lookup, queue wait and every attempt (default 3 s).
    pub send_timeout: Duration,
    /// Limit of one attempt (default 1 s).
    pub attempt_timeout: Duration,
    /// Extra attempts of `send` (default 2).
    pub retries_when_send_failed: u32,
    /// Extra attempts of `send_async` (default 2).
    pub retries_when_send_async_failed: u32,
    /// Retry on another broker when the status is not `SendOk` (default false).
    pub retry_another_broker_when_not_store_ok: bool,
    /// Compress bodies of at least this many bytes (default 4096).
    pub compress_over: usize,
    /// Compression level (default 5): zlib 0–9, zstd 1–22; LZ4 has none.
    pub compress_level: u32,
    /// How bodies of at least `compress_over` bytes are compressed (Java 4.9.4+
    /// `compressType`; default zlib, which every server and consumer reads; LZ4 and ZSTD need
    /// 4.9.4+ consumers).
    pub compress_type: crate::protocol::compression::CompressionType,
    /// Largest body in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Header encoding of requests (default binary; replies are decoded in either).
    pub header_encoding: HeaderEncoding,
    /// Language announced in requests (default `JAVA`; `RUST` breaks servers < 4.9.4).
    pub language: LanguageCode,
    /// Version announced in requests (default 407 = 4.9.7).
    pub version: i32,
    /// Topic the broker auto-creates new topics from (default `TBW102`).
    pub create_topic_key: String,
    /// Queue count asked for on auto-creation (default 4).
    pub default_topic_queue_nums: i32,
    /// Route refresh period (default 30 s).
    pub route_refresh_interval: Duration,
    /// Heartbeat period (default 30 s).
    pub heartbeat_interval: Duration,
    /// Address used in the client id and message ids (default: this host's first non-loopback,
    /// non-link-local address, IPv4 and public preferred, as Java's `UtilAll.getIP`; 127.0.0.1
    /// on a host with loopback only). [`crate::Producer::config`] shows the one in use.
    pub client_ip: Option<IpAddr>,
    /// Instance name in the client id (default `<pid>#<nanos>`, like Java's `DEFAULT` rename).
    pub instance_name: Option<String>,
    /// Avoid slow or failed brokers for a while (Java `sendLatencyFaultEnable`, default false).
    pub send_latency_fault_enable: bool,
    /// Latency → not-available table used when `send_latency_fault_enable` (default: Java 5.x).
    pub fault_table: crate::fault_table::FaultTable,
    /// CPUs to run cores on (default all).
    pub cores: CoreSelection,
    /// Settings of every core without an entry in `per_cpu`.
    pub core: CoreConfig,
    /// Settings of the cores on these CPUs (from `[[core]]` entries of a config file).
    pub per_cpu: std::collections::BTreeMap<usize, CoreConfig>,
    /// What a full core queue does (default wait).
    pub queue_full: QueueFullPolicy,
    /// TLS to NameServers and brokers (Java `useTLS`; default off).
    pub tls: Option<crate::tls::TlsOptions>,
    /// Message trace (Java `enableMsgTrace`): the topic trace records go to, or `None` for no
    /// trace (default). [`crate::ProducerBuilder::trace`] sets Java's `RMQ_SYS_TRACE_TOPIC`.
    pub trace_topic: Option<String>,
    /// Send to brokers' VIP channel, their listen port − 2 (Java
    /// `sendMessageWithVIPChannel`, default false).
    pub vip_channel: bool,
    /// Most topic routes kept (default 4096): when full, the least recently used quarter is
    /// dropped (fetched again on their next send); topics unused for two route refresh
    /// intervals are dropped too.
    pub max_topics: usize,
    /// Namespace of topics and the producer group (Java `ClientConfig.namespace`; default none):
    /// topic `T` is sent as `namespace%T` with property `INSTANCE_ID`, and results name `T`.
    pub namespace: Option<String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            producer_group: String::new(),
            namesrv_addrs: Vec::new(),
            send_timeout: DEFAULT_SEND_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            retries_when_send_failed: DEFAULT_RETRIES,
            retries_when_send_async_failed: DEFAULT_RETRIES,
            retry_another_broker_when_not_store_ok: false,
            compress_over: DEFAULT_COMPRESS_OVER,
            compress_level: DEFAULT_COMPRESS_LEVEL,
            compress_type: Default::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            header_encoding: HeaderEncoding::Binary,
            language: LanguageCode::JAVA,
            version: DEFAULT_VERSION,
            create_topic_key: crate::protocol::send_request_header::DEFAULT_TOPIC.to_owned(),
            default_topic_queue_nums:
                crate::protocol::send_request_header::DEFAULT_TOPIC_QUEUE_NUMS,
            route_refresh_interval: DEFAULT_REFRESH_INTERVAL,
            heartbeat_interval: DEFAULT_REFRESH_INTERVAL,
            client_ip: None,
            instance_name: None,
            send_latency_fault_enable: false,
            fault_table: Default::default(),
            cores: CoreSelection::All,
            core: CoreConfig::default(),
            per_cpu: Default::default(),
            queue_full: QueueFullPolicy::Wait,
            namespace: None,
            max_topics: crate::route::table::DEFAULT_MAX_TOPICS,
            vip_channel: false,
            trace_topic: None,
            tls: None,
        }
    }
}

impl CoreConfig {
    fn validate(
        &self,
        name: &str,
        max_message_size: usize,
        send_timeout: Duration,
    ) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.io_memory < 64 * 1024 {
            return bad(format!(
                "{name}.io_memory {} is under glommio's 64 KiB minimum",
                self.io_memory
            ));
        }
        for (key, value) in [
            ("inbox_capacity", self.inbox_capacity),
            ("max_inflight", self.max_inflight),
            (
                "max_inflight_per_connection",
                self.max_inflight_per_connection,
            ),
            ("ring_depth", self.ring_depth),
            ("connections_per_broker", self.connections_per_broker),
        ] {
            if value == 0 {
                return bad(format!("{name}.{key} must be above zero"));
            }
        }
        if self.max_buffered_bytes < max_message_size {
            return bad(format!(
                "{name}.max_buffered_bytes {} is below max_message_size {max_message_size}",
                self.max_buffered_bytes
            ));
        }
        if let Some(batch) = &self.auto_batch {
            if batch.max_messages == 0 || batch.max_bytes == 0 {
                return bad(format!(
                    "{name}.batch_max_messages and batch_max_bytes must be above zero"
                ));
            }
            if batch.max_bytes > max_message_size {
                return bad(format!(
                    "{name}.batch_max_bytes {} is over max_message_size {max_message_size}",
                    batch.max_bytes
                ));
            }
            // A message lingering its whole budget would time out before it is sent.
            if batch.linger >= send_timeout {
                return bad(format!(
                    "{name}.linger {:?} must be below send_timeout {send_timeout:?}",
                    batch.linger
                ));
            }
        }
        Ok(())
    }
}

impl ProducerConfig {
    /// The settings of the core running on `cpu`.
    pub fn core_for(&self, cpu: usize) -> &CoreConfig {
        self.per_cpu.get(&cpu).unwrap_or(&self.core)
    }

    /// Checks that the settings can work together.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.producer_group.trim().is_empty() {
            return Err(Error::InvalidConfig {
                reason: "producer_group must be set".into(),
            });
        }
        if self.namesrv_addrs.is_empty() {
            return Err(Error::InvalidConfig {
                reason: "namesrv_addrs must name at least one NameServer".into(),
            });
        }
        self.validate_values()
    }

    /// Checks every value that is set, without requiring `producer_group` and `namesrv_addrs`
    /// (a config file may leave them to the program).
    pub(crate) fn validate_values(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        let group = self.producer_group.trim();
        if group.is_empty() {
            return self.validate_rest();
        }
        if group == "DEFAULT_PRODUCER" {
            return bad("producer_group DEFAULT_PRODUCER is reserved; choose your own".into());
        }
        if group.len() > 255
            || !group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
        {
            return bad(format!(
                "producer_group {group:?} must be 1-255 characters from [%|a-zA-Z0-9_-]"
            ));
        }
        self.validate_rest()
    }

    fn validate_rest(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        for addr in &self.namesrv_addrs {
            if split_host_port(addr).is_none() {
                return bad(format!("NameServer address {addr:?} is not host:port"));
            }
        }
        if self.send_timeout.is_zero() || self.attempt_timeout.is_zero() {
            return bad("send_timeout and attempt_timeout must be above zero".into());
        }
        if self.compress_level > 9 {
            return bad(format!(
                "compress_level {} is outside 0..=9",
                self.compress_level
            ));
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be above zero".into());
        }
        if self.default_topic_queue_nums <= 0 {
            return bad("default_topic_queue_nums must be above zero".into());
        }
        self.core
            .validate("core", self.max_message_size, self.send_timeout)?;
        for (cpu, core) in &self.per_cpu {
            core.validate(
                &format!("core (cpu {cpu})"),
                self.max_message_size,
                self.send_timeout,
            )?;
        }
        if self.max_topics == 0 {
            return bad("max_topics must be above zero".into());
        }
        if let Some(namespace) = &self.namespace {
            crate::namespace::validate(namespace)?;
        }
        if let CoreSelection::Count(0) = self.cores {
            return bad("cores must be at least 1".into());
        }
        if let CoreSelection::List(list) = &self.cores {
            if list.is_empty() {
                return bad("the CPU list is empty".into());
            }
        }
        Ok(())
    }
}

/// Splits `host:port` at the last `:` (Java `RemotingHelper.string2SocketAddress`), accepting
/// `[v6]:port` too.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ProducerConfig {
        ProducerConfig {
            producer_group: "pg".into(),
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_validate() {
        good().validate().unwrap();
        assert_eq!(good().send_timeout, Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_setting() {
        let mut c = good();
        c.producer_group = "DEFAULT_PRODUCER".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("DEFAULT_PRODUCER"));
        let mut c = good();
        c.namesrv_addrs = vec!["nope".into()];
        assert!(c.validate().unwrap_err().to_string().contains("host:port"));
        let mut c = good();
        c.core.io_memory = 10;
        assert!(c.validate().unwrap_err().to_string().contains("io_memory"));
    }

    #[test]
    fn linger_must_be_below_the_send_timeout() {
        let mut c = good();
        c.core.auto_batch = Some(AutoBatch {
            linger: c.send_timeout,
            ..Default::default()
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("core.linger") && e.contains("send_timeout"),
            "{e}"
        );
        let mut c = good();
        c.per_cpu.insert(
            3,
            CoreConfig {
                auto_batch: Some(AutoBatch {
                    linger: Duration::from_secs(60),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("linger") && e.contains("cpu 3"), "{e}");
        let mut c = good();
        c.core.auto_batch = Some(AutoBatch {
            linger: Duration::from_millis(5),
            ..Default::default()
        });
        c.validate().unwrap();
    }

    fn extreme_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            Just(Duration::MAX - Duration::from_nanos(1)),
            Just(Duration::from_secs(u64::MAX / 2)),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..10_000).prop_map(Duration::from_millis),
        ]
    }

    proptest::proptest! {
        /// Validation of any durations is `Ok` or an `InvalidConfig` naming a key, never a panic.
        #[test]
        fn extreme_durations_validate_without_panic(
            send_timeout in extreme_duration(),
            attempt_timeout in extreme_duration(),
            route_refresh_interval in extreme_duration(),
            heartbeat_interval in extreme_duration(),
            spin_before_park in extreme_duration(),
            linger in proptest::option::of(extreme_duration()),
        ) {
            let mut c = good();
            c.send_timeout = send_timeout;
            c.attempt_timeout = attempt_timeout;
            c.route_refresh_interval = route_refresh_interval;
            c.heartbeat_interval = heartbeat_interval;
            c.core.spin_before_park = spin_before_park;
            c.core.auto_batch = linger.map(|linger| AutoBatch { linger, ..Default::default() });
            match c.validate() {
                Ok(()) => {
                    proptest::prop_assert!(linger.is_none_or(|l| l < send_timeout));
                }
                Err(Error::InvalidConfig { reason }) => {
                    proptest::prop_assert!(reason.contains("timeout") || reason.contains("linger") || reason.contains("interval") || reason.contains("spin"), "{}", reason);
                }
                Err(other) => proptest::prop_assert!(false, "{}", other),
            }
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("127.0.0.1:9876"), Some(("127.0.0.1", 9876)));
        assert_eq!(split_host_port("[::1]:10911"), Some(("::1", 10911)));
        assert_eq!(split_host_port("::1:10911"), Some(("::1", 10911)));
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("a:x"), None);
    }
}
