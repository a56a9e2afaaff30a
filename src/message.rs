//! [`Message`]: what a caller hands over, and the validation rules it must pass
//! (Java `Message`, `Validators.checkMessage`, `TopicValidator`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::Error;
use crate::protocol::properties;
use crate::topic::Topic;

/// Longest topic name a broker accepts (`TopicValidator.TOPIC_MAX_LENGTH`).
pub const MAX_TOPIC_LENGTH: usize = 127;

/// Topics a client may never send to (`TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
pub const SEND_FORBIDDEN_TOPICS: &[&str] = &[
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// Largest timer value accepted before sending (a deliver time or delay in milliseconds beyond
/// this is a mistake, not a schedule; the broker applies its own `timerMaxDelaySec`, 3 days by
/// default).
pub const MAX_TIMER_MILLIS: u64 = i64::MAX as u64 / 2;

/// A message to send.
///
/// The body is [`Bytes`], so cloning a message or keeping it for a retry never copies the payload.
///
/// # Example
///
/// ```
/// use rocketmq_tpc::Message;
///
/// let message = Message::new("orders", "hello")
///     .with_tags("created")
///     .with_keys(["order-42"])
///     .with_property("region", "eu");
/// assert_eq!(message.topic, "orders");
/// ```
///
/// Its `Debug` output shows the body's and the properties' sizes, never their contents (an
/// [`Error`] that hands a message back is often logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name: 1–127 characters from `[%|a-zA-Z0-9_-]`. A shared [`Topic`] (it was a
    /// `String`): build one per topic and sending thread, and clone it into each message.
    pub topic: Topic,
    /// Payload; must not be empty and at most `max_message_size` bytes (default 4 MiB).
    pub body: Bytes,
    /// Optional tag (property `TAGS`).
    pub tags: Option<String>,
    /// Optional keys, sent space-separated (property `KEYS`).
    pub keys: Vec<String>,
    /// User properties, in the order they were added. Reserved names are refused at send time.
    pub properties: Vec<(String, String)>,
    /// User flag, stored with the message (default 0).
    pub flag: i32,
    /// Delay level 1–18 (property `DELAY`); 0 = deliver at once (default).
    pub delay_level: u8,
    /// Whether the broker should answer only after storing (property `WAIT`, default true).
    pub wait_store_ok: bool,
    /// RocketMQ 5.x timer delivery (`TIMER_DELIVER_MS` / `TIMER_DELAY_MS`); `None` = at once.
    /// Brokers without a timer store refuse it with `WHEEL_TIMER_NOT_ENABLE`.
    pub timer: Option<TimerDelivery>,
}

/// When a RocketMQ 5.x timer message becomes visible (Java `Message.setDeliverTimeMs`,
/// `setDelayTimeMs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerDelivery {
    /// At this wall-clock time (property `TIMER_DELIVER_MS`, Unix milliseconds).
    At(SystemTime),
    /// This long after the broker stores it (property `TIMER_DELAY_MS`, milliseconds).
    After(Duration),
}

impl TimerDelivery {
    /// The property that carries it, and its value.
    pub(crate) fn property(&self) -> (&'static str, u64) {
        match self {
            TimerDelivery::At(at) => (
                properties::keys::TIMER_DELIVER_MS,
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64),
            ),
            TimerDelivery::After(delay) => (
                properties::keys::TIMER_DELAY_MS,
                delay.as_millis().min(u64::MAX as u128) as u64,
            ),
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let property_bytes: usize = self.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("tags", &self.tags)
            .field("keys", &self.keys)
            .field(
                "properties",
                &format_args!(
                    "<{} properties, {property_bytes} bytes>",
                    self.properties.len()
                ),
            )
            .field("flag", &self.flag)
            .field("delay_level", &self.delay_level)
            .field("wait_store_ok", &self.wait_store_ok)
            .field("timer", &self.timer)
            .finish()
    }
}

