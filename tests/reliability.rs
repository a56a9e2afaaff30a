//! Reliability holes a code review found (issue #10), each proven by a test that failed before
//! its fix: name resolution off the core, bounded write buffers, futures that are dropped,
//! dead cores. Against the in-process fake broker.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_broker::{self, Action, FakeBroker};
use common::{rss_bytes, within};
use rocketmq_tpc::{Message, Producer, ProducerConfig, Resolver};

fn config_for(namesrv: &str, send_timeout: Duration, attempt: Duration) -> ProducerConfig {
    let mut config = common::config(namesrv);
    config.send_timeout = send_timeout;
    config.attempt_timeout = attempt;
    config
}

/// A producer for `namesrv` with these budgets.
fn producer_for(namesrv: &str, send_timeout: Duration, attempt: Duration) -> Producer {
    Producer::builder()
        .config(config_for(namesrv, send_timeout, attempt))
        .build()
        .unwrap()
}

/// A resolver that answers `name` with `addrs` and sleeps `hang` for `slow`.
fn test_resolver(name: &'static str, addrs: Vec<SocketAddr>, slow: &'static str) -> Resolver {
    Arc::new(move |host: &str, _port: u16| {
        if host == slow {
            std::thread::sleep(Duration::from_secs(20));
            return Ok(Vec::new());
        }
        if host == name {
            return Ok(addrs.clone());
        }
        Err(std::io::Error::other(format!(
            "test resolver: unknown host {host}"
        )))
    })
}

/// A name that resolves to a dead address first (`localhost` → `::1` with the server on
/// 127.0.0.1 only) still connects: every address is tried.
#[test]
fn a_name_whose_first_address_is_dead_still_connects() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let port: u16 = fake.addr.rsplit(':').next().unwrap().parse().unwrap();
    // Nothing listens on ::1 (the fake binds 127.0.0.1): refused or unreachable, at once.
    let addrs = vec![
        SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 1], port)),
    ];
    let producer = Producer::builder()
        .config(config_for(
            &format!("fake-ns.test:{port}"),
            Duration::from_secs(5),
            Duration::from_secs(2),
        ))
        .resolver(test_resolver("fake-ns.test", addrs, "never"))
        .build()
        .unwrap();
    let result = producer.send(Message::new("T", "via a name"));
    assert!(
        result.is_ok(),
        "send through a two-address name: {result:?}"
    );
}

/// A resolver that hangs does not freeze the core: the lookup fails within the attempt's
/// budget, the next NameServer answers, and the send succeeds well inside its budget.
#[test]
fn a_hanging_resolver_fails_within_the_budget_and_the_core_goes_on() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let producer = Producer::builder()
        .config(config_for(
            &format!("slow.test:9876;{}", fake.addr),
            Duration::from_secs(3),
            Duration::from_millis(500),
        ))
        .resolver(test_resolver("unused", Vec::new(), "slow.test"))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = producer.send(Message::new("T", "past a slow resolver"));
    let took = started.elapsed();
    assert!(result.is_ok(), "send after a hanging lookup: {result:?}");
    // Generous bound: one 500 ms lookup attempt plus the send; a resolver blocking the core
    // would take its full 20 s.
    assert!(
        took < Duration::from_millis(2500),
        "the send took {took:?} behind a hanging resolver"
    );
    // The core still answers control requests at once.
    let started = Instant::now();
    producer.stats().expect("stats");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stats took {:?}",
        started.elapsed()
    );
}

