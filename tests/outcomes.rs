//! What a caller is told, against the in-process fake broker (issue #10, items 4, 5, 7 and 8):
//! broker remarks are bounded, a stored message is never reported as not stored, an
//! automatically batched message keeps its own budget and retry count, and extreme durations or
//! offsets from the configuration or a peer never panic.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_broker::{self, Action, FakeBroker};
use rocketmq_tpc::ResponseCode;
use rocketmq_tpc::{
    AutoBatch, Error, LocalProducer, Message, Outcome, Producer, ProducerConfig, SendOptions,
    SendResult, SendStatus,
};

fn config_for(addr: &str, send_timeout: Duration, attempt: Duration) -> ProducerConfig {
    let mut config = common::config(addr);
    config.send_timeout = send_timeout;
    config.attempt_timeout = attempt;
    config
}

/// One core with automatic batching that lingers `linger`, a 5 s budget and 3 s attempts.
fn lingering_on_one_core(addr: &str, linger: Duration) -> ProducerConfig {
    let mut config = config_for(addr, Duration::from_secs(5), Duration::from_secs(3));
    config.cores = rocketmq_tpc::CoreSelection::Count(1);
    config.core.auto_batch = Some(AutoBatch {
        linger,
        ..Default::default()
    });
    config
}

/// Each token's outcome as the delivery handler got it.
type Reported = std::sync::mpsc::Receiver<(u64, Result<SendResult, Error>)>;

/// A producer whose delivery handler passes each outcome on to the receiver.
fn reporting_to_a_channel(config: ProducerConfig) -> (Producer, Reported) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let p = Producer::builder()
        .config(config)
        .on_delivery(move |token, result| {
            let _ = tx.lock().unwrap().send((token, result.cloned()));
        })
        .build()
        .unwrap();
    (p, rx)
}

/// The outcomes of `tokens` from `rx` in the order they came, one each, within `limit`: fails
/// naming the tokens still missing then, or a token reported twice.
fn one_outcome_each(
    rx: &Reported,
    tokens: &[u64],
    limit: Duration,
) -> Vec<(u64, Result<SendResult, Error>)> {
    let deadline = Instant::now() + limit;
    let mut outcomes: Vec<(u64, Result<SendResult, Error>)> = Vec::new();
    while outcomes.len() < tokens.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((token, result)) = rx.recv_timeout(left) else {
            let missing: Vec<_> = tokens
                .iter()
                .filter(|t| !outcomes.iter().any(|(got, _)| got == *t))
                .collect();
            panic!("no outcome within {limit:?} for tokens {missing:?}");
        };
        assert!(
            !outcomes.iter().any(|(got, _)| *got == token),
            "token {token} got a second outcome"
        );
        outcomes.push((token, result));
    }
    outcomes
}

fn build(config: ProducerConfig) -> Producer {
    Producer::builder().config(config).build().unwrap()
}

/// Runs `f` on a thread and fails the test if it panics or takes longer than `limit` (a hang
/// shows up as a failure naming `what`, not as a stuck test run).
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no outcome within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

// ---- item 4: broker remarks are bounded --------------------------------------------------

#[test]
fn a_huge_broker_remark_is_bounded_and_shared_in_every_auto_batched_error() {
    const REMARK_BYTES: usize = 15 << 20;
    let fake = FakeBroker::start(|_| {
        let mut remark = String::with_capacity(REMARK_BYTES);
        remark.push_str("line one\nline two\u{1b}[31m ");
        remark.extend(std::iter::repeat_n('r', REMARK_BYTES - remark.len()));
        Action::ReplyWith {
            code: 13,
            remark: Some(remark),
            fields: vec![],
        }
    });
    let mut config = config_for(&fake.addr, Duration::from_secs(10), Duration::from_secs(5));
    config.max_message_size = 4 << 20;
    config.core.auto_batch = Some(AutoBatch {
        linger: Duration::from_millis(100),
        max_messages: 256,
        ..Default::default()
    });
    let p = build(config);
    let futures: Vec<_> = (0..256)
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    let mut remarks = Vec::new();
    for f in futures {
        let e = f.wait().unwrap_err();
        assert_eq!(e.response_code(), Some(ResponseCode::MessageIllegal));
        let Error::Broker { remark, .. } = &e else {
            panic!("expected a broker error, got {}", e.kind());
        };
        assert!(remark.len() <= 600, "remark of {} bytes", remark.len());
        assert!(!remark.contains('\n') && !remark.contains('\u{1b}'));
        assert!(
            remark.starts_with("line one\\nline two\\u{1b}[31m rrr"),
            "{remark}"
        );
        assert!(remark.contains(&REMARK_BYTES.to_string()), "{remark}");
        assert!(e.to_string().len() <= 700);
        remarks.push(remark.as_ptr() as usize);
    }
    let sends = fake.sends.load(Ordering::SeqCst);
    assert!(sends <= 2, "{sends} requests for 256 messages");
    // One remark per batch, shared by its callers.
    remarks.sort_unstable();
    remarks.dedup();
    assert!(
        remarks.len() as u64 <= sends,
        "{} distinct remarks",
        remarks.len()
    );
}

