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
mod client_address;
pub mod config;
pub mod config_file;
mod engine;
pub mod error;
mod hooks;
mod local_producer;
pub mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod namespace;
mod producer;
pub mod protocol;
mod received_message;
mod request_reply;
pub mod route;
mod send_future;
mod send_options;
pub mod send_result;
mod short_string;
pub mod stats;
mod stats_reporter;
mod target;
mod tls;
mod trace;
mod transaction;

/// Engine internals for benches and fuzz targets only (feature `fuzzing`). Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod internals {
    pub use crate::engine::selector::QueueSelector;
}

pub use acl::AclCredentials;
pub use config::{AutoBatch, CoreConfig, CoreSelection, ProducerConfig, QueueFullPolicy};
pub use engine::latency::FaultTable;
pub use engine::resolve::Resolver;
pub use error::{Error, Outcome};
pub use hooks::{AttemptContext, CheckForbiddenHook, RequestHook, SendHook};
pub use local_producer::LocalProducer;
pub use message::{Message, TimerDelivery};
pub use producer::{Producer, ProducerBuilder, RunHandle, ShutdownReport};
pub use received_message::ReceivedMessage;
pub use send_future::{SendFuture, WAIT_MARGIN};
pub use send_options::SendOptions;
pub use send_result::{MessageQueue, SendResult, SendStatus};
pub use short_string::ShortString;
pub use stats::{CoreStatsSnapshot, ProducerStats};
pub use target::{java_string_hash, MessageQueueSelector, SendTarget};
pub use tls::TlsOptions;
pub use transaction::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