/// A future dropped while it still waits for room in a full inbox still sends its message
/// (the docs promise that dropping a future does not cancel the send).
#[test]
fn a_future_dropped_while_queueing_still_sends_its_message() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let mut config = config_for(&fake.addr, Duration::from_secs(5), Duration::from_secs(2));
    config.core.inbox_capacity = 1;
    let producer = Producer::builder().config(config).build().unwrap();
    producer
        .send(Message::new("T", "route and connection"))
        .unwrap();
    let before = fake.sends.load(std::sync::atomic::Ordering::SeqCst);
    // Stall the core for a moment, so the one-slot inbox fills up.
    let stall = producer
        .run_on_core(0, |_| async {
            std::thread::sleep(Duration::from_millis(400));
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let first = producer.send_async(Message::new("T", "fills the inbox"));
    let second = producer.send_async(Message::new("T", "waits for room"));
    drop(second);
    stall
        .wait_timeout(Duration::from_secs(60))
        .expect("the core task finished within 60 s")
        .unwrap();
    first.wait().expect("first send");
    producer.flush(Duration::from_secs(5)).expect("flush");
    let deadline = Instant::now() + Duration::from_secs(5);
    let sent = loop {
        let sent = fake.sends.load(std::sync::atomic::Ordering::SeqCst) - before;
        if sent >= 2 || Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        sent, 2,
        "the dropped future's message never reached the broker"
    );
}

/// A panic on a core while sends are in flight to a silent broker strands nobody: every send
/// gets its outcome within its budget, later sends and stats() answer, shutdown returns.
#[test]
fn a_panic_on_a_core_with_sends_in_flight_strands_nobody() {
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(0), Action::Ignore));
    let producer = producer_for(
        &fake.addr,
        Duration::from_secs(2),
        Duration::from_millis(500),
    );
    producer
        .send(Message::new("T", "route and connection"))
        .unwrap();
    let pending: Vec<_> = (0..10)
        .map(|i| producer.send_async(Message::new("T", format!("in flight {i}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let crash = producer
        .run_on_core(0, |_| async {
            panic!("deliberate panic with sends in flight")
        })
        .unwrap();
    let crashed = within(
        Duration::from_secs(5),
        "the panicking task's handle",
        move || crash.wait(),
    );
    assert!(crashed.is_err());
    let outcomes = within(Duration::from_secs(10), "the sends in flight", move || {
        pending.into_iter().map(|f| f.wait()).collect::<Vec<_>>()
    });
    for (i, outcome) in outcomes.iter().enumerate() {
        let e = outcome
            .as_ref()
            .expect_err("a silent broker stores nothing");
        assert_eq!(
            e.outcome(),
            rocketmq_tpc::Outcome::Unknown,
            "send {i}: {e:?}"
        );
    }
    let p = producer.clone();
    let later = within(
        Duration::from_secs(10),
        "a send after the panic",
        move || p.send(Message::new("T", "after")),
    );
    assert!(later.is_err(), "the broker stays silent");
    let p = producer.clone();
    within(Duration::from_secs(10), "stats()", move || p.stats()).expect("stats");
    within(Duration::from_secs(10), "shutdown()", move || {
        producer.shutdown(Duration::from_secs(1))
    });
}

/// A panic after an await on a core (a timer) does not leave later submissions hanging.
#[test]
fn a_panic_after_an_await_on_a_core_does_not_hang_later_sends() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let producer = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    producer.send(Message::new("T", "before")).unwrap();
    let crash = producer
        .run_on_core(0, |_| async {
            glommio::timer::sleep(Duration::from_millis(20)).await;
            panic!("deliberate panic after an await");
        })
        .unwrap();
    assert!(
        within(Duration::from_secs(5), "the crashed handle", move || crash
            .wait())
        .is_err()
    );
    let p = producer.clone();
    within(
        Duration::from_secs(5),
        "a send after the panic",
        move || p.send(Message::new("T", "after")),
    )
    .expect("the core still sends");
    let p = producer.clone();
    within(Duration::from_secs(5), "stats()", move || p.stats()).expect("stats");
    within(Duration::from_secs(10), "shutdown()", move || {
        producer.shutdown(Duration::from_secs(1))
    });
}

/// Tests that measure this process's RSS take turns (the others in this file allocate little).
static MEMORY_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A peer that accepts and never reads: what waits to be written stays under the cap (the
/// connection is closed once its writes make no progress for an attempt timeout, and requests
/// past the cap fail at once), and memory stays flat while sends keep coming.
#[test]
fn write_buffers_stay_bounded_when_the_peer_stops_reading() {
    let _turn = MEMORY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(0), Action::StopReading));
    let mut config = config_for(
        &fake.addr,
        Duration::from_secs(1),
        Duration::from_millis(200),
    );
    const CAP: usize = 8 << 20;
    config.core.max_buffered_bytes = CAP;
    let producer = Producer::builder().config(config).build().unwrap();
    producer
        .send(Message::new("T", "route and connection"))
        .unwrap();
    // Incompressible, so what is queued is the body's size.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let body = bytes::Bytes::from(noise);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut window = std::collections::VecDeque::new();
    let mut max_queued = 0u64;
    let mut outcomes = 0u64;
    let mut last_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        if window.len() >= 64 {
            let f: rocketmq_tpc::SendFuture<_> = window.pop_front().unwrap();
            let _ = f.wait();
            outcomes += 1;
        }
        window.push_back(producer.send_async(Message::new("T", body.clone())));
        if last_sample.elapsed() > Duration::from_millis(100) {
            last_sample = Instant::now();
            let stats = producer.stats().unwrap();
            max_queued = max_queued.max(stats.queued_write_bytes());
        }
    }
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    for f in window {
        let _ = f.wait();
        outcomes += 1;
    }
    eprintln!(
        "peer not reading: {outcomes} outcomes, max queued {} KiB, RSS growth {} KiB",
        max_queued / 1024,
        rss_growth / 1024
    );
    assert!(
        max_queued <= (CAP + body.len() + 4096) as u64,
        "queued {max_queued} bytes, over the {CAP}-byte cap"
    );
    assert!(rss_growth < 256 << 20, "RSS grew {} MiB", rss_growth >> 20);
}

