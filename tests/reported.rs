//! Reported sends (`send_reported` + a delivery handler, the fast path): one delivery per message
//! handed over, stored when reported stored, refusals returned at the call with the message.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::read_back::{stored_when_visible, Layout};
use rocketmq_tpc::{
    AutoBatch, Error, LocalProducer, Message, Producer, ProducerConfig, SendResult,
};

type Deliveries = Arc<Mutex<BTreeMap<u64, Vec<Result<SendResult, Error>>>>>;

/// A producer on `namesrv` whose delivery handler records every outcome by token.
fn reporting_producer(
    namesrv: &str,
    adjust: impl FnOnce(&mut ProducerConfig),
) -> (Producer, Deliveries) {
    reporting_producer_then(namesrv, adjust, |_| {})
}

/// As [`reporting_producer`], the handler calling `then` with the token after recording.
fn reporting_producer_then(
    namesrv: &str,
    adjust: impl FnOnce(&mut ProducerConfig),
    then: impl Fn(u64) + Send + Sync + 'static,
) -> (Producer, Deliveries) {
    let deliveries: Deliveries = Arc::default();
    let sink = Arc::clone(&deliveries);
    let mut config = common::config(namesrv);
    adjust(&mut config);
    let producer = Producer::builder()
        .config(config)
        .on_delivery(move |token, result| {
            sink.lock()
                .unwrap()
                .entry(token)
                .or_default()
                .push(result.cloned());
            then(token);
        })
        .build()
        .expect("producer starts");
    (producer, deliveries)
}

/// Sends message `n` ("`prefix` n") as a reported send with token `n` for each `n` of `tokens`,
/// from producer core 0.
fn send_reported_on_core(
    producer: &Producer,
    topic: &str,
    tokens: std::ops::Range<u64>,
    prefix: &'static str,
) {
    let topic = rocketmq_tpc::Topic::from(topic);
    common::on_core(producer, 0, move |local: LocalProducer| async move {
        for n in tokens {
            let message = Message::new(topic.clone(), format!("{prefix} {n}"));
            local.send_reported(message, n).expect("handed over");
        }
    })
    .expect("core job done");
}

