//! The real broker behind a fault-injecting proxy: delayed, duplicated, reordered, dropped,
//! truncated and corrupted responses, and reset storms. Each scenario ends with the ledger.

mod common;

use std::time::Duration;

use common::proxy::{Fault, FaultyCluster};
use rocketmq_tpc::{Message, Outcome, Producer, SendResult};

/// Sends `n` messages with a window of async sends; returns (acked, failed, unknown, retries).
fn run(
    cluster: &FaultyCluster,
    topic: &str,
    n: usize,
    attempt_timeout: Duration,
) -> (Vec<(Message, SendResult)>, usize, usize, u64) {
    let mut config = common::config(&cluster.namesrv);
    config.attempt_timeout = attempt_timeout;
    config.send_timeout = Duration::from_secs(6);
    let producer = Producer::builder().config(config).build().unwrap();
    let mut acked = Vec::new();
    let (mut failed, mut unknown) = (0, 0);
    let messages: Vec<_> = (0..n)
        .map(|i| Message::new(topic, format!("{topic}-{i}")).with_tags("fault"))
        .collect();
    for chunk in messages.chunks(25) {
        let futures: Vec<_> = chunk
            .iter()
            .map(|m| (m.clone(), producer.send_async(m.clone())))
            .collect();
        for (m, f) in futures {
            match f.wait() {
                Ok(r) => acked.push((m, r)),
                Err(e) => {
                    failed += 1;
                    unknown += usize::from(e.outcome() == Outcome::Unknown);
                }
            }
        }
    }
    assert_eq!(
        acked.len() + failed,
        n,
        "every message gets exactly one outcome"
    );
    let retries = producer
        .stats()
        .unwrap()
        .cores
        .iter()
        .map(|c| c.retries)
        .sum();
    producer.shutdown(Duration::from_secs(5));
    (acked, failed, unknown, retries)
}

fn scenario(
    name: &str,
    attempt_timeout: Duration,
    script: impl Fn(u64) -> Fault + Send + Sync + 'static,
) -> (usize, usize, u64) {
    let rmq = common::rocketmq();
    let topic = common::topic(name);
    let cluster = FaultyCluster::start(&rmq.namesrv, &rmq.brokers[0], script);
    let (acked, failed, unknown, retries) = run(&cluster, &topic, 150, attempt_timeout);
    common::ledger::check(&rmq.brokers, &topic, &acked, failed, unknown, retries);
    (acked.len(), failed, retries)
}

#[test]
fn duplicated_responses_complete_each_send_once() {
    let (acked, failed, _) = scenario("dup", Duration::from_secs(1), |_| Fault::Duplicate);
    assert_eq!((acked, failed), (150, 0));
}

#[test]
fn reordered_responses_are_matched_by_opaque() {
    let (acked, failed, _) = scenario("reorder", Duration::from_secs(1), |n| {
        if n % 2 == 0 {
            Fault::HoldForNext
        } else {
            Fault::Pass
        }
    });
    assert_eq!((acked, failed), (150, 0));
}

#[test]
fn responses_slower_than_the_attempt_timeout_are_retried() {
    let (acked, failed, retries) = scenario("slow", Duration::from_millis(300), |n| {
        if n % 10 == 3 {
            Fault::Delay(Duration::from_millis(700))
        } else {
            Fault::Pass
        }
    });
    assert_eq!(acked + failed, 150);
    assert!(retries > 0);
}

#[test]
fn dropped_responses_time_out_and_are_retried() {
    let (acked, _, retries) = scenario("drop", Duration::from_millis(300), |n| {
        if n % 7 == 5 {
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    assert!(acked > 0 && retries > 0);
}

#[test]
fn reset_storms_lose_nothing() {
    let (acked, failed, retries) = scenario("reset", Duration::from_secs(1), |n| {
        if n % 10 == 9 {
            Fault::Reset
        } else {
            Fault::Pass
        }
    });
    assert_eq!(acked + failed, 150);
    assert!(retries > 0);
}

#[test]
fn truncated_frames_and_corrupt_lengths_close_the_connection_cleanly() {
    let (acked, failed, _) = scenario("truncate", Duration::from_secs(1), |n| match n % 20 {
        7 => Fault::TruncateAndReset,
        15 => Fault::CorruptLength,
        _ => Fault::Pass,
    });
    assert_eq!(acked + failed, 150);
}