/// `stats()` and `run_on_core` travel apart from sends: a full send queue behind a core that
/// waits for in-flight room (a silent broker) does not hold them up.
#[test]
fn stats_answer_while_the_send_queue_is_full() {
    let fake = FakeBroker::start(fake_broker::at(0, Action::Reply(0), Action::Ignore));
    let mut config = config_for(&fake.addr, Duration::from_secs(10), Duration::from_secs(10));
    config.core.inbox_capacity = 8;
    config.core.max_inflight = 1;
    config.queue_full = rocketmq_tpc::QueueFullPolicy::Fail;
    let producer = Producer::builder().config(config).build().unwrap();
    producer
        .send(Message::new("T", "route and connection"))
        .unwrap();
    // One send holds the only in-flight permit; the core waits for it with the next job in
    // hand; the rest fill the queue (or are refused).
    let pending: Vec<_> = (0..20)
        .map(|i| producer.send_async(Message::new("T", format!("stuck {i}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let p = producer.clone();
    let started = Instant::now();
    within(
        Duration::from_secs(2),
        "stats() behind a full send queue",
        move || p.stats(),
    )
    .expect("stats");
    let p = producer.clone();
    within(
        Duration::from_secs(2),
        "run_on_core behind a full send queue",
        move || {
            p.run_on_core(0, |local| async move { local.core_index() })
                .unwrap()
                .wait()
        },
    )
    .expect("run_on_core");
    eprintln!("control jobs answered in {:?}", started.elapsed());
    drop(pending);
    within(Duration::from_secs(15), "shutdown()", move || {
        producer.shutdown(Duration::from_millis(200))
    });
}

/// A NameServer that knows no topic but `TBW102` (routed to `broker`): every other name is
/// TOPIC_NOT_EXIST, so each new name falls back to the default topic's route.
fn nameserver_knowing_only_tbw102(broker: &str) -> String {
    nameserver_with_switch(broker, Arc::new(std::sync::atomic::AtomicBool::new(false)))
}

/// [`nameserver_knowing_only_tbw102`] that stops answering (reads and drops requests) while
/// `silent` is set.
fn nameserver_with_switch(broker: &str, silent: Arc<std::sync::atomic::AtomicBool>) -> String {
    use rocketmq_tpc::protocol::RemotingCommand;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let route = common::fake_broker::default_route(broker);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let route = route.clone();
            let silent = Arc::clone(&silent);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut frames = common::frames::FrameReader::default();
                while let Ok(request) = frames.next(&mut stream) {
                    if silent.load(std::sync::atomic::Ordering::SeqCst) {
                        continue;
                    }
                    let known = request.ext("topic") == Some("TBW102");
                    let mut reply =
                        RemotingCommand::response_to(&request, if known { 0 } else { 17 }, 407);
                    if known {
                        reply.body = bytes::Bytes::from(route.clone().into_bytes());
                    }
                    if common::frames::write_command(&mut stream, &reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Memory does not grow with the number of topic names ever used: 5,000 distinct names (39
/// times `max_topics`, lowered to 128 so the test is quick in a debug build), each unknown to
/// the NameServer (so each installs the default topic's route), leave at most `max_topics`
/// routes and a flat RSS. (Before the cap every name stayed in the table for good.)
#[test]
fn memory_does_not_grow_with_topics_ever_named() {
    let _turn = MEMORY_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    const TOPICS: usize = 5_000;
    let broker = FakeBroker::start(|_| Action::Reply(0));
    let namesrv = nameserver_knowing_only_tbw102(&broker.addr);
    let mut config = config_for(&namesrv, Duration::from_secs(5), Duration::from_secs(2));
    config.max_topics = 128;
    let producer = Producer::builder().config(config).build().unwrap();
    let max_topics = producer.config().max_topics;
    // Warm up allocator pools with a first round of names, then measure a second one.
    let run = |from: usize, to: usize| {
        producer
            .run_on_core(0, move |local| async move {
                for i in from..to {
                    local
                        .fetch_publish_queues(&format!("many_{i}"))
                        .await
                        .unwrap_or_else(|e| panic!("topic {i}: {e}"));
                }
            })
            .unwrap()
    };
    let started = Instant::now();
    within(Duration::from_secs(120), "the first round of names", {
        let h = run(0, TOPICS / 4);
        move || h.wait()
    })
    .unwrap();
    let rss_before = rss_bytes();
    within(Duration::from_secs(240), "the other names", {
        let h = run(TOPICS / 4, TOPICS);
        move || h.wait()
    })
    .unwrap();
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    let routes = producer.stats().unwrap().cores[0].routes;
    eprintln!(
        "{TOPICS} names in {:?}: {routes} routes kept, RSS growth {} KiB",
        started.elapsed(),
        rss_growth / 1024
    );
    assert!(
        routes <= max_topics,
        "{routes} routes kept, over max_topics {max_topics}"
    );
    // The route count is the proof (every name stayed before the cap); RSS is process-wide and
    // other tests of this file start producers meanwhile, so it is only a sanity bound.
    assert!(
        rss_growth < 64 << 20,
        "RSS grew {} MiB over 3,750 names",
        rss_growth >> 20
    );
}

/// Route refreshes against a NameServer that stopped answering do not hold up heartbeats
/// (brokers drop a producer they have not heard from for 120 s): each refresh is its own task.
#[test]
fn a_silent_nameserver_does_not_delay_heartbeats() {
    let broker = FakeBroker::start(|_| Action::Reply(0));
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let namesrv = nameserver_with_switch(&broker.addr, Arc::clone(&silent));
    let mut config = config_for(&namesrv, Duration::from_secs(2), Duration::from_secs(1));
    config.route_refresh_interval = Duration::from_secs(1);
    config.heartbeat_interval = Duration::from_secs(1);
    let producer = Producer::builder().config(config).build().unwrap();
    within(Duration::from_secs(60), "learning 40 routes", {
        let h = producer
            .run_on_core(0, |local| async move {
                for i in 0..40 {
                    local
                        .fetch_publish_queues(&format!("refreshed_{i}"))
                        .await
                        .unwrap();
                }
            })
            .unwrap();
        move || h.wait()
    })
    .unwrap();
    silent.store(true, std::sync::atomic::Ordering::SeqCst);
    let heartbeats = || {
        broker
            .requests
            .lock()
            .unwrap()
            .get(&34)
            .copied()
            .unwrap_or(0)
    };
    // Let a refresh round start against the silent NameServer, then count heartbeats.
    std::thread::sleep(Duration::from_millis(1500));
    let before = heartbeats();
    std::thread::sleep(Duration::from_secs(4));
    let during = heartbeats() - before;
    // One a second; 40 sequential 1 s refreshes would have stopped them for 40 s.
    assert!(
        during >= 2,
        "{during} heartbeats in 4 s while the NameServer was silent"
    );
    producer.shutdown(Duration::from_secs(1));
}

/// The client's own address (Java `UtilAll.getIP`) is in its message ids and client id, not
/// 127.0.0.1, unless the host has no other (then loopback is all there is).
#[test]
fn ids_carry_the_hosts_own_address() {
    let fake = FakeBroker::start(|_| Action::Reply(0));
    let producer = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    let ip = producer.config().client_ip.expect("the address in use");
    let r = producer.send(Message::new("T", "whose id?")).unwrap();
    let prefix: String = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02X}")).collect(),
        std::net::IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02X}")).collect(),
    };
    assert!(
        r.msg_id.starts_with(&prefix),
        "{} does not start with {ip}'s {prefix}",
        r.msg_id
    );
    let has_other = std::process::Command::new("sh")
        .arg("-c")
        .arg("ip -o addr 2>/dev/null | grep -v ' lo ' | grep -c inet")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .unwrap_or(0)
                > 0
        })
        .unwrap_or(false);
    if has_other {
        assert!(
            !ip.is_loopback(),
            "the host has another address, but ids carry {ip}"
        );
    }
    // Two producers in one process have distinct client ids (instance name pid#nanos).
    let other = producer_for(&fake.addr, Duration::from_secs(3), Duration::from_secs(1));
    other.send(Message::new("T", "second producer")).unwrap();
    producer.shutdown(Duration::from_secs(1));
    other.shutdown(Duration::from_secs(1));
    let heartbeat = fake.last_heartbeat.lock().unwrap().clone();
    assert!(
        heartbeat.is_empty() || heartbeat.contains(&format!("\"clientID\":\"{ip}@")),
        "{heartbeat}"
    );
}

/// The VIP channel option sends to the broker's port − 2: here the route names the fake's port
/// + 2, so only the VIP rewrite reaches it.
#[test]
fn the_vip_channel_sends_to_port_minus_two() {
    let fake = FakeBroker::start_with_route(
        Arc::new(|addr: &str| {
            let (host, port) = addr.rsplit_once(':').unwrap();
            let shifted = format!("{host}:{}", port.parse::<u16>().unwrap() + 2);
            common::fake_broker::default_route(&shifted)
        }),
        |_| Action::Reply(0),
    );
    let mut config = config_for(
        &fake.addr,
        Duration::from_secs(2),
        Duration::from_millis(500),
    );
    config.vip_channel = true;
    let vip = Producer::builder().config(config.clone()).build().unwrap();
    vip.send(Message::new("T", "through the VIP port"))
        .expect("sent to port - 2");
    config.vip_channel = false;
    let plain = Producer::builder().config(config).build().unwrap();
    assert!(
        plain.send(Message::new("T", "to port + 2")).is_err(),
        "nothing listens there"
    );
}