/// Waits until every token in `tokens` has an outcome; fails naming the missing ones.
fn wait_delivered(deliveries: &Deliveries, tokens: std::ops::Range<u64>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing: Vec<u64> = {
            let d = deliveries.lock().unwrap();
            tokens.clone().filter(|t| !d.contains_key(t)).collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} reported sends have no outcome after {limit:?} (first: {:?})",
            missing.len(),
            tokens.end - tokens.start,
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every token in `d` was reported once, stored, and its message is stored once on the local
/// broker (`what` starts each failure's text).
fn assert_each_reported_stored_once(
    d: &BTreeMap<u64, Vec<Result<SendResult, Error>>>,
    topic: &str,
    what: &str,
) {
    let rmq = common::rocketmq();
    let mut ids = Vec::new();
    for (token, outcomes) in d {
        assert_eq!(outcomes.len(), 1, "{what}token {token}: {outcomes:?}");
        match &outcomes[0] {
            Ok(result) => ids.push(result.msg_id.to_string()),
            Err(e) => panic!("{what}token {token} failed: {e}"),
        }
    }
    let expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    let layout = Layout::of(&rmq.namesrv, &rmq.brokers[..1], topic);
    let stored = stored_when_visible(&layout, topic, &expected);
    for id in &expected {
        assert_eq!(
            stored.get(*id).map(Vec::len),
            Some(1),
            "{what}{id} stored once"
        );
    }
}

#[test]
fn reported_sends_from_threads_and_cores_get_one_outcome_each_and_are_stored() {
    common::init_tracing();
    let rmq = common::rocketmq();
    let topic = common::topic("reported");
    let (producer, deliveries) = reporting_producer(&rmq.namesrv, |_| {});
    // The first send fetches the route and connects (the slow path); the rest take records.
    for n in 0..300u64 {
        producer
            .send_reported(Message::new(topic.clone(), format!("thread {n}")), n)
            .expect("handed over");
    }
    send_reported_on_core(&producer, &topic, 300..600, "core");
    wait_delivered(&deliveries, 0..600, Duration::from_secs(30));
    let d = deliveries.lock().unwrap();
    assert_eq!(d.len(), 600, "no outcome for a token never sent");
    assert_each_reported_stored_once(&d, &topic, "");
    producer.shutdown(Duration::from_secs(5));
}

/// Plain messages sent from a core with automatic batching on skip the prepared-message step
/// and are written straight into their batch: each still gets one outcome, its own id, and is
/// stored with its body, tags, keys and properties; an invalid one is refused at the call with
/// the message, and one large enough to be compressed takes the usual path beside them.
#[test]
fn reported_sends_through_the_automatic_batcher_are_stored_as_sent() {
    common::init_tracing();
    let rmq = common::rocketmq();
    let topic = common::topic("reported_batched");
    let (producer, deliveries) = reporting_producer(&rmq.namesrv, |c| {
        c.core.auto_batch = Some(AutoBatch {
            linger: Duration::from_millis(2),
            max_messages: 32,
            ..AutoBatch::default()
        });
    });
    let message = |n: u64| {
        Message::new(topic.clone(), format!("batched {n}"))
            .with_tags(format!("tag{}", n % 3))
            .with_keys([format!("key{n}")])
            .with_property("n", n.to_string())
    };
    // The route and connection first, so that the rest batch on an open connection.
    producer.send(message(0)).expect("first send");
    let mut sent: Vec<Message> = (1..400).map(message).collect();
    sent.push(Message::new(topic.clone(), "z".repeat(8 * 1024)).with_property("n", "400"));
    let on_core = sent.clone();
    let refused = common::on_core(&producer, 0, move |local: LocalProducer| async move {
        for (n, message) in (1u64..).zip(on_core) {
            local.send_reported(message, n).expect("handed over");
        }
        local.send_reported(Message::new("bad topic!", "x"), 401)
    })
    .expect("core job done");
    match refused {
        Err(e @ Error::InvalidMessage { .. }) => {
            let m = e.into_message().expect("the refused message comes back");
            assert_eq!(&m.body[..], b"x");
        }
        other => panic!("expected InvalidMessage at the call, got {other:?}"),
    }
    wait_delivered(&deliveries, 1..401, Duration::from_secs(30));
    let d = deliveries.lock().unwrap();
    assert!(!d.contains_key(&401), "a refused message is not reported");
    let mut ids = Vec::new();
    for (token, outcomes) in d.iter() {
        assert_eq!(outcomes.len(), 1, "token {token}: {outcomes:?}");
        match &outcomes[0] {
            Ok(result) => ids.push((*token, result.msg_id.to_string())),
            Err(e) => panic!("token {token} failed: {e}"),
        }
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), ids.len(), "every message has its own id");
    let expected: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    let layout = Layout::of(&rmq.namesrv, &rmq.brokers[..1], &topic);
    let stored = stored_when_visible(&layout, &topic, &expected);
    for (token, id) in &ids {
        let copies = stored
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(copies.len(), 1, "token {token} ({id}) stored once");
        let got = &copies[0];
        let want = &sent[*token as usize - 1];
        assert_eq!(got.body, want.body, "token {token}: body");
        assert_eq!(
            got.properties.get("TAGS"),
            want.tags.as_ref(),
            "token {token}"
        );
        assert_eq!(
            got.properties.get("KEYS").cloned(),
            (!want.keys.is_empty()).then(|| want.keys.join(" ")),
            "token {token}"
        );
        assert_eq!(got.properties["n"], token.to_string(), "token {token}");
        assert_eq!(got.properties["UNIQ_KEY"], *id, "token {token}");
    }
    producer.shutdown(Duration::from_secs(5));
}

