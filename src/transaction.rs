//! Transactional messages (Java `TransactionMQProducer`, `TransactionListener`).
//!
//! ```text
//!  send_in_transaction(msg, arg)
//!    ├─ half message: TRAN_MSG=true, PGROUP=<group>, sysFlag |= 0x4 (invisible to consumers)
//!    ├─ SEND_OK ─► listener.execute_local_transaction(msg, id, arg) on the caller's thread
//!    │             (a panic counts as Unknown); other statuses ─► Rollback, not executed
//!    └─ END_TRANSACTION (oneway) with Commit / Rollback / Unknown
//!  later, for Unknown (or a lost END_TRANSACTION), the broker asks:
//!    CHECK_TRANSACTION_STATE ─► listener.check_local_transaction(half) on the producer's check
//!    thread ─► END_TRANSACTION (fromTransactionCheck) to that broker
//! ```

use std::sync::Arc;

use crate::engine::prepared::SendExtras;
use crate::error::Error;
use crate::message::Message;
use crate::producer::Producer;
use crate::protocol::compression::sys_flag;
use crate::protocol::properties::keys;
use crate::protocol::transaction::EndKind;
use crate::received_message::ReceivedMessage;
use crate::send_options::SendOptions;
use crate::send_result::{SendResult, SendStatus};

/// What a local transaction decided (Java `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Make the half message visible.
    Commit,
    /// Drop the half message.
    Rollback,
    /// Not decided yet: the broker checks back later (every `transactionCheckInterval`, up to
    /// `transactionCheckMax` times).
    Unknown,
}

impl LocalTransactionState {
    /// END_TRANSACTION's `commitOrRollback` for this state.
    pub(crate) fn end_kind(self) -> EndKind {
        match self {
            LocalTransactionState::Commit => EndKind::Commit,
            LocalTransactionState::Rollback => EndKind::Rollback,
            LocalTransactionState::Unknown => EndKind::Unknown,
        }
    }
}

/// The application's side of a transaction.
///
/// `execute_local_transaction` runs on the thread that called
/// [`TransactionProducer::send_in_transaction`]; `check_local_transaction` runs on the
/// producer's transaction check thread (one per producer, so a slow check delays later checks
/// but never a producer core). A panic in either counts as [`LocalTransactionState::Unknown`].
pub trait TransactionListener: Send + Sync + 'static {
    /// What [`TransactionProducer::send_in_transaction`] passes through to the listener.
    type Arg;

    /// Runs the local transaction of `message`, whose half message is stored with
    /// `transaction_id` (its unique id).
    fn execute_local_transaction(
        &self,
        message: &Message,
        transaction_id: &str,
        arg: Self::Arg,
    ) -> LocalTransactionState;

    /// Says what became of the transaction of a half message the broker still holds.
    fn check_local_transaction(&self, message: &ReceivedMessage) -> LocalTransactionState;
}

/// What [`TransactionProducer::send_in_transaction`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransactionSendResult {
    /// The half message as the broker stored it.
    pub send_result: SendResult,
    /// What the local transaction decided (Rollback, unexecuted, when the half message was not
    /// stored with `SendOk`).
    pub state: LocalTransactionState,
    /// Set when END_TRANSACTION could not be written; the broker then checks back.
    pub end_error: Option<Error>,
}

/// A producer of transactional messages: a [`Producer`] plus its [`TransactionListener`].
///
/// # Example
///
/// ```no_run
/// use rocketmq_tpc::{
///     LocalTransactionState, Message, Producer, ReceivedMessage, TransactionListener,
///     TransactionProducer,
/// };
///
/// struct Orders;
///
/// impl TransactionListener for Orders {
///     type Arg = u64;
///     fn execute_local_transaction(&self, _: &Message, _: &str, order: u64) -> LocalTransactionState {
///         // write the order to the database here
///         if order > 0 { LocalTransactionState::Commit } else { LocalTransactionState::Rollback }
///     }
///     fn check_local_transaction(&self, _: &ReceivedMessage) -> LocalTransactionState {
///         LocalTransactionState::Commit // look the order up here
///     }
/// }
///
/// # fn main() -> Result<(), rocketmq_tpc::Error> {
/// let producer = Producer::builder()
///     .namesrv("127.0.0.1:9876")
///     .producer_group("orders_tx")
///     .build()?;
/// let tx = TransactionProducer::new(producer, Orders)?;
/// let result = tx.send_in_transaction(Message::new("orders", "order 42 paid"), 42)?;
/// assert_eq!(result.state, LocalTransactionState::Commit);
/// # Ok(()) }
/// ```
pub struct TransactionProducer<L: TransactionListener> {
    producer: Producer,
    listener: Arc<L>,
}

