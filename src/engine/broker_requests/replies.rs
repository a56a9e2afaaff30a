//! Request-reply (PUSH_REPLY_MESSAGE_TO_CLIENT): each waiting `request()` by CORRELATION_ID,
//! the reply a broker pushes handed to it, and the ones whose time ran out failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::{BrokerRequests, MAX_RECEIVED_BODY};
use crate::error::Error;
use crate::protocol::compression::{self, sys_flag};
use crate::protocol::properties::{self, keys};
use crate::protocol::RemotingCommand;
use crate::received_message::ReceivedMessage;

/// One waiting `request()`: where its reply goes, and until when it waits.
pub(super) struct ReplyWaiter {
    reply: oneshot::Sender<Result<ReceivedMessage, Error>>,
    deadline: Instant,
    started: Instant,
}

impl BrokerRequests {
    /// Registers a request waiting for its reply.
    pub(crate) fn expect_reply(
        &self,
        correlation_id: &str,
        timeout: Duration,
    ) -> oneshot::Receiver<Result<ReceivedMessage, Error>> {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        self.lock_replies().insert(
            correlation_id.to_owned(),
            ReplyWaiter {
                reply: tx,
                deadline: crate::engine::deadline::deadline_after(now, timeout),
                started: now,
            },
        );
        rx
    }

    /// Forgets a waiting request (its send failed).
    pub(crate) fn forget_reply(&self, correlation_id: &str) {
        self.lock_replies().remove(correlation_id);
    }

    /// Fails the requests whose time is up (called by the control task every tick, and cheap
    /// when none waits).
    pub(crate) fn expire_replies(&self, now: Instant) {
        let mut replies = self.lock_replies();
        if replies.is_empty() {
            return;
        }
        let due: Vec<String> = replies
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(waiter) = replies.remove(&id) {
                let _ = waiter.reply.send(Err(Error::ReplyTimeout {
                    elapsed: now.saturating_duration_since(waiter.started),
                    correlation_id: id,
                }));
            }
        }
    }

    fn lock_replies(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReplyWaiter>> {
        self.replies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a pushed reply to the request waiting for it.
    pub(super) fn receive_reply(&self, command: &RemotingCommand) -> Result<(), String> {
        let field = |key: &str| command.ext(key);
        let number = |key: &str| field(key).and_then(|v| v.parse::<i64>().ok());
        let topic = field("topic").ok_or("no topic")?;
        let sys_flag = number("sysFlag").unwrap_or(0) as i32;
        let body = if sys_flag & sys_flag::COMPRESSED != 0 {
            compression::decompress_by_flag(sys_flag, &command.body, MAX_RECEIVED_BODY)
                .map(bytes::Bytes::from)
                .map_err(|e| format!("undecompressable body: {e}"))?
        } else {
            command.body.clone()
        };
        let props = properties::decode(field("properties").unwrap_or_default());
        let mut reply = ReceivedMessage::new(topic, body, props);
        reply.queue_id = number("queueId").unwrap_or(-1) as i32;
        reply.born_timestamp = number("bornTimestamp").unwrap_or(0);
        let Some(correlation_id) = reply.property(keys::CORRELATION_ID).map(str::to_owned) else {
            tracing::debug!("a reply message without CORRELATION_ID; dropped");
            return Ok(());
        };
        match self.lock_replies().remove(&correlation_id) {
            Some(waiter) => {
                let _ = waiter.reply.send(Ok(reply));
            }
            None => {
                tracing::debug!(
                    correlation_id,
                    "a reply nobody waits for (timed out, or another client's); dropped"
                )
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LanguageCode;

    fn push(properties: &str, body: &[u8], sys_flag: i32) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(326, 9, LanguageCode::JAVA, 407);
        cmd.push_ext("topic", "DefaultCluster_REPLY_TOPIC");
        cmd.push_ext("queueId", "0");
        cmd.push_ext("sysFlag", sys_flag.to_string());
        cmd.push_ext("bornTimestamp", "1700000000000");
        cmd.push_ext("properties", properties);
        cmd.body = bytes::Bytes::copy_from_slice(body);
        cmd
    }

    fn props(pairs: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for (k, v) in pairs {
            properties::push_property(&mut out, k, v);
        }
        out
    }

    #[test]
    fn a_reply_resolves_its_request_and_is_decompressed() {
        let requests = BrokerRequests::new("pg".into(), None);
        let mut waiting = requests.expect_reply("c-1", Duration::from_secs(5));
        let body = compression::Compressor::new(5).compress(b"pong pong pong");
        let cmd = push(
            &props(&[(keys::CORRELATION_ID, "c-1"), (keys::MSG_TYPE, "reply")]),
            &body,
            sys_flag::COMPRESSED,
        );
        requests.receive_reply(&cmd).unwrap();
        let reply = waiting.try_recv().unwrap().expect("resolved").unwrap();
        assert_eq!(&reply.body[..], b"pong pong pong");
        assert_eq!(reply.born_timestamp, 1_700_000_000_000);
        assert_eq!(reply.property(keys::MSG_TYPE), Some("reply"));
    }

    #[test]
    fn replies_without_a_waiter_or_correlation_id_are_dropped() {
        let requests = BrokerRequests::new("pg".into(), None);
        let mut waiting = requests.expect_reply("c-2", Duration::from_secs(5));
        // No CORRELATION_ID: answered (so the broker is not kept waiting), dropped.
        requests.receive_reply(&push("", b"x", 0)).unwrap();
        // Somebody else's id.
        let other = push(&props(&[(keys::CORRELATION_ID, "nobody")]), b"x", 0);
        requests.receive_reply(&other).unwrap();
        assert!(waiting.try_recv().unwrap().is_none(), "c-2 still waits");
        // No topic, or a body that does not decompress: an error the broker hears as code 1.
        let mut no_topic = push("", b"x", 0);
        no_topic.ext_fields = Default::default();
        assert!(requests.receive_reply(&no_topic).is_err());
        let garbage = push(&props(&[(keys::CORRELATION_ID, "c-2")]), b"not zlib", 1);
        assert!(requests.receive_reply(&garbage).is_err());
    }

    #[test]
    fn expired_requests_fail_with_reply_timeout() {
        let requests = BrokerRequests::new("pg".into(), None);
        let mut short = requests.expect_reply("s", Duration::from_millis(1));
        let mut long = requests.expect_reply("l", Duration::from_secs(60));
        requests.expire_replies(Instant::now() + Duration::from_millis(5));
        match short.try_recv().unwrap() {
            Some(Err(Error::ReplyTimeout { correlation_id, .. })) => {
                assert_eq!(correlation_id, "s")
            }
            other => panic!("{other:?}"),
        }
        assert!(long.try_recv().unwrap().is_none());
        requests.forget_reply("l");
        assert!(long.try_recv().is_err(), "forgotten: its sender is gone");
    }
}
