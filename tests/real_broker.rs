//! Against the real NameServer + broker: what is acked is stored, byte for byte.
//!
//! The store-and-read-back scenarios are rows of one table, [`ROWS`]: a producer configured one
//! way sends messages one way, and [`run`] checks that every message is acked and stored exactly
//! once as sent (read back from the broker), then the row's own check. Scenarios of another shape
//! (refusals, the SYSTEM_BUSY flood and its ledger) are tests of their own below the table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::read_back::{assert_stored_as_sent, Layout};
use common::varied_messages;
use rocketmq_tpc::protocol::compression::sys_flag::COMPRESSED;
use rocketmq_tpc::protocol::stored_message::StoredMessage;
use rocketmq_tpc::{
    AutoBatch, Error, HeaderEncoding, LocalProducer, Message, Producer, ProducerConfig,
    ProducerStats, SendResult, SendStatus, ShortString,
};

/// How long a row's sends may take together before the row fails, naming the messages that
/// have no outcome yet.
const SEND_WITHIN: Duration = Duration::from_secs(30);

/// How a row's messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// `Producer::send`, one after another.
    Sync,
    /// `Producer::send_async` for every message, then every outcome.
    Async,
    /// `Producer::send_oneway` for every message. There is no result, so read-back finds each
    /// message by its body.
    Oneway,
    /// One `Producer::send_batch` of every message.
    Batch,
    /// `LocalProducer::send` on core 0, one after another.
    OnCore,
    /// `LocalProducer::send` on core 0, every message in its own task, all at once.
    OnCoreAtOnce,
}

/// One store-and-read-back scenario.
struct Row {
    /// Names the row in failures and in its topic (`tpc_{name}_…`, so letters, digits and `_`).
    name: &'static str,
    /// Applied over [`common::config`].
    config: fn(&mut ProducerConfig),
    sending: Sending,
    /// The messages to send to the given topic.
    messages: fn(&str) -> Vec<Message>,
    /// The row's own assertions, run after the ones every row gets.
    check: fn(&Outcome),
}

/// What a row's check looks at.
struct Outcome<'a> {
    messages: &'a [Message],
    /// Each message's result, in order (empty for oneway sends).
    results: &'a [SendResult],
    /// Each message's stored copy, in order.
    stored: &'a [StoredMessage],
    /// The producer's counters once every send had its outcome (before read-back).
    stats: &'a ProducerStats,
}

