//! The I/O layer: per-core glommio executors, their connections, and the hand-off from
//! application threads. Everything per message is core-local (`Rc`, `Cell`, `RefCell`).

pub(crate) mod arena_text;
pub(crate) mod batcher;
pub(crate) mod broker_requests;
pub(crate) mod connection;
pub(crate) mod control;
pub(crate) mod core;
pub(crate) mod deadline;
pub(crate) mod flush_gate;
pub(crate) mod guarded;
pub(crate) mod in_flight;
pub(crate) mod inbox;
pub(crate) mod latency;
pub(crate) mod local_send;
pub(crate) mod order_gate;
pub(crate) mod prepared;
pub(crate) mod records;
pub(crate) mod reply_slots;
pub(crate) mod reply_target;
pub(crate) mod resolve;
pub(crate) mod selector;
pub(crate) mod send;
pub(crate) mod send_wire;
pub(crate) mod single_flight;
pub(crate) mod stats;
pub(crate) mod target_queue;
pub(crate) mod text_hasher;
pub(crate) mod transaction_end;
pub(crate) mod wall_clock;
