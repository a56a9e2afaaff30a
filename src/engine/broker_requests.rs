//! Requests a broker sends to the producer, on any connection of any core
//! (Java `ClientRemotingProcessor`):
//!
//! ```text
//!  CHECK_TRANSACTION_STATE (39, oneway) ─ decode the half message ─► check thread runs the
//!      listener ─► END_TRANSACTION (37, oneway, fromTransactionCheck) on the same connection
//!  PUSH_REPLY_MESSAGE_TO_CLIENT (326) ─ decode ─► the waiting request() by CORRELATION_ID;
//!      answer code 0 (1 when unreadable)
//!  anything else ─► REQUEST_CODE_NOT_SUPPORTED (unless oneway)
//! ```
//!
//! A broker picks the connection that announced the producer group and client id by
//! heartbeat: core 0's first connection to it (the control task heartbeats from there). Every
//! connection carries this handler all the same, so the design does not depend on it.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::connection::Connection;
use crate::error::Error;
use crate::protocol::compression::{self, sys_flag};
use crate::protocol::properties::{self, keys};
use crate::protocol::stored_message;
use crate::protocol::transaction::{CheckTransactionState, EndKind, EndTransactionHeader};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::received_message::ReceivedMessage;

/// Checks queued for the check thread at most (Java `checkRequestHoldMax`); more are dropped
/// (the broker asks again at its next check interval).
const MAX_QUEUED_CHECKS: usize = 2000;

/// How long END_TRANSACTION after a check may wait to be written.
const END_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest body a received message may decompress to.
const MAX_RECEIVED_BODY: usize = 64 * 1024 * 1024;

/// The check listener, type-erased.
pub(crate) type Checker = Arc<dyn Fn(&ReceivedMessage) -> EndKind + Send + Sync>;

/// One waiting `request()`: where its reply goes, and until when it waits.
struct ReplyWaiter {
    reply: oneshot::Sender<Result<ReceivedMessage, Error>>,
    deadline: Instant,
    started: Instant,
}

/// What a producer does with requests from brokers. Shared by all cores; touched only by
/// broker requests and request-reply, never per plain send.
pub(crate) struct BrokerRequests {
    producer_group: String,
    namespace: Option<String>,
    /// The transaction check listener and the queue of its thread, once a
    /// [`crate::TransactionProducer`] set them.
    checks: OnceLock<SyncSender<CheckJob>>,
    replies: Mutex<HashMap<String, ReplyWaiter>>,
    /// Brokers that accepted a heartbeat: they know where to push replies.
    announced: Mutex<std::collections::BTreeSet<String>>,
}

impl fmt::Debug for BrokerRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerRequests")
            .field("producer_group", &self.producer_group)
            .field("checks", &self.checks.get().is_some())
            .finish()
    }
}

/// A check handed to the check thread; the verdict comes back to the core through `verdict`.
struct CheckJob {
    message: ReceivedMessage,
    verdict: oneshot::Sender<EndKind>,
}

impl BrokerRequests {
    pub(crate) fn new(producer_group: String, namespace: Option<String>) -> Self {
        BrokerRequests {
            producer_group,
            namespace,
            checks: OnceLock::new(),
            replies: Mutex::new(HashMap::new()),
            announced: Mutex::default(),
        }
    }

