//! Fault paths against the in-process fake broker: every message gets exactly one typed outcome,
//! within its budget, and nothing panics or hangs.

mod common;

use std::time::{Duration, Instant};

use common::fake_broker::{self, Action, FakeBroker};
use common::rss_bytes;
use rocketmq_tpc::ResponseCode;
use rocketmq_tpc::{Error, Message, Outcome, Producer, QueueFullPolicy, SendStatus};

fn producer_for(addr: &str, send_timeout: Duration, attempt: Duration) -> Producer {
    let mut config = common::config(addr);
    config.send_timeout = send_timeout;
    config.attempt_timeout = attempt;
    Producer::builder().config(config).build().unwrap()
}

#[test]
fn success_maps_to_send_result() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let r = p.send(Message::new("T", "body")).unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    assert_eq!(&*r.queue.broker_name, "fake");
    assert_eq!(r.msg_id.len(), 32);
    assert_eq!(r.offset_msg_id, "7F00000100002A9F0000000000000000");
    assert_eq!(r.region_id, "DefaultRegion");
}

#[test]
fn stored_with_warning_codes_are_results() {
    for (code, status) in [
        (10, SendStatus::FlushDiskTimeout),
        (11, SendStatus::SlaveNotAvailable),
        (12, SendStatus::FlushSlaveTimeout),
    ] {
        let fake = FakeBroker::start(move |_| Action::Reply(code));
        let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(p.send(Message::new("T", "b")).unwrap().status, status);
    }
}

