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
use crate::error::{Error, Returned};
use crate::message::Message;
use crate::protocol::compression;
use crate::protocol::message_id::UniqueIdGenerator;
use crate::protocol::properties::{self, keys, MAX_PROPERTIES_BYTES};
use crate::protocol::ShortString;

use super::arena_text::ArenaText;

mod batch_answer;
mod batches;
mod extras;
mod reply;

#[cfg(test)]
pub(crate) use batch_answer::answer_for_tests as batch_answer_for_tests;
pub(crate) use batch_answer::{BatchAnswer, OffsetIds};
pub(crate) use batches::{
    prepare_batch, wrapper_properties as batch_wrapper_properties, PreparedBatch,
};
pub(crate) use extras::SendExtras;
pub(crate) use reply::Reply;

/// A validated message with its unique id, final properties string and (maybe) compressed body.
#[derive(Debug, Clone)]
pub(crate) struct PreparedMessage {
    /// The caller's message, kept so a refusal can hand it back (its body is shared, not copied).
    pub original: Message,
    /// The compressed body, when the original is sent compressed (else the original's body is
    /// sent as it is: no second handle on it to count and move): see [`PreparedMessage::body`].
    pub compressed: Option<Bytes>,
    pub sys_flag: i32,
    /// The encoded properties, in this thread's text chunk (no allocation of their own).
    pub properties: ArenaText,
    pub uniq_key: ShortString,
    /// Unix milliseconds when the message was prepared (its unique id carries the same time);
    /// the first attempt's `bornTimestamp`, so it needs no clock read of its own.
    pub born_millis: i64,
    /// What this send adds beyond a plain send (target, namespace, system properties); `None`
    /// for plain sends, so they carry one null pointer.
    pub extras: Option<Box<SendExtras>>,
}

impl PreparedMessage {
    /// The body as sent: the original, or its compressed form.
    #[inline]
    pub(crate) fn body(&self) -> &Bytes {
        self.compressed.as_ref().unwrap_or(&self.original.body)
    }

    /// The topic as sent (with the namespace, when one is configured).
    pub(crate) fn topic(&self) -> &str {
        self.extras
            .as_ref()
            .and_then(|e| e.wire_topic.as_deref())
            .unwrap_or(&self.original.topic)
    }

    /// Whether the automatic batcher may put it in a batch: not for messages the batch rules
    /// exclude (delayed, timed) or whose send is special (a chosen queue, a half message, a
    /// reply).
    pub(crate) fn batchable(&self) -> bool {
        self.original.delay_level == 0
            && self.original.timer.is_none()
            && self
                .extras
                .as_ref()
                .is_none_or(|e| e.target.is_auto() && e.sys_flag == 0 && !e.reply_message)
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
    static THREAD_COMPRESSOR: RefCell<Option<compression::Compressor>> = const { RefCell::new(None) };
    static THREAD_PROPERTIES: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Compresses with this thread's reused compressor.
fn compress(body: &[u8], config: &ProducerConfig) -> Vec<u8> {
    let level = config.compress_level;
    if config.compress_type != compression::CompressionType::Zlib {
        return compression::compress_as(config.compress_type, body, level);
    }
    THREAD_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some(c) if c.level() == level.min(9) => c.compress(body),
            _ => slot
                .insert(compression::Compressor::new(level))
                .compress(body),
        }
    })
}

/// A unique id from this thread's generator (each thread gets its own random instance value, so
/// ids from different threads never collide and no counter is shared).
pub(crate) fn next_unique_id(client_ip: Option<IpAddr>, now_millis: i64) -> ShortString {
    with_id_generator(client_ip, |ids| ids.next_id(now_millis))
}

/// Runs `f` with this thread's id generator (borrowed once for however many ids `f` takes).
fn with_id_generator<R>(
    client_ip: Option<IpAddr>,
    f: impl FnOnce(&mut UniqueIdGenerator) -> R,
) -> R {
    THREAD_IDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let generator = slot.get_or_insert_with(|| {
            UniqueIdGenerator::new(
                client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                std::process::id(),
                random_u32(),
            )
        });
        f(generator)
    })
}

