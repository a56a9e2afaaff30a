//! The NameServer dies mid-run: producers with cached routes keep sending (refreshes fail and
//! are logged); a producer without a route gets a clear error within its budget.

mod common;

use std::time::{Duration, Instant};

use rocketmq_tpc::{Error, Message, Producer};

#[test]
fn cached_routes_outlive_the_nameserver() {
    let rmq = common::start_local(1);
    let topic = common::topic("nsdown");
    let mut config = common::config(&rmq.namesrv);
    config.route_refresh_interval = Duration::from_millis(300);
    let producer = Producer::builder().config(config.clone()).build().unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let m = Message::new(&topic, format!("before-{i}"));
        acked.push((m.clone(), producer.send(m).expect("send before the kill")));
    }
    rmq.kill_namesrv();
    // Several refresh periods pass with the NameServer gone.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut i = 0;
    while Instant::now() < until {
        let m = Message::new(&topic, format!("after-{i}"));
        acked.push((
            m.clone(),
            producer.send(m).expect("cached route keeps working"),
        ));
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let retries = producer
        .stats()
        .unwrap()
        .cores
        .iter()
        .map(|c| c.retries)
        .sum();
    producer.shutdown(Duration::from_secs(2));
    common::ledger::check(&rmq.brokers, &topic, &acked, 0, 0, retries);

    // A producer that never had a route: clear, retryable error within its budget.
    config.send_timeout = Duration::from_millis(800);
    let fresh = Producer::builder().config(config).build().unwrap();
    let started = Instant::now();
    let e = fresh.send(Message::new(&topic, "no route")).unwrap_err();
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