#[test]
fn non_retryable_code_fails_once() {
    let fake = FakeBroker::start(|_| Action::Reply(13));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let e = p.send(Message::new("T", "b")).unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::MessageIllegal));
    assert_eq!(e.outcome(), Outcome::NotStored);
    assert!(!e.is_retryable());
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn busy_is_retried_then_succeeds() {
    let fake = FakeBroker::start(|n| {
        if n < 2 {
            Action::Reply(2)
        } else {
            Action::Reply(0)
        }
    });
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    assert!(p.send(Message::new("T", "b")).is_ok());
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn retries_are_bounded_by_the_retry_count() {
    let fake = FakeBroker::start(|_| Action::Reply(14));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let e = p.send(Message::new("T", "b")).unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::ServiceNotAvailable));
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn silent_broker_times_out_within_budget_with_unknown_outcome() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let p = producer_for(
        &fake.addr,
        Duration::from_millis(800),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let e = p.send(Message::new("T", "b")).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(e.outcome(), Outcome::Unknown);
    // Budget honoured (generous upper bound: this checks "no hang", not speed).
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn frames_still_queued_at_the_deadline_time_out_with_unknown_outcome() {
    // The broker stops reading: the socket buffers fill and later frames wait in the client's
    // write buffer. While the connection lives they would still be written if the broker
    // resumed, so a frame that times out there is "unknown", never "not stored". Once writes
    // have made no progress for an attempt timeout the connection is closed and what it still
    // held is dropped unwritten: only then may a send say "not stored" (and say why).
    let fake = FakeBroker::start(|_| Action::StopReading);
    let mut config = common::config(&fake.addr);
    config.compress_over = usize::MAX;
    config.send_timeout = Duration::from_millis(700);
    config.attempt_timeout = Duration::from_millis(300);
    let p = Producer::builder().config(config).build().unwrap();
    let body = bytes::Bytes::from(vec![3u8; 1 << 20]);
    let started = Instant::now();
    // The writer takes the first 16 frames in one go and blocks on the full socket; the next 16
    // stay queued behind it.
    let mut pending: Vec<_> = (0..16)
        .map(|_| p.send_async(Message::new("T", body.clone())))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    pending.extend((0..16).map(|_| p.send_async(Message::new("T", body.clone()))));
    let pending: Vec<_> = pending.into_iter().enumerate().collect();
    let outcomes = common::wait_all("frames queued", Duration::from_secs(10), pending);
    let took = started.elapsed();
    let mut unknown = 0;
    for (_, outcome) in outcomes {
        let e = outcome.unwrap_err();
        match (&e, e.outcome()) {
            (Error::Timeout { .. } | Error::Connection { .. }, Outcome::Unknown) => unknown += 1,
            (Error::Connection { reason, .. }, Outcome::NotStored) => assert!(
                reason.contains("no progress") || reason.contains("wait to be written"),
                "not stored only when dropped unwritten by a stalled connection: {e}"
            ),
            _ => panic!("unexpected outcome {:?}: {e}", e.outcome()),
        }
    }
    assert!(
        unknown >= 16,
        "the frames handed to the socket are unknown ({unknown} of 32)"
    );
    // Generous: this checks "no hang" (a 700 ms budget), not speed.
    assert!(took < Duration::from_secs(5), "the outcomes took {took:?}");
    let stats = p.stats().unwrap();
    let written = stats.bytes_written();
    assert!(
        written < 32 << 20,
        "only {written} bytes of 32 MiB reached the socket: the scenario needs queued frames"
    );
}

#[test]
fn garbage_frames_give_protocol_errors_not_panics() {
    let fake = FakeBroker::start(|_| Action::Garbage(vec![0, 0, 0, 8, 9, 9, 9, 9, 1, 2, 3, 4]));
    let p = producer_for(
        &fake.addr,
        Duration::from_secs(2),
        Duration::from_millis(500),
    );
    let e = p.send(Message::new("T", "b")).unwrap_err();
    assert_eq!(e.outcome(), Outcome::Unknown);
    assert!(
        matches!(&e, Error::Protocol { .. })
            || matches!(&e, Error::Timeout { last_error: Some(l), .. } if matches!(**l, Error::Protocol { .. })),
        "{e}"
    );
}

#[test]
fn truncated_frame_then_close_is_a_connection_error() {
    let fake = FakeBroker::start(|_| Action::Garbage(vec![0, 0, 1, 0, 1, 0, 0, 4, 0]));
    let p = producer_for(
        &fake.addr,
        Duration::from_millis(700),
        Duration::from_millis(200),
    );
    let e = p.send(Message::new("T", "b")).unwrap_err();
    assert_eq!(e.outcome(), Outcome::Unknown, "{e}");
}

#[test]
fn connection_closed_mid_flight_is_retried_on_a_new_connection() {
    let fake = FakeBroker::start(fake_broker::at(0, Action::Close, Action::Reply(0)));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let r = p.send(Message::new("T", "b"));
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn async_sends_all_get_one_outcome() {
    let fake = FakeBroker::start(|n| match n % 4 {
        0 => Action::Reply(0),
        1 => Action::Reply(13),
        2 => Action::ReplyAfter(Duration::from_millis(5), 0),
        _ => Action::Reply(16),
    });
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let futures: Vec<_> = (0..200)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    let outcomes = common::wait_all("200 async sends", Duration::from_secs(15), futures);
    let mut ids = std::collections::BTreeSet::new();
    let mut failed = 0;
    for (i, outcome) in &outcomes {
        match outcome {
            Ok(r) => assert!(ids.insert(r.msg_id.clone()), "{} acked twice", r.msg_id),
            Err(e) => {
                failed += 1;
                assert!(
                    matches!(
                        e.response_code(),
                        Some(ResponseCode::MessageIllegal | ResponseCode::NoPermission)
                    ),
                    "send {i}: the broker's refusal, typed: {e}"
                );
                assert_eq!(e.outcome(), Outcome::NotStored, "send {i}: {e}");
            }
        }
    }
    // Every "stored" answer the fake gave reached exactly one caller as a success: none lost,
    // none retried (a retry would store the message twice), none counted twice.
    let requests = fake.sends.load(std::sync::atomic::Ordering::SeqCst);
    let stored_answers = (0..requests).filter(|n| n % 4 == 0 || n % 4 == 2).count();
    assert_eq!(
        ids.len(),
        stored_answers,
        "{requests} requests, {failed} failures"
    );
    assert!(!ids.is_empty() && failed > 0);
}

#[test]
fn dead_nameserver_fails_within_budget() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let budget = Duration::from_millis(800);
    let p = producer_for(
        &format!("127.0.0.1:{port}"),
        budget,
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let e = common::send_within(&p, Message::new("T", "b"), Duration::from_secs(10)).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            e,
            Error::NameServerUnavailable { .. } | Error::NoRoute { .. }
        ),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.outcome(), Outcome::NotStored, "{e}");
    // Generous: this checks "within its budget, no hang", not speed.
    assert!(
        took < budget + Duration::from_secs(2),
        "took {took:?} for a {budget:?} budget"
    );
}

