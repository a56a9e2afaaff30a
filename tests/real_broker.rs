//! Against the real NameServer + broker: what is acked is stored, byte for byte.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::read_back::{assert_same, stored_when_visible, Layout, Remote};
use common::varied_messages;
use rocketmq_tpc::HeaderEncoding;
use rocketmq_tpc::{Error, LocalProducer, Message, Producer, SendStatus, ShortString};

/// Sends each message with a blocking send; returns (message, unique id) pairs.
fn send_each(producer: &Producer, messages: Vec<Message>) -> Vec<(Message, ShortString)> {
    messages
        .into_iter()
        .map(|m| {
            let r = producer.send(m.clone()).expect("send");
            assert_eq!(r.status, SendStatus::SendOk);
            assert_eq!(&*r.queue.topic, m.topic);
            (m, r.msg_id)
        })
        .collect()
}

/// Pairs messages with their results' unique ids.
fn with_ids(
    messages: Vec<Message>,
    results: Vec<rocketmq_tpc::SendResult>,
) -> Vec<(Message, ShortString)> {
    assert_eq!(messages.len(), results.len());
    messages
        .into_iter()
        .zip(results)
        .map(|(m, r)| (m, r.msg_id))
        .collect()
}

/// Pairs messages with per-message send outcomes from a core, each of which must be a success.
fn with_ok_ids(
    messages: Vec<Message>,
    ids: Vec<Result<ShortString, Error>>,
) -> Vec<(Message, ShortString)> {
    assert_eq!(messages.len(), ids.len());
    messages
        .into_iter()
        .zip(ids)
        .map(|(m, id)| (m, id.expect("send")))
        .collect()
}

/// A producer on the shared real broker with `adjust` applied to the test config.
fn producer_with(adjust: impl FnOnce(&mut rocketmq_tpc::ProducerConfig)) -> Producer {
    let mut config = common::config(&common::rocketmq().namesrv);
    adjust(&mut config);
    Producer::builder().config(config).build().unwrap()
}

/// Where `topic` lives on the shared real broker (its route's brokers and queues).
fn layout(topic: &str) -> Layout {
    let rmq = common::rocketmq();
    Layout::of(&rmq.namesrv, &rmq.brokers[..1], topic)
}

/// Every message of `topic` stored now, over every queue of its route.
fn stored_now(
    topic: &str,
) -> BTreeMap<String, Vec<rocketmq_tpc::protocol::stored_message::StoredMessage>> {
    layout(topic).stored_now(topic)
}

/// Every sent message is stored exactly once and equals what was sent.
fn assert_all_stored(topic: &str, sent: &[(Message, ShortString)]) {
    let expected: Vec<&str> = sent.iter().map(|(_, key)| key.as_str()).collect();
    let stored = stored_when_visible(&layout(topic), topic, &expected);
    assert_eq!(stored.len(), sent.len(), "distinct stored messages");
    for (message, key) in sent {
        let copies = stored
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{key} was acked but is not stored"));
        assert_eq!(copies.len(), 1, "{key} stored {} times", copies.len());
        assert_same(message, key, &copies[0]);
    }
}

#[test]
fn sync_sends_are_stored_as_sent_through_the_tbw102_path() {
    common::init_tracing();
    let rmq = common::rocketmq();
    let topic = common::topic("sync");
    let producer = common::producer(&rmq.namesrv);
    let sent = send_each(&producer, varied_messages(&topic, 40, 100));
    assert_all_stored(&topic, &sent);
}

#[test]
fn async_sends_are_stored_as_sent() {
    let rmq = common::rocketmq();
    let topic = common::topic("async");
    let producer = common::producer(&rmq.namesrv);
    let messages = varied_messages(&topic, 300, 64);
    let futures: Vec<_> = messages
        .iter()
        .map(|m| producer.send_async(m.clone()))
        .collect();
    let results = futures
        .into_iter()
        .map(|f| f.wait().expect("async send"))
        .collect();
    let sent = with_ids(messages, results);
    assert_all_stored(&topic, &sent);
}

