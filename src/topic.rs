//! [`Topic`]: a message's topic name, shared instead of copied.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A topic name that many messages share: cloning it counts a reference, it copies nothing.
///
/// Every [`crate::Message`] names its topic; a sender that builds many messages for one topic
/// makes the `Topic` once and clones it into each (a `String` per message cost an allocation
/// and a free each: a fifth of a core sending batches of small messages). It reads as a `&str`
/// (`Deref`) and compares with `&str` and `String`.
///
/// Clones share one reference count, which the producer core decrements when a send ends: build
/// a `Topic` per sending thread with `Topic::from` (a clone shares its original's count), so
/// that threads do not take turns on one count message by message.
///
/// # Example
///
/// ```
/// use rocketmq_tpc::{Message, Topic};
///
/// let orders = Topic::from("orders");
/// let messages: Vec<Message> = (0..3)
///     .map(|i| Message::new(orders.clone(), format!("order {i}")))
///     .collect();
/// assert_eq!(messages[2].topic, "orders");
/// assert!(messages[1].topic.starts_with("ord"));
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Topic {
    fn default() -> Self {
        Topic::from("")
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Self {
        Topic(Arc::from(name))
    }
}

impl From<&String> for Topic {
    fn from(name: &String) -> Self {
        Topic(Arc::from(name.as_str()))
    }
}

impl From<String> for Topic {
    fn from(name: String) -> Self {
        Topic(Arc::from(name))
    }
}

impl From<Arc<str>> for Topic {
    fn from(name: Arc<str>) -> Self {
        Topic(name)
    }
}

impl From<&Topic> for Topic {
    fn from(topic: &Topic) -> Self {
        topic.clone()
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> Self {
        topic.0.to_string()
    }
}

impl From<Topic> for Arc<str> {
    fn from(topic: Topic) -> Self {
        topic.0
    }
}

impl PartialEq for Topic {
    /// Clones of one `Topic` compare by pointer, without reading the names (`Arc<str>`'s own
    /// comparison always compares the text: its pointer shortcut needs a sized type).
    #[inline]
    fn eq(&self, other: &Topic) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl std::hash::Hash for Topic {
    /// As the name (so that a `Topic` key is found by `&str`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_name_and_compare_as_text() {
        let a = Topic::from("orders");
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0), "a clone copies nothing");
        assert_eq!(a, "orders");
        assert_eq!("orders", a);
        assert_eq!(a, String::from("orders"));
        assert_eq!(String::from("orders"), a);
        assert_eq!(a, Topic::from(String::from("orders")));
        assert_ne!(a, Topic::from("other"));
        assert_ne!(a, Topic::from("order"), "a prefix is another topic");
        assert_eq!(a, b, "clones compare equal (by pointer)");
        assert_eq!(format!("{a} {a:?}"), "orders \"orders\"");
        assert_eq!(String::from(b), "orders");
        assert_eq!(a.len(), 6);
        assert_eq!(Topic::default(), "");
        let set: std::collections::HashSet<Topic> = [a.clone()].into();
        assert!(set.contains("orders"), "looked up by &str");
    }
}
