//! # rocketmq-tpc
//!
//! A thread-per-core Apache RocketMQ producer on glommio (io_uring), wire-compatible with
//! RocketMQ 4.9.x and 5.x NameServers and brokers.
//!
//! ## The model
//!
//! ```text
//!  application threads (any runtime, or none)
//!      │  Producer::send / send_async / send_oneway   (validate, unique id, zlib: on the caller)
//!      ▼
//!  bounded lock-free inbox per core (crossbeam ArrayQueue + AtomicWaker, no mutex)
//!      ▼
//!  core N: pinned thread + glommio LocalExecutor ── owns ──► broker/NameServer connections,
//!          in-flight table, queue-selector shard, retry loop   (Rc/Cell only: no locks, no
//!          shared counters per message)
//!      ▲
//!      └── LocalProducer: code already running on core N sends with no hop at all
//!
//!  route table: immutable snapshot behind an atomic pointer swap, shared by all cores
//! ```
//!
//! Each core keeps one TCP connection per broker, pipelines requests on it and matches answers
//! by opaque. The send path follows the Java `DefaultMQProducer`: route from the NameServer
//! (falling back to `TBW102` for new topics), round-robin queue choice avoiding the broker that
//! just failed, `SEND_MESSAGE_V2`, retries on another broker within one timeout budget, and the
//! broker's answer mapped to a [`SendResult`].
//!
//! Every message gets exactly one outcome: a [`SendResult`] or an [`Error`] that says whether a
//! retry can help ([`Error::is_retryable`]) and whether the message may have been stored anyway
//! ([`Error::outcome`]).
//!
//! ## Requirements
//!
//! Linux with io_uring (5.8+). Each core's glommio executor registers `io_memory` (default
//! 1 MiB) of locked memory in three rings; for non-root users `cores × 3 × io_memory` must fit
//! `ulimit -l` or glommio falls back to unregistered buffers (below 512 KiB it cannot start).
//! Callbacks and futures polled on a producer core must not block it.
//!
//! ## Quick start
//!
//! ```no_run
//! use rocketmq_tpc::{Message, Producer};
//!
//! # fn main() -> Result<(), rocketmq_tpc::Error> {
//! let producer = Producer::builder()
//!     .namesrv("127.0.0.1:9876")
//!     .producer_group("quickstart")
//!     .build()?;
//! let result = producer.send(Message::new("TopicTest", "hello"))?;
//! println!("sent {} to queue {}", result.msg_id, result.queue.queue_id);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod acl;
mod batch_result;
mod client_address;
mod config;
mod engine;
mod error;
mod fault_table;
mod hooks;
mod latency_histogram;
mod local_producer;
mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod namespace;
mod producer;
mod received_message;
mod request_reply;
mod send_future;
mod send_options;
mod send_result;
mod stats;
mod stats_reporter;
mod target;
mod tls;
mod topic;
mod trace;
mod transaction;

// The wire protocol and the route data are the crate's own business; the `internals` feature
// (fuzz targets, benches, the null broker and the tests' read-back) opens them, with no promise
// of stability. Items only those users need say so where they are defined (an `allow(dead_code)`
// without the feature); the modules' convenience re-exports may go unused.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod protocol;
#[cfg(not(feature = "internals"))]
#[allow(unused_imports)]
mod protocol;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod route;
#[cfg(not(feature = "internals"))]
#[allow(unused_imports)]
mod route;

/// Engine internals for benches, fuzz targets and tests only (feature `internals`). Not a stable
/// API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::config::{split_host_port, DEFAULT_IO_MEMORY, DEFAULT_VERSION};
    pub use crate::engine::selector::QueueSelector;
}

pub use acl::AclCredentials;
pub use batch_result::{BatchResult, BatchResultIter};
pub use config::{AutoBatch, CoreConfig, CoreSelection, ProducerConfig, QueueFullPolicy};
pub use engine::resolve::Resolver;
pub use error::{Error, ErrorKind, Outcome, Returned, MAX_REMARK_BYTES};
pub use fault_table::FaultTable;
pub use hooks::{AttemptContext, CheckForbiddenHook, RequestHook, SendHook};
pub use latency_histogram::LatencyHistogram;
pub use local_producer::LocalProducer;
pub use message::{Message, TimerDelivery, MAX_TIMER_MILLIS, MAX_TOPIC_LENGTH};
pub use producer::{Producer, ProducerBuilder, RunHandle, ShutdownReport};
pub use protocol::compression::CompressionType;
pub use protocol::ShortString;
pub use protocol::{HeaderEncoding, LanguageCode, ResponseCode};
pub use received_message::ReceivedMessage;
pub use send_future::{SendFuture, WAIT_MARGIN};
pub use send_options::SendOptions;
pub use send_result::{MessageQueue, SendResult, SendStatus};
pub use stats::{CoreStatsSnapshot, ProducerStats};
pub use target::{java_string_hash, MessageQueueSelector, SendTarget};
pub use tls::TlsOptions;
pub use topic::Topic;
pub use transaction::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