/// Writes the properties string of `message` with its unique id into `props` (cleared first;
/// Java `messageProperties2String` after `sendKernelImpl` set `UNIQ_KEY`), or says why it cannot
/// be sent.
fn encode_properties(
    props: &mut String,
    message: &Message,
    uniq_key: &str,
    extras: Option<&SendExtras>,
) -> Result<(), Error> {
    props.clear();
    for (name, value) in &message.properties {
        properties::push_property(props, name, value);
    }
    if let Some(tags) = &message.tags {
        properties::push_property(props, keys::TAGS, tags);
    }
    if !message.keys.is_empty() {
        properties::push_property(props, keys::KEYS, &message.keys.join(" "));
    }
    properties::push_property(
        props,
        keys::WAIT,
        if message.wait_store_ok {
            "true"
        } else {
            "false"
        },
    );
    if message.delay_level > 0 {
        let mut digits = itoa::Buffer::new();
        properties::push_property(props, keys::DELAY, digits.format(message.delay_level));
    }
    if let Some(timer) = &message.timer {
        let (name, value) = timer.property();
        let mut digits = itoa::Buffer::new();
        properties::push_property(props, name, digits.format(value));
    }
    for (name, value) in extras.map(|e| &e.system_properties[..]).unwrap_or_default() {
        properties::push_property(props, name, value);
    }
    properties::push_property(props, keys::UNIQ_KEY, uniq_key);
    if props.len() > MAX_PROPERTIES_BYTES {
        return Err(Error::invalid_message(format!(
                "the encoded properties are {} bytes, over the broker's {MAX_PROPERTIES_BYTES}-byte limit",
                props.len()
            )));
    }
    Ok(())
}

/// Whether `message`, sent with no options beyond a plain send, goes out exactly as its
/// properties say: no namespace, delay or timer to add, a body below `compress_over`. Such a
/// message may skip [`PreparedMessage`] and be written straight into an automatic batch
/// ([`prepare_plain`]).
#[inline]
pub(crate) fn is_plain(message: &Message, config: &ProducerConfig) -> bool {
    config.namespace.is_none()
        && message.delay_level == 0
        && message.timer.is_none()
        && message.body.len() < config.compress_over
}

/// Validates a plain message ([`is_plain`]), gives it a unique id born at `born_millis` and
/// writes its properties into `props` (cleared first).
pub(crate) fn prepare_plain(
    message: &Message,
    config: &ProducerConfig,
    born_millis: i64,
    props: &mut String,
) -> Result<ShortString, Error> {
    debug_assert!(is_plain(message, config));
    message.validate(config.max_message_size)?;
    let uniq_key = next_unique_id(config.client_ip, born_millis);
    encode_properties(props, message, &uniq_key, None)?;
    Ok(uniq_key)
}

impl PreparedMessage {
    /// A plain message ([`is_plain`]) whose properties [`prepare_plain`] encoded.
    pub(crate) fn plain(
        original: Message,
        properties: &str,
        uniq_key: ShortString,
        born_millis: i64,
    ) -> Self {
        PreparedMessage {
            original,
            compressed: None,
            sys_flag: 0,
            properties: ArenaText::copy(properties),
            uniq_key,
            born_millis,
            extras: None,
        }
    }

    /// A plain message ([`is_plain`]) whose properties [`prepare_plain`] encoded into a scratch
    /// that goes straight onto the wire: it keeps no copy of them (see
    /// [`PreparedMessage::restore_properties`]).
    pub(crate) fn plain_unkept(original: Message, uniq_key: ShortString, born_millis: i64) -> Self {
        PreparedMessage {
            original,
            compressed: None,
            sys_flag: 0,
            properties: ArenaText::default(),
            uniq_key,
            born_millis,
            extras: None,
        }
    }

    /// Gives a message made by [`PreparedMessage::plain_unkept`] its properties again (the same
    /// bytes its first attempt sent: they depend only on the message and its unique id), before
    /// a later attempt or anything else that reads them. Does nothing to a message that kept
    /// them (every encoding has at least `WAIT` and `UNIQ_KEY`, so kept ones are never empty).
    pub(crate) fn restore_properties(&mut self) {
        if !self.properties.is_empty() {
            return;
        }
        let mut props = String::new();
        // It was encoded once already, so it fits.
        if encode_properties(
            &mut props,
            &self.original,
            &self.uniq_key,
            self.extras.as_deref(),
        )
        .is_ok()
        {
            self.properties = ArenaText::copy(&props);
        }
    }
}

