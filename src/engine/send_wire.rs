//! One send attempt on the wire: the SEND_MESSAGE_V2 (or batch) request header built from the
//! prepared message and its queue, and the broker's answer mapped to results or an error (Java
//! `MQClientAPIImpl.processSendResponse`).

use std::sync::Arc;

use super::core::Core;
use super::prepared::{BatchAnswer, OffsetIds, Outgoing, Reply};
use crate::error::{bounded_remark, Error, Outcome};
use crate::protocol::send_request_header::SendMessageRequestHeaderV2;
use crate::protocol::send_response_header::{
    SendMessageResponseHeader, SendResponse, DEFAULT_REGION,
};
use crate::protocol::ShortString;
use crate::protocol::{RequestCode, ResponseCode};
use crate::route::{PublishQueue, TopicRoute};
use crate::send_result::{MessageQueue, SendResult, SendStatus};

/// The request code, header and body of one attempt of `message` to `queue`.
pub(crate) fn send_header<'a>(
    core: &'a Core,
    route: &'a TopicRoute,
    queue: &'a PublishQueue,
    message: &'a Outgoing,
    born_millis: i64,
) -> (RequestCode, SendMessageRequestHeaderV2<'a>, &'a [u8]) {
    let config = &core.shared.config;
    let (code, sys_flag, flag, properties, body, batch) = match message {
        Outgoing::One(m) => (
            if message.extras().is_some_and(|e| e.reply_message) {
                RequestCode::SendReplyMessageV2
            } else {
                RequestCode::SendMessageV2
            },
            m.sys_flag,
            m.original.flag,
            m.properties.as_str(),
            m.body(),
            false,
        ),
        Outgoing::Batch(b) => (
            RequestCode::SendBatchMessage,
            b.sys_flag,
            0,
            &*b.properties,
            &b.body,
            true,
        ),
    };
    let header = SendMessageRequestHeaderV2 {
        producer_group: &config.producer_group,
        topic: message.topic(),
        default_topic: &config.create_topic_key,
        default_topic_queue_nums: config.default_topic_queue_nums,
        queue_id: queue.queue_id,
        sys_flag,
        born_timestamp: born_millis,
        flag,
        properties,
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch,
        broker_name: Some(&queue.broker_name),
        // Request hooks must see every field as a pair: no pre-encoded constants then.
        constant_fields: route
            .send_header_constants
            .as_ref()
            .filter(|_| core.shared.hooks.request.is_empty()),
    };
    (code, header, body)
}

/// Whether a SYSTEM_ERROR remark says the broker's timer store is off (5.x `WHEEL_TIMER_NOT_ENABLE`,
/// which goes on the wire as code 1 with this text; rocketmq-rust words it alike).
fn is_timer_disabled(remark: &str) -> bool {
    let lower = remark.to_ascii_lowercase();
    lower.contains("timer") && (lower.contains("not enable") || lower.contains("timerwheelenable"))
}

/// What a broker's answer says about a stored message (or batch): its status and reply header.
pub(crate) struct Stored<'a> {
    pub status: SendStatus,
    pub header: SendMessageResponseHeader<'a>,
    /// Whether the header could be read (else it says offset -1 and no offset id).
    pub readable: bool,
}

/// The stored status and header of `reply` from `addr` (an attempt to `queue`), or the error it
/// means.
pub(crate) fn stored<'a>(
    reply: &'a SendResponse<'_>,
    addr: &str,
    queue: &PublishQueue,
) -> Result<Stored<'a>, Error> {
    let code = ResponseCode::from_i32(reply.code);
    let Some(status) = SendStatus::from_response_code(code) else {
        // Bounded once here, then shared by every caller of a batch and every log line.
        let remark = bounded_remark(reply.remark.unwrap_or_default());
        if matches!(code, ResponseCode::SystemError | ResponseCode::NoPermission)
            && crate::acl::is_access_denied(&remark)
        {
            return Err(Error::AccessDenied {
                returned: crate::error::Returned::NOTHING,
                broker: addr.to_owned(),
                code,
                remark,
            });
        }
        if code == ResponseCode::SystemError && is_timer_disabled(&remark) {
            return Err(Error::NotSupported {
                returned: crate::error::Returned::NOTHING,
                broker: addr.to_owned(),
                remark,
            });
        }
        return Err(Error::Broker {
            returned: crate::error::Returned::NOTHING,
            broker: addr.to_owned(),
            code,
            remark,
            outcome: Outcome::NotStored,
        });
    };
    let parsed = reply.fields.header();
    let readable = parsed.is_ok();
    let header = parsed.unwrap_or_else(|e| {
        tracing::warn!(broker = %addr, error = %bounded_remark(&e.to_string()), "the broker stored the message but its reply header is unreadable; reporting it stored, without offsets");
        SendMessageResponseHeader {
            msg_id: "",
            queue_id: queue.queue_id,
            queue_offset: -1,
            transaction_id: None,
            region_id: DEFAULT_REGION,
            trace_on: true,
        }
    });
    Ok(Stored {
        status,
        header,
        readable,
    })
}

