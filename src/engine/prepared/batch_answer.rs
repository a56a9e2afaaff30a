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
        let offset_id = OffsetIds::of(&self.offset_ids)
            .nth(index)
            .unwrap_or_default();
        Some(self.result(index, key, offset_id))
    }

    /// Message `index`'s result, with its id and the broker's offset id for it.
    pub(crate) fn result(&self, index: usize, key: &ShortString, offset_id: &str) -> SendResult {
        SendResult {
            status: self.status,
            msg_id: key.clone(),
            offset_msg_id: offset_id.into(),
            queue: self.queue.clone(),
            queue_offset: self.queue_offset(index),
            transaction_id: self.transaction_id.clone(),
            region_id: self.region_id.clone(),
            trace_on: self.trace_on,
        }
    }

    fn queue_offset(&self, index: usize) -> i64 {
        // Offsets from the broker saturate instead of overflowing near i64::MAX.
        match self.first_offset {
            Some(first) => first.saturating_add(index as i64),
            None => -1,
        }
    }

    /// Hands each message's result to its reply (`replies` in message order; `None`: nobody
    /// reads that one). One result is built and rewritten message by message, its ids and
    /// offset in place: the fields the messages share, the queue's topic and broker name among
    /// them, are not cloned and dropped once per message.
    pub(crate) fn fan_out<R>(
        &self,
        replies: impl IntoIterator<Item = Option<R>>,
        mut each: impl FnMut(R, &SendResult),
    ) {
        let mut offset_ids = OffsetIds::of(&self.offset_ids);
        let mut shared: Option<SendResult> = None;
        for (index, (reply, key)) in replies.into_iter().zip(&self.uniq_keys).enumerate() {
            let offset_id = offset_ids.next().unwrap_or_default();
            let Some(reply) = reply else {
                continue;
            };
            let result = match &mut shared {
                Some(result) => {
                    result.msg_id.assign(key);
                    result.offset_msg_id.assign(offset_id);
                    result.queue_offset = self.queue_offset(index);
                    result
                }
                None => shared.insert(self.result(index, key, offset_id)),
            };
            each(reply, result);
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

/// The broker's comma-joined offset ids one by one: `split(',')`, each comma found by `memchr`
/// (a batch of 256 has an 8 KiB list, split once per answer; `memchr` finds the next comma in
/// about 60 % of the time a 16-byte-chunk search took, ~9 against ~14 ns per 32-character id).
#[derive(Debug, Clone)]
pub(crate) struct OffsetIds<'a> {
    rest: Option<&'a str>,
}

impl<'a> OffsetIds<'a> {
    pub(crate) fn of(list: &'a str) -> Self {
        OffsetIds { rest: Some(list) }
    }

    /// How many ids `list` holds (as `list.split(',').count()`).
    pub(crate) fn count_in(list: &str) -> usize {
        // Counted in byte lanes, 255 bytes at a time (a lane cannot overflow).
        let commas: usize = list
            .as_bytes()
            .chunks(255)
            .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b','))))
            .sum();
        commas + 1
    }
}

impl<'a> Iterator for OffsetIds<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match memchr::memchr(b',', rest.as_bytes()) {
            // A comma is ASCII: both sides of it are char boundaries.
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
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
            topic: "T".into(),
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
    fn offset_ids_split_as_split_does() {
        let long = ["A".repeat(32), "B".repeat(32), "C".repeat(40)].join(",");
        let lists = [
            "",
            ",",
            ",,",
            "a",
            "a,",
            ",a",
            "a,b,c",
            "é,☃,,x",
            long.as_str(),
        ];
        for list in lists {
            let got: Vec<_> = OffsetIds::of(list).collect();
            let want: Vec<_> = list.split(',').collect();
            assert_eq!(got, want, "{list:?}");
            assert_eq!(OffsetIds::count_in(list), want.len(), "{list:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn offset_ids_match_split_on_any_text(list in "[a-f0-9,é]{0,80}") {
            let got: Vec<_> = OffsetIds::of(&list).collect();
            let want: Vec<_> = list.split(',').collect();
            proptest::prop_assert_eq!(OffsetIds::count_in(&list), want.len());
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn offsets_saturate_near_the_maximum() {
        let results = answer("", Some(i64::MAX - 1), 3).into_results();
        let offsets: Vec<_> = results.iter().map(|r| r.queue_offset).collect();
        assert_eq!(offsets, [i64::MAX - 1, i64::MAX, i64::MAX]);
    }

    #[test]
    fn a_fan_out_rewrites_one_result_into_each_wanted_message() {
        // Message 1 is unwanted and message 3 has no offset id: the others get exactly what
        // `result_at` builds on its own.
        let answer = answer("O0,O1,O2", Some(10), 4);
        let mut got = Vec::new();
        answer.fan_out([Some(0), None, Some(2), Some(3)], |i, result| {
            got.push((i, result.clone()))
        });
        let want: Vec<_> = [0, 2, 3]
            .into_iter()
            .map(|i| (i, answer.result_at(i).unwrap()))
            .collect();
        assert_eq!(got, want);
        assert_eq!((&*got[2].1.msg_id, &*got[2].1.offset_msg_id), ("K3", ""));
        // Fewer replies than messages: the fan-out ends with them.
        let mut count = 0;
        answer.fan_out([Some(()); 2], |_, _| count += 1);
        assert_eq!(count, 2);
    }
}