// ---- item 5: outcomes are never under-reported -------------------------------------------

#[test]
fn a_stored_answer_is_returned_when_later_attempts_fail() {
    // First attempt: stored, flush not confirmed. Java then retries on another broker and, if
    // that fails, returns the stored result, never "not stored".
    for later in [14, 13] {
        let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(10), Action::Reply(later)));
        let mut config = config_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
        config.retry_another_broker_when_not_store_ok = true;
        let p = build(config);
        let r = p.send(Message::new("T", "b"));
        let r = r.unwrap_or_else(|e| panic!("later code {later}: {e}"));
        assert_eq!(r.status, SendStatus::FlushDiskTimeout);
        let expected = if later == 14 { 3 } else { 2 };
        assert_eq!(fake.sends.load(Ordering::SeqCst), expected, "code {later}");
    }
}

#[test]
fn a_stored_answer_is_returned_when_the_budget_runs_out_on_a_later_attempt() {
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(11), Action::Ignore));
    let mut config = config_for(
        &fake.addr,
        Duration::from_millis(600),
        Duration::from_millis(200),
    );
    config.retry_another_broker_when_not_store_ok = true;
    let p = build(config);
    let r = p.send(Message::new("T", "b")).unwrap();
    assert_eq!(r.status, SendStatus::SlaveNotAvailable);
}

#[test]
fn no_route_after_an_unknown_attempt_reports_unknown() {
    // An ordered topic whose second broker has no master: attempts alternate between the fake
    // (which never answers: outcome unknown) and the broker without an address (NoRoute).
    let route = Arc::new(|addr: &str| {
        format!(
            r#"{{"orderTopicConf":"fake:1;ghost:1","queueDatas":[{{"brokerName":"fake","readQueueNums":1,"writeQueueNums":1,"perm":6,"topicSysFlag":0}}],"brokerDatas":[{{"cluster":"c","brokerName":"fake","brokerAddrs":{{0:"{addr}"}}}}]}}"#
        )
    });
    let fake = FakeBroker::start_with_route(route, |_| Action::Ignore);
    let p = build(config_for(
        &fake.addr,
        Duration::from_secs(5),
        Duration::from_millis(150),
    ));
    // Three attempts per send: consecutive sends start on different brokers, so one of them
    // ends on the broker without an address after an unanswered attempt.
    let mut kinds = Vec::new();
    for i in 0..2 {
        let e = p.send(Message::new("T", format!("m{i}"))).unwrap_err();
        assert_eq!(e.outcome(), Outcome::Unknown, "send {i}: {e}");
        kinds.push(e.kind());
    }
    assert!(
        kinds.contains(&rocketmq_tpc::ErrorKind::NoRoute),
        "{kinds:?}"
    );
}

#[test]
fn a_batch_stored_with_fewer_offset_ids_is_a_success_sent_once() {
    // A broker that answers one offset id for a whole batch (seen in the wild): the batch is
    // stored, so it is a success, and it must not be sent again.
    let fake = FakeBroker::start(|_| Action::ReplyWith {
        code: 0,
        remark: None,
        fields: vec![("msgId", Some("7F00000100002A9F00000000000000AA".into()))],
    });
    let p = build(config_for(
        &fake.addr,
        Duration::from_secs(3),
        Duration::from_secs(1),
    ));
    let results = p
        .send_batch(vec![
            Message::new("T", "a"),
            Message::new("T", "b"),
            Message::new("T", "c"),
        ])
        .wait()
        .unwrap()
        .into_vec();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].offset_msg_id, "7F00000100002A9F00000000000000AA");
    assert_eq!(results[1].offset_msg_id, "");
    assert_eq!(results[2].offset_msg_id, "");
    assert!(results.iter().all(|r| r.status == SendStatus::SendOk));
    assert_eq!(results[2].queue_offset, results[0].queue_offset + 2);
    assert_eq!(fake.sends.load(Ordering::SeqCst), 1);
}

#[test]
fn a_stored_answer_with_an_unreadable_header_is_a_success_sent_once() {
    let fake = FakeBroker::start(|_| Action::ReplyWith {
        code: 0,
        remark: None,
        fields: vec![("queueOffset", None), ("queueId", Some("many".into()))],
    });
    let p = build(config_for(
        &fake.addr,
        Duration::from_secs(3),
        Duration::from_secs(1),
    ));
    let r = p.send(Message::new("T", "b")).unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    assert_eq!(r.msg_id.len(), 32);
    assert_eq!(r.queue_offset, -1);
    assert_eq!(fake.sends.load(Ordering::SeqCst), 1);
}

// ---- item 7: automatic batching keeps each message's own budget --------------------------

