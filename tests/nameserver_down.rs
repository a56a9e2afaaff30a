//! The NameServer dies mid-run: producers with cached routes keep sending (refreshes fail and
//! are logged); a producer without a route gets a clear error within its budget.

mod common;

use std::time::{Duration, Instant};

use common::read_back::Layout;
use rocketmq_tpc::{Error, Message, Outcome, Producer};

/// Longest a send may block here before the test fails.
const SEND_LIMIT: Duration = Duration::from_secs(15);

#[test]
fn cached_routes_outlive_the_nameserver() {
    let rmq = common::start_local(1);
    let topic = common::topic("nsdown");
    let mut config = common::config(&rmq.namesrv);
    config.route_refresh_interval = Duration::from_millis(300);
    let producer = Producer::builder().config(config.clone()).build().unwrap();
    let mut sent = Vec::new();
    for i in 0..20 {
        let m = Message::new(&topic, format!("before-{i}"));
        let r = common::send_within(&producer, m.clone(), SEND_LIMIT);
        assert!(r.is_ok(), "send before the kill: {r:?}");
        sent.push((m, r));
    }
    // Read-back scans the route's queues: take it while the NameServer still answers.
    let layout = Layout::of(&rmq.namesrv, &rmq.brokers, &topic);
    rmq.kill_namesrv();
    // Several refresh periods pass with the NameServer gone.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut i = 0;
    while Instant::now() < until {
        let m = Message::new(&topic, format!("after-{i}"));
        let r = common::send_within(&producer, m.clone(), SEND_LIMIT);
        assert!(r.is_ok(), "cached route keeps working: after-{i}: {r:?}");
        sent.push((m, r));
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let retries = common::retries(&producer);
    producer.shutdown(Duration::from_secs(2));
    common::ledger::check(&layout, &topic, &sent, retries);

    // A producer that never had a route: clear, retryable error within its budget.
    let budget = Duration::from_millis(800);
    config.send_timeout = budget;
    let fresh = Producer::builder().config(config).build().unwrap();
    let started = Instant::now();
    let e = common::send_within(&fresh, Message::new(&topic, "no route"), SEND_LIMIT).unwrap_err();
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