#[test]
fn compressed_and_plain_bodies_round_trip() {
    let topic = common::topic("zlib");
    let producer = producer_with(|c| c.compress_over = 1000);
    let messages = [1, 999, 1000, 4096, 100_000, 1_000_000]
        .into_iter()
        .map(|size| varied_messages(&topic, 1, size).remove(0))
        .collect();
    let sent = send_each(&producer, messages);
    assert_all_stored(&topic, &sent);
    let stored = stored_now(&topic);
    let flags: BTreeMap<usize, i32> = stored
        .values()
        .map(|v| (v[0].body.len(), v[0].sys_flag & 0x1))
        .collect();
    assert_eq!(flags[&999], 0, "below the threshold stays plain");
    assert_eq!(
        flags[&1000], 1,
        "at the threshold is compressed (Java's >=)"
    );
    assert_eq!(flags[&1_000_000], 1);
}

#[test]
fn json_header_encoding_works_too() {
    let topic = common::topic("json");
    let producer = producer_with(|c| c.header_encoding = HeaderEncoding::Json);
    let sent = send_each(&producer, varied_messages(&topic, 20, 50));
    assert_all_stored(&topic, &sent);
}

#[test]
fn oneway_sends_are_stored() {
    let rmq = common::rocketmq();
    let topic = common::topic("oneway");
    let producer = common::producer(&rmq.namesrv);
    let messages = varied_messages(&topic, 50, 30);
    for m in &messages {
        producer.send_oneway(m.clone()).wait().expect("written");
    }
    // Oneway has no answer: wait until the broker has stored them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = stored_now(&topic);
        if stored.len() >= messages.len() || Instant::now() > deadline {
            assert_eq!(stored.len(), messages.len());
            let by_body: BTreeMap<_, _> = stored
                .values()
                .map(|v| (v[0].body.clone(), v[0].clone()))
                .collect();
            for m in &messages {
                let s = &by_body[&m.body];
                assert_same(m, &s.properties["UNIQ_KEY"], s);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn local_producer_on_a_core_sends_without_a_hop() {
    let rmq = common::rocketmq();
    let topic = common::topic("local");
    let producer = common::producer(&rmq.namesrv);
    let messages = varied_messages(&topic, 100, 40);
    let to_send = messages.clone();
    let ids = producer
        .run_on_core(0, move |local: LocalProducer| async move {
            assert!(LocalProducer::current().is_some());
            let mut ids = Vec::new();
            for m in to_send {
                ids.push(local.send(m).await.map(|r| r.msg_id));
            }
            ids
        })
        .unwrap()
        .wait()
        .unwrap();
    assert!(LocalProducer::current().is_none());
    let sent = with_ok_ids(messages, ids);
    assert_all_stored(&topic, &sent);
}

#[test]
fn blocking_send_on_a_core_is_refused_not_deadlocked() {
    let rmq = common::rocketmq();
    let producer = common::producer(&rmq.namesrv);
    let p2 = producer.clone();
    let r = producer
        .run_on_core(
            0,
            move |_local| async move { p2.send(Message::new("T", "b")) },
        )
        .unwrap()
        .wait()
        .unwrap();
    assert!(matches!(r, Err(Error::InvalidConfig { .. })));
}

#[test]
fn results_report_distinct_offsets_per_queue() {
    let rmq = common::rocketmq();
    let topic = common::topic("offsets");
    let producer = common::producer(&rmq.namesrv);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..24 {
        let r = producer
            .send(Message::new(&topic, format!("m{i}")))
            .unwrap();
        assert!(
            seen.insert((r.queue.queue_id, r.queue_offset)),
            "offset reused"
        );
    }
    // The consume queues are built just after the acks: wait until they show all 24.
    let mut remote = Remote::connect(&rmq.brokers[0]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut total: i64 = 0;
    while total < 24 && Instant::now() < deadline {
        total = (0..8).map(|q| remote.max_offset(&topic, q)).sum();
        if total < 24 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(total, 24);
}

#[test]
fn explicit_batch_is_stored_message_for_message() {
    let rmq = common::rocketmq();
    let topic = common::topic("batch");
    let producer = common::producer(&rmq.namesrv);
    let messages = varied_messages(&topic, 64, 80);
    let results = producer.send_batch(messages.clone()).wait().expect("batch");
    assert_eq!(results.len(), 64);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.queue_offset, results[0].queue_offset + i as i64);
        assert_eq!(r.queue.queue_id, results[0].queue.queue_id);
        assert_eq!(r.offset_msg_id.len(), 32);
    }
    let sent = with_ids(messages, results);
    assert_all_stored(&topic, &sent);
}

#[test]
fn compressed_batch_is_stored_and_decompresses() {
    let topic = common::topic("zbatch");
    let producer = producer_with(|c| c.compress_over = 200); // mean body 300 B reaches it
    let messages = varied_messages(&topic, 10, 300);
    let results = producer.send_batch(messages.clone()).wait().expect("batch");
    let sent = with_ids(messages, results);
    assert_all_stored(&topic, &sent);
    let stored = stored_now(&topic);
    assert!(
        stored.values().all(|v| v[0].sys_flag & 1 == 1),
        "inner messages stored compressed"
    );
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
    let mut config = common::config(&rmq.namesrv);
    config.compress_over = usize::MAX;
    let plain = Producer::builder().config(config).build().unwrap();
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
fn auto_batching_gives_every_caller_its_own_result() {
    let rmq = common::rocketmq();
    let topic = common::topic("auto");
    let mut config = common::config(&rmq.namesrv);
    config.core.auto_batch = Some(rocketmq_tpc::AutoBatch {
        linger: Duration::from_millis(2),
        max_messages: 50,
        ..Default::default()
    });
    let producer = Producer::builder().config(config).build().unwrap();
    let messages = varied_messages(&topic, 400, 60);
    let futures: Vec<_> = messages
        .iter()
        .map(|m| producer.send_async(m.clone()))
        .collect();
    let sent: Vec<_> = futures
        .into_iter()
        .zip(messages)
        .map(|(f, m)| (m, f.wait().expect("auto-batched send").msg_id))
        .collect();
    let ids: std::collections::BTreeSet<_> = sent.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 400);
    let stats = producer.stats().unwrap();
    let frames: u64 = stats.cores.iter().map(|c| c.frames_written).sum();
    assert!(
        frames < 400,
        "{frames} frames for 400 messages: nothing was batched"
    );
    assert_all_stored(&topic, &sent);
}

#[test]
fn auto_batching_from_a_core_with_zero_linger() {
    let rmq = common::rocketmq();
    let topic = common::topic("autolocal");
    let mut config = common::config(&rmq.namesrv);
    config.core.auto_batch = Some(rocketmq_tpc::AutoBatch::default());
    config.compress_over = 200;
    let producer = Producer::builder().config(config).build().unwrap();
    // Mixed sizes: compressed and plain messages go in separate batches.
    let messages: Vec<Message> = (0..200)
        .map(|i| varied_messages(&topic, 1, if i % 3 == 0 { 500 } else { 20 }).remove(0))
        .collect();
    let to_send = messages.clone();
    let ids = producer
        .run_on_core(0, move |local: LocalProducer| async move {
            let sends = to_send.into_iter().map(|m| {
                let local = local.clone();
                glommio::spawn_local(async move { local.send(m).await })
            });
            let tasks: Vec<_> = sends.collect();
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await.map(|r| r.msg_id));
            }
            ids
        })
        .unwrap()
        .wait()
        .unwrap();
    let sent = with_ok_ids(messages, ids);
    assert_all_stored(&topic, &sent);
}

#[test]
fn large_compressed_body_from_a_core_is_stored() {
    let rmq = common::rocketmq();
    let topic = common::topic("bigcore");
    let producer = common::producer(&rmq.namesrv);
    let message = varied_messages(&topic, 1, 1 << 20).remove(0);
    let to_send = message.clone();
    let id = producer
        .run_on_core(0, move |local: LocalProducer| async move {
            local.send(to_send).await
        })
        .unwrap()
        .wait()
        .unwrap()
        .expect("1 MiB send from the core")
        .msg_id;
    assert_all_stored(&topic, &[(message, id)]);
}

#[test]
fn system_busy_from_the_real_broker_is_retried_without_loss() {
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

#[test]
fn several_connections_per_broker_share_the_sends() {
    let topic = common::topic("conns");
    let producer = producer_with(|c| c.core.connections_per_broker = 4);
    let messages = varied_messages(&topic, 200, 40);
    let futures: Vec<_> = messages
        .iter()
        .map(|m| producer.send_async(m.clone()))
        .collect();
    let results = futures
        .into_iter()
        .map(|f| f.wait().expect("send"))
        .collect();
    let stats = producer.stats().unwrap();
    // One NameServer connection plus four to the broker.
    assert_eq!(stats.cores[0].connections, 5, "{:?}", stats.cores[0]);
    assert_all_stored(&topic, &with_ids(messages, results));
}