#[test]
fn an_auto_batched_message_keeps_its_own_budget() {
    let fake = FakeBroker::start(|_| Action::ReplyAfter(Duration::from_millis(1000), 0));
    let mut config = config_for(&fake.addr, Duration::from_secs(10), Duration::from_secs(5));
    config.core.auto_batch = Some(AutoBatch {
        linger: Duration::from_millis(30),
        ..Default::default()
    });
    let p = build(config);
    let started = Instant::now();
    let long = p.send_async_with(
        Message::new("T", "long"),
        SendOptions::new().timeout(Duration::from_secs(10)),
    );
    let short = p.send_async_with(
        Message::new("T", "short"),
        SendOptions::new().timeout(Duration::from_millis(150)),
    );
    let e = short.wait().unwrap_err();
    let short_took = started.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    // It went out in the batch with the long one: the broker may store it.
    assert_eq!(e.outcome(), Outcome::Unknown, "{e}");
    assert!(
        short_took < Duration::from_millis(800),
        "the short message waited {short_took:?} for the batch's answer"
    );
    let r = long.wait();
    assert!(
        r.is_ok(),
        "the long message failed with its neighbour's budget: {r:?}"
    );
    assert_eq!(fake.sends.load(Ordering::SeqCst), 1, "one batch");
}

/// Sends `n` messages from core 0 at once, after one warm-up send (so the core has the route and
/// a connection and the batch goes through a send record), with `config`; each outcome with the
/// time it took from the first of them.
fn one_batch_on_a_warm_core(
    config: ProducerConfig,
    n: usize,
) -> Vec<(Result<SendResult, Error>, Duration)> {
    let p = Arc::new(build(config));
    within(
        "one batch on a warm core",
        Duration::from_secs(20),
        move || {
            p.run_on_core(0, move |local: LocalProducer| async move {
                let warm = local.send(Message::new("T", "warm-up")).await;
                assert!(warm.is_ok(), "the warm-up send: {warm:?}");
                // Handed over at each call, one after another on the core: one batch whose
                // members' deadlines are microseconds apart.
                let started = Instant::now();
                let sends: Vec<_> = (0..n)
                    .map(|i| local.send(Message::new("T", format!("m{i}"))))
                    .collect();
                let mut outcomes = Vec::new();
                for send in sends {
                    let outcome = send.await;
                    outcomes.push((outcome, started.elapsed()));
                }
                outcomes
            })
            .expect("core 0 runs")
            .wait()
            .expect("the job ran")
        },
    )
}

/// Stored results of a batch of `n`: result i to member i (consecutive offsets), each its own id.
fn assert_stored_in_order(outcomes: Vec<(Result<SendResult, Error>, Duration)>, n: usize) {
    let results: Vec<SendResult> = outcomes
        .into_iter()
        .map(|(r, _)| r.expect("stored"))
        .collect();
    let first = results[0].queue_offset;
    let offsets: Vec<i64> = results.iter().map(|r| r.queue_offset).collect();
    assert_eq!(
        offsets,
        (first..first + n as i64).collect::<Vec<_>>(),
        "result i to member i"
    );
    let ids: std::collections::BTreeSet<String> =
        results.iter().map(|r| r.msg_id.to_string()).collect();
    assert_eq!(ids.len(), n, "each member its own id");
}

/// A batch of 8 sent as one record whose first attempt meets `failure`, then stored: the
/// warm-up, then the batch twice (request 1 fails), every member with its own result in order.
fn a_batch_record_stored_after(failure: Action) {
    let fake = FakeBroker::start(fake_broker::at(1, failure, Action::Reply(0)));
    let mut config = config_for(&fake.addr, Duration::from_secs(5), Duration::from_secs(1));
    config.core.auto_batch = Some(AutoBatch::default());
    assert_stored_in_order(one_batch_on_a_warm_core(config, 8), 8);
    let sends = fake.sends.load(Ordering::SeqCst);
    assert_eq!(sends, 3, "the warm-up, then one batch sent twice");
}

/// Messages joining one batch in the same moment share one budget, and the batch goes out as one
/// send record (no task of its own) once the core has the route and a connection: a retryable
/// refusal (SYSTEM_BUSY) is retried within that budget, and each member gets its own result, in
/// order, from the one answer.
#[test]
fn an_auto_batch_sent_as_one_record_is_retried_and_answers_each_member_in_order() {
    a_batch_record_stored_after(Action::Reply(2));
}

/// The same when the connection carrying the batch is lost: the batch is sent again on a new
/// one and every member still gets its own result.
#[test]
fn an_auto_batch_record_whose_connection_is_lost_is_sent_again() {
    a_batch_record_stored_after(Action::Close);
}