/// Validates and prepares `message`; on failure the error hands the message back
/// ([`Error::into_message`]).
pub(crate) fn prepare(
    message: Message,
    config: &ProducerConfig,
    extras: Option<Box<SendExtras>>,
) -> Result<PreparedMessage, Error> {
    prepare_at(message, config, extras, unix_millis())
}

/// [`prepare`] with the born time (Unix milliseconds) given: a recent clock reading.
pub(crate) fn prepare_at(
    message: Message,
    config: &ProducerConfig,
    extras: Option<Box<SendExtras>>,
    born_millis: i64,
) -> Result<PreparedMessage, Error> {
    if let Err(e) = message.validate(config.max_message_size) {
        return Err(e.with_message(message));
    }
    let extras = SendExtras::with_namespace(extras, &message.topic, config);
    if let Some(wire) = extras.as_ref().and_then(|e| e.wire_topic.as_deref()) {
        if let Err(e) = crate::message::validate_topic(wire) {
            return Err(e.with_message(message));
        }
    }
    let uniq_key = next_unique_id(config.client_ip, born_millis);
    let encoded = THREAD_PROPERTIES.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        encode_properties(&mut scratch, &message, &uniq_key, extras.as_deref())
            .map(|()| ArenaText::copy(&scratch))
    });
    let props = match encoded {
        Ok(p) => p,
        Err(e) => return Err(e.with_message(message)),
    };
    let mut flags = extras.as_ref().map_or(0, |e| e.sys_flag);
    let compressed = (message.body.len() >= config.compress_over).then(|| {
        flags |= config.compress_type.sys_flag();
        Bytes::from(compress(&message.body, config))
    });
    Ok(PreparedMessage {
        original: message,
        compressed,
        sys_flag: flags,
        properties: props,
        uniq_key,
        born_millis,
        extras,
    })
}

/// One request's worth of messages.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// SEND_MESSAGE_V2.
    One(PreparedMessage),
    /// SEND_BATCH_MESSAGE.
    Batch(PreparedBatch),
}

impl Outgoing {
    pub(crate) fn topic(&self) -> &str {
        match self {
            Outgoing::One(m) => m.topic(),
            Outgoing::Batch(b) => &b.topic,
        }
    }

    /// Bytes this request pins while in progress (body as sent + properties).
    pub(crate) fn buffered_bytes(&self) -> usize {
        match self {
            Outgoing::One(m) => m.body().len() + m.properties.len(),
            Outgoing::Batch(b) => b.body.len() + b.properties.len(),
        }
    }

    /// Whether it goes to a queue its caller chose for order (one in flight per queue, in the
    /// order sends reach the core).
    pub(crate) fn keeps_order(&self) -> bool {
        self.extras().is_some_and(|e| e.target.keeps_order())
    }

    /// What the send adds beyond a plain send.
    pub(crate) fn extras(&self) -> Option<&SendExtras> {
        match self {
            Outgoing::One(m) => m.extras.as_deref(),
            Outgoing::Batch(b) => b.extras.as_deref(),
        }
    }

