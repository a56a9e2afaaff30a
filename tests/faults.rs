//! Fault paths against the in-process fake broker: every message gets exactly one typed outcome,
//! within its budget, and nothing panics or hangs.

mod common;

use std::time::{Duration, Instant};

use common::fake_broker::{Action, FakeBroker};
use rocketmq_tpc::protocol::ResponseCode;
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
    let mut unknown = 0;
    for f in pending {
        let e = f.wait().unwrap_err();
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
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    let stats = p.stats().unwrap();
    let written: u64 = stats.cores.iter().map(|c| c.bytes_written).sum();
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
    let fake = FakeBroker::start(|n| {
        if n == 0 {
            Action::Close
        } else {
            Action::Reply(0)
        }
    });
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
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for f in futures {
        match f.wait() {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    assert_eq!(ok + failed, 200);
    assert!(ok > 0 && failed > 0);
}

#[test]
fn dead_nameserver_fails_within_budget() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = producer_for(
        &format!("127.0.0.1:{port}"),
        Duration::from_millis(800),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let e = p.send(Message::new("T", "b")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NameServerUnavailable { .. } | Error::NoRoute { .. }
        ),
        "{e}"
    );
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
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
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    let mut full = 0;
    for f in futures {
        if let Err(e) = f.wait() {
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
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    while fake.sends.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = p.shutdown(Duration::from_millis(200));
    assert_eq!(report.cut_at_deadline, 10);
    assert!(report.joined);
    for f in futures {
        let e = f.wait().unwrap_err();
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
    p.send_oneway(Message::new("T", "b")).wait().unwrap();
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
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    for f in futures {
        assert_eq!(
            f.wait().unwrap_err().response_code(),
            Some(ResponseCode::MessageIllegal)
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
        .map(|i| p.send_async(Message::new("T", format!("m{i}"))))
        .collect();
    for f in futures {
        f.wait().unwrap();
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
    assert!(matches!(crash.wait(), Err(Error::CoreStopped { .. })));
    p.send(Message::new("T", "after"))
        .expect("the core still sends");
    assert!(p.run_on_core(0, |_| async {}).unwrap().wait().is_ok());
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
    assert!(body.contains(r#""clientID":"127.0.0.1@"#), "{body}");
    p.shutdown(Duration::from_secs(1));
    assert_eq!(
        fake.requests.lock().unwrap().get(&35).copied(),
        Some(1),
        "UNREGISTER_CLIENT at shutdown"
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
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
            Some(Err(Error::QueueFull { message })) => {
                assert!(message.is_some());
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
    for f in accepted {
        let e = f.wait().unwrap_err();
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
    for f in accepted {
        assert!(f.wait().is_err());
    }
}