const ROWS: &[Row] = &[
    Row {
        name: "sync_tbw102",
        config: |_| {},
        sending: Sending::Sync,
        messages: |topic| varied_messages(topic, 40, 100),
        check: |_| {},
    },
    Row {
        name: "async",
        config: |_| {},
        sending: Sending::Async,
        messages: |topic| varied_messages(topic, 300, 64),
        check: |_| {},
    },
    Row {
        name: "zlib_threshold",
        config: |c| c.compress_over = 1000,
        sending: Sending::Sync,
        messages: |topic| {
            [1, 999, 1000, 4096, 100_000, 1_000_000]
                .into_iter()
                .map(|size| varied_messages(topic, 1, size).remove(0))
                .collect()
        },
        check: compressed_from_the_threshold_on,
    },
    Row {
        name: "json_headers",
        config: |c| c.header_encoding = HeaderEncoding::Json,
        sending: Sending::Sync,
        messages: |topic| varied_messages(topic, 20, 50),
        check: |_| {},
    },
    Row {
        name: "oneway",
        config: |_| {},
        sending: Sending::Oneway,
        messages: |topic| varied_messages(topic, 50, 30),
        check: |_| {},
    },
    Row {
        name: "local",
        config: |_| {},
        sending: Sending::OnCore,
        messages: |topic| varied_messages(topic, 100, 40),
        check: |_| {},
    },
    Row {
        name: "offsets",
        config: |_| {},
        sending: Sending::Sync,
        messages: |topic| {
            (0..24)
                .map(|i| Message::new(topic, format!("m{i}")))
                .collect()
        },
        check: distinct_offsets,
    },
    Row {
        name: "batch",
        config: |_| {},
        sending: Sending::Batch,
        messages: |topic| varied_messages(topic, 64, 80),
        check: one_batch_in_one_queue,
    },
    Row {
        name: "zbatch",
        // The mean body (300 B) reaches it.
        config: |c| c.compress_over = 200,
        sending: Sending::Batch,
        messages: |topic| varied_messages(topic, 10, 300),
        check: all_compressed,
    },
    Row {
        name: "auto",
        config: |c| {
            c.core.auto_batch = Some(AutoBatch {
                linger: Duration::from_millis(2),
                max_messages: 50,
                ..Default::default()
            })
        },
        sending: Sending::Async,
        messages: |topic| varied_messages(topic, 400, 60),
        check: fewer_frames_than_messages,
    },
    Row {
        name: "autolocal",
        // Zero linger; compressed and plain messages go in separate batches.
        config: |c| {
            c.core.auto_batch = Some(AutoBatch::default());
            c.compress_over = 200;
        },
        sending: Sending::OnCoreAtOnce,
        messages: |topic| {
            (0..200)
                .map(|i| varied_messages(topic, 1, if i % 3 == 0 { 500 } else { 20 }).remove(0))
                .collect()
        },
        check: |_| {},
    },
    Row {
        name: "autofew",
        // Sends on the core beyond the in-flight cap wait for room instead of being refused,
        // and still batch (plain messages join their batch without a prepared copy).
        config: |c| {
            c.core.auto_batch = Some(AutoBatch::default());
            c.core.max_inflight = 4;
        },
        sending: Sending::OnCoreAtOnce,
        messages: |topic| varied_messages(topic, 60, 30),
        check: |_| {},
    },
    Row {
        name: "bigcore",
        config: |_| {},
        sending: Sending::OnCore,
        messages: |topic| varied_messages(topic, 1, 1 << 20),
        check: |_| {},
    },
    Row {
        name: "conns",
        config: |c| c.core.connections_per_broker = 4,
        sending: Sending::Async,
        messages: |topic| varied_messages(topic, 200, 40),
        check: one_namesrv_and_four_broker_connections,
    },
];