#[test]
fn second_nameserver_is_used_when_the_first_is_dead() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = producer_for(
        &format!("{dead};{}", fake.addr),
        Duration::from_secs(3),
        Duration::from_millis(500),
    );
    assert!(p.send(Message::new("T", "b")).is_ok());
}

#[test]
fn invalid_messages_are_refused_before_sending() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    for m in [
        Message::new("bad topic", "b"),
        Message::new("T", ""),
        Message::new("T", vec![0u8; 4 * 1024 * 1024 + 1]),
        Message::new("T", "b").with_property("UNIQ_KEY", "x"),
    ] {
        let e = p.send(m).unwrap_err();
        assert!(matches!(e, Error::InvalidMessage { .. }), "{e}");
    }
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn full_queue_hands_the_message_back_when_told_to_fail() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let mut config = common::config(&fake.addr);
    config.core.inbox_capacity = 4;
    config.core.max_inflight = 2;
    config.queue_full = QueueFullPolicy::Fail;
    config.send_timeout = Duration::from_millis(500);
    let p = Producer::builder().config(config).build().unwrap();
    let futures: Vec<_> = (0..64)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    let mut full = 0;
    for (_, outcome) in common::wait_all("64 sends", Duration::from_secs(10), futures) {
        if let Err(e) = outcome {
            if let Error::QueueFull { .. } = e {
                full += 1;
                assert!(e.into_message().is_some());
            }
        }
    }
    assert!(full > 0);
}

