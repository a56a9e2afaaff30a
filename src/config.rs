//! Producer and per-core configuration: plain structs with documented defaults.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::{HeaderEncoding, LanguageCode};

mod file;
pub(crate) mod units;
mod validate;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueFullPolicy {
    /// Wait for space, within the message's send timeout (default).
    #[default]
    Wait,
    /// Fail at once with [`Error::QueueFull`](crate::Error::QueueFull), handing the message back.
    Fail,
}

/// Automatic batching: messages for one topic arriving close together on a core are sent as one
/// SEND_BATCH_MESSAGE; every caller still gets its own result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoBatch {
    /// How long an open batch waits for more messages. 0 (default) = only what is already
    /// waiting on the core joins, so batching never adds latency. Must be below `send_timeout`.
    /// Each message keeps its own budget: one with a timeout shorter than the linger
    /// (`SendOptions::timeout`) skips batching and goes alone at once; one whose deadline
    /// passes while its batch is in flight gets its timeout while the batch goes on (see the
    /// batcher's docs); messages whose deadlines lie within a millisecond of each other share
    /// the earliest.
    #[serde(deserialize_with = "units::duration")]
    pub linger: Duration,
    /// Most messages per batch (default 256).
    pub max_messages: usize,
    /// Most encoded bytes per batch (default 1 MiB; must stay under the broker's 4 MiB).
    #[serde(deserialize_with = "units::size")]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// glommio locked io memory in bytes (default 1 MiB). glommio registers it in 3 rings, each
    /// charged against `ulimit -l` for non-root users: keep `cores × 3 × io_memory` under it.
    #[serde(deserialize_with = "units::size")]
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
    #[serde(deserialize_with = "units::size")]
    pub max_buffered_bytes: usize,
    /// Busy-poll this long before parking an idle core (default 50 µs).
    #[serde(deserialize_with = "units::duration")]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// Producer group (required; `DEFAULT_PRODUCER` is refused like Java does).
    pub producer_group: String,
    /// NameServer addresses `host:port`, tried in order with fail-over (required).
    #[serde(
        rename = "namesrv",
        alias = "namesrv_addrs",
        deserialize_with = "units::namesrv"
    )]
    pub namesrv_addrs: Vec<String>,
    /// Budget of one message: route lookup, queue wait and every attempt (default 3 s).
    #[serde(deserialize_with = "units::duration")]
    pub send_timeout: Duration,
    /// Limit of one attempt (default 1 s).
    #[serde(deserialize_with = "units::duration")]
    pub attempt_timeout: Duration,
    /// Extra attempts of `send` (default 2).
    pub retries_when_send_failed: u32,
    /// Extra attempts of `send_async` (default 2).
    pub retries_when_send_async_failed: u32,
    /// Retry on another broker when the status is not `SendOk` (default false).
    pub retry_another_broker_when_not_store_ok: bool,
    /// Compress bodies of at least this many bytes (default 4096).
    #[serde(deserialize_with = "units::size")]
    pub compress_over: usize,
    /// Compression level (default 5): zlib 0–9, zstd 1–22; LZ4 has none.
    pub compress_level: u32,
    /// How bodies of at least `compress_over` bytes are compressed (Java 4.9.4+
    /// `compressType`; default zlib, which every server and consumer reads; LZ4 and ZSTD need
    /// 4.9.4+ consumers).
    #[serde(deserialize_with = "units::compress_type")]
    pub compress_type: crate::protocol::compression::CompressionType,
    /// Largest body in bytes (default 4 MiB).
    #[serde(deserialize_with = "units::size")]
    pub max_message_size: usize,
    /// Header encoding of requests (default binary; replies are decoded in either).
    #[serde(deserialize_with = "units::header_encoding")]
    pub header_encoding: HeaderEncoding,
    /// Language announced in requests (default `JAVA`; `RUST` breaks servers < 4.9.4).
    #[serde(deserialize_with = "units::language")]
    pub language: LanguageCode,
    /// Version announced in requests (default 407 = 4.9.7).
    pub version: i32,
    /// Topic the broker auto-creates new topics from (default `TBW102`).
    pub create_topic_key: String,
    /// Queue count asked for on auto-creation (default 4).
    pub default_topic_queue_nums: i32,
    /// Route refresh period (default 30 s).
    #[serde(deserialize_with = "units::duration")]
    pub route_refresh_interval: Duration,
    /// Heartbeat period (default 30 s).
    #[serde(deserialize_with = "units::duration")]
    pub heartbeat_interval: Duration,
    /// Address used in the client id and message ids (default: this host's first non-loopback,
    /// non-link-local address, IPv4 and public preferred, as Java's `UtilAll.getIP`; 127.0.0.1
    /// on a host with loopback only). [`crate::Producer::config`] shows the one in use.
    #[serde(deserialize_with = "units::ip")]
    pub client_ip: Option<IpAddr>,
    /// Instance name in the client id (default `<pid>#<nanos>`, like Java's `DEFAULT` rename).
    pub instance_name: Option<String>,
    /// Avoid slow or failed brokers for a while (Java `sendLatencyFaultEnable`, default false).
    pub send_latency_fault_enable: bool,
    /// Latency → not-available table used when `send_latency_fault_enable` (default: Java 5.x).
    pub fault_table: crate::fault_table::FaultTable,
    /// CPUs to run cores on (default all).
    #[serde(deserialize_with = "units::cores")]
    pub cores: CoreSelection,
    /// Settings of every core without an entry in `per_cpu`.
    #[serde(rename = "core_defaults")]
    pub core: CoreConfig,
    /// Settings of the cores on these CPUs (from `[[core]]` entries of a config file).
    #[serde(skip)]
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