#[test]
fn send_reported_without_a_delivery_handler_is_refused_at_the_call() {
    let producer = common::producer("127.0.0.1:1");
    match producer.send_reported(Message::new("no_handler", "x"), 1) {
        Err(Error::InvalidConfig { .. }) => {}
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let local = common::on_core(&producer, 0, |local: LocalProducer| async move {
        local.send_reported(Message::new("no_handler", "x"), 1)
    })
    .unwrap();
    assert!(
        matches!(local, Err(Error::InvalidConfig { .. })),
        "{local:?}"
    );
    // Invalid messages come back at the call, not through the handler.
    let (producer, deliveries) = reporting_producer("127.0.0.1:1", |_| {});
    let refused = producer.send_reported(Message::new("bad topic!", "x"), 7);
    assert!(
        matches!(refused, Err(Error::InvalidMessage { .. })),
        "{refused:?}"
    );
    producer.shutdown(Duration::from_secs(2));
    assert!(deliveries.lock().unwrap().is_empty());
}

#[test]
fn reported_sends_without_a_nameserver_fail_through_the_handler_within_their_budget() {
    let (producer, deliveries) = reporting_producer("127.0.0.1:1", |c| {
        c.send_timeout = Duration::from_millis(500);
    });
    let started = Instant::now();
    for n in 0..20 {
        producer
            .send_reported(Message::new("reported_dead", "x"), n)
            .expect("handed over");
    }
    wait_delivered(&deliveries, 0..20, Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5));
    for (token, outcomes) in deliveries.lock().unwrap().iter() {
        assert_eq!(outcomes.len(), 1, "token {token}");
        let e = outcomes[0].as_ref().expect_err("no NameServer");
        assert_eq!(e.outcome(), rocketmq_tpc::Outcome::NotStored, "{e}");
    }
    producer.shutdown(Duration::from_secs(2));
}

#[test]
fn a_core_without_room_refuses_reported_sends_at_once_with_the_message() {
    refuses_without_room(None);
}

#[test]
fn a_core_without_room_refuses_automatically_batched_reported_sends_with_the_message() {
    refuses_without_room(Some(AutoBatch {
        linger: Duration::from_millis(50),
        ..AutoBatch::default()
    }));
}

fn refuses_without_room(auto_batch: Option<AutoBatch>) {
    let (producer, deliveries) = reporting_producer("127.0.0.1:1", |c| {
        c.core.max_inflight = 4;
        c.core.auto_batch = auto_batch;
        c.send_timeout = Duration::from_millis(300);
    });
    let refused = common::on_core(&producer, 0, |local: LocalProducer| async move {
        let mut refused = Vec::new();
        for n in 0..10u64 {
            let message = Message::new("reported_full", format!("m{n}"));
            if let Err(e) = local.send_reported(message, n) {
                refused.push((n, e));
            }
        }
        refused
    })
    .unwrap();
    assert_eq!(refused.len(), 6, "{refused:?}");
    for (n, e) in refused {
        match e {
            e @ Error::QueueFull { .. } if e.returned().message().is_some() => {
                let m = e.into_message().expect("checked above");
                assert_eq!(&m.body[..], format!("m{n}").as_bytes())
            }
            other => panic!("message {n}: expected QueueFull with the message, got {other:?}"),
        }
    }
    wait_delivered(&deliveries, 0..4, Duration::from_secs(10));
    producer.shutdown(Duration::from_secs(2));
    assert_eq!(deliveries.lock().unwrap().len(), 4);
}

#[test]
fn shutdown_gives_every_reported_send_in_flight_its_outcome() {
    let rmq = common::rocketmq();
    let topic = common::topic("reported_shutdown");
    let (producer, deliveries) = reporting_producer(&rmq.namesrv, |_| {});
    let mut handed = 0u64;
    for n in 0..2000u64 {
        if producer
            .send_reported(Message::new(topic.clone(), format!("m{n}")), n)
            .is_ok()
        {
            handed += 1;
        }
    }
    let report = producer.shutdown(Duration::from_secs(10));
    assert!(report.joined, "{report:?}");
    wait_delivered(&deliveries, 0..handed, Duration::from_secs(5));
    let d = deliveries.lock().unwrap();
    assert!(d.values().all(|o| o.len() == 1), "one outcome per message");
    let ok = d.values().filter(|o| o[0].is_ok()).count();
    assert!(ok > 0, "some sends completed before the shutdown");
}

#[test]
fn producer_send_reported_on_a_core_refuses_a_full_inbox_at_once() {
    // One core whose inbox holds 2 sends, filled from that core itself (so nothing drains it):
    // waiting for room would stall the core for the whole send timeout.
    let (producer, deliveries) = reporting_producer("127.0.0.1:1", |c| {
        c.core.inbox_capacity = 2;
        c.send_timeout = Duration::from_secs(5);
    });
    let handle = producer.clone();
    let (refused, took) = common::on_core(&producer, 0, move |_local: LocalProducer| async move {
        let started = Instant::now();
        let mut refused = 0;
        for n in 0..4u64 {
            if let Err(e @ Error::QueueFull { .. }) =
                handle.send_reported(Message::new("reported_full_inbox", "x"), n)
            {
                assert!(e.returned().message().is_some(), "{e:?}");
                refused += 1;
            }
        }
        (refused, started.elapsed())
    })
    .unwrap();
    assert_eq!(
        refused, 2,
        "sends past the inbox's room are refused with their message"
    );
    assert!(
        took < Duration::from_secs(1),
        "the core waited {took:?} for room it drains itself"
    );
    wait_delivered(&deliveries, 0..2, Duration::from_secs(15));
    producer.shutdown(Duration::from_secs(2));
}