/// Runs every row of [`ROWS`], one after another and never beside the SYSTEM_BUSY flood, and
/// fails naming each row that failed and why (a failed row does not stop the others).
#[test]
fn every_row_is_stored_as_sent() {
    common::init_tracing();
    let _alone = apart_from_the_flood();
    let failed: Vec<String> = ROWS
        .iter()
        .filter_map(|row| {
            let panic = std::panic::catch_unwind(|| run(row)).err()?;
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            let what = format!("row {}", row.name);
            Some(if why.starts_with(&what) {
                why.to_owned()
            } else {
                format!("{what}: {why}")
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        ROWS.len(),
        failed.join("\n")
    );
}

/// Sends `row`'s messages and checks what every row promises: each send succeeds, its result
/// says where the message is stored, and the message is stored there exactly once as sent and
/// compressed when it should be. Then the row's own check.
fn run(row: &Row) {
    let what = format!("row {}", row.name);
    let topic = common::topic(row.name);
    let mut config = common::config(&common::rocketmq().namesrv);
    (row.config)(&mut config);
    let producer = Producer::builder()
        .config(config.clone())
        .build()
        .unwrap_or_else(|e| panic!("{what}: the producer does not start: {e}"));
    let messages = (row.messages)(&topic);
    let results = send(&what, &producer, row.sending, &messages);
    let stats = producer.stats().expect("stats");
    let sent: Vec<(Message, Option<ShortString>)> = match &results {
        None => messages.iter().map(|m| (m.clone(), None)).collect(),
        Some(results) => messages
            .iter()
            .zip(results)
            .map(|(m, r)| (m.clone(), Some(r.msg_id.clone())))
            .collect(),
    };
    let stored = assert_stored_as_sent(&what, &layout(&topic), &topic, &sent);
    let results = results.unwrap_or_default();
    for (i, (r, s)) in results.iter().zip(&stored).enumerate() {
        assert_eq!(r.status, SendStatus::SendOk, "{what}: message {i}");
        assert_eq!(&*r.queue.topic, topic, "{what}: message {i}");
        assert_eq!(
            (r.queue.queue_id, r.queue_offset),
            (s.queue_id, s.queue_offset),
            "{what}: message {i} is stored elsewhere than its result says (queue, offset)"
        );
    }
    let mean = messages.iter().map(|m| m.body.len()).sum::<usize>() / messages.len();
    for (i, (m, s)) in messages.iter().zip(&stored).enumerate() {
        // An explicit batch compresses all its bodies or none, by their mean size.
        let size = if row.sending == Sending::Batch {
            mean
        } else {
            m.body.len()
        };
        assert_eq!(
            s.sys_flag & COMPRESSED != 0,
            size >= config.compress_over,
            "{what}: message {i} ({size} bytes counted, compress_over {}), sys_flag {:#x}",
            config.compress_over,
            s.sys_flag
        );
    }
    (row.check)(&Outcome {
        messages: &messages,
        results: &results,
        stored: &stored,
        stats: &stats,
    });
}

/// Sends `messages` the `sending` way; returns their results in order (`None` for oneway
/// sends). Fails naming every message whose send failed or has no outcome after
/// [`SEND_WITHIN`].
fn send(
    what: &str,
    producer: &Producer,
    sending: Sending,
    messages: &[Message],
) -> Option<Vec<SendResult>> {
    let label = |i: usize| format!("message {i}");
    match sending {
        Sending::Sync => {
            let outcomes = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let (producer, m) = (producer.clone(), m.clone());
                    let outcome =
                        common::within(SEND_WITHIN, &format!("{what}: {}", label(i)), move || {
                            producer.send(m)
                        });
                    (label(i), outcome)
                })
                .collect();
            Some(all_ok(what, outcomes))
        }
        Sending::Async => {
            let futures = messages
                .iter()
                .enumerate()
                .map(|(i, m)| (label(i), producer.send_async(m.clone())))
                .collect();
            Some(all_ok(what, common::wait_all(what, SEND_WITHIN, futures)))
        }
        Sending::Oneway => {
            let futures = messages
                .iter()
                .enumerate()
                .map(|(i, m)| (label(i), producer.send_oneway(m.clone())))
                .collect();
            all_ok(what, common::wait_all(what, SEND_WITHIN, futures));
            None
        }
        Sending::Batch => {
            let batch = vec![("the batch", producer.send_batch(messages.to_vec()))];
            let results = all_ok(what, common::wait_all(what, SEND_WITHIN, batch)).remove(0);
            assert_eq!(
                results.len(),
                messages.len(),
                "{what}: results of the batch"
            );
            Some(results.into_vec())
        }
        Sending::OnCore | Sending::OnCoreAtOnce => Some(all_ok(
            what,
            on_core(what, producer, messages, sending == Sending::OnCoreAtOnce),
        )),
    }
}

/// The values of `outcomes`; fails naming every label whose outcome is an error.
fn all_ok<T>(what: &str, outcomes: Vec<(impl std::fmt::Display, Result<T, Error>)>) -> Vec<T> {
    let total = outcomes.len();
    let mut values = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (label, outcome) in outcomes {
        match outcome {
            Ok(value) => values.push(value),
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} sends failed: {}",
        failures.len(),
        failures[..failures.len().min(20)].join("; ")
    );
    values
}

/// Sends `messages` with `LocalProducer::send` from core 0 (each in its own task when
/// `at_once`); returns each message's outcome, in order. Fails naming the messages that have no
/// outcome after [`SEND_WITHIN`], and when `LocalProducer::current()` is wrong on or off the core.
fn on_core(
    what: &str,
    producer: &Producer,
    messages: &[Message],
    at_once: bool,
) -> Vec<(String, Result<SendResult, Error>)> {
    let (tx, rx) = mpsc::channel();
    let to_send = messages.to_vec();
    let job = producer
        .run_on_core(0, move |local: LocalProducer| async move {
            let on_a_core = LocalProducer::current().is_some();
            if at_once {
                let tasks: Vec<_> = to_send
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (local, tx) = (local.clone(), tx.clone());
                        glommio::spawn_local(async move {
                            let _ = tx.send((i, local.send(m).await));
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            } else {
                for (i, m) in to_send.into_iter().enumerate() {
                    let _ = tx.send((i, local.send(m).await));
                }
            }
            on_a_core
        })
        .unwrap_or_else(|e| panic!("{what}: run_on_core: {e}"));
    let mut outcomes: Vec<Option<Result<SendResult, Error>>> =
        messages.iter().map(|_| None).collect();
    let deadline = Instant::now() + SEND_WITHIN;
    let mut left = messages.len();
    while left > 0 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((i, outcome)) => {
                left -= usize::from(outcomes[i].is_none());
                outcomes[i] = Some(outcome);
            }
            Err(why) => {
                let missing: Vec<usize> = (0..outcomes.len())
                    .filter(|&i| outcomes[i].is_none())
                    .collect();
                panic!(
                    "{what}: {left} of {} sends on core 0 have no outcome ({why}, after at most \
                     {SEND_WITHIN:?}): messages {:?}",
                    messages.len(),
                    &missing[..missing.len().min(20)]
                );
            }
        }
    }
    let on_a_core = common::within(
        SEND_WITHIN,
        &format!("{what}: the job on core 0"),
        move || job.wait(),
    )
    .unwrap_or_else(|e| panic!("{what}: the job on core 0: {e}"));
    assert!(
        on_a_core,
        "{what}: LocalProducer::current() is None inside run_on_core"
    );
    assert!(
        LocalProducer::current().is_none(),
        "{what}: LocalProducer::current() is Some off the cores"
    );
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| (format!("message {i}"), o.expect("every outcome is in")))
        .collect()
}

