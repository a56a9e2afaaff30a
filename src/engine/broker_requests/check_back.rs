//! Transaction check-back (CHECK_TRANSACTION_STATE): the half message goes to the check
//! thread, which runs the listener; its verdict goes back to the broker as END_TRANSACTION on
//! the connection the check came on.

use std::rc::Rc;
use std::sync::mpsc::{sync_channel, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::{BrokerRequests, MAX_RECEIVED_BODY};
use crate::engine::connection::Connection;
use crate::error::Error;
use crate::protocol::stored_message;
use crate::protocol::transaction::{CheckTransactionState, EndKind, EndTransactionHeader};
use crate::protocol::{RemotingCommand, RequestCode};
use crate::received_message::ReceivedMessage;

/// Checks queued for the check thread at most (Java `checkRequestHoldMax`); more are dropped
/// (the broker asks again at its next check interval).
const MAX_QUEUED_CHECKS: usize = 2000;

/// How long END_TRANSACTION after a check may wait to be written.
const END_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// The check listener, type-erased.
pub(crate) type Checker = Arc<dyn Fn(&ReceivedMessage) -> EndKind + Send + Sync>;

/// A check handed to the check thread; the verdict comes back to the core through `verdict`.
pub(super) struct CheckJob {
    message: ReceivedMessage,
    verdict: oneshot::Sender<EndKind>,
}

impl BrokerRequests {
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
                    let verdict = crate::engine::guarded::call_guarded(|| checker(&job.message))
                        .unwrap_or_else(|panic| {
                            tracing::error!(
                                %panic,
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

    pub(super) fn check_transaction(
        self: &Arc<Self>,
        conn: &Rc<Connection>,
        command: RemotingCommand,
    ) {
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
        crate::engine::guarded::spawn_guarded("check-back answer", answer, |_| {});
    }

    fn without_namespace(&self, topic: &str) -> String {
        match &self.namespace {
            Some(ns) => crate::namespace::strip(ns, topic).into_owned(),
            None => topic.to_owned(),
        }
    }
}
