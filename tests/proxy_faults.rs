//! The real broker behind a fault-injecting proxy: delayed, duplicated, reordered, dropped,
//! truncated and corrupted responses, and reset storms. Each scenario ends with the ledger.

mod common;

use std::time::Duration;

use common::ledger::{Counts, Sent};
use common::proxy::{Fault, FaultyCluster};
use common::read_back::Layout;
use rocketmq_tpc::{Error, Message, Outcome, Producer};

/// The send budget of these scenarios.
const SEND_TIMEOUT: Duration = Duration::from_secs(6);

/// Sends `n` messages with a window of 25 async sends; returns every message with its outcome
/// (each window's outcomes must all arrive within the send budget plus a margin) and the
/// retries.
fn run(
    cluster: &FaultyCluster,
    topic: &str,
    n: usize,
    attempt_timeout: Duration,
) -> (Vec<Sent>, u64) {
    let mut config = common::config(&cluster.namesrv);
    config.attempt_timeout = attempt_timeout;
    config.send_timeout = SEND_TIMEOUT;
    let producer = Producer::builder().config(config).build().unwrap();
    let messages: Vec<_> = (0..n)
        .map(|i| Message::new(topic, format!("{topic}-{i}")).with_tags("fault"))
        .collect();
    let mut sent = Vec::with_capacity(n);
    for (c, chunk) in messages.chunks(25).enumerate() {
        let futures = chunk
            .iter()
            .map(|m| (m.clone(), producer.send_async(m.clone())))
            .collect();
        sent.extend(common::wait_all_sent(
            &format!("{topic} window {c}"),
            SEND_TIMEOUT + Duration::from_secs(10),
            futures,
        ));
    }
    assert_eq!(sent.len(), n);
    let retries = common::retries(&producer);
    producer.shutdown(Duration::from_secs(5));
    (sent, retries)
}

/// Runs 150 messages through `script` and checks the ledger; returns its counts, the retries
/// and every error.
fn scenario(
    name: &str,
    attempt_timeout: Duration,
    script: impl Fn(u64) -> Fault + Send + Sync + 'static,
) -> (Counts, u64, Vec<Error>) {
    let rmq = common::rocketmq();
    let topic = common::topic(name);
    let cluster = FaultyCluster::start(&rmq.namesrv, &rmq.brokers[0], script);
    let (sent, retries) = run(&cluster, &topic, 150, attempt_timeout);
    let layout = Layout::of(&rmq.namesrv, &rmq.brokers, &topic);
    let counts = common::ledger::check(&layout, &topic, &sent, retries);
    let errors = sent.into_iter().filter_map(|(_, r)| r.err()).collect();
    (counts, retries, errors)
}

#[test]
fn duplicated_responses_complete_each_send_once() {
    let (counts, _, errors) = scenario("dup", Duration::from_secs(1), |_| Fault::Duplicate);
    assert_eq!((counts.acked, counts.failed), (150, 0), "{errors:?}");
}

#[test]
fn reordered_responses_are_matched_by_opaque() {
    let (counts, _, errors) = scenario("reorder", Duration::from_secs(1), |n| {
        if n % 2 == 0 {
            Fault::HoldForNext
        } else {
            Fault::Pass
        }
    });
    assert_eq!((counts.acked, counts.failed), (150, 0), "{errors:?}");
}

#[test]
fn responses_slower_than_the_attempt_timeout_are_retried() {
    // One response in ten comes 700 ms late (the others are not held up behind it): its
    // attempt times out at 300 ms and the retry, answered in time, acks the message. A message
    // fails only if three of its attempts in a row meet a late response.
    let (counts, retries, errors) = scenario("slow", Duration::from_millis(300), |n| {
        if n % 10 == 3 {
            Fault::Delay(Duration::from_millis(700))
        } else {
            Fault::Pass
        }
    });
    assert!(
        retries > 0,
        "no attempt timed out: the scenario did not happen"
    );
    assert!(
        counts.acked >= 140,
        "late responses are retried, not failed: {counts:?}, errors {errors:?}"
    );
    for e in &errors {
        assert_eq!(e.outcome(), Outcome::Unknown, "an unanswered attempt: {e}");
    }
}

#[test]
fn dropped_responses_time_out_and_are_retried() {
    let (counts, retries, errors) = scenario("drop", Duration::from_millis(300), |n| {
        if n % 7 == 5 {
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    assert!(
        counts.acked > 0 && retries > 0,
        "{counts:?} retries {retries}"
    );
    for e in &errors {
        assert_eq!(e.outcome(), Outcome::Unknown, "an unanswered attempt: {e}");
    }
}

#[test]
fn reset_storms_lose_nothing() {
    let (counts, retries, errors) = scenario("reset", Duration::from_secs(1), |n| {
        if n % 10 == 9 {
            Fault::Reset
        } else {
            Fault::Pass
        }
    });
    assert!(counts.acked > 0, "{counts:?}, errors {errors:?}");
    assert!(retries > 0);
    for e in &errors {
        assert!(e.is_retryable(), "a reset is retryable: {e}");
    }
}

#[test]
fn truncated_frames_and_corrupt_lengths_close_the_connection_cleanly() {
    let (counts, _, errors) = scenario("truncate", Duration::from_secs(1), |n| match n % 20 {
        7 => Fault::TruncateAndReset,
        15 => Fault::CorruptLength,
        _ => Fault::Pass,
    });
    assert!(counts.acked > 0, "{counts:?}, errors {errors:?}");
    for e in &errors {
        assert!(e.is_retryable(), "a lost connection is retryable: {e}");
    }
}
