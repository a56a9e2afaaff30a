//! END_TRANSACTION after a local transaction ran (Java `DefaultMQProducerImpl.endTransaction`):
//! oneway, to the master of the broker that stored the half message.

use std::rc::Rc;
use std::time::Instant;

use super::connection::failure_to_error;
use super::core::Core;
use crate::error::{Error, Outcome};
use crate::protocol::message_id::decode_offset_message_id;
use crate::protocol::transaction::{EndKind, EndTransactionHeader};
use crate::protocol::RequestCode;
use crate::send_result::SendResult;

/// Tells the broker that stored `half` to commit, roll back or keep asking (`kind`).
///
/// # Errors
///
/// [`Error::NoRoute`] when the broker is no longer in the route, [`Error::Protocol`] for an
/// offset message id that does not decode, connection errors when it cannot be written.
pub(crate) async fn end_transaction(
    core: &Rc<Core>,
    half: &SendResult,
    kind: EndKind,
) -> Result<(), Error> {
    let config = &core.shared.config;
    let deadline = super::deadline::deadline_after(Instant::now(), config.send_timeout);
    let topic = match &config.namespace {
        Some(ns) => crate::namespace::wrap(ns, &half.queue.topic),
        None => half.queue.topic.to_string(),
    };
    let route = core.route_for(&topic, deadline).await?;
    let addr = route
        .master_addr(&half.queue.broker_name)
        .ok_or_else(|| Error::NoRoute {
            returned: crate::error::Returned::NOTHING,
            topic: topic.clone(),
            reason: format!("broker {} has no master address", half.queue.broker_name),
            outcome: crate::error::Outcome::NotStored,
        })?
        .to_owned();
    let offset = decode_offset_message_id(&half.offset_msg_id).map_err(|e| Error::Protocol {
        returned: crate::error::Returned::NOTHING,
        peer: addr.clone(),
        reason: format!(
            "the half message's offset id {:?} does not decode: {e}",
            half.offset_msg_id
        ),
        outcome: Outcome::NotStored,
    })?;
    let header = EndTransactionHeader {
        producer_group: &config.producer_group,
        tran_state_table_offset: half.queue_offset,
        commit_log_offset: offset.commit_log_offset,
        kind,
        from_transaction_check: false,
        msg_id: &half.msg_id,
        transaction_id: half.transaction_id.as_deref(),
        broker_name: Some(&half.queue.broker_name),
    };
    tracing::debug!(broker = %addr, ?header, "END_TRANSACTION");
    let conn = core.connection(&addr, deadline).await?;
    let written = conn.request(
        RequestCode::EndTransaction.as_i32(),
        &header,
        &[],
        true,
        deadline,
    )?;
    written
        .await
        .map(|_| ())
        .map_err(|failure| failure_to_error(&addr, failure))
}
