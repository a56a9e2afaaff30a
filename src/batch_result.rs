//! [`BatchResult`]: what the messages of a stored batch got, each message's [`SendResult`] built
//! only when asked for.

use crate::engine::prepared::{BatchAnswer, OffsetIds};
use crate::protocol::ShortString;
use crate::send_result::{MessageQueue, SendResult, SendStatus};

/// The outcome of a stored batch ([`crate::Producer::send_batch`],
/// [`crate::LocalProducer::send_batch`]): one [`SendResult`] per message, in the order the
/// messages were given.
///
/// The broker answers a batch once. Each message's result (its unique id, offset id and queue
/// offset) is built from that answer when asked for, so a caller that needs only the count, the
/// status or the ids pays nothing per message.
///
/// # Example
///
/// ```no_run
/// # fn demo(producer: &rocketmq_tpc::Producer) -> Result<(), rocketmq_tpc::Error> {
/// use rocketmq_tpc::Message;
///
/// let batch = vec![Message::new("Orders", "a"), Message::new("Orders", "b")];
/// let stored = producer.send_batch(batch).wait()?;
/// assert_eq!(stored.len(), 2);
/// for result in stored.iter() {
///     println!("{} at offset {}", result.msg_id, result.queue_offset);
/// }
/// let ids: Vec<&str> = stored.msg_ids().collect();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BatchResult(Box<BatchAnswer>);

impl BatchResult {
    pub(crate) fn new(answer: Box<BatchAnswer>) -> Self {
        debug_assert!(
            !answer.uniq_keys.is_empty(),
            "a batch's answer gets its ids when its send ends (Reply::finish)"
        );
        BatchResult(answer)
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the batch had no messages (a stored batch always has some).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage status, the same for every message of the batch.
    pub fn status(&self) -> SendStatus {
        self.0.status
    }

    /// The queue the batch was stored in.
    pub fn queue(&self) -> &MessageQueue {
        &self.0.queue
    }

    /// The messages' unique ids (`UNIQ_KEY`), in order, without building their results.
    pub fn msg_ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.uniq_keys.iter().map(|id| id.as_str())
    }

    /// The result of message `index` (only that one is built), `None` past the end.
    pub fn get(&self, index: usize) -> Option<SendResult> {
        self.0.result_at(index)
    }

    /// Every message's result, in order, each built as the iterator reaches it.
    pub fn iter(&self) -> BatchResultIter<'_> {
        self.0.results()
    }

    /// Every message's result, in order.
    pub fn into_vec(self) -> Vec<SendResult> {
        self.0.into_results()
    }
}

/// The results of a [`BatchResult`] in order, each built as the iterator reaches it
/// ([`BatchResult::iter`], `for result in &batch_result`).
#[derive(Debug, Clone)]
pub struct BatchResultIter<'a> {
    answer: &'a BatchAnswer,
    /// The ids of the messages, in order (the answer's own once its send has ended).
    keys: &'a [ShortString],
    next: usize,
    offset_ids: OffsetIds<'a>,
}

impl<'a> BatchResultIter<'a> {
    /// The results of the messages of `keys` in `answer`.
    pub(crate) fn new(answer: &'a BatchAnswer, keys: &'a [ShortString]) -> Self {
        BatchResultIter {
            answer,
            keys,
            next: 0,
            offset_ids: OffsetIds::of(&answer.offset_ids),
        }
    }
}

impl Iterator for BatchResultIter<'_> {
    type Item = SendResult;

    fn next(&mut self) -> Option<SendResult> {
        let key = self.keys.get(self.next)?;
        let offset_id = self.offset_ids.next().unwrap_or_default();
        let result = self.answer.result(self.next, key, offset_id);
        self.next += 1;
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.keys.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchResultIter<'_> {}

impl std::iter::FusedIterator for BatchResultIter<'_> {}

impl<'a> IntoIterator for &'a BatchResult {
    type Item = SendResult;
    type IntoIter = BatchResultIter<'a>;

    fn into_iter(self) -> BatchResultIter<'a> {
        self.iter()
    }
}

/// Every message's result, built into a `Vec` first ([`BatchResult::iter`] builds them one by
/// one).
impl IntoIterator for BatchResult {
    type Item = SendResult;
    type IntoIter = std::vec::IntoIter<SendResult>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

/// The results, as a list.
impl std::fmt::Debug for BatchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when every message's result is (as the `Vec<SendResult>` it replaces compared).
impl PartialEq for BatchResult {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for BatchResult {}

/// Equal to the list of the same results, in order.
impl PartialEq<Vec<SendResult>> for BatchResult {
    fn eq(&self, other: &Vec<SendResult>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == *b)
    }
}

impl From<BatchResult> for Vec<SendResult> {
    fn from(result: BatchResult) -> Self {
        result.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prepared::batch_answer_for_tests as answer;

    #[test]
    fn reads_the_answer_lazily_and_in_order() {
        let result = BatchResult::new(Box::new(answer("O0,O1,O2", Some(10), 3)));
        assert_eq!((result.len(), result.is_empty()), (3, false));
        assert_eq!(result.status(), SendStatus::SendOk);
        assert_eq!(result.queue().queue_id, 3);
        assert_eq!(result.msg_ids().collect::<Vec<_>>(), ["K0", "K1", "K2"]);
        let second = result.get(1).expect("three messages");
        assert_eq!((&*second.msg_id, &*second.offset_msg_id), ("K1", "O1"));
        assert_eq!(second.queue_offset, 11);
        assert!(result.get(3).is_none());
        let every: Vec<_> = result.iter().collect();
        for (i, one) in every.iter().enumerate() {
            let got = result.get(i).expect("in range");
            assert_eq!(
                (&got.msg_id, &got.offset_msg_id),
                (&one.msg_id, &one.offset_msg_id)
            );
            assert_eq!(got.queue_offset, one.queue_offset);
        }
        assert!(
            format!("{result:?}").contains("O2"),
            "Debug lists the results"
        );
        let mut by_ref = Vec::new();
        for r in &result {
            by_ref.push(r.offset_msg_id.to_string());
        }
        assert_eq!(by_ref, ["O0", "O1", "O2"]);
        let mut iter = result.iter();
        iter.next();
        assert_eq!(iter.len(), 2);
        assert_eq!(iter.by_ref().count(), 2);
        assert!(iter.next().is_none(), "fused");
        assert_eq!(result, result.clone());
        assert_eq!(result, result.iter().collect::<Vec<_>>());
        let other = BatchResult::new(Box::new(answer("O0,O1,X2", Some(10), 3)));
        assert_ne!(result, other, "one offset id differs");
        let shorter = BatchResult::new(Box::new(answer("O0,O1", Some(10), 2)));
        assert_ne!(result, shorter);
        let offsets: Vec<_> = result.iter().map(|r| r.queue_offset).collect();
        assert_eq!(offsets, [10, 11, 12]);
        assert_eq!(result.iter().len(), 3);
        let all: Vec<SendResult> = result.clone().into();
        assert_eq!(all.len(), 3);
        let ids: Vec<_> = result.into_iter().map(|r| r.msg_id.to_string()).collect();
        assert_eq!(ids, ["K0", "K1", "K2"]);
    }
}