/// A stored single message's result, written into `slot`: in place when it holds one for the
/// same topic and broker (a core's reported sends reuse one result: nothing is cloned, no
/// reference counted), else built anew.
pub(crate) fn one_result_into(
    slot: &mut Option<SendResult>,
    stored: &Stored<'_>,
    (topic, queue): (&crate::Topic, &PublishQueue),
    uniq_key: &ShortString,
) {
    let header = &stored.header;
    match slot {
        Some(result)
            if result.queue.topic == *topic && result.queue.broker_name == queue.broker_name =>
        {
            result.status = stored.status;
            result.msg_id.assign(uniq_key);
            result.offset_msg_id.assign(header.msg_id);
            result.queue.queue_id = header.queue_id;
            result.queue_offset = header.queue_offset;
            match (&mut result.transaction_id, header.transaction_id) {
                (Some(id), Some(new)) => id.assign(new),
                (id, new) => *id = new.map(ShortString::from),
            }
            result.region_id.assign(header.region_id);
            result.trace_on = header.trace_on;
        }
        _ => *slot = Some(one_result(stored, (topic, queue), uniq_key)),
    }
}

/// The queue a result names: `topic` as the caller knows it, `queue`'s broker, and the queue id
/// the broker stored into.
fn result_queue(topic: &crate::Topic, queue: &PublishQueue, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.clone(),
        broker_name: Arc::clone(&queue.broker_name),
        queue_id,
    }
}

/// A stored single message's result.
fn one_result(
    stored: &Stored<'_>,
    (topic, queue): (&crate::Topic, &PublishQueue),
    uniq_key: &ShortString,
) -> SendResult {
    let header = &stored.header;
    SendResult {
        status: stored.status,
        msg_id: uniq_key.clone(),
        offset_msg_id: header.msg_id.into(),
        queue: result_queue(topic, queue, header.queue_id),
        queue_offset: header.queue_offset,
        transaction_id: header.transaction_id.map(ShortString::from),
        region_id: header.region_id.into(),
        trace_on: header.trace_on,
    }
}

/// Java `MQClientAPIImpl.processSendResponse`; a batch's comma-joined ids give one result per
/// message, offsets counting up from the first (a [`BatchAnswer`] that builds them when asked).
/// A single result needs no allocation: ids are inline [`crate::ShortString`]s and the names
/// are shared with the route.
///
/// A stored status is a stored message whatever else the reply holds, so it is never an error
/// here (an error would be retried and store it again): an unreadable header gives results
/// with offset -1 and no offset id, and a batch answered with fewer offset ids than messages
/// gets empty offset ids for the rest.
pub(crate) fn to_reply(
    reply: &SendResponse<'_>,
    addr: &str,
    (topic, queue): (&crate::Topic, &PublishQueue),
    message: &Outgoing,
) -> Result<Reply, Error> {
    let stored = stored(reply, addr, queue)?;
    let b = match message {
        Outgoing::One(m) => {
            return Ok(Reply::One(one_result(&stored, (topic, queue), &m.uniq_key)))
        }
        Outgoing::Batch(b) => b,
    };
    let Stored {
        status,
        header,
        readable,
    } = stored;
    let given = OffsetIds::count_in(header.msg_id);
    if given != b.uniq_keys.len() && readable {
        tracing::warn!(broker = %addr, messages = b.uniq_keys.len(), offset_ids = given, "the broker stored a batch but its offset ids do not match its messages; the missing ones are left empty");
    }
    // Each message's result is built when its caller takes it (`BatchAnswer::results`).
    Ok(Reply::Batch(
        Box::new(BatchAnswer {
            status,
            queue: result_queue(topic, queue, header.queue_id),
            first_offset: readable.then_some(header.queue_offset),
            offset_ids: header.msg_id.to_owned(),
            transaction_id: header.transaction_id.map(ShortString::from),
            region_id: header.region_id.into(),
            trace_on: header.trace_on,
            uniq_keys: Vec::new(),
        }),
        // The batch's ids and messages join at the end of the send (`Reply::finish`).
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_with<'a>(
        msg_id: &'a str,
        offset: i64,
        transaction_id: Option<&'a str>,
        region_id: &'a str,
    ) -> Stored<'a> {
        Stored {
            status: if offset % 2 == 0 {
                SendStatus::SendOk
            } else {
                SendStatus::FlushDiskTimeout
            },
            header: SendMessageResponseHeader {
                msg_id,
                queue_id: (offset % 4) as i32,
                queue_offset: offset,
                transaction_id,
                region_id,
                trace_on: offset % 3 != 0,
            },
            readable: true,
        }
    }

    #[test]
    fn a_result_rewritten_in_place_equals_one_built_anew() {
        let topics = [crate::Topic::from("T"), crate::Topic::from("U")];
        let queues = [
            PublishQueue {
                broker_name: Arc::from("a"),
                queue_id: 0,
            },
            PublishQueue {
                broker_name: Arc::from("b"),
                queue_id: 1,
            },
        ];
        let long_id = "F".repeat(60);
        let answers = [
            (
                "0A00000100002A9F0000000000000001",
                Some("TX1"),
                "DefaultRegion",
            ),
            ("", None, "r"),
            (
                long_id.as_str(),
                Some(long_id.as_str()),
                "a-longer-region-name",
            ),
            ("0B", None, "DefaultRegion"),
        ];
        let mut lent = None;
        for step in 0..40i64 {
            let topic = &topics[(step / 7) as usize % 2];
            let queue = &queues[(step / 3) as usize % 2];
            let (msg_id, transaction_id, region) = answers[step as usize % answers.len()];
            let stored = stored_with(msg_id, step, transaction_id, region);
            let key = ShortString::from(format!("K{step}").as_str());
            one_result_into(&mut lent, &stored, (topic, queue), &key);
            let fresh = one_result(&stored, (topic, queue), &key);
            assert_eq!(lent.as_ref(), Some(&fresh), "step {step}");
        }
    }
}