impl<L: TransactionListener> TransactionProducer<L> {
    /// Makes `producer` transactional: its check-backs go to `listener`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the producer already has a listener.
    pub fn new(producer: Producer, listener: L) -> Result<Self, Error> {
        let listener = Arc::new(listener);
        let checker = Arc::clone(&listener);
        producer
            .shared()
            .broker_requests
            .set_checker(Arc::new(move |m: &ReceivedMessage| {
                checker.check_local_transaction(m).end_kind()
            }))?;
        Ok(TransactionProducer { producer, listener })
    }

    /// The listener.
    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// The producer, for plain sends and shutdown.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Sends `message` as a half message, runs the local transaction and ends it (Java
    /// `sendMessageInTransaction`). A delay level is cleared (half messages cannot be delayed).
    /// Blocks the calling thread: do not call it on a producer core.
    ///
    /// # Errors
    ///
    /// Any send error of the half message; then nothing was executed or ended.
    pub fn send_in_transaction(
        &self,
        mut message: Message,
        arg: L::Arg,
    ) -> Result<TransactionSendResult, Error> {
        message.delay_level = 0;
        let extras = Box::new(SendExtras {
            system_properties: vec![
                (keys::TRAN_MSG, "true".to_owned()),
                (keys::PGROUP, self.producer.config().producer_group.clone()),
            ],
            sys_flag: sys_flag::TRANSACTION_PREPARED,
            ..SendExtras::default()
        });
        let send_result =
            self.producer
                .send_with_extras(message.clone(), extras, "send_in_transaction")?;
        let state = if send_result.status == SendStatus::SendOk {
            crate::engine::guarded::call_guarded(|| {
                self.listener
                    .execute_local_transaction(&message, &send_result.msg_id, arg)
            })
            .unwrap_or_else(|panic| {
                tracing::error!(msg_id = %send_result.msg_id, %panic, "the local transaction panicked; leaving it to the check-back");
                LocalTransactionState::Unknown
            })
        } else {
            LocalTransactionState::Rollback
        };
        let end_error = self.producer.end_transaction(&send_result, state).err();
        if let Some(e) = &end_error {
            tracing::warn!(msg_id = %send_result.msg_id, error = %e, "END_TRANSACTION failed; the broker will check back");
        }
        Ok(TransactionSendResult {
            send_result,
            state,
            end_error,
        })
    }
}

impl Producer {
    /// A blocking sync send of `message` with `extras` (transactions, replies).
    pub(crate) fn send_with_extras(
        &self,
        message: Message,
        extras: Box<SendExtras>,
        what: &str,
    ) -> Result<SendResult, Error> {
        self.reject_on_core(what)?;
        self.submit_with_extras(
            message,
            crate::engine::inbox::SendMode::Sync,
            &SendOptions::default(),
            Some(extras),
            crate::engine::prepared::Reply::into_one,
        )
        .wait()
    }

    /// Writes END_TRANSACTION for the half message `half`, from the core its queue maps to.
    fn end_transaction(
        &self,
        half: &SendResult,
        state: LocalTransactionState,
    ) -> Result<(), Error> {
        let half = half.clone();
        let core = half.queue.queue_id.unsigned_abs() as usize % self.cores();
        self.run_on_core(core, move |local| async move {
            crate::engine::transaction_end::end_transaction(local.core(), &half, state.end_kind())
                .await
        })?
        .wait()?
    }
}
