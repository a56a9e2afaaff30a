//! Message trace (Java `SendMessageTraceHookImpl`, `AsyncTraceDispatcher`,
//! `TraceDataEncoder`): after each attempt of a single send, a `Pub` record goes to the trace
//! topic, batched per core and sent in the background.
//!
//! ```text
//!  attempt ends ─► record "Pub␁time␁region␁group␁topic␁msgId␁tags␁keys␁storeHost␁bodyLength␁
//!                          cost␁msgType␁offsetMsgId␁success␂" ─► this core's trace buffer
//!  100 records, 128,000 bytes or 100 ms ─► one async send to the trace topic
//!      (keys: every traced msgId and user key), whose own attempts are not traced
//! ```
//!
//! A failed attempt is traced too, with `success` false (the Java client traces stored ones
//! only). Batches are not traced yet.

use std::cell::RefCell;
use std::time::Duration;

use crate::hooks::{AttemptContext, SendHook};
use crate::local_producer::LocalProducer;
use crate::message::Message;
use crate::send_result::SendResult;

/// Java's default trace topic (`TopicValidator.RMQ_SYS_TRACE_TOPIC`).
pub const DEFAULT_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

const CONTENT: char = '\u{1}';
const FIELD: char = '\u{2}';
/// Java `AsyncTraceDispatcher`: records per trace message, bytes per trace message, and how
/// long a record may wait.
const MAX_RECORDS: usize = 100;
const MAX_BYTES: usize = 128_000;
const MAX_WAIT: Duration = Duration::from_millis(100);

/// The send hook that traces.
pub(crate) struct TraceHook {
    topic: String,
    /// The group without its namespace (Java traces the bare group).
    group: String,
}

impl TraceHook {
    pub(crate) fn new(topic: String, group: String) -> Self {
        TraceHook { topic, group }
    }
}

/// What waits to go to the trace topic on this core.
#[derive(Default)]
struct Pending {
    body: String,
    keys: Vec<String>,
    records: usize,
    flush_scheduled: bool,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// Java `MessageType` ordinals: Normal_Msg 0, Trans_Msg_Half 1, Delay_Msg 3.
fn msg_type(message: &Message, sys_flag_half: bool) -> u8 {
    if sys_flag_half {
        1
    } else if message.delay_level > 0 {
        3
    } else {
        0
    }
}

/// One `Pub` record (Java `TraceDataEncoder.encoderFromContextBean`; absent values are
/// `null`, as Java's `StringBuilder.append(null)` writes them).
pub(crate) fn pub_record(
    group: &str,
    context: &AttemptContext<'_>,
    message: &Message,
    outcome: Result<Option<&SendResult>, &crate::Error>,
    cost_ms: u128,
) -> String {
    let result = outcome.ok().flatten();
    let keys = if message.keys.is_empty() {
        "null".to_owned()
    } else {
        message.keys.join(" ")
    };
    let half = message.properties.iter().any(|(k, _)| k == "TRAN_MSG");
    let fields: [String; 14] = [
        "Pub".into(),
        context.started_unix_ms.to_string(),
        result.map_or("DefaultRegion".into(), |r| r.region_id.to_string()),
        group.into(),
        message.topic.clone(),
        context.unique_id.unwrap_or("null").into(),
        message.tags.clone().unwrap_or_else(|| "null".into()),
        keys,
        context.broker_addr.into(),
        context.body_len.to_string(),
        cost_ms.to_string(),
        msg_type(message, half).to_string(),
        result.map_or("null".into(), |r| r.offset_msg_id.to_string()),
        result
            .map(|r| r.status == crate::SendStatus::SendOk)
            .unwrap_or(false)
            .to_string(),
    ];
    let mut out = fields.join(&CONTENT.to_string());
    out.push(FIELD);
    out
}

impl SendHook for TraceHook {
    fn after_attempt(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<Option<&SendResult>, &crate::Error>,
    ) {
        let Some(message) = context.message else {
            return;
        };
        if context.topic == self.topic || message.topic == self.topic {
            return;
        }
        if matches!(outcome, Ok(None)) {
            return; // oneway: nothing is known of the store
        }
        let record = pub_record(
            &self.group,
            context,
            message,
            outcome,
            context.started.elapsed().as_millis(),
        );
        let (full, schedule) = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.body.push_str(&record);
            p.records += 1;
            if let Some(id) = context.unique_id {
                p.keys.push(id.to_owned());
            }
            p.keys.extend(message.keys.iter().cloned());
            let full = p.records >= MAX_RECORDS || p.body.len() >= MAX_BYTES;
            let schedule = !full && !p.flush_scheduled;
            if schedule {
                p.flush_scheduled = true;
            }
            (full, schedule)
        });
        if full {
            flush(&self.topic);
        } else if schedule {
            let topic = self.topic.clone();
            crate::engine::guarded::spawn_guarded(
                "trace flush",
                async move {
                    glommio::timer::sleep(MAX_WAIT).await;
                    flush(&topic);
                },
                |_| {},
            );
        }
    }
}

/// Sends what this core's buffer holds to the trace topic (in the background).
fn flush(topic: &str) {
    let taken = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if taken.records == 0 {
        return;
    }
    let Some(local) = LocalProducer::current() else {
        return;
    };
    let mut keys = taken.keys;
    keys.sort();
    keys.dedup();
    keys.retain(|k| !k.is_empty() && !k.contains(' '));
    let message = Message::new(topic, taken.body).with_keys(keys);
    let send = local.send(message);
    crate::engine::guarded::spawn_guarded(
        "trace send",
        async move {
            if let Err(e) = send.await {
                tracing::warn!(error = %e, "a trace message could not be sent");
            }
        },
        |_| {},
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn pub_record_matches_java_layout() {
        let message = Message::new("Orders", "x".repeat(10)).with_tags("paid");
        let context = AttemptContext {
            producer_group: "ns%pg",
            topic: "Orders",
            message: Some(&message),
            broker_addr: "10.0.0.1:10911",
            broker_name: "b",
            queue_id: 1,
            attempt: 1,
            unique_id: Some("UNIQ"),
            body_len: 10,
            started: Instant::now(),
            started_unix_ms: 1_700_000_000_123,
        };
        let err = crate::Error::Forbidden { reason: "x".into() };
        let record = pub_record("pg", &context, &message, Err(&err), 7);
        assert_eq!(
            record,
            "Pub\u{1}1700000000123\u{1}DefaultRegion\u{1}pg\u{1}Orders\u{1}UNIQ\u{1}paid\u{1}null\u{1}10.0.0.1:10911\u{1}10\u{1}7\u{1}0\u{1}null\u{1}false\u{2}"
        );
    }
}