/// A delivery handler that panics (on every odd token, after recording the outcome) costs
/// nothing but its own call: the panic is logged, the core goes on, the connection stays open,
/// and every other send in flight, single or automatically batched, is reported once and stored
/// once (a connection closed by the panic would fail or resend them).
#[test]
fn a_panicking_delivery_handler_loses_no_other_outcome() {
    for auto_batch in [None, Some(AutoBatch::default())] {
        panicking_handler_round(auto_batch);
    }
}

fn panicking_handler_round(auto_batch: Option<AutoBatch>) {
    common::init_tracing();
    let rmq = common::rocketmq();
    let batched = auto_batch.is_some();
    let topic = common::topic(if batched {
        "panicking_handler_batched"
    } else {
        "panicking_handler"
    });
    let (producer, deliveries) = reporting_producer_then(
        &rmq.namesrv,
        |c| c.core.auto_batch = auto_batch,
        |token| {
            if token % 2 == 1 {
                panic!("delivery handler fails on token {token}");
            }
        },
    );
    // The route and connection first, so that the rest go through send records.
    producer
        .send(Message::new(topic.clone(), "warm-up"))
        .expect("first send");
    send_reported_on_core(&producer, &topic, 0..400, "m");
    wait_delivered(&deliveries, 0..400, Duration::from_secs(30));
    // And the core still sends.
    producer
        .send(Message::new(topic.clone(), "after"))
        .expect("a send after the panics");
    // The connection stayed open: nothing was sent again, no attempt failed.
    let stats = producer.stats().expect("stats");
    assert_eq!(stats.retries(), 0, "batched {batched}: {stats:?}");
    for core in &stats.cores {
        assert!(
            core.attempt_errors_by_broker.is_empty(),
            "batched {batched}: attempt errors {:?}",
            core.attempt_errors_by_broker
        );
    }
    let d = deliveries.lock().unwrap();
    assert_each_reported_stored_once(&d, &topic, &format!("batched {batched}: "));
    drop(d);
    producer.shutdown(Duration::from_secs(5));
}

/// A handler that panics on every failure, for sends the core refuses from its queue (their
/// deadline passed while they waited for the one in-flight permit, held by a send waiting on a
/// silent NameServer): each still gets its one outcome and the core goes on (before, the
/// refusal's panic unwound the core's loop, stopping the core).
#[test]
fn a_handler_panicking_on_refusals_stops_no_core() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let namesrv = silent.local_addr().unwrap().to_string();
    let (producer, deliveries) = reporting_producer_then(
        &namesrv,
        |c| {
            c.core.max_inflight = 1;
            c.send_timeout = HELD;
        },
        |token| panic!("delivery handler fails on token {token}"),
    );
    send_behind_a_held_permit(&producer, "reported_refused", 20);
    wait_delivered(&deliveries, 0..20, Duration::from_secs(10));
    assert_refused_behind_the_held_permit(&deliveries);
    let alive = common::on_core(&producer, 0, |_: LocalProducer| async move { "alive" });
    assert_eq!(alive.ok(), Some("alive"), "the core still runs jobs");
    let report = producer.shutdown(Duration::from_secs(5));
    assert!(report.joined, "{report:?}");
    drop(silent);
}

/// The producer's send timeout in the tests of [`send_behind_a_held_permit`]. The first send
/// holds its permit while it waits for its route from a silent NameServer, a request bounded
/// by the attempt timeout (1 s by default) within that budget: about 1 s.
const HELD: Duration = Duration::from_secs(2);