/// A batch sent as one send record that is never answered: every member gets `Timeout` with
/// outcome `Unknown` and its own message back, within its budget.
#[test]
fn an_unanswered_auto_batch_record_times_out_every_member_with_its_message() {
    // Request 0 warms the core up; the batch and its retry are never answered.
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(0), Action::Ignore));
    let budget = Duration::from_millis(600);
    let mut config = config_for(&fake.addr, budget, Duration::from_millis(250));
    config.core.auto_batch = Some(AutoBatch::default());
    for (i, (outcome, took)) in one_batch_on_a_warm_core(config, 5).into_iter().enumerate() {
        let e = outcome.expect_err("never answered");
        assert!(matches!(e, Error::Timeout { .. }), "member {i}: {e}");
        assert_eq!(e.outcome(), Outcome::Unknown, "member {i}: {e}");
        assert!(
            took < budget + Duration::from_millis(400),
            "member {i} answered after {took:?} of a {budget:?} budget"
        );
        let message = e.into_message().expect("its message back");
        assert_eq!(&message.body[..], format!("m{i}").as_bytes());
    }
    assert!(fake.sends.load(Ordering::SeqCst) >= 2, "the batch was sent");
}

/// A member whose budget ran out before its batch went (the core kept busy past the linger and
/// the budget) is left out of it: `Timeout` / `NotStored`, while the batch goes for the others.
#[test]
fn an_auto_batched_message_whose_budget_ran_out_before_sending_is_not_sent() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let config = lingering_on_one_core(&fake.addr, Duration::from_millis(20));
    let p = build(config);
    p.send(Message::new("T", "route and connection first"))
        .expect("warm-up send");
    let (long, short) = common::on_core(&p, 0, |local: LocalProducer| async move {
        let long = local.send(Message::new("T", "long"));
        let short = local.send_with(
            Message::new("T", "short"),
            SendOptions::new().timeout(Duration::from_millis(100)),
        );
        // The core runs nothing else meanwhile: the linger ends late, after the short budget.
        std::thread::sleep(Duration::from_millis(300));
        (long.await, short.await)
    })
    .unwrap();
    let e = short.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(e.outcome(), Outcome::NotStored, "{e}");
    assert_eq!(
        &e.into_message().expect("its message back").body[..],
        b"short"
    );
    let r = long.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
}

#[test]
fn auto_batched_sync_sends_get_the_sync_retry_count() {
    let fake = FakeBroker::start(|_| Action::Reply(14));
    let mut config = config_for(&fake.addr, Duration::from_secs(5), Duration::from_secs(1));
    config.retries_when_send_failed = 4;
    config.retries_when_send_async_failed = 0;
    config.core.auto_batch = Some(AutoBatch::default());
    let p = build(config);
    let e = p.send(Message::new("T", "sync")).unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::ServiceNotAvailable));
    assert_eq!(fake.sends.load(Ordering::SeqCst), 5, "1 + 4 sync retries");
    let e = p.send_async(Message::new("T", "async")).wait().unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::ServiceNotAvailable));
    assert_eq!(fake.sends.load(Ordering::SeqCst), 6, "1 + 0 async retries");
}

// ---- item 8: no panic from configuration or peer values ----------------------------------

#[test]
fn extreme_durations_and_counts_do_not_panic() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let addr = fake.addr.clone();
    let requests = Arc::clone(&fake.requests);
    within(
        "sends with extreme settings",
        Duration::from_secs(30),
        move || {
            let mut config = config_for(&addr, Duration::MAX, Duration::MAX);
            config.route_refresh_interval = Duration::MAX;
            config.heartbeat_interval = Duration::MAX;
            config.retries_when_send_failed = u32::MAX;
            config.retries_when_send_async_failed = u32::MAX;
            let p = build(config);
            p.send(Message::new("T", "a")).unwrap();
            p.send_with(
                Message::new("T", "b"),
                SendOptions::new().timeout(Duration::MAX),
            )
            .unwrap();
            p.send_async_with(
                Message::new("T", "c"),
                SendOptions::new().timeout(Duration::MAX - Duration::from_nanos(1)),
            )
            .wait()
            .unwrap();
            p.send_batch_with(
                vec![Message::new("T", "d"), Message::new("T", "e")],
                SendOptions::new().timeout(Duration::MAX),
            )
            .wait()
            .unwrap();
            p.flush(Duration::MAX).unwrap();
            // The control task heartbeats the broker within its attempt timeout (a panic there
            // would mean no heartbeat).
            let waited = Instant::now();
            while requests.lock().unwrap().get(&34).is_none() {
                assert!(waited.elapsed() < Duration::from_secs(5), "no heartbeat");
                std::thread::sleep(Duration::from_millis(20));
            }
            p.send(Message::new("T", "after the heartbeat")).unwrap();
            let report = p.shutdown(Duration::MAX);
            assert!(report.joined, "{report:?}");
        },
    );
    let addr = fake.addr.clone();
    within(
        "auto-batch with a huge linger",
        Duration::from_secs(30),
        move || {
            let mut config = config_for(&addr, Duration::MAX, Duration::from_secs(1));
            config.core.auto_batch = Some(AutoBatch {
                linger: Duration::MAX - Duration::from_secs(1),
                max_messages: 1,
                ..Default::default()
            });
            let p = build(config);
            p.send(Message::new("T", "full batch of one")).unwrap();
            p.shutdown(Duration::from_secs(1));
        },
    );
}