/// `compress_over` 1000: 999 bytes stay plain, 1000 are compressed (Java's `>=`), 1 MB too.
fn compressed_from_the_threshold_on(o: &Outcome) {
    let flags: BTreeMap<usize, i32> = o
        .messages
        .iter()
        .zip(o.stored)
        .map(|(m, s)| (m.body.len(), s.sys_flag & COMPRESSED))
        .collect();
    assert_eq!(flags[&999], 0, "below the threshold stays plain");
    assert_eq!(flags[&1000], 1, "at the threshold is compressed");
    assert_eq!(flags[&1_000_000], 1);
}

/// No two results report one offset of one queue.
fn distinct_offsets(o: &Outcome) {
    let mut seen = BTreeSet::new();
    for r in o.results {
        assert!(
            seen.insert((r.queue.queue_id, r.queue_offset)),
            "offset {} of queue {} reported twice",
            r.queue_offset,
            r.queue.queue_id
        );
    }
}

/// An explicit batch goes to one queue, at consecutive offsets, every message with its broker id.
fn one_batch_in_one_queue(o: &Outcome) {
    let first = &o.results[0];
    for (i, r) in o.results.iter().enumerate() {
        assert_eq!(r.queue_offset, first.queue_offset + i as i64, "message {i}");
        assert_eq!(r.queue.queue_id, first.queue.queue_id, "message {i}");
        assert_eq!(
            r.offset_msg_id.len(),
            32,
            "message {i}: {}",
            r.offset_msg_id
        );
    }
}

/// Every inner message of the batch is stored compressed.
fn all_compressed(o: &Outcome) {
    assert!(
        o.stored.iter().all(|s| s.sys_flag & COMPRESSED != 0),
        "inner messages stored compressed"
    );
}

/// Automatic batching put several messages in one frame.
fn fewer_frames_than_messages(o: &Outcome) {
    let frames = o.stats.frames_written();
    assert!(
        frames < o.messages.len() as u64,
        "{frames} frames for {} messages: nothing was batched",
        o.messages.len()
    );
}

/// `connections_per_broker` 4 opens four connections to the broker, plus the NameServer's.
fn one_namesrv_and_four_broker_connections(o: &Outcome) {
    assert_eq!(o.stats.cores[0].connections, 5, "{:?}", o.stats.cores[0]);
}

/// Held by the SYSTEM_BUSY flood and by the table while its rows run. The flood makes the shared
/// broker refuse requests and leave some unanswered, so a row running beside it would see failed
/// sends and duplicates its own producer did not cause.
static FLOOD: Mutex<()> = Mutex::new(());

