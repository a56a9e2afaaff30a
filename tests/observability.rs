//! Periodic stats (`ProducerBuilder::on_stats`) against the real broker: reports come on their
//! own, count what was sent, refusals and per-broker errors are counted, and none comes after
//! shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_tpc::{Error, LocalProducer, Message, Producer, ProducerStats};

type Reports = Arc<Mutex<Vec<(Instant, ProducerStats)>>>;

/// Waits until a report satisfies `done`; fails with the last report when none does in `limit`.
fn wait_report(
    reports: &Reports,
    limit: Duration,
    what: &str,
    done: impl Fn(&ProducerStats) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        {
            let r = reports.lock().unwrap();
            if r.iter().any(|(_, s)| done(s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no report with {what} within {limit:?}; {} reports, last: {:?}",
                r.len(),
                r.last().map(|(_, s)| (s.acked(), s.failed(), s.refused()))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stats_are_reported_every_interval_and_stop_at_shutdown() {
    let rmq = common::rocketmq();
    let topic = common::topic("on_stats");
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    let mut config = common::config(&rmq.namesrv);
    config.core.max_inflight = 2;
    let producer = Producer::builder()
        .config(config)
        .on_stats(Duration::from_millis(50), move |stats| {
            sink.lock().unwrap().push((Instant::now(), stats.clone()));
        })
        .build()
        .unwrap();
    for i in 0..30 {
        producer
            .send(Message::new(&topic, format!("m{i}")))
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    wait_report(&reports, Duration::from_secs(10), "30 acked", |s| {
        s.acked() >= 30 && s.started() >= 30 && s.latency_us().len() >= 30
    });
    // With 2 permits, a core-local burst past them is refused with QueueFull, and counted.
    let refused = common::on_core(&producer, 0, {
        let topic = topic.clone();
        move |local: LocalProducer| async move {
            local.set_delivery_handler(|_, _| {});
            (0..10)
                .filter(|i| {
                    let m = Message::new(topic.as_str(), format!("burst {i}"));
                    matches!(local.send_reported(m, *i), Err(Error::QueueFull { .. }))
                })
                .count() as u64
        }
    })
    .unwrap();
    assert!(refused >= 8, "refused {refused} of 10 with 2 permits");
    wait_report(&reports, Duration::from_secs(10), "the refusals", |s| {
        s.refused() >= refused
    });
    {
        let r = reports.lock().unwrap();
        let ids: std::collections::BTreeSet<&str> =
            r.iter().map(|(_, s)| s.client_id.as_str()).collect();
        assert_eq!(ids.len(), 1, "one client id: {ids:?}");
        let gaps: Vec<Duration> = r.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(
            gaps.iter().any(|g| *g < Duration::from_millis(500)),
            "reports come every interval: {gaps:?}"
        );
    }
    let report = producer.shutdown(Duration::from_secs(5));
    assert!(report.joined, "{report:?}");
    let after_shutdown = reports.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        reports.lock().unwrap().len(),
        after_shutdown,
        "no report after shutdown"
    );
}

#[test]
fn attempt_errors_are_counted_by_broker_name() {
    // A broker that never answers: every attempt times out; the stats name its broker.
    let fake = common::fake_broker::FakeBroker::start(|_| common::fake_broker::Action::Ignore);
    let mut config = common::config(&fake.addr);
    config.send_timeout = Duration::from_millis(600);
    config.attempt_timeout = Duration::from_millis(150);
    let producer = Producer::builder().config(config).build().unwrap();
    let error = producer.send(Message::new("T", "x")).unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    let stats = producer.stats().unwrap();
    let by_broker = &stats.cores[0].attempt_errors_by_broker;
    assert!(
        by_broker.values().sum::<u64>() >= 2,
        "every attempt counted: {by_broker:?}"
    );
    assert!(by_broker.keys().all(|b| !b.is_empty()), "{by_broker:?}");
    producer.shutdown(Duration::from_secs(2));
}
