//! Which queue a send goes to: the producer's own choice, an explicit queue, or a selector
//! (Java `send(msg, mq)`, `send(msg, selector, arg)`, `SelectMessageQueueByHash`,
//! `SelectMessageQueueByRandom`).
//!
//! ```text
//!  SendTarget::Auto        round robin over the publish queues, avoiding the broker that just
//!                          failed; retries on another broker within the budget
//!  SendTarget::Queue(q)    exactly q; one attempt (Java's rule)
//!  SendTarget::ByKey(k)    queues[java_hash(k) % n]: a key's messages share one queue, one core
//!                          and one connection, so they are stored in send order
//!  SendTarget::Random / RoundRobin / Selector(f)   one attempt on the queue they pick
//! ```

use std::fmt;
use std::sync::Arc;

use crate::message::Message;
use crate::send_result::MessageQueue;

/// Picks the queue of a send from the topic's publish queues (Java `MessageQueueSelector`).
///
/// The queues are those [`crate::Producer::fetch_publish_queues`] returns: brokers in name
/// order, each broker's writable queues in id order. Return `None` (or a queue not in the list),
/// or panic, and the send fails with [`crate::Error::InvalidTarget`] (the message handed back).
///
/// Runs on a producer core: it must be quick and must not block.
pub trait MessageQueueSelector: Send + Sync {
    /// The queue for `message`.
    fn select(&self, queues: &[MessageQueue], message: &Message) -> Option<MessageQueue>;
}

impl<F> MessageQueueSelector for F
where
    F: Fn(&[MessageQueue], &Message) -> Option<MessageQueue> + Send + Sync,
{
    fn select(&self, queues: &[MessageQueue], message: &Message) -> Option<MessageQueue> {
        self(queues, message)
    }
}

/// Where a send goes.
///
/// # Example
///
/// ```no_run
/// use rocketmq_tpc::{Message, Producer, SendOptions, SendTarget};
///
/// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
/// // Every event of order 42 lands on the same queue, in the order sent.
/// for step in ["created", "paid", "shipped"] {
///     let options = SendOptions::new().target(SendTarget::by_key("order-42"));
///     producer.send_with(Message::new("orders", step), options)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub enum SendTarget {
    /// The producer chooses: round robin, fault-aware, retried on another broker.
    #[default]
    Auto,
    /// Exactly this queue of the message's topic.
    Queue(MessageQueue),
    /// The queue Java's `SelectMessageQueueByHash` picks for this key (`String.hashCode` of
    /// the key, modulo the number of publish queues). The key also picks the core, so one key's
    /// messages keep their order end to end.
    ByKey(String),
    /// A random publish queue (Java `SelectMessageQueueByRandom`).
    Random,
    /// The next publish queue of this core's round robin, without retries on another broker.
    RoundRobin,
    /// A caller-supplied selector.
    Selector(Arc<dyn MessageQueueSelector>),
}

impl SendTarget {
    /// [`SendTarget::ByKey`] from anything string-like.
    pub fn by_key(key: impl Into<String>) -> Self {
        SendTarget::ByKey(key.into())
    }

    /// [`SendTarget::Selector`] from a closure.
    pub fn selector<F>(f: F) -> Self
    where
        F: Fn(&[MessageQueue], &Message) -> Option<MessageQueue> + Send + Sync + 'static,
    {
        SendTarget::Selector(Arc::new(f))
    }

    /// Whether the producer chooses the queue (and may retry on another broker).
    pub fn is_auto(&self) -> bool {
        matches!(self, SendTarget::Auto)
    }

    /// Whether sends with this target keep their order: one request in flight per queue, in the
    /// order the sends reached their core (`ByKey`, `Queue`, `Selector`).
    pub(crate) fn keeps_order(&self) -> bool {
        matches!(
            self,
            SendTarget::ByKey(_) | SendTarget::Queue(_) | SendTarget::Selector(_)
        )
    }

    /// The core a targeted send should run on, when the target pins one: the same key or
    /// queue always maps to the same core, so its messages share one connection.
    pub(crate) fn core_hint(&self) -> Option<u64> {
        match self {
            SendTarget::ByKey(key) => Some(java_string_hash(key) as u32 as u64),
            SendTarget::Queue(q) => Some(
                (java_string_hash(&q.broker_name) as u32 as u64)
                    .wrapping_mul(31)
                    .wrapping_add(q.queue_id as u32 as u64),
            ),
            _ => None,
        }
    }
}

impl fmt::Debug for SendTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTarget::Auto => f.write_str("Auto"),
            SendTarget::Queue(q) => f.debug_tuple("Queue").field(q).finish(),
            SendTarget::ByKey(k) => f.debug_tuple("ByKey").field(k).finish(),
            SendTarget::Random => f.write_str("Random"),
            SendTarget::RoundRobin => f.write_str("RoundRobin"),
            SendTarget::Selector(_) => f.write_str("Selector(..)"),
        }
    }
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// The index `SelectMessageQueueByHash` picks among `n` queues for `key`
/// (`abs(hashCode % n)`).
pub fn index_by_hash(key: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    (java_string_hash(key) % n).unsigned_abs() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_golden() {
        // Values of java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("order-42"), 1_234_255_197);
        // Non-ASCII hashes UTF-16 code units: "é" is U+00E9, "😀" the surrogates D83D DE00.
        assert_eq!(java_string_hash("é"), 0xE9);
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn index_like_select_message_queue_by_hash() {
        // Java: value = hashCode % size; if (value < 0) value = Math.abs(value).
        assert_eq!(index_by_hash("order-42", 8), 1_234_255_197 % 8);
        assert_eq!(index_by_hash("polygenelubricants", 8), 0);
        assert_eq!(
            index_by_hash("polygenelubricants", 7),
            (i32::MIN % 7).unsigned_abs() as usize
        );
        assert_eq!(index_by_hash("x", 0), 0);
        for key in ["a", "b", "order-1", "ключ"] {
            assert!(index_by_hash(key, 5) < 5);
        }
    }
}