/// Waits until no flood runs and keeps others from starting while the guard lives (a test
/// that failed while holding it does not stop the next).
fn apart_from_the_flood() -> MutexGuard<'static, ()> {
    FLOOD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A producer on the shared real broker with `adjust` applied to the test config.
fn producer_with(adjust: impl FnOnce(&mut ProducerConfig)) -> Producer {
    let mut config = common::config(&common::rocketmq().namesrv);
    adjust(&mut config);
    Producer::builder().config(config).build().unwrap()
}

/// Where `topic` lives on the shared real broker (its route's brokers and queues).
fn layout(topic: &str) -> Layout {
    let rmq = common::rocketmq();
    Layout::of(&rmq.namesrv, &rmq.brokers[..1], topic)
}

#[test]
fn blocking_send_on_a_core_is_refused_not_deadlocked() {
    let rmq = common::rocketmq();
    let producer = common::producer(&rmq.namesrv);
    let p2 = producer.clone();
    let job = producer
        .run_on_core(
            0,
            move |_local| async move { p2.send(Message::new("T", "b")) },
        )
        .unwrap();
    let r = common::within(
        Duration::from_secs(10),
        "a blocking send on a core",
        move || job.wait(),
    )
    .unwrap();
    assert!(matches!(r, Err(Error::InvalidConfig { .. })));
}

#[test]
fn invalid_batches_are_refused_before_sending() {
    let rmq = common::rocketmq();
    let producer = common::producer(&rmq.namesrv);
    let mixed = vec![Message::new("A", "1"), Message::new("B", "2")];
    assert!(matches!(
        producer.send_batch(mixed).wait(),
        Err(Error::InvalidMessage { .. })
    ));
    let delayed = vec![Message::new("A", "1").with_delay_level(3)];
    assert!(matches!(
        producer.send_batch(delayed).wait(),
        Err(Error::InvalidMessage { .. })
    ));
    // Over 4 MiB encoded (compression off, so the size counts as is).
    let plain = producer_with(|c| c.compress_over = usize::MAX);
    let huge = vec![
        Message::new("A", vec![1u8; 3 << 20]),
        Message::new("A", vec![2u8; 3 << 20]),
    ];
    assert!(matches!(
        plain.send_batch(huge).wait(),
        Err(Error::InvalidMessage { .. })
    ));
}

#[test]
fn system_busy_from_the_real_broker_is_retried_without_loss() {
    let _flood = apart_from_the_flood();
    let topic = common::topic("busy");
    // Above the broker's 4,096-per-connection admission limit, on purpose.
    let producer = producer_with(|c| {
        c.core.max_inflight = 12_000;
        c.core.max_inflight_per_connection = 12_000;
        c.core.inbox_capacity = 16_384;
        // Under this flood the broker leaves some requests unanswered (and may still store
        // them): a finite attempt limit turns those into retries whose duplicates the ledger
        // counts (allowed after an unknown outcome).
        c.send_timeout = Duration::from_secs(30);
        c.attempt_timeout = Duration::from_secs(5);
        c.retries_when_send_async_failed = 10;
    });
    let warm_up = Message::new(&topic, "warm-up");
    let warm_result = producer.send(warm_up.clone()).unwrap();
    let messages: Vec<Message> = (0..10_000)
        .map(|i| Message::new(&topic, format!("busy-{i}")))
        .collect();
    let futures: Vec<_> = messages
        .into_iter()
        .map(|m| (m.clone(), producer.send_async(m)))
        .collect();
    let outcomes = common::wait_all_sent("busy", Duration::from_secs(30 + 15), futures);
    let mut sent = vec![(warm_up, Ok(warm_result))];
    sent.extend(outcomes);
    let failures: Vec<String> = sent
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    let stats = producer.stats().unwrap();
    let (retries, busy) = (stats.retries(), stats.failed());
    eprintln!(
        "busy test: sent {} failed {} retries {retries} final failures {busy}",
        sent.len(),
        failures.len()
    );
    producer.shutdown(Duration::from_secs(5));
    assert!(
        failures.is_empty(),
        "SYSTEM_BUSY is back-pressure: retried, not failed: {} failures, the first {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    common::ledger::check(&layout(&topic), &topic, &sent, retries);
}
