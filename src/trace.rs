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
//! only). A batch (explicit or automatic) is one record, as Java traces a `MessageBatch`: its
//! members' unique ids and offset ids comma-joined, no tags or keys.

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

/// What a `Pub` record says of the message (or batch) an attempt carried.
struct Subject<'a> {
    topic: &'a str,
    /// The unique id; a batch's, comma-joined (Java `MessageBatch` results).
    msg_id: String,
    tags: Option<&'a str>,
    keys: &'a [String],
    msg_type: u8,
}

impl<'a> Subject<'a> {
    fn of_message(message: &'a Message, unique_id: Option<&str>) -> Self {
        let half = message.properties.iter().any(|(k, _)| k == "TRAN_MSG");
        Subject {
            topic: &message.topic,
            msg_id: unique_id.unwrap_or("null").to_owned(),
            tags: message.tags.as_deref(),
            keys: &message.keys,
            msg_type: msg_type(message, half),
        }
    }

    /// A batch, as Java traces a `MessageBatch`: one record, ids comma-joined, no tags or keys.
    fn of_batch(topic: &'a str, ids: &[crate::ShortString]) -> Self {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        Subject {
            topic,
            msg_id: ids.join(","),
            tags: None,
            keys: &[],
            msg_type: 0,
        }
    }
}

/// What the attempt's answer says: region, offset ids (a batch's comma-joined), stored or not.
struct Stored {
    region: String,
    offset_msg_id: String,
    success: bool,
}

impl Stored {
    fn of(results: Result<&[SendResult], &crate::Error>) -> Self {
        match results {
            Ok(results) if !results.is_empty() => {
                let offsets: Vec<&str> = results.iter().map(|r| r.offset_msg_id.as_str()).collect();
                Stored {
                    region: results[0].region_id.to_string(),
                    offset_msg_id: offsets.join(","),
                    success: results[0].status == crate::SendStatus::SendOk,
                }
            }
            _ => Stored {
                region: "DefaultRegion".into(),
                offset_msg_id: "null".into(),
                success: false,
            },
        }
    }
}

/// One `Pub` record (Java `TraceDataEncoder.encoderFromContextBean`; absent values are
/// `null`, as Java's `StringBuilder.append(null)` writes them).
fn pub_record(
    group: &str,
    context: &AttemptContext<'_>,
    subject: &Subject<'_>,
    stored: &Stored,
    cost_ms: u128,
) -> String {
    let keys = if subject.keys.is_empty() {
        "null".to_owned()
    } else {
        subject.keys.join(" ")
    };
    let fields: [String; 14] = [
        "Pub".into(),
        context.started_unix_ms.to_string(),
        stored.region.clone(),
        group.into(),
        subject.topic.into(),
        subject.msg_id.clone(),
        subject.tags.unwrap_or("null").into(),
        keys,
        context.broker_addr.into(),
        context.body_len.to_string(),
        cost_ms.to_string(),
        subject.msg_type.to_string(),
        stored.offset_msg_id.clone(),
        stored.success.to_string(),
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
        let result = match outcome {
            Ok(None) => return, // oneway: nothing is known of the store
            Ok(Some(r)) => Ok(std::slice::from_ref(r)),
            Err(e) => Err(e),
        };
        let subject = Subject::of_message(message, context.unique_id);
        let ids: Vec<String> = context.unique_id.iter().map(|id| id.to_string()).collect();
        self.trace(context, &subject, Stored::of(result), ids);
    }

    fn after_batch_attempt(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<&[SendResult], &crate::Error>,
    ) {
        let Some(ids) = context.batch_unique_ids else {
            return;
        };
        // Results name the topic without the namespace, as Java's trace does.
        let topic = match outcome {
            Ok([first, ..]) => &*first.queue.topic,
            _ => context.topic,
        };
        let subject = Subject::of_batch(topic, ids);
        let ids = ids.iter().map(|id| id.to_string()).collect();
        self.trace(context, &subject, Stored::of(outcome), ids);
    }
}

impl TraceHook {
    /// Appends the record of one attempt to this core's buffer (with `ids`, the unique ids it
    /// names, as keys of the trace message) and flushes or schedules a flush.
    fn trace(
        &self,
        context: &AttemptContext<'_>,
        subject: &Subject<'_>,
        stored: Stored,
        ids: Vec<String>,
    ) {
        if context.topic == self.topic || subject.topic == self.topic {
            return;
        }
        let cost = context.started.elapsed().as_millis();
        let record = pub_record(&self.group, context, subject, &stored, cost);
        let (full, schedule) = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.body.push_str(&record);
            p.records += 1;
            p.keys.extend(ids);
            p.keys.extend(subject.keys.iter().cloned());
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
            batch_unique_ids: None,
            body_len: 10,
            started: Instant::now(),
            started_unix_ms: 1_700_000_000_123,
        };
        let err = crate::Error::Forbidden {
            reason: "x".into(),
            returned: crate::Returned::NOTHING,
        };
        let subject = Subject::of_message(&message, context.unique_id);
        let record = pub_record("pg", &context, &subject, &Stored::of(Err(&err)), 7);
        assert_eq!(
            record,
            "Pub\u{1}1700000000123\u{1}DefaultRegion\u{1}pg\u{1}Orders\u{1}UNIQ\u{1}paid\u{1}null\u{1}10.0.0.1:10911\u{1}10\u{1}7\u{1}0\u{1}null\u{1}false\u{2}"
        );
    }

    #[test]
    fn a_batch_is_one_record_with_comma_joined_ids() {
        let ids = [
            crate::ShortString::from("ID1"),
            crate::ShortString::from("ID2"),
        ];
        let context = AttemptContext {
            producer_group: "pg",
            topic: "Orders",
            message: None,
            broker_addr: "10.0.0.1:10911",
            broker_name: "b",
            queue_id: 0,
            attempt: 1,
            unique_id: None,
            batch_unique_ids: Some(&ids),
            body_len: 64,
            started: Instant::now(),
            started_unix_ms: 1_700_000_000_123,
        };
        let subject = Subject::of_batch("Orders", &ids);
        let stored = Stored {
            region: "DefaultRegion".into(),
            offset_msg_id: "OFF1,OFF2".into(),
            success: true,
        };
        assert_eq!(
            pub_record("pg", &context, &subject, &stored, 3),
            "Pub\u{1}1700000000123\u{1}DefaultRegion\u{1}pg\u{1}Orders\u{1}ID1,ID2\u{1}null\u{1}null\u{1}10.0.0.1:10911\u{1}64\u{1}3\u{1}0\u{1}OFF1,OFF2\u{1}true\u{2}"
        );
    }
}