#[test]
fn a_queue_offset_near_i64_max_does_not_panic() {
    let fake = FakeBroker::start(|_| Action::ReplyWith {
        code: 0,
        remark: None,
        fields: vec![("queueOffset", Some((i64::MAX - 1).to_string()))],
    });
    let addr = fake.addr.clone();
    let results = within("a batch at i64::MAX", Duration::from_secs(20), move || {
        let p = build(config_for(
            &addr,
            Duration::from_secs(3),
            Duration::from_secs(1),
        ));
        let results = p.send_batch(vec![
            Message::new("T", "a"),
            Message::new("T", "b"),
            Message::new("T", "c"),
        ]);
        results.wait()
    })
    .unwrap();
    let offsets: Vec<i64> = results.iter().map(|r| r.queue_offset).collect();
    assert_eq!(offsets, [i64::MAX - 1, i64::MAX, i64::MAX]);
}

// ---- the fake broker stops: sends in flight and later sends get typed outcomes --------------

#[test]
fn a_stopped_peer_gives_every_send_a_typed_error_within_its_budget() {
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(0), Action::Ignore));
    let p = Arc::new(build(config_for(
        &fake.addr,
        Duration::from_secs(2),
        Duration::from_millis(500),
    )));
    let first = p
        .send(Message::new("T", "stored"))
        .expect("first send is answered");
    assert_eq!(first.status, SendStatus::SendOk);
    // A send the fake never answers is in flight when the fake stops.
    let in_flight = p.send_async(Message::new("T", "unanswered"));
    std::thread::sleep(Duration::from_millis(100));
    fake.stop();
    let p2 = Arc::clone(&p);
    let (cut, later) = within(
        "sends after the peer stopped",
        Duration::from_secs(10),
        move || (in_flight.wait(), p2.send(Message::new("T", "after"))),
    );
    let cut = cut.expect_err("the unanswered send cannot succeed");
    assert_eq!(cut.outcome(), Outcome::Unknown, "it was written: {cut}");
    assert_eq!(
        cut.into_message().map(|m| m.body),
        Some("unanswered".into()),
        "the message comes back"
    );
    let later = later.expect_err("nothing listens any more");
    assert!(
        later.is_retryable(),
        "a dead peer is worth retrying later: {later}"
    );
}

#[test]
fn an_invalid_message_is_handed_back_with_its_error() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    // A delivery handler, so that send_reported is one of the entry points checked.
    let p = Arc::new(
        Producer::builder()
            .config(config_for(
                &fake.addr,
                Duration::from_secs(2),
                Duration::from_millis(500),
            ))
            .on_delivery(|_, _| {})
            .build()
            .unwrap(),
    );
    let empty = Message::new("T", "").with_tags("kept");
    let e = p.send(empty.clone()).unwrap_err();
    assert_eq!(e.kind(), rocketmq_tpc::ErrorKind::InvalidMessage);
    assert_eq!(e.into_message(), Some(empty.clone()));
    let e = p.send_async(empty.clone()).wait().unwrap_err();
    assert_eq!(e.into_message(), Some(empty.clone()));
    let bad_topic = Message::new("no spaces allowed", "body");
    let e = p.send_reported(bad_topic.clone(), 7).unwrap_err();
    assert_eq!(e.into_message(), Some(bad_topic.clone()));
    let on_core = Arc::clone(&p);
    let local = within("a LocalProducer send", Duration::from_secs(10), move || {
        on_core
            .run_on_core(0, |local| async move { local.send(bad_topic).await })
            .expect("core 0 runs")
            .wait()
    });
    let e = local.expect("the job ran").unwrap_err();
    assert_eq!(
        e.into_message().map(|m| m.topic.to_string()),
        Some("no spaces allowed".to_owned())
    );
}