/// Token 0 with the producer's budget, [`HELD`] (it takes the core's one permit and waits for
/// its route from a silent NameServer for about 1 s), then tokens `1..n` with 200 ms budgets,
/// which end waiting for that permit. (With 200 ms for the producer's timeout, the route fetch,
/// and with it the hold, ended as the others' budgets did, and a late token could take the
/// permit and end `NoRoute` instead.)
fn send_behind_a_held_permit(producer: &Producer, topic: &str, n: u64) {
    producer
        .send_reported(Message::new(topic, "holds the permit"), 0)
        .expect("handed over");
    let short = rocketmq_tpc::SendOptions::new().timeout(Duration::from_millis(200));
    for token in 1..n {
        producer
            .send_reported_with(Message::new(topic, "x"), token, short.clone())
            .expect("handed over");
    }
}

/// One outcome per token of [`send_behind_a_held_permit`]: an error for the one holding the
/// permit, `QueueFull` for every other.
fn assert_refused_behind_the_held_permit(deliveries: &Deliveries) {
    for (token, outcomes) in deliveries.lock().unwrap().iter() {
        assert_eq!(outcomes.len(), 1, "token {token}: {outcomes:?}");
        match (&outcomes[0], *token) {
            (Err(_), 0) => {}
            (Err(Error::QueueFull { .. }), _) => {}
            (other, _) => panic!("token {token}: expected QueueFull, got {other:?}"),
        }
    }
}

/// A core whose delivery handler was replaced ([`LocalProducer::set_delivery_handler`]) gets
/// the refusals of its own queue too (deadline passed waiting for the one in-flight permit),
/// not the producer's handler: every outcome of a call this core takes goes to one handler.
#[test]
fn refusals_from_a_cores_queue_go_to_its_own_handler() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let namesrv = silent.local_addr().unwrap().to_string();
    let (producer, at_producer) = reporting_producer(&namesrv, |c| {
        c.core.max_inflight = 1;
        c.send_timeout = HELD;
    });
    let at_core: Deliveries = Arc::default();
    let sink = Arc::clone(&at_core);
    common::on_core(&producer, 0, move |local: LocalProducer| async move {
        local.set_delivery_handler(move |token, result| {
            sink.lock()
                .unwrap()
                .entry(token)
                .or_default()
                .push(result.cloned());
        });
    })
    .expect("the core runs the job");
    send_behind_a_held_permit(&producer, "reported_own", 5);
    wait_delivered(&at_core, 0..5, Duration::from_secs(10));
    assert_refused_behind_the_held_permit(&at_core);
    assert!(
        at_producer.lock().unwrap().is_empty(),
        "the producer's handler got {:?}",
        at_producer.lock().unwrap()
    );
    let report = producer.shutdown(Duration::from_secs(5));
    assert!(report.joined, "{report:?}");
    drop(silent);
}

/// With automatic batching and a zero linger, the batches one turn of the core leaves open
/// (three topics, none full) all go at the end of that turn, each message stored once: one
/// flush takes every batch opened in the turn.
#[test]
fn partial_batches_of_several_topics_go_at_the_end_of_the_turn() {
    common::init_tracing();
    let rmq = common::rocketmq();
    let topics: Vec<String> = (0..3)
        .map(|i| common::topic(&format!("turn_flush_{i}")))
        .collect();
    let (producer, deliveries) = reporting_producer(&rmq.namesrv, |c| {
        c.core.auto_batch = Some(AutoBatch::default());
    });
    assert!(AutoBatch::default().linger.is_zero(), "the default lingers");
    // Routes and connection first, so that the turn below only joins batches.
    for topic in &topics {
        producer
            .send(Message::new(topic.clone(), "warm-up"))
            .expect("first send");
    }
    let shared: Vec<rocketmq_tpc::Topic> = topics.iter().map(|t| t.as_str().into()).collect();
    common::on_core(&producer, 0, move |local: LocalProducer| async move {
        for n in 0..30u64 {
            let topic = shared[(n % 3) as usize].clone();
            local
                .send_reported(Message::new(topic, format!("turn {n}")), n)
                .expect("handed over");
        }
    })
    .expect("core job done");
    wait_delivered(&deliveries, 0..30, Duration::from_secs(30));
    let d = deliveries.lock().unwrap();
    for (i, topic) in topics.iter().enumerate() {
        let of_topic: BTreeMap<u64, Vec<Result<SendResult, Error>>> = d
            .iter()
            .filter(|(token, _)| **token % 3 == i as u64)
            .map(|(token, outcomes)| (*token, outcomes.clone()))
            .collect();
        assert_each_reported_stored_once(&of_topic, topic, &format!("{topic}: "));
    }
    drop(d);
    producer.shutdown(Duration::from_secs(5));
}
