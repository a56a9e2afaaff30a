//! [`SendOptions`]: the per-call settings every send mode takes.

use std::time::Duration;

use crate::target::SendTarget;

/// Per-call options of a send (sync, async, oneway or batch).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use rocketmq_tpc::{SendOptions, SendTarget};
///
/// let options = SendOptions::new()
///     .timeout(Duration::from_millis(500))
///     .target(SendTarget::by_key("customer-7"));
/// assert!(!options.target.is_auto());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// Budget of this message instead of `ProducerConfig::send_timeout`.
    pub timeout: Option<Duration>,
    /// Which queue the message goes to (default: the producer chooses).
    pub target: SendTarget,
    /// Messages with the same key go to the same core (and so keep their relative order on that
    /// core's connection). Without a key, a [`SendTarget::ByKey`] or [`SendTarget::Queue`] target
    /// picks the core; otherwise each calling thread spreads its messages over the cores.
    pub sharding_key: Option<u64>,
    /// Whether a send with a target other than [`SendTarget::Auto`] may be retried (on the queue
    /// the target picks again) within its budget. Off by default, as in the Java client, where a
    /// send to a chosen queue makes exactly one attempt.
    pub retry_targeted: bool,
}

impl SendOptions {
    /// Options with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the budget of this send. Any duration is accepted: one beyond 100 years (up to
    /// `Duration::MAX`) counts as 100 years, that is, no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the target queue or selector.
    pub fn target(mut self, target: SendTarget) -> Self {
        self.target = target;
        self
    }

    /// Sets the sharding key that picks the core.
    pub fn sharding_key(mut self, key: u64) -> Self {
        self.sharding_key = Some(key);
        self
    }

    /// Allows retries of a targeted send.
    pub fn retry_targeted(mut self, retry: bool) -> Self {
        self.retry_targeted = retry;
        self
    }
}