/// Issue 11, item 5: every error a send ends with after it was handed over gives the caller
/// its message(s) back: a broker error, an unanswered attempt (timeout), a closed connection,
/// a failed explicit batch (all its messages, in order) and an automatic batch (each caller
/// its own message).
#[test]
fn every_failure_after_hand_over_hands_the_message_back() {
    let illegal = ResponseCode::MessageIllegal.as_i32();
    // Request i gets action i; retries are off, so each send is one request.
    let fake = FakeBroker::start(move |i| match i {
        0 | 3 | 4 => Action::Reply(illegal),
        1 => Action::Ignore,
        2 => Action::Close,
        _ => Action::Reply(0),
    });
    let mut config = config_for(
        &fake.addr,
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    config.retries_when_send_failed = 0;
    config.retries_when_send_async_failed = 0;
    config.cores = rocketmq_tpc::CoreSelection::Count(1);
    config.core.auto_batch = Some(AutoBatch {
        linger: Duration::from_millis(50),
        ..Default::default()
    });
    let p = Arc::new(build(config));
    let p2 = Arc::clone(&p);
    within("the failing sends", Duration::from_secs(20), move || {
        for (n, kind) in [
            (0, rocketmq_tpc::ErrorKind::Broker),
            (1, rocketmq_tpc::ErrorKind::Timeout),
            (2, rocketmq_tpc::ErrorKind::Connection),
        ] {
            let message = Message::new("T", format!("single {n}")).with_keys([format!("k{n}")]);
            let e = p2.send(message.clone()).expect_err("the fake fails it");
            assert_eq!(e.kind(), kind, "send {n}: {e}");
            assert_eq!(e.into_message(), Some(message), "send {n}");
        }
        let batch: Vec<Message> = (0..3)
            .map(|i| Message::new("T", format!("batch {i}")))
            .collect();
        let e = p2
            .send_batch(batch.clone())
            .wait()
            .expect_err("the fake refuses the batch");
        assert_eq!(e.kind(), rocketmq_tpc::ErrorKind::Broker, "{e}");
        assert_eq!(e.into_messages(), batch);
        // Async sends within one linger join one automatic batch, which the fake refuses.
        let members: Vec<Message> = (0..3)
            .map(|i| Message::new("T", format!("member {i}")))
            .collect();
        let futures: Vec<_> = members.iter().map(|m| p2.send_async(m.clone())).collect();
        for (member, future) in members.into_iter().zip(futures) {
            let e = future.wait().expect_err("the fake refuses the batch");
            assert_eq!(e.kind(), rocketmq_tpc::ErrorKind::Broker, "{e}");
            assert_eq!(e.into_message(), Some(member));
        }
    });
    assert_eq!(
        fake.sends.load(Ordering::SeqCst),
        5,
        "one request per single send, one per batch"
    );
}

/// `send_reported_with` takes the options every other send mode takes: a target queue from an
/// application thread and from a core, and a timeout that bounds the send.
#[test]
fn reported_sends_take_send_options() {
    let fake = FakeBroker::start(|i| match i {
        2 => Action::Ignore,
        _ => Action::Reply(0),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let mut config = config_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(3));
    config.cores = rocketmq_tpc::CoreSelection::Count(1);
    let p = Arc::new(
        Producer::builder()
            .config(config)
            .on_delivery(move |token, result| {
                let _ = tx.lock().unwrap().send((token, result.cloned()));
            })
            .build()
            .unwrap(),
    );
    let queues = p.fetch_publish_queues("T").expect("the fake's route");
    let third = queues[2].clone();
    let to_third = || SendOptions::new().target(rocketmq_tpc::SendTarget::Queue(third.clone()));
    // One send at a time, so the fake's i-th answer goes to the i-th send.
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no outcome for {what}"))
    };
    p.send_reported_with(Message::new("T", "app thread"), 1, to_third())
        .expect("handed over");
    let mut outcomes = std::collections::BTreeMap::new();
    let (token, result) = next("the app thread's send");
    outcomes.insert(token, (result, Duration::ZERO));
    let local_options = to_third();
    common::on_core(&p, 0, move |local| async move {
        local.send_reported_with(Message::new("T", "on the core"), 2, local_options)
    })
    .unwrap()
    .expect("handed over on the core");
    let (token, result) = next("the core's send");
    outcomes.insert(token, (result, Duration::ZERO));
    // The third send is never answered: its 300 ms timeout, not the 3 s default, ends it.
    let sent = Instant::now();
    p.send_reported_with(
        Message::new("T", "short budget"),
        3,
        SendOptions::new().timeout(Duration::from_millis(300)),
    )
    .expect("handed over");
    let (token, result) = next("the send with a short budget");
    outcomes.insert(token, (result, sent.elapsed()));
    for token in [1, 2] {
        let result = outcomes[&token].0.as_ref().expect("stored");
        assert_eq!(result.queue.queue_id, third.queue_id, "token {token}");
    }
    let (timed_out, after) = &outcomes[&3];
    let e = timed_out.as_ref().expect_err("never answered");
    assert_eq!(e.kind(), rocketmq_tpc::ErrorKind::Timeout, "{e}");
    assert!(
        *after < Duration::from_secs(2),
        "the option's budget: {after:?}"
    );
}

// ---- automatic batching re-entered from the outcomes it hands out ------------------------

/// A delivery handler that sends again from the outcome of a member whose budget ran out before
/// its batch went (the core kept busy past the linger and past the budget: delivered while that
/// batch closes, and for a lone message while its batch of one closes) re-enters the batcher
/// safely: every message, old and new, gets exactly one outcome, the expired ones `Timeout` /
/// `NotStored` with their messages.
#[test]
fn a_handler_sending_again_while_its_batch_closes_gets_one_outcome_per_message() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Result<rocketmq_tpc::SendResult, Error>)>();
    let tx = std::sync::Mutex::new(tx);
    let config = lingering_on_one_core(&fake.addr, Duration::from_millis(20));
    let p = Producer::builder()
        .config(config)
        .on_delivery(move |token, result| {
            if token < 100 && result.is_err() {
                let local = LocalProducer::current().expect("the handler runs on its core");
                local
                    .send_reported(Message::new("T", format!("again {token}")), token + 100)
                    .expect("sent again from the handler");
            }
            let _ = tx.lock().unwrap().send((token, result.cloned()));
        })
        .build()
        .unwrap();
    p.send(Message::new("T", "route and connection first"))
        .expect("warm-up send");
    // Long enough to join a batch (a budget within the linger goes alone), shorter than the
    // core is kept busy below.
    let short = || SendOptions::new().timeout(Duration::from_millis(100));
    common::on_core(&p, 0, move |local: LocalProducer| async move {
        local.send_reported(Message::new("T", "long"), 0)?;
        for token in 1..=20 {
            local.send_reported_with(
                Message::new("T", format!("short {token}")),
                token,
                short(),
            )?;
        }
        // Alone in its batch (a topic of its own): it closes as a batch of one.
        local.send_reported_with(Message::new("U", "lone short"), 21, short())?;
        // The core runs nothing else meanwhile: the lingers end late, after the short budgets.
        std::thread::sleep(Duration::from_millis(300));
        Ok::<(), Error>(())
    })
    .unwrap()
    .expect("handed over on the core");
    let expected: Vec<u64> = (0..=21).chain(101..=121).collect();
    let outcomes: std::collections::BTreeMap<_, _> =
        one_outcome_each(&rx, &expected, Duration::from_secs(15))
            .into_iter()
            .collect();
    // Late duplicates would arrive within the next linger.
    if let Ok((token, result)) = rx.recv_timeout(Duration::from_millis(500)) {
        panic!("an outcome beyond one per message: token {token}: {result:?}");
    }
    for (token, result) in outcomes {
        match token {
            0 | 101..=121 => {
                let r = result.unwrap_or_else(|e| panic!("token {token}: {e}"));
                assert_eq!(r.status, SendStatus::SendOk, "token {token}");
            }
            _ => {
                let e = result.expect_err("its budget ran out before the batch went");
                assert!(matches!(e, Error::Timeout { .. }), "token {token}: {e}");
                assert_eq!(e.outcome(), Outcome::NotStored, "token {token}: {e}");
                let m = e.into_message().expect("the expired message comes back");
                let body = if token == 21 {
                    "lone short".to_string()
                } else {
                    format!("short {token}")
                };
                assert_eq!(&m.body[..], body.as_bytes(), "token {token}");
            }
        }
    }
}

