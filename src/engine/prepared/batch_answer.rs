//! [`BatchAnswer`]: what a broker said about a stored batch, kept as it came (one offset-id list,
//! the first offset) so that each message's [`SendResult`] is built only when asked for, and
//! once: straight into its caller's outcome for automatic batches, by the caller's
//! [`crate::BatchResult`] for explicit ones.

use crate::batch_result::BatchResultIter;
use crate::protocol::ShortString;
use crate::send_result::{MessageQueue, SendResult, SendStatus};

/// A stored batch's answer: the fields its messages share, their ids, and the broker's list of
/// offset ids.
#[derive(Debug, Clone)]
pub(crate) struct BatchAnswer {
    pub status: SendStatus,
    pub queue: MessageQueue,
    /// The first message's queue offset; `None` when the reply header was unreadable (every
    /// result then says -1).
    pub first_offset: Option<i64>,
    /// The broker's comma-joined offset ids, one per message (fewer: the rest are empty).
    pub offset_ids: String,
    pub transaction_id: Option<ShortString>,
    pub region_id: ShortString,
    pub trace_on: bool,
    /// The messages' unique ids, in order: the batch's own, moved in when its send ends
    /// (`Reply::finish`; empty before, so an answer costs no copy of them).
    pub uniq_keys: Vec<ShortString>,
}

impl BatchAnswer {
    /// Messages in the batch.
    pub(crate) fn len(&self) -> usize {
        self.uniq_keys.len()
    }

    /// The result of each message, in order.
    pub(crate) fn results(&self) -> BatchResultIter<'_> {
        self.results_for(&self.uniq_keys)
    }

    /// The result of each message of `uniq_keys` (the batch's ids, before its send has ended and
    /// moved them into the answer).
    pub(crate) fn results_for<'a>(&'a self, uniq_keys: &'a [ShortString]) -> BatchResultIter<'a> {
        BatchResultIter::new(self, uniq_keys)
    }

    /// The result of message `index` alone (none of the others built).
    pub(crate) fn result_at(&self, index: usize) -> Option<SendResult> {
        let key = self.uniq_keys.get(index)?;
        let offset_id = self.offset_ids.split(',').nth(index).unwrap_or_default();
        Some(self.result(index, key, offset_id))
    }

    /// Message `index`'s result, with its id and the broker's offset id for it.
    pub(crate) fn result(&self, index: usize, key: &ShortString, offset_id: &str) -> SendResult {
        // Offsets from the broker saturate instead of overflowing near i64::MAX.
        let queue_offset = match self.first_offset {
            Some(first) => first.saturating_add(index as i64),
            None => -1,
        };
        SendResult {
            status: self.status,
            msg_id: key.clone(),
            offset_msg_id: offset_id.into(),
            queue: self.queue.clone(),
            queue_offset,
            transaction_id: self.transaction_id.clone(),
            region_id: self.region_id.clone(),
            trace_on: self.trace_on,
        }
    }

    /// Every message's result.
    pub(crate) fn into_results(self) -> Vec<SendResult> {
        self.results().collect()
    }

    /// The answer of a batch of one that came back as a single result.
    pub(crate) fn from_one(result: SendResult) -> Self {
        BatchAnswer {
            status: result.status,
            queue: result.queue,
            first_offset: (result.queue_offset >= 0).then_some(result.queue_offset),
            offset_ids: result.offset_msg_id.to_string(),
            transaction_id: result.transaction_id,
            region_id: result.region_id,
            trace_on: result.trace_on,
            uniq_keys: vec![result.msg_id],
        }
    }
}

/// An answer of `messages` ids `K0`, `K1`, … with `offset_ids`, stored from `first_offset` on in
/// queue 3 of broker `b` (for the tests of this type and of the public batch result).
#[cfg(test)]
pub(crate) fn answer_for_tests(
    offset_ids: &str,
    first_offset: Option<i64>,
    messages: usize,
) -> BatchAnswer {
    BatchAnswer {
        status: SendStatus::SendOk,
        queue: MessageQueue {
            topic: std::sync::Arc::from("T"),
            broker_name: std::sync::Arc::from("b"),
            queue_id: 3,
        },
        first_offset,
        offset_ids: offset_ids.into(),
        transaction_id: None,
        region_id: "DefaultRegion".into(),
        trace_on: true,
        uniq_keys: (0..messages)
            .map(|i| format!("K{i}").as_str().into())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use answer_for_tests as answer;

    #[test]
    fn results_pair_ids_and_count_offsets_up() {
        let results = answer("O0,O1,O2", Some(10), 3).into_results();
        let got: Vec<_> = results
            .iter()
            .map(|r| {
                (
                    &*r.msg_id,
                    &*r.offset_msg_id,
                    r.queue_offset,
                    r.queue.queue_id,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("K0", "O0", 10, 3),
                ("K1", "O1", 11, 3),
                ("K2", "O2", 12, 3)
            ]
        );
    }

    #[test]
    fn missing_ids_are_empty_and_an_unreadable_header_gives_minus_one() {
        let results = answer("O0", None, 2).into_results();
        assert_eq!(&*results[0].offset_msg_id, "O0");
        assert_eq!(&*results[1].offset_msg_id, "");
        assert!(results.iter().all(|r| r.queue_offset == -1));
    }

    #[test]
    fn a_single_result_becomes_an_answer_of_one() {
        let one = answer("O0", Some(7), 1).into_results().remove(0);
        let back = BatchAnswer::from_one(one.clone()).into_results();
        assert_eq!(back.len(), 1);
        assert_eq!(
            (
                &*back[0].msg_id,
                &*back[0].offset_msg_id,
                back[0].queue_offset
            ),
            (&*one.msg_id, &*one.offset_msg_id, 7)
        );
        let mut unread = one;
        unread.queue_offset = -1;
        assert_eq!(
            BatchAnswer::from_one(unread).into_results()[0].queue_offset,
            -1
        );
    }

    #[test]
    fn offsets_saturate_near_the_maximum() {
        let results = answer("", Some(i64::MAX - 1), 3).into_results();
        let offsets: Vec<_> = results.iter().map(|r| r.queue_offset).collect();
        assert_eq!(offsets, [i64::MAX - 1, i64::MAX, i64::MAX]);
    }
}