impl Message {
    /// A message with a topic and a body; everything else at its default. The topic is a
    /// `&str`, a `String` or a shared [`Topic`] (cloning one copies nothing).
    pub fn new(topic: impl Into<Topic>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            tags: None,
            keys: Vec::new(),
            properties: Vec::new(),
            flag: 0,
            delay_level: 0,
            wait_store_ok: true,
            timer: None,
        }
    }

    /// Sets the tag.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Sets the keys.
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// Sets the user flag.
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// Sets the delay level (1–18; 0 = none).
    pub fn with_delay_level(mut self, level: u8) -> Self {
        self.delay_level = level;
        self
    }

    /// Makes this a RocketMQ 5.x timer message delivered at `at`.
    pub fn with_deliver_at(mut self, at: SystemTime) -> Self {
        self.timer = Some(TimerDelivery::At(at));
        self
    }

    /// Makes this a RocketMQ 5.x timer message delivered `delay` after it is stored.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.timer = Some(TimerDelivery::After(delay));
        self
    }

    /// Sets whether the broker answers only after storing.
    pub fn with_wait_store_ok(mut self, wait: bool) -> Self {
        self.wait_store_ok = wait;
        self
    }

    /// Checks the rules the Java client and the broker apply before storing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] naming the broken rule.
    pub fn validate(&self, max_message_size: usize) -> Result<(), Error> {
        validate_topic(&self.topic)?;
        self.validate_content(max_message_size)
    }

    /// [`Message::validate`] but the topic (for the members of a batch, whose topic is the
    /// first member's, checked once).
    pub(crate) fn validate_content(&self, max_message_size: usize) -> Result<(), Error> {
        if self.body.is_empty() {
            return Err(invalid("the message body is empty"));
        }
        if self.body.len() > max_message_size {
            return Err(invalid(format!(
                "the message body is {} bytes, over the {max_message_size}-byte maximum",
                self.body.len()
            )));
        }
        if self.delay_level > 18 {
            return Err(invalid(format!(
                "delay level {} is outside 0..=18",
                self.delay_level
            )));
        }
        if let Some(timer) = &self.timer {
            if self.delay_level > 0 {
                return Err(invalid(
                    "a message takes a delay level or a timer delivery, not both",
                ));
            }
            let (_, millis) = timer.property();
            if millis == 0 || millis > MAX_TIMER_MILLIS {
                return Err(invalid(format!(
                    "the timer value {millis} ms is outside 1..={MAX_TIMER_MILLIS}"
                )));
            }
        }
        let check_text = |what: &str, text: &str| {
            if text.contains([
                properties::NAME_VALUE_SEPARATOR,
                properties::PROPERTY_SEPARATOR,
            ]) {
                Err(invalid(format!(
                    "{what} {text:?} contains a 0x01 or 0x02 separator byte"
                )))
            } else {
                Ok(())
            }
        };
        if let Some(tags) = &self.tags {
            check_text("tag", tags)?;
        }
        for key in &self.keys {
            check_text("key", key)?;
            if key.contains(' ') {
                return Err(invalid(format!(
                    "key {key:?} contains a space, which separates keys"
                )));
            }
        }
        for (name, value) in &self.properties {
            if name.trim().is_empty() || value.trim().is_empty() {
                return Err(invalid(format!(
                    "property {name:?} has a blank name or value"
                )));
            }
            if properties::is_reserved(name) {
                return Err(invalid(format!(
                    "property name {name:?} is reserved by RocketMQ"
                )));
            }
            check_text("property", name)?;
            check_text("property value", value)?;
        }
        Ok(())
    }
}

/// Checks a topic name (Java `Validators.checkTopic` + `TopicValidator.isNotAllowedSendTopic`).
///
/// # Errors
///
/// [`Error::InvalidMessage`] naming the broken rule.
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    // Fast path, one pass over the bytes: a non-empty name of allowed bytes (no blanks among
    // them) within the length limit only needs the system-topic check.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-');
    if !topic.is_empty() && topic.len() <= MAX_TOPIC_LENGTH && topic.bytes().all(allowed) {
        if SEND_FORBIDDEN_TOPICS.contains(&topic) {
            return Err(invalid(format!(
                "the topic {topic} is a system topic that clients may not send to"
            )));
        }
        return Ok(());
    }
    // Slow path: say exactly what is wrong.
    if topic.trim().is_empty() {
        return Err(invalid("the topic is blank"));
    }
    if topic.len() > MAX_TOPIC_LENGTH {
        return Err(invalid(format!(
            "the topic is {} characters, over the {MAX_TOPIC_LENGTH}-character maximum",
            topic.len()
        )));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(invalid(format!(
            "the topic {topic:?} contains {bad:?}; only [%|a-zA-Z0-9_-] are allowed"
        )));
    }
    if SEND_FORBIDDEN_TOPICS.contains(&topic) {
        return Err(invalid(format!(
            "the topic {topic} is a system topic that clients may not send to"
        )));
    }
    Ok(())
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid_message(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(m: &Message) -> String {
        m.validate(16).unwrap_err().to_string()
    }

    #[test]
    fn rules() {
        assert!(Message::new("T_a-1%|x", "b").validate(16).is_ok());
        assert!(reason(&Message::new("", "b")).contains("blank"));
        assert!(reason(&Message::new("a b", "b")).contains("' '"));
        assert!(reason(&Message::new("x".repeat(128), "b")).contains("127"));
        assert!(reason(&Message::new("SCHEDULE_TOPIC_XXXX", "b")).contains("system topic"));
        assert!(reason(&Message::new("T", "")).contains("empty"));
        assert!(reason(&Message::new("T", vec![0u8; 17])).contains("maximum"));
        assert!(
            reason(&Message::new("T", "b").with_property("UNIQ_KEY", "x")).contains("reserved")
        );
        assert!(reason(&Message::new("T", "b").with_property("a", " ")).contains("blank"));
        assert!(reason(&Message::new("T", "b").with_tags("a\u{1}")).contains("separator"));
        assert!(reason(&Message::new("T", "b").with_keys(["a b"])).contains("space"));
        assert!(reason(&Message::new("T", "b").with_delay_level(19)).contains("delay"));
    }
}