    /// Starts the check thread running `checker` (once per producer).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a listener is already set, [`Error::Startup`] when the
    /// thread cannot start.
    pub(crate) fn set_checker(&self, checker: Checker) -> Result<(), Error> {
        let (tx, rx) = sync_channel::<CheckJob>(MAX_QUEUED_CHECKS);
        if self.checks.set(tx).is_err() {
            return Err(Error::InvalidConfig {
                reason: "this producer already has a transaction listener".into(),
            });
        }
        std::thread::Builder::new()
            .name("rmq-tpc-tx-check".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        checker(&job.message)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            "the transaction check listener panicked; answering unknown"
                        );
                        EndKind::Unknown
                    });
                    let _ = job.verdict.send(verdict);
                }
            })
            .map(|_| ())
            .map_err(|e| Error::Startup {
                reason: format!("cannot start the transaction check thread: {e}"),
            })
    }

    /// Notes that `broker` accepted a heartbeat.
    pub(crate) fn mark_announced(&self, broker: &str) {
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        if !announced.contains(broker) {
            announced.insert(broker.to_owned());
        }
    }

    /// Every broker that accepted a heartbeat of this producer.
    pub(crate) fn announced(&self) -> std::collections::BTreeSet<String> {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `broker` accepted a heartbeat of this producer.
    pub(crate) fn is_announced(&self, broker: &str) -> bool {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(broker)
    }

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
                deadline: super::deadline::deadline_after(now, timeout),
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

    /// Handles one request from the broker at the other end of `conn`.
    pub(crate) fn handle(self: &Arc<Self>, conn: &Rc<Connection>, command: RemotingCommand) {
        match RequestCode::from_i32(command.code) {
            RequestCode::CheckTransactionState => self.check_transaction(conn, command),
            RequestCode::PushReplyMessageToClient => {
                let code = match self.receive_reply(&command) {
                    Ok(()) => ResponseCode::Success,
                    Err(reason) => {
                        tracing::warn!(peer = %conn.peer(), reason, "unreadable reply message");
                        ResponseCode::SystemError
                    }
                };
                let remark =
                    (code != ResponseCode::Success).then_some("process reply message fail");
                conn.respond(command.opaque, code, remark);
            }
            _ => {
                tracing::debug!(peer = %conn.peer(), code = command.code, "request from peer not supported");
                if !command.is_oneway() {
                    let remark = format!(" request type {} not supported", command.code);
                    conn.respond(
                        command.opaque,
                        ResponseCode::RequestCodeNotSupported,
                        Some(&remark),
                    );
                }
            }
        }
    }

    fn check_transaction(self: &Arc<Self>, conn: &Rc<Connection>, command: RemotingCommand) {
        let Some(checks) = self.checks.get() else {
            tracing::warn!(peer = %conn.peer(), "transaction check-back, but this producer has no transaction listener");
            return;
        };
        let header = match CheckTransactionState::from_command(&command) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(peer = %conn.peer(), error = %e, "unreadable transaction check-back");
                return;
            }
        };
        let stored = match stored_message::decode_all(command.body.clone(), MAX_RECEIVED_BODY) {
            Ok(mut all) if !all.is_empty() => all.swap_remove(0),
            Ok(_) => {
                tracing::warn!(peer = %conn.peer(), "transaction check-back without a message");
                return;
            }
            Err(e) => {
                tracing::warn!(peer = %conn.peer(), error = %e, "unreadable half message in a check-back");
                return;
            }
        };
        let mut message = ReceivedMessage::new(
            self.without_namespace(&stored.topic),
            stored.body,
            stored.properties,
        );
        message.queue_id = stored.queue_id;
        message.queue_offset = stored.queue_offset;
        message.born_timestamp = stored.born_timestamp;
        message.offset_msg_id = header.offset_msg_id.clone();
        let uniq_key = message.msg_id().map(str::to_owned);
        message.transaction_id = header.transaction_id.clone().or_else(|| uniq_key.clone());
        let (verdict_tx, verdict_rx) = oneshot::channel();
        match checks.try_send(CheckJob {
            message,
            verdict: verdict_tx,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("{MAX_QUEUED_CHECKS} transaction checks already queued; dropping one (the broker asks again)");
                return;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
        let this = Arc::clone(self);
        let conn = Rc::clone(conn);
        let answer = async move {
            let Ok(verdict) = verdict_rx.await else {
                return;
            };
            let msg_id = uniq_key.or(header.msg_id.clone()).unwrap_or_default();
            let end = EndTransactionHeader {
                producer_group: &this.producer_group,
                tran_state_table_offset: header.tran_state_table_offset,
                commit_log_offset: header.commit_log_offset,
                kind: verdict,
                from_transaction_check: true,
                msg_id: &msg_id,
                transaction_id: header.transaction_id.as_deref(),
                broker_name: header.broker_name.as_deref(),
            };
            tracing::debug!(peer = %conn.peer(), ?end, "END_TRANSACTION after a check-back");
            let deadline = Instant::now() + END_TRANSACTION_TIMEOUT;
            match conn.request(
                RequestCode::EndTransaction.as_i32(),
                &end,
                &[],
                true,
                deadline,
            ) {
                Ok(written) => {
                    if written.await.is_err() {
                        tracing::warn!(peer = %conn.peer(), "END_TRANSACTION after a check-back was not written");
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %conn.peer(), error = %e, "END_TRANSACTION after a check-back failed")
                }
            }
            tracing::debug!(peer = %conn.peer(), msg_id, state = ?verdict, "answered a transaction check-back");
        };
        super::guarded::spawn_guarded("check-back answer", answer, |_| {});
    }

    /// Hands a pushed reply to the request waiting for it.
    fn receive_reply(&self, command: &RemotingCommand) -> Result<(), String> {
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

    fn without_namespace(&self, topic: &str) -> String {
        match &self.namespace {
            Some(ns) => crate::namespace::strip(ns, topic).into_owned(),
            None => topic.to_owned(),
        }
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
