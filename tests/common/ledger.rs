//! The ledger every fault scenario ends with.

use std::collections::{BTreeMap, BTreeSet};

use rocketmq_tpc::protocol::stored_message::StoredMessage;
use rocketmq_tpc::{Error, Message, Outcome, SendResult};

use super::read_back::{assert_same, stored_when_visible, Layout};

/// One sent message and its outcome.
pub type Sent = (Message, Result<SendResult, Error>);

/// What the ledger counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub acked: usize,
    pub failed: usize,
    /// Failures whose outcome is `Unknown`.
    pub unknown: usize,
    /// Stored copies of the sent messages, acked or failed.
    pub stored: usize,
    /// Stored copies beyond the first, over every sent message.
    pub duplicates: usize,
    /// Failed messages with at least one stored copy.
    pub stored_but_failed: usize,
}

/// Checks what `sent` (every message sent to `topic`, each with its outcome: bodies must be
/// distinct) left on the brokers of `layout`, read back once the acked keys are visible and the
/// stored count is stable (`stored_when_visible`):
///
/// - every outcome is a real one (no `CoreStopped`: no scenario here stops a core);
/// - every acked message is stored, every copy equal to what was sent under its acked id;
/// - every stored message of the topic is a sent one, and the copies of one message share one id;
/// - a failure whose outcome is `NotStored` has no stored copy;
/// - over every sent message, acked or failed: duplicates (copies beyond the first) are at most
///   `retries` (a retry after an unanswered attempt may store twice), and failed-but-stored
///   messages are at most the failures with an unknown outcome.
///
/// Prints and returns the counts.
pub fn check(layout: &Layout, topic: &str, sent: &[Sent], retries: u64) -> Counts {
    let mut by_body: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, (m, _)) in sent.iter().enumerate() {
        assert_eq!(m.topic, topic, "message {i} is for another topic");
        if let Some(first) = by_body.insert(&m.body[..], i) {
            panic!("the ledger tells messages apart by body: messages {first} and {i} share one");
        }
    }
    let lost: Vec<String> = sent
        .iter()
        .filter_map(|(m, r)| match r {
            Err(e @ Error::CoreStopped { .. }) => Some(format!("{:?}: {e}", m.body)),
            _ => None,
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} sends lost their outcome: {lost:?}",
        lost.len()
    );
    let acked_ids: BTreeSet<&str> = sent
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|r| r.msg_id.as_str()))
        .collect();
    let acked = sent.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(acked_ids.len(), acked, "a message id was acked twice");
    let expected: Vec<&str> = acked_ids.iter().copied().collect();
    let stored = stored_when_visible(layout, topic, &expected);

    // Every stored copy, by the sent message it belongs to (matched by body).
    let mut copies: Vec<Vec<(&str, &StoredMessage)>> = vec![Vec::new(); sent.len()];
    let mut strangers = Vec::new();
    for (key, messages) in &stored {
        for m in messages {
            match by_body.get(&m.body[..]) {
                Some(&i) => copies[i].push((key.as_str(), m)),
                None => strangers.push(key.as_str()),
            }
        }
    }
    assert!(
        strangers.is_empty(),
        "{} messages stored in {topic} were never sent (UNIQ_KEYs {strangers:?})",
        strangers.len()
    );

    let (mut failed, mut unknown, mut duplicates, mut stored_but_failed) = (0, 0, 0, 0);
    let mut total = 0;
    for (i, (m, r)) in sent.iter().enumerate() {
        let copies = &copies[i];
        total += copies.len();
        duplicates += copies.len().saturating_sub(1);
        if let Some((key, _)) = copies.first() {
            assert!(
                copies.iter().all(|(k, _)| k == key),
                "message {i}'s copies carry different ids: {:?}",
                copies.iter().map(|(k, _)| k).collect::<Vec<_>>()
            );
        }
        match r {
            Ok(result) => {
                assert!(
                    !copies.is_empty(),
                    "message {i} ({}) was acked but is not stored",
                    result.msg_id
                );
                for (_, copy) in copies {
                    assert_same(m, &result.msg_id, copy);
                }
            }
            Err(e) => {
                failed += 1;
                let outcome = e.outcome();
                unknown += usize::from(outcome == Outcome::Unknown);
                if !copies.is_empty() {
                    stored_but_failed += 1;
                    assert_eq!(
                        outcome,
                        Outcome::Unknown,
                        "message {i} failed as not stored but {} copies are stored: {e}",
                        copies.len()
                    );
                }
                for (key, copy) in copies {
                    assert_same(m, key, copy);
                }
            }
        }
    }
    let counts = Counts {
        acked,
        failed,
        unknown,
        stored: total,
        duplicates,
        stored_but_failed,
    };
    eprintln!(
        "ledger {topic}: sent {} acked {acked} failed {failed} (unknown {unknown}) stored copies {total} duplicates {duplicates} stored-but-failed {stored_but_failed} retries {retries}",
        sent.len()
    );
    assert!(
        duplicates as u64 <= retries,
        "{duplicates} duplicates but only {retries} retries ({counts:?})"
    );
    assert!(
        stored_but_failed <= unknown,
        "{stored_but_failed} failed messages are stored but only {unknown} had an unknown outcome ({counts:?})"
    );
    counts
}