#[test]
fn shutdown_fails_what_cannot_finish_and_refuses_new_sends() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let p = producer_for(&fake.addr, Duration::from_secs(30), Duration::from_secs(30));
    let futures: Vec<_> = (0..10)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.sends.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        assert!(
            Instant::now() < deadline,
            "only {} of 10 sends reached the broker",
            fake.sends.load(std::sync::atomic::Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = p.shutdown(Duration::from_millis(200));
    assert_eq!(report.cut_at_deadline, 10);
    assert!(report.joined);
    for (_, outcome) in common::wait_all("sends cut by shutdown", Duration::from_secs(10), futures)
    {
        let e = outcome.unwrap_err();
        assert!(matches!(e, Error::ShutDown { .. }), "{e}");
        assert_eq!(e.outcome(), Outcome::Unknown);
    }
    let refused = p.send(Message::new("T", "late")).unwrap_err();
    assert_eq!(refused.into_message().unwrap().body, "late");
}

#[test]
fn oneway_resolves_once_written() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let written = common::wait_all(
        "a oneway send",
        Duration::from_secs(10),
        vec![((), p.send_oneway(Message::new("T", "b")))],
    );
    assert!(written[0].1.is_ok(), "{:?}", written[0].1);
    // The frame arrived, once, flagged oneway (the broker does not answer it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.oneway_sends.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        assert!(
            Instant::now() < deadline,
            "the oneway frame never reached the broker: {:?}",
            fake.requests.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        fake.oneway_sends.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_rejected_batch_fails_every_message_in_it() {
    let fake = FakeBroker::start(|_| Action::Reply(13));
    let p = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let e = p
        .send_batch(vec![Message::new("T", "a"), Message::new("T", "b")])
        .wait()
        .unwrap_err();
    assert_eq!(e.response_code(), Some(ResponseCode::MessageIllegal));
}

#[test]
fn auto_batched_messages_share_the_batch_error_each_once() {
    let fake = FakeBroker::start(|_| Action::Reply(13));
    let mut config = common::config(&fake.addr);
    config.core.auto_batch = Some(rocketmq_tpc::AutoBatch {
        linger: Duration::from_millis(5),
        ..Default::default()
    });
    let p = Producer::builder().config(config).build().unwrap();
    let futures: Vec<_> = (0..100)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    for (i, outcome) in common::wait_all("100 auto-batched sends", Duration::from_secs(10), futures)
    {
        assert_eq!(
            outcome.unwrap_err().response_code(),
            Some(ResponseCode::MessageIllegal),
            "send {i}"
        );
    }
    assert!(fake.sends.load(std::sync::atomic::Ordering::SeqCst) < 100);
}

#[test]
fn a_linger_already_over_when_its_task_first_runs_still_sends_the_batch() {
    // glommio polls a spawned task before `spawn_local` returns; with a 1 ns linger the timer
    // is due at that first poll, so the linger task takes its batch at once. It must not find
    // the open batches still borrowed by the send that opened them (that panicked the core).
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let mut config = common::config(&fake.addr);
    config.core.auto_batch = Some(rocketmq_tpc::AutoBatch {
        linger: Duration::from_nanos(1),
        max_messages: 8,
        ..Default::default()
    });
    let p = Producer::builder().config(config).build().unwrap();
    let futures: Vec<_> = (0..200)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    for (i, outcome) in common::wait_all("200 auto-batched sends", Duration::from_secs(10), futures)
    {
        if let Err(e) = outcome {
            panic!("send {i}: {e}");
        }
    }
}

/// A panic in code run on a core ends that code's task only: its handle fails with
/// CoreStopped and the core goes on serving (tests/reliability.rs covers sends in flight).
#[test]
fn a_panic_on_a_core_fails_its_task_and_the_core_goes_on() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let p = Producer::builder()
        .config(common::config(&fake.addr))
        .build()
        .unwrap();
    p.send(Message::new("T", "before")).unwrap();
    let crash = p
        .run_on_core(0, |_| async { panic!("deliberate panic on the core") })
        .unwrap();
    assert!(matches!(
        crash
            .wait_timeout(Duration::from_secs(60))
            .expect("the core task finished within 60 s"),
        Err(Error::CoreStopped { .. })
    ));
    p.send(Message::new("T", "after"))
        .expect("the core still sends");
    assert!(p
        .run_on_core(0, |_| async {})
        .unwrap()
        .wait_timeout(Duration::from_secs(60))
        .expect("the core task finished within 60 s")
        .is_ok());
    assert!(p.stats().is_ok());
    p.shutdown(Duration::from_secs(1));
}

