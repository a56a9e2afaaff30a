//! The ledger every fault scenario ends with.

use std::collections::BTreeSet;

use rocketmq_tpc::{Message, SendResult};

use super::read_back::{assert_same, stored_when_visible};

/// Every acked message is stored (read back by UNIQ_KEY) equal to what was sent; duplicates are
/// at most the retries (a retry after an unanswered attempt may store twice); failed-but-stored
/// messages are at most the failures with an unknown outcome. Prints the counts.
pub fn check(
    brokers: &[String],
    topic: &str,
    acked: &[(Message, SendResult)],
    failed: usize,
    unknown_failures: usize,
    retries: u64,
) {
    let expected: Vec<&str> = acked.iter().map(|(_, r)| r.msg_id.as_str()).collect();
    let stored = stored_when_visible(brokers, topic, &expected);
    let mut duplicates = 0;
    for (m, r) in acked {
        let copies = stored
            .get(r.msg_id.as_str())
            .unwrap_or_else(|| panic!("{} was acked but is not stored", r.msg_id));
        assert_same(m, &r.msg_id, &copies[0]);
        duplicates += copies.len() - 1;
    }
    let acked_ids: BTreeSet<_> = acked.iter().map(|(_, r)| r.msg_id.clone()).collect();
    assert_eq!(acked_ids.len(), acked.len(), "a message id was acked twice");
    let stored_but_failed = stored
        .keys()
        .filter(|k| !acked_ids.contains(k.as_str()))
        .count();
    eprintln!(
        "ledger {topic}: acked {} failed {failed} (unknown {unknown_failures}) stored {} duplicates {duplicates} stored-but-failed {stored_but_failed} retries {retries}",
        acked.len(),
        stored.len()
    );
    assert!(
        duplicates as u64 <= retries,
        "{duplicates} duplicates but only {retries} retries"
    );
    assert!(
        stored_but_failed <= unknown_failures,
        "{stored_but_failed} failed messages are stored but only {unknown_failures} had an unknown outcome"
    );
}
