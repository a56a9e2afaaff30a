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
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};

use super::connection::Connection;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

mod check_back;
mod replies;

use check_back::CheckJob;
use replies::ReplyWaiter;

/// Largest body a received message may decompress to.
const MAX_RECEIVED_BODY: usize = 64 * 1024 * 1024;

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
}
