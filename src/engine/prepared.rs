//! Turning a [`Message`] into what goes on the wire, once, before the first attempt
//! (Java `DefaultMQProducerImpl.sendKernelImpl` up to the request header).
//!
//! For sends from application threads this runs on the caller's thread, so compressing a large
//! body never stalls the I/O of a producer core.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::ProducerConfig;
use crate::error::Error;
use crate::message::Message;
use crate::protocol::compression::{self, sys_flag};
use crate::protocol::message_id::UniqueIdGenerator;
use crate::protocol::properties::{self, keys, MAX_PROPERTIES_BYTES};

/// A validated message with its unique id, final properties string and (maybe) compressed body.
#[derive(Debug, Clone)]
pub(crate) struct PreparedMessage {
    /// The caller's message, kept so a refusal can hand it back (its body is shared, not copied).
    pub original: Message,
    /// The body as sent: the original, or its zlib form.
    pub body: Bytes,
    pub sys_flag: i32,
    pub properties: String,
    pub uniq_key: String,
}

impl PreparedMessage {
    pub(crate) fn topic(&self) -> &str {
        &self.original.topic
    }
}

/// Unix time in milliseconds.
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random 32-bit value without a random-number crate: std's per-process hash keys are random.
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_millis() as u64);
    h.finish() as u32
}

thread_local! {
    static THREAD_IDS: RefCell<Option<UniqueIdGenerator>> = const { RefCell::new(None) };
}

/// A unique id from this thread's generator (each thread gets its own random instance value, so
/// ids from different threads never collide and no counter is shared).
pub(crate) fn next_unique_id(client_ip: Option<IpAddr>) -> String {
    THREAD_IDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let generator = slot.get_or_insert_with(|| {
            UniqueIdGenerator::new(
                client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                std::process::id(),
                random_u32(),
            )
        });
        generator.next_id(unix_millis())
    })
}

/// Validates and prepares `message`; on failure the message comes back with the error.
pub(crate) fn prepare(
    message: Message,
    config: &ProducerConfig,
) -> Result<PreparedMessage, Box<(Error, Message)>> {
    if let Err(e) = message.validate(config.max_message_size) {
        return Err(Box::new((e, message)));
    }
    let uniq_key = next_unique_id(config.client_ip);
    let mut props = String::with_capacity(64);
    for (name, value) in &message.properties {
        properties::push_property(&mut props, name, value);
    }
    if let Some(tags) = &message.tags {
        properties::push_property(&mut props, keys::TAGS, tags);
    }
    if !message.keys.is_empty() {
        properties::push_property(&mut props, keys::KEYS, &message.keys.join(" "));
    }
    properties::push_property(
        &mut props,
        keys::WAIT,
        if message.wait_store_ok {
            "true"
        } else {
            "false"
        },
    );
    if message.delay_level > 0 {
        let mut digits = itoa::Buffer::new();
        properties::push_property(&mut props, keys::DELAY, digits.format(message.delay_level));
    }
    properties::push_property(&mut props, keys::UNIQ_KEY, &uniq_key);
    if props.len() > MAX_PROPERTIES_BYTES {
        let reason = format!(
            "the encoded properties are {} bytes, over the broker's {MAX_PROPERTIES_BYTES}-byte limit",
            props.len()
        );
        return Err(Box::new((Error::InvalidMessage { reason }, message)));
    }
    let mut flags = 0;
    let body = if message.body.len() >= config.compress_over {
        flags |= sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB;
        Bytes::from(compression::compress(&message.body, config.compress_level))
    } else {
        message.body.clone()
    };
    Ok(PreparedMessage {
        original: message,
        body,
        sys_flag: flags,
        properties: props,
        uniq_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProducerConfig {
        ProducerConfig {
            producer_group: "pg".into(),
            namesrv_addrs: vec!["127.0.0.1:1".into()],
            compress_over: 10,
            ..Default::default()
        }
    }

    #[test]
    fn properties_and_compression() {
        let m = Message::new("T", vec![b'a'; 100])
            .with_tags("t")
            .with_keys(["k1", "k2"])
            .with_property("p", "v");
        let p = prepare(m, &config()).unwrap();
        let map = properties::decode(&p.properties);
        assert_eq!(map["TAGS"], "t");
        assert_eq!(map["KEYS"], "k1 k2");
        assert_eq!(map["WAIT"], "true");
        assert_eq!(map["p"], "v");
        assert_eq!(map["UNIQ_KEY"], p.uniq_key);
        assert_eq!(p.uniq_key.len(), 32);
        assert_eq!(p.sys_flag, 0x301);
        assert_eq!(
            compression::decompress(&p.body, 1000).unwrap(),
            vec![b'a'; 100]
        );
        let small = prepare(Message::new("T", "tiny"), &config()).unwrap();
        assert_eq!(small.sys_flag, 0);
        assert_ne!(small.uniq_key, p.uniq_key);
    }

    #[test]
    fn refused_message_comes_back() {
        let (err, back) = *prepare(Message::new("bad topic", "x"), &config()).unwrap_err();
        assert!(matches!(err, Error::InvalidMessage { .. }));
        assert_eq!(back.topic, "bad topic");
        let huge = Message::new("T", "x").with_property("big", "v".repeat(40_000));
        assert!(prepare(huge, &config()).is_err());
    }
}
