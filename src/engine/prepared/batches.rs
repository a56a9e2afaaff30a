//! Explicit batches (Java `MessageBatch`): the batch rules, one unique id per message, the
//! bodies compressed together or not at all, and the wrapper properties the automatic batcher
//! gives its batches too.

use bytes::Bytes;

use super::{compress, encode_properties, unix_millis, with_id_generator, SendExtras};
use crate::config::ProducerConfig;
use crate::error::Error;
use crate::message::Message;
use crate::protocol::batch;
use crate::protocol::properties;
use crate::protocol::ShortString;
use crate::target::SendTarget;

/// A SEND_BATCH_MESSAGE ready to go: its messages, their ids and the encoded body
/// (Java `MessageBatch` + `MessageDecoder.encodeMessages`).
#[derive(Debug, Clone)]
pub(crate) struct PreparedBatch {
    /// The topic as sent (with the namespace, when one is configured).
    pub topic: crate::Topic,
    pub uniq_keys: Vec<ShortString>,
    pub body: Bytes,
    pub sys_flag: i32,
    /// Wrapper properties: `WAIT`, like the 4.9.7 client (accepted by 4.9.x and 5.x), plus
    /// `INSTANCE_ID` under a namespace.
    pub properties: std::borrow::Cow<'static, str>,
    /// Target and namespace of the batch, as for single messages.
    pub extras: Option<Box<SendExtras>>,
    /// The callers' messages, in order, handed back when the batch fails (bodies shared).
    pub originals: Vec<Message>,
}

/// The wrapper properties of a batch (`WAIT` only).
pub(crate) fn wrapper_properties(wait: bool) -> &'static str {
    if wait {
        "WAIT\u{1}true"
    } else {
        "WAIT\u{1}false"
    }
}

/// Checks the Java batch rules (`MessageBatch.generateFromList`, `DefaultMQProducer.batch`).
fn check_batch_rules(messages: &[Message], config: &ProducerConfig) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::invalid_message(reason));
    let Some(first) = messages.first() else {
        return invalid("a batch needs at least one message".into());
    };
    for (i, m) in messages.iter().enumerate() {
        // The first message's topic is checked once; the others must be the same.
        if i > 0 && m.topic != first.topic {
            return invalid(format!(
                "message {i} of the batch is for topic {}, the batch is for {}",
                m.topic, first.topic
            ));
        }
        let valid = if i == 0 {
            m.validate(config.max_message_size)
        } else {
            m.validate_content(config.max_message_size)
        };
        valid.map_err(|e| Error::invalid_message(format!("message {i} of the batch: {e}")))?;
        if m.delay_level > 0 {
            return invalid(format!(
                "message {i} of the batch has a delay level; batches cannot be delayed"
            ));
        }
        if m.wait_store_ok != first.wait_store_ok {
            return invalid(format!(
                "message {i} of the batch has another wait-store flag than the first"
            ));
        }
    }
    if first.topic.starts_with("%RETRY%") {
        return invalid("batches cannot be sent to a retry topic".into());
    }
    Ok(())
}

/// Prepares an explicit batch: every message gets its own unique id; when the bodies together
/// reach `compress_over`, every inner body is zlib-compressed and the wrapper says so.
pub(crate) fn prepare_batch(
    messages: Vec<Message>,
    config: &ProducerConfig,
    extras: Option<Box<SendExtras>>,
) -> Result<PreparedBatch, Error> {
    match build_batch(&messages, config, extras) {
        Ok(mut batch) => {
            batch.originals = messages;
            Ok(batch)
        }
        Err(e) => Err(e.with_messages(messages)),
    }
}

fn build_batch(
    messages: &[Message],
    config: &ProducerConfig,
    extras: Option<Box<SendExtras>>,
) -> Result<PreparedBatch, Error> {
    check_batch_rules(messages, config)?;
    if let Some(SendTarget::Selector(_)) = extras.as_ref().map(|e| &e.target) {
        return Err(Error::InvalidTarget { returned: crate::error::Returned::NOTHING,
            reason: "a selector picks a queue per message; give a batch a Queue, ByKey, Random or RoundRobin target".into(),
        });
    }
    let extras = SendExtras::with_namespace(extras, &messages[0].topic, config);
    if let Some(wire) = extras.as_ref().and_then(|e| e.wire_topic.as_deref()) {
        crate::message::validate_topic(wire)?;
    }
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    // Inner bodies are compressed when their mean size reaches `compress_over` (decisions.md):
    // small bodies one by one cost far more CPU than they save.
    let compressed = total / messages.len() >= config.compress_over;
    let mut body = bytes::BytesMut::with_capacity(total + messages.len() * 96);
    let mut uniq_keys = Vec::with_capacity(messages.len());
    let mut props = String::with_capacity(128);
    // One clock reading and one borrow of the id generator for the whole batch: the ids differ
    // by their counter, as Java's do within a millisecond.
    let born_millis = unix_millis();
    with_id_generator(config.client_ip, |ids| {
        for m in messages {
            let uniq_key = ids.next_id(born_millis);
            encode_properties(&mut props, m, &uniq_key, None)?;
            if compressed {
                let packed = compress(&m.body, config);
                batch::encode_record(&mut body, m.flag, &packed, &props);
            } else {
                batch::encode_record(&mut body, m.flag, &m.body, &props);
            }
            uniq_keys.push(uniq_key);
        }
        Ok::<(), Error>(())
    })?;
    if body.len() > config.max_message_size {
        return Err(Error::invalid_message(format!(
            "the batch encodes to {} bytes, over the {}-byte maximum",
            body.len(),
            config.max_message_size
        )));
    }
    let first = &messages[0];
    let mut properties = std::borrow::Cow::Borrowed(wrapper_properties(first.wait_store_ok));
    for (name, value) in extras.iter().flat_map(|e| &e.system_properties) {
        properties::push_property(properties.to_mut(), name, value);
    }
    Ok(PreparedBatch {
        topic: extras
            .as_ref()
            .and_then(|e| e.wire_topic.as_deref().map(crate::Topic::from))
            .unwrap_or_else(|| first.topic.clone()),
        properties,
        sys_flag: if compressed {
            config.compress_type.sys_flag()
        } else {
            0
        },
        body: body.freeze(),
        uniq_keys,
        extras,
        originals: Vec::new(),
    })
}