    /// The callers' message(s), handed back with a failure.
    pub(crate) fn into_returned(self) -> Returned {
        match self {
            Outgoing::One(m) => Returned::one(m.original),
            Outgoing::Batch(b) => Returned::batch(b.originals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch;
    use batches::wrapper_properties;

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
        let p = prepare(m, &config(), None).unwrap();
        let map = properties::decode(&p.properties);
        assert_eq!(map["TAGS"], "t");
        assert_eq!(map["KEYS"], "k1 k2");
        assert_eq!(map["WAIT"], "true");
        assert_eq!(map["p"], "v");
        assert_eq!(map["UNIQ_KEY"], p.uniq_key);
        assert_eq!(p.uniq_key.len(), 32);
        assert_eq!(p.sys_flag, 0x301);
        assert_eq!(
            compression::decompress(p.body(), 1000).unwrap(),
            vec![b'a'; 100]
        );
        let small = prepare(Message::new("T", "tiny"), &config(), None).unwrap();
        assert_eq!(small.sys_flag, 0);
        assert_ne!(small.uniq_key, p.uniq_key);
    }

    #[test]
    fn refused_message_comes_back() {
        let err = prepare(Message::new("bad topic", "x"), &config(), None).unwrap_err();
        assert!(matches!(err, Error::InvalidMessage { .. }));
        assert_eq!(err.into_message().expect("handed back").topic, "bad topic");
        let huge = Message::new("T", "x").with_property("big", "v".repeat(40_000));
        assert!(prepare(huge, &config(), None).is_err());
    }

    #[test]
    fn batch_rules() {
        let c = config();
        let ok = vec![Message::new("T", "a"), Message::new("T", "b")];
        let b = prepare_batch(ok, &c, None).unwrap();
        assert_eq!(b.uniq_keys.len(), 2);
        assert_ne!(b.uniq_keys[0], b.uniq_keys[1]);
        assert_eq!(b.properties, "WAIT\u{1}true");
        for wait in [true, false] {
            let encoded = properties::encode([(keys::WAIT, if wait { "true" } else { "false" })]);
            assert_eq!(wrapper_properties(wait), encoded);
        }
        let records = batch::decode(b.body.clone()).unwrap();
        assert_eq!(&records[1].body[..], b"b");
        assert_eq!(
            properties::decode(&records[0].properties)["UNIQ_KEY"],
            b.uniq_keys[0]
        );
        // 2 bytes < compress_over 10: plain.
        assert_eq!(b.sys_flag, 0);
        // Mean body 6 bytes < compress_over 10: plain, though the total (12) reaches it.
        let small_mean = vec![Message::new("T", "aaaaaa"), Message::new("T", "bbbbbb")];
        assert_eq!(prepare_batch(small_mean, &c, None).unwrap().sys_flag, 0);
        let big = vec![
            Message::new("T", "aaaaaaaaaaaa"),
            Message::new("T", "bbbbbbbbbb"),
        ];
        let b = prepare_batch(big, &c, None).unwrap();
        assert_eq!(b.sys_flag, compression::CompressionType::Zlib.sys_flag());
        let records = batch::decode(b.body.clone()).unwrap();
        assert_eq!(
            compression::decompress(&records[0].body, 100).unwrap(),
            b"aaaaaaaaaaaa"
        );
        for kind in [
            compression::CompressionType::Lz4,
            compression::CompressionType::Zstd,
        ] {
            let mut typed = c.clone();
            typed.compress_type = kind;
            let m = prepare(Message::new("T", vec![b'z'; 100]), &typed, None).unwrap();
            assert_eq!(m.sys_flag, kind.sys_flag());
            assert_eq!(
                compression::decompress_by_flag(m.sys_flag, m.body(), 100).unwrap(),
                vec![b'z'; 100]
            );
        }
        for (bad, why) in [
            (vec![], "at least one"),
            (
                vec![Message::new("T", "a"), Message::new("U", "b")],
                "topic",
            ),
            (vec![Message::new("T", "a").with_delay_level(2)], "delay"),
            (
                vec![
                    Message::new("T", "a"),
                    Message::new("T", "b").with_wait_store_ok(false),
                ],
                "wait",
            ),
            (vec![Message::new("%RETRY%g", "a")], "retry"),
            (vec![Message::new("T", "")], "empty"),
            (
                vec![Message::new("T", "a"), Message::new("T", "")],
                "message 1 of the batch",
            ),
            (
                vec![
                    Message::new("bad topic", "a"),
                    Message::new("bad topic", "b"),
                ],
                "message 0 of the batch",
            ),
        ] {
            let e = prepare_batch(bad, &c, None).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut small = c.clone();
        small.max_message_size = 50;
        let e = prepare_batch(vec![Message::new("T", "x"); 3], &small, None).unwrap_err();
        assert!(e.to_string().contains("batch encodes"), "{e}");
    }
}