#[test]
fn heartbeats_reach_the_master_and_shutdown_unregisters() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let mut config = common::config(&fake.addr);
    config.heartbeat_interval = Duration::from_millis(600);
    config.producer_group = "hb_group".into();
    let p = Producer::builder().config(config).build().unwrap();
    p.send(Message::new("T", "b")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.requests.lock().unwrap().get(&34).copied().unwrap_or(0) < 2 {
        assert!(
            Instant::now() < deadline,
            "no repeated heartbeats: {:?}",
            fake.requests.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = fake.last_heartbeat.lock().unwrap().clone();
    assert!(
        body.contains(r#""producerDataSet":[{"groupName":"hb_group"}]"#),
        "{body}"
    );
    // The client id carries this host's address (Java `UtilAll.getIP`), as the message ids do.
    let ip = p.config().client_ip.expect("the address in use");
    assert!(body.contains(&format!(r#""clientID":"{ip}@"#)), "{body}");
    p.shutdown(Duration::from_secs(1));
    assert_eq!(
        fake.requests.lock().unwrap().get(&35).copied(),
        Some(1),
        "UNREGISTER_CLIENT at shutdown"
    );
}

#[test]
fn memory_stays_bounded_under_a_stalled_broker() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let mut config = common::config(&fake.addr);
    config.core.inbox_capacity = 1000;
    config.core.max_inflight = 500;
    config.queue_full = QueueFullPolicy::Fail;
    config.send_timeout = Duration::from_secs(60);
    config.attempt_timeout = Duration::from_secs(60);
    let p = Producer::builder().config(config).build().unwrap();
    let body = bytes::Bytes::from(vec![7u8; 1024]);
    let rss_before = rss_bytes();
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    for _ in 0..100_000 {
        let mut f = p.send_async(Message::new("T", body.clone()));
        // A refused send resolves at once; an accepted one stays pending.
        match futures_lite::future::block_on(futures_lite::future::poll_once(&mut f)) {
            Some(Err(e @ Error::QueueFull { .. })) => {
                assert!(e.into_message().is_some());
                refused += 1;
            }
            Some(other) => panic!("unexpected outcome {other:?}"),
            None => accepted.push(f),
        }
    }
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "stalled broker: accepted {} refused {refused} rss growth {} KiB",
        accepted.len(),
        rss_growth / 1024
    );
    // Bound: inbox + in-flight cap (+ the one job the drain holds while it waits for a permit).
    assert!(
        accepted.len() <= 1000 + 500 + 1,
        "accepted {}",
        accepted.len()
    );
    assert!(refused >= 98_000);
    assert!(rss_growth < 64 << 20, "RSS grew {rss_growth} bytes");
    let started = Instant::now();
    let report = p.shutdown(Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(
        report.cut_at_deadline + report.refused_at_deadline + report.refused_after_stop,
        accepted.len() as u64,
        "{report:?}"
    );
    let accepted: Vec<_> = accepted.into_iter().enumerate().collect();
    for (_, outcome) in common::wait_all("accepted sends", Duration::from_secs(10), accepted) {
        let e = outcome.unwrap_err();
        assert!(matches!(e, Error::ShutDown { .. }), "{e}");
    }
}

#[test]
fn buffered_bytes_cap_bounds_large_messages() {
    let fake = FakeBroker::start(|_| Action::Ignore);
    let mut config = common::config(&fake.addr);
    config.max_message_size = 1 << 20;
    config.compress_over = usize::MAX;
    config.core.max_buffered_bytes = 4 << 20;
    config.core.inbox_capacity = 2;
    config.queue_full = QueueFullPolicy::Fail;
    config.send_timeout = Duration::from_secs(30);
    config.attempt_timeout = Duration::from_secs(30);
    let p = Producer::builder().config(config).build().unwrap();
    let body = bytes::Bytes::from(vec![1u8; 1 << 20]);
    let mut accepted = Vec::new();
    for _ in 0..50 {
        let mut f = p.send_async(Message::new("T", body.clone()));
        if futures_lite::future::block_on(futures_lite::future::poll_once(&mut f)).is_none() {
            accepted.push(f);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let in_flight = p.stats().unwrap().in_flight();
    // 4 MiB of 1 MiB messages: at most 3 in progress (each also carries its properties).
    assert!(in_flight <= 4, "{in_flight} in flight");
    assert!(accepted.len() <= 4 + 2 + 1, "{} accepted", accepted.len());
    p.shutdown(Duration::from_millis(200));
    let accepted: Vec<_> = accepted.into_iter().enumerate().collect();
    for (i, outcome) in common::wait_all("accepted sends", Duration::from_secs(10), accepted) {
        assert!(outcome.is_err(), "send {i}: {outcome:?}");
    }
}

/// A NameServer that accepts connections and reads what it is sent but never answers; returns
/// its address and the bytes it received.
fn silent_nameserver() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    counter.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (addr, received)
}

#[test]
fn a_nameserver_that_never_answers_fails_sends_within_the_budget() {
    let (addr, received) = silent_nameserver();
    let budget = Duration::from_millis(800);
    let p = producer_for(&addr, budget, Duration::from_millis(300));
    let started = Instant::now();
    let futures: Vec<_> = (0..10)
        .map(|i| (i, p.send_async(Message::new("T", format!("m{i}")))))
        .collect();
    let outcomes = common::wait_all(
        "sends behind a silent NameServer",
        Duration::from_secs(10),
        futures,
    );
    let took = started.elapsed();
    for (i, outcome) in outcomes {
        let e = outcome.expect_err("no route, no send");
        assert!(
            matches!(
                e,
                Error::NameServerUnavailable { .. } | Error::NoRoute { .. }
            ),
            "send {i}: {e}"
        );
        assert!(e.is_retryable(), "send {i}: {e}");
        assert_eq!(e.outcome(), Outcome::NotStored, "send {i}: {e}");
    }
    assert!(
        received.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the route request never reached the NameServer: the scenario did not happen"
    );
    // Generous: this checks "within the budget, no hang", not speed.
    assert!(
        took < budget + Duration::from_secs(2),
        "the outcomes took {took:?} for a {budget:?} budget"
    );
    // The core goes on: a later send fails the same way, and stats answer.
    let started = Instant::now();
    let e =
        common::send_within(&p, Message::new("T", "later"), Duration::from_secs(10)).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            e,
            Error::NameServerUnavailable { .. } | Error::NoRoute { .. }
        ),
        "{e}"
    );
    assert!(
        took < budget + Duration::from_secs(2),
        "took {took:?} for a {budget:?} budget"
    );
    common::within(Duration::from_secs(5), "stats()", move || p.stats()).expect("stats");
}

#[test]
fn a_nameserver_that_never_answers_is_skipped_for_the_next_one() {
    let (silent, received) = silent_nameserver();
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let (budget, attempt) = (Duration::from_secs(3), Duration::from_millis(300));
    let p = producer_for(&format!("{silent};{}", fake.addr), budget, attempt);
    let started = Instant::now();
    let r = common::send_within(&p, Message::new("T", "b"), Duration::from_secs(10));
    let took = started.elapsed();
    assert!(r.is_ok(), "{r:?}");
    assert!(
        received.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the silent NameServer was never asked: the scenario did not happen"
    );
    // One attempt's wait on the silent one, then the next answers; waiting out the whole
    // budget on the silent one would leave nothing for the send.
    assert!(
        took < attempt + Duration::from_secs(2),
        "took {took:?}: the silent NameServer should cost one {attempt:?} attempt"
    );
}

/// A listening socket whose accept queue is full (backlog 1, never accepted, filled by raw
/// connects): the kernel drops further SYNs, so a connect to it hangs. Returns the address and
/// what must stay open for the hole to stay full.
fn black_hole() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).unwrap();
    listener.listen(1).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    while fillers.len() < 16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        matches!(&probe, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
        "the backlog never filled ({} connects, then {probe:?}): no black hole",
        fillers.len()
    );
    (addr, listener, fillers)
}

#[test]
fn a_connect_that_hangs_fails_within_the_attempt_timeout() {
    let (hole, _listener, _fillers) = black_hole();
    // The NameServer routes the topic to the black hole.
    let fake = FakeBroker::start_with_route(
        std::sync::Arc::new(move |_: &str| common::fake_broker::default_route(&hole.to_string())),
        |_| Action::Reply(0),
    );
    let (budget, attempt) = (Duration::from_secs(6), Duration::from_millis(300));
    let p = producer_for(&fake.addr, budget, attempt);
    let started = Instant::now();
    let e = common::send_within(
        &p,
        Message::new("T", "into the hole"),
        Duration::from_secs(15),
    )
    .unwrap_err();
    let took = started.elapsed();
    // Three attempts (two retries) of 300 ms each: well inside the 6 s budget. A connect bounded
    // by the send budget alone (or by the kernel's SYN retries, about two minutes) takes 6 s.
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} ({e}): each connect must end with its {attempt:?} attempt, not the {budget:?} budget"
    );
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.outcome(), Outcome::NotStored, "nothing was written: {e}");
    assert_eq!(fake.sends.load(std::sync::atomic::Ordering::SeqCst), 0);
}
