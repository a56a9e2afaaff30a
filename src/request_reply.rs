//! Request-reply (Java `DefaultMQProducer.request`, `MessageUtil.createReplyMessage`).
//!
//! ```text
//!  requester: request(msg, timeout)
//!     heartbeat the topic's brokers once (they must know this client id) ─► send msg with
//!     CORRELATION_ID (random UUID), REPLY_TO_CLIENT (client id), TTL (ms) ─► wait
//!  responder: consumes msg ─► send_reply(&msg, body): topic <CLUSTER>_REPLY_TOPIC,
//!     MSG_TYPE=reply, same CORRELATION_ID / REPLY_TO_CLIENT / TTL, code 325
//!  broker ─► PUSH_REPLY_MESSAGE_TO_CLIENT to the requester's heartbeat connection
//!     ─► the waiting request() resolves (or fails with ReplyTimeout, checked every 500 ms)
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use crate::engine::inbox::SendMode;
use crate::engine::prepared::{random_u32, Reply, SendExtras};
use crate::error::Error;
use crate::message::Message;
use crate::producer::Producer;
use crate::protocol::properties::keys;
use crate::received_message::ReceivedMessage;
use crate::send_options::SendOptions;
use crate::send_result::SendResult;

/// A random UUID in its text form (Java `CorrelationIdUtil.createCorrelationId`).
fn correlation_id() -> String {
    let words = [random_u32(), random_u32(), random_u32(), random_u32()];
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl Producer {
    /// Sends `message` as a request and blocks until its reply arrives or `timeout` (which
    /// covers the send too) runs out. The responder answers with [`Producer::send_reply`] (or
    /// any RocketMQ client's reply).
    ///
    /// # Errors
    ///
    /// The send's errors, or [`Error::ReplyTimeout`] when the request was stored but no reply
    /// came in time. Do not call it on a producer core.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use rocketmq_tpc::{Message, Producer};
    /// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
    /// let reply = producer.request(Message::new("prices", "EURUSD?"), Duration::from_secs(3))?;
    /// println!("answer: {:?}", reply.body);
    /// # Ok(()) }
    /// ```
    pub fn request(&self, message: Message, timeout: Duration) -> Result<ReceivedMessage, Error> {
        self.reject_on_core("request")?;
        futures_lite::future::block_on(self.request_async(message, timeout))
    }

    /// [`Producer::request`] as a future, usable on any runtime (its timeout is enforced by the
    /// producer, with a granularity of 500 ms).
    pub fn request_async(
        &self,
        message: Message,
        timeout: Duration,
    ) -> impl Future<Output = Result<ReceivedMessage, Error>> + Send + 'static {
        let producer = self.clone();
        async move {
            let started = Instant::now();
            let topic = match &producer.config().namespace {
                Some(ns) => crate::namespace::wrap(ns, &message.topic),
                None => message.topic.to_string(),
            };
            crate::message::validate_topic(&topic)?;
            // The brokers must know where to push the reply before the request can reach them.
            producer
                .run_on_core(0, move |local| async move {
                    crate::engine::control::announce(local.core(), &topic).await
                })?
                .await??;
            let left = timeout.saturating_sub(started.elapsed());
            let id = correlation_id();
            let requests = std::sync::Arc::clone(&producer.shared().broker_requests);
            let reply = requests.expect_reply(&id, left);
            let extras = Box::new(SendExtras {
                system_properties: vec![
                    (keys::CORRELATION_ID, id.clone()),
                    (keys::REPLY_TO_CLIENT, producer.shared().client_id.clone()),
                    // Java reads it as a long: a huge timeout must still parse.
                    (
                        keys::TTL,
                        left.as_millis().min(i64::MAX as u128).to_string(),
                    ),
                ],
                ..SendExtras::default()
            });
            let sent = producer
                .submit_with_extras(
                    message,
                    SendMode::Async,
                    &SendOptions::new().timeout(left),
                    Some(extras),
                    Reply::into_one,
                )
                .await;
            if let Err(e) = sent {
                requests.forget_reply(&id);
                return Err(e);
            }
            match reply.await {
                Ok(result) => result,
                Err(_) => Err(Error::CoreStopped {
                    returned: crate::error::Returned::NOTHING,
                    reason: "the producer stopped while a request waited for its reply".into(),
                }),
            }
        }
    }

    /// Answers `request` (a message sent with [`Producer::request`] or Java's `request`, as a
    /// consumer received it) with `body` (Java `MessageUtil.createReplyMessage` + a send): topic
    /// `<CLUSTER>_REPLY_TOPIC`, code SEND_REPLY_MESSAGE_V2; the broker pushes it to the
    /// requester.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] when `request` lacks `CLUSTER` or `CORRELATION_ID` (it was not
    /// a request, or not read from a broker), else the send's errors.
    pub fn send_reply(
        &self,
        request: &ReceivedMessage,
        body: impl Into<bytes::Bytes>,
    ) -> Result<SendResult, Error> {
        let missing = |what: &str| {
            Error::invalid_message(format!(
                "the request message has no {what} property, so it cannot be answered"
            ))
        };
        let cluster = request
            .property(keys::CLUSTER)
            .ok_or_else(|| missing("CLUSTER"))?;
        let mut properties = vec![(keys::MSG_TYPE, "reply".to_owned())];
        for key in [keys::CORRELATION_ID, keys::REPLY_TO_CLIENT, keys::TTL] {
            match request.property(key) {
                Some(value) => properties.push((key, value.to_owned())),
                None if key == keys::TTL => {}
                None => return Err(missing(key)),
            }
        }
        let extras = Box::new(SendExtras {
            system_properties: properties,
            reply_message: true,
            ..SendExtras::default()
        });
        let reply = Message::new(format!("{cluster}_REPLY_TOPIC"), body.into());
        self.send_with_extras(reply, extras, "send_reply")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_look_like_java_uuids() {
        let a = correlation_id();
        let b = correlation_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
