//! [`SendResult`] and [`SendStatus`] (Java `SendResult`, `SendStatus`, `MQClientAPIImpl.processSendResponse`).

use std::sync::Arc;

use crate::protocol::ResponseCode;
use crate::protocol::ShortString;
use crate::topic::Topic;

/// How a broker stored a message it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Stored (response code 0).
    SendOk,
    /// Stored, flush to disk not confirmed in time (10).
    FlushDiskTimeout,
    /// Stored, slave sync not confirmed in time (12).
    FlushSlaveTimeout,
    /// Stored, no slave available (11).
    SlaveNotAvailable,
}

impl SendStatus {
    /// The status for a response code, or `None` when the code is an error.
    pub fn from_response_code(code: ResponseCode) -> Option<Self> {
        match code {
            ResponseCode::Success => Some(SendStatus::SendOk),
            ResponseCode::FlushDiskTimeout => Some(SendStatus::FlushDiskTimeout),
            ResponseCode::FlushSlaveTimeout => Some(SendStatus::FlushSlaveTimeout),
            ResponseCode::SlaveNotAvailable => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        }
    }
}

/// A queue of a topic on one broker (Java `MessageQueue`).
///
/// The names are shared with the producer's route (a [`Topic`] and an `Arc<str>`), so results
/// cost no copies of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageQueue {
    /// Topic.
    pub topic: Topic,
    /// Broker name.
    pub broker_name: Arc<str>,
    /// Queue id on that broker.
    pub queue_id: i32,
}

/// What the broker said about one stored message.
///
/// Ids and the region are [`ShortString`]s (inline, no allocation for the usual lengths); they
/// deref to `str` and compare with `&str` and `String`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// Storage status.
    pub status: SendStatus,
    /// The client-side unique id (`UNIQ_KEY`), 32 hex digits for an IPv4 client.
    pub msg_id: ShortString,
    /// The broker's offset message id (store host + commit-log offset); empty when the broker's
    /// reply did not give one for this message (the message is stored all the same).
    pub offset_msg_id: ShortString,
    /// Where it was stored.
    pub queue: MessageQueue,
    /// Offset in the queue; -1 when the broker's reply header was unreadable (the message is
    /// stored all the same, and `queue` is the queue it was sent to).
    pub queue_offset: i64,
    /// Transaction id, when the broker sets one (5.x sets it to the unique id).
    pub transaction_id: Option<ShortString>,
    /// Broker region (`MSG_REGION`, default `DefaultRegion`).
    pub region_id: ShortString,
    /// Whether tracing is on for the broker (`TRACE_ON`).
    pub trace_on: bool,
}