/// A send whose timeout is shorter than the linger does not wait in a batch past its budget:
/// it goes alone at once and is answered, from an application thread and from code on the
/// core alike. (Joining, it would get `Timeout` when the linger ended; the messages sent with
/// the default budget around it still wait for the linger, so they are answered after it.)
#[test]
fn a_send_whose_timeout_is_below_the_linger_goes_alone_at_once() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let config = lingering_on_one_core(&fake.addr, Duration::from_secs(2));
    let (p, rx) = reporting_to_a_channel(config);
    let short = || SendOptions::new().timeout(Duration::from_millis(500));
    // Through the core's queue, with a route still to fetch: it must not linger either.
    let r = p
        .send_with(Message::new("T", "short from a thread"), short())
        .unwrap_or_else(|e| panic!("a budget below the linger timed out in a batch: {e}"));
    assert_eq!(r.status, SendStatus::SendOk);
    common::on_core(&p, 0, move |local: LocalProducer| async move {
        local.send_reported(Message::new("T", "lingers"), 0)?;
        local.send_reported_with(Message::new("T", "short on the core"), 1, short())
    })
    .unwrap()
    .expect("handed over on the core");
    let outcomes = one_outcome_each(&rx, &[0, 1], Duration::from_secs(15));
    assert_eq!(
        outcomes[0].0, 1,
        "the short send came second: it waited for the linger"
    );
    for (token, result) in outcomes {
        let r = result.unwrap_or_else(|e| panic!("token {token}: {e}"));
        assert_eq!(r.status, SendStatus::SendOk, "token {token}");
    }
}

/// Futures on a core (`LocalProducer::send`) with automatic batching and no room left: the
/// messages that found no permit wait for one and still join batches, and each future ends
/// with its own result.
#[test]
fn automatically_batched_futures_without_room_wait_for_it_and_all_complete() {
    let fake = FakeBroker::start(|_| Action::ReplyAfter(Duration::from_millis(50), 0));
    let mut config = config_for(&fake.addr, Duration::from_secs(10), Duration::from_secs(5));
    config.cores = rocketmq_tpc::CoreSelection::Count(1);
    config.core.max_inflight = 2;
    config.core.auto_batch = Some(AutoBatch {
        linger: Duration::from_millis(5),
        ..Default::default()
    });
    let p = build(config);
    p.send(Message::new("T", "route and connection first"))
        .expect("warm-up send");
    let results = within(
        "20 futures with 2 permits",
        Duration::from_secs(30),
        move || {
            common::on_core(&p, 0, |local: LocalProducer| async move {
                let sends: Vec<_> = (0..20)
                    .map(|n| glommio::spawn_local(local.send(Message::new("T", format!("m{n}")))))
                    .collect();
                let mut results = Vec::new();
                for send in sends {
                    results.push(send.await.map(|r| r.msg_id.to_string()));
                }
                results
            })
            .expect("core job done")
        },
    );
    let mut ids = std::collections::BTreeSet::new();
    for (n, result) in results.into_iter().enumerate() {
        let id = result.unwrap_or_else(|e| panic!("message {n}: {e}"));
        assert!(ids.insert(id), "message {n} shares an id");
    }
    // No more than 2 messages in progress: at least 10 requests for the 20 (plus the warm-up).
    let sends = fake.sends.load(Ordering::SeqCst);
    assert!(
        sends >= 11,
        "2 permits held 20 messages in {sends} requests"
    );
}

/// A plain message reported from a core without automatic batching goes out with its
/// properties written straight into the request (none kept): a retry after a retryable answer
/// sends the very same properties (unique id included) and reports the one stored result; a
/// final refusal hands the message back whole. A future on the core (`LocalProducer::send`)
/// does the same, and hands its message over at the call (sent even if never polled).
#[test]
fn a_plain_reported_send_retried_from_a_core_sends_the_same_properties() {
    let fake = FakeBroker::start(|n| match n {
        1 | 4 => Action::Reply(14), // SERVICE_NOT_AVAILABLE: retried
        3 => Action::Reply(13),     // MESSAGE_ILLEGAL: final
        _ => Action::Reply(0),
    });
    let mut config = config_for(&fake.addr, Duration::from_secs(5), Duration::from_secs(3));
    config.cores = rocketmq_tpc::CoreSelection::Count(1);
    let (p, rx) = reporting_to_a_channel(config);
    p.send(Message::new("T", "route and connection first"))
        .expect("warm-up send");
    let message = |n: u64| {
        Message::new("T", format!("plain {n}"))
            .with_tags("tagA")
            .with_keys([format!("key{n}")])
            .with_property("n", n.to_string())
    };
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no outcome within 10 s for {what}"))
    };
    // One at a time, so the fake's answers go to the sends in order.
    let report_on_core = |n: u64| {
        common::on_core(&p, 0, move |local: LocalProducer| async move {
            local.send_reported(message(n), n)
        })
        .unwrap()
        .expect("handed over")
    };
    report_on_core(1);
    let (token, result) = next("the retried send");
    assert_eq!(token, 1);
    let stored = result.expect("stored on its second attempt");
    let sent = fake.sent_properties.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "warm-up, attempt 1, attempt 2: {sent:?}");
    assert_eq!(sent[1], sent[2], "the retry sends the same properties");
    let props = rocketmq_tpc::protocol::properties::decode(&sent[2]);
    assert_eq!(props["UNIQ_KEY"], stored.msg_id.as_str());
    assert_eq!(props["TAGS"], "tagA");
    assert_eq!(props["KEYS"], "key1");
    assert_eq!(props["n"], "1");
    assert_eq!(props["WAIT"], "true");
    report_on_core(2);
    let (token, result) = next("the refused send");
    assert_eq!(token, 2);
    let e = result.expect_err("MESSAGE_ILLEGAL is final");
    assert_eq!(e.outcome(), Outcome::NotStored, "{e}");
    let m = e.into_message().expect("the refused message comes back");
    assert_eq!(&m.body[..], b"plain 2");
    assert_eq!(m.tags.as_deref(), Some("tagA"));
    assert_eq!(
        fake.sends.load(Ordering::SeqCst),
        4,
        "no retry of a final refusal"
    );
    // A future on the core takes the same path: retried with the same properties.
    let stored = common::on_core(&p, 0, move |local: LocalProducer| async move {
        local.send(message(3)).await
    })
    .unwrap()
    .expect("the future's send is stored on its second attempt");
    let sent = fake.sent_properties.lock().unwrap().clone();
    assert_eq!(sent.len(), 6, "the future's two attempts: {sent:?}");
    assert_eq!(
        sent[4], sent[5],
        "the future's retry sends the same properties"
    );
    let props = rocketmq_tpc::protocol::properties::decode(&sent[5]);
    assert_eq!(props["UNIQ_KEY"], stored.msg_id.as_str());
    assert_eq!(props["n"], "3");
    // A plain message is handed over when `send` is called: dropping the future unpolled
    // drops only its outcome.
    common::on_core(&p, 0, move |local: LocalProducer| async move {
        drop(local.send(message(4)));
    })
    .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while fake.sends.load(Ordering::SeqCst) < 7 {
        assert!(
            std::time::Instant::now() < until,
            "the unpolled future's message never reached the broker (sends: {})",
            fake.sends.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = fake.sent_properties.lock().unwrap().clone();
    assert_eq!(
        rocketmq_tpc::protocol::properties::decode(&sent[6])["n"],
        "4"
    );
}
