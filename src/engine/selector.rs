//! Queue selection, one shard per core (Java `TopicPublishInfo.selectOneMessageQueue` with a
//! `ThreadLocalIndex`): round robin from a random start, skipping the broker that just failed.

use super::text_hasher::TextMap;
use crate::route::{PublishQueue, TopicRoute};

/// A queue [`QueueSelector::select_marked`] chose.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Copy)]
pub struct Selected<'r> {
    pub queue: &'r PublishQueue,
    /// Its index in the route's queues.
    pub index: usize,
    /// Where the round robin stood before: [`QueueSelector::rewind`] to it if the queue goes
    /// unused.
    pub mark: usize,
}

/// Per-core round-robin positions, per topic. No shared counters.
///
/// The topic sent to last keeps its position beside the map (found by comparing names, not by
/// hashing): a core sending to one topic, the common case, hashes nothing per send.
#[allow(unreachable_pub)]
pub struct QueueSelector {
    positions: TextMap<usize>,
    seed: usize,
    /// The topic sent to last (its buffer reused from topic to topic)…
    hot: String,
    /// …and its position, ahead of the map's (`None`: no hot topic).
    hot_position: Option<usize>,
}

impl QueueSelector {
    /// A selector starting at `seed`.
    pub fn new(seed: usize) -> Self {
        QueueSelector {
            positions: TextMap::default(),
            seed,
            hot: String::new(),
            hot_position: None,
        }
    }

    fn is_hot(&self, topic: &str) -> bool {
        self.hot_position.is_some() && self.hot == topic
    }

    /// Writes the hot topic's position back into the map.
    fn cool(&mut self) {
        if let Some(position) = self.hot_position.take() {
            if let Some(slot) = self.positions.get_mut(self.hot.as_str()) {
                *slot = position;
            }
        }
    }

    /// `topic`'s position, made the hot one (a topic seen for the first time starts at the
    /// seed).
    fn position_mut(&mut self, topic: &str) -> &mut usize {
        if !self.is_hot(topic) {
            self.cool();
            let position = match self.positions.get(topic) {
                Some(&position) => position,
                None => *self.positions.entry(topic.to_owned()).or_insert(self.seed),
            };
            self.hot.clear();
            self.hot.push_str(topic);
            self.hot_position = Some(position);
        }
        self.hot_position.get_or_insert(self.seed)
    }

    /// Topics with a position.
    pub fn topics(&self) -> usize {
        self.positions.len()
    }

    /// Keeps the positions of the topics `keep` names.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.cool();
        self.positions.retain(|t, _| keep(t));
    }

    /// Where `topic`'s round robin stands (tests; the send path takes it from
    /// [`QueueSelector::select_marked`]).
    #[cfg(test)]
    pub fn position(&self, topic: &str) -> usize {
        match self.hot_position {
            Some(position) if self.hot == topic => position,
            _ => self.positions.get(topic).copied().unwrap_or(self.seed),
        }
    }

    /// Puts `topic`'s round robin back to `position` (the mark [`QueueSelector::select_marked`]
    /// gave), when the selected queue goes unused (the fast path handing a send to the slow
    /// path, which selects again).
    pub fn rewind(&mut self, topic: &str, position: usize) {
        match &mut self.hot_position {
            Some(p) if self.hot == topic => *p = position,
            _ => {
                if let Some(p) = self.positions.get_mut(topic) {
                    *p = position;
                }
            }
        }
    }

    /// The next queue of `route` for `topic`, avoiding `avoid_broker` when possible.
    pub fn select<'r>(
        &mut self,
        topic: &str,
        route: &'r TopicRoute,
        avoid_broker: Option<&str>,
    ) -> Option<&'r PublishQueue> {
        self.select_available(topic, route, avoid_broker, &|_| true)
    }

    /// Like [`QueueSelector::select`], preferring brokers for which `available` is true (latency
    /// fault avoidance); when no queue qualifies it falls back to plain selection.
    pub fn select_available<'r>(
        &mut self,
        topic: &str,
        route: &'r TopicRoute,
        avoid_broker: Option<&str>,
        available: &dyn Fn(&str) -> bool,
    ) -> Option<&'r PublishQueue> {
        self.select_marked(topic, route, avoid_broker, available)
            .map(|selected| selected.queue)
    }

    /// Like [`QueueSelector::select_available`], also returning the queue's index and where the
    /// round robin stood before, to [`QueueSelector::rewind`] to if the queue goes unused (one
    /// lookup for both).
    pub fn select_marked<'r>(
        &mut self,
        topic: &str,
        route: &'r TopicRoute,
        avoid_broker: Option<&str>,
        available: &dyn Fn(&str) -> bool,
    ) -> Option<Selected<'r>> {
        let queues = &route.queues;
        if queues.is_empty() {
            return None;
        }
        let position = self.position_mut(topic);
        let mark = *position;
        let len = queues.len();
        // The position is kept below the queue count, so a step is a compare, not a division
        // (only a seed or a route that shrank needs one).
        let mut at = if *position < len {
            *position
        } else {
            *position % len
        };
        let mut step = || {
            at = if at + 1 >= len { 0 } else { at + 1 };
            at
        };
        let mut chosen = None;
        for _ in 0..len {
            let queue = &queues[step()];
            if Some(&*queue.broker_name) != avoid_broker && available(&queue.broker_name) {
                chosen = Some(queue);
                break;
            }
        }
        if chosen.is_none() {
            if let Some(avoid) = avoid_broker {
                for _ in 0..len {
                    let queue = &queues[step()];
                    if &*queue.broker_name != avoid {
                        chosen = Some(queue);
                        break;
                    }
                }
            }
        }
        let queue = chosen.unwrap_or_else(|| &queues[step()]);
        *position = at;
        Some(Selected {
            queue,
            index: at,
            mark,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn route() -> TopicRoute {
        let q = |b: &str, id| PublishQueue {
            broker_name: Arc::from(b),
            queue_id: id,
        };
        TopicRoute {
            topic: "T".into(),
            queues: vec![q("a", 0), q("a", 1), q("b", 0), q("b", 1)],
            master_addrs: Default::default(),
            order_topic: false,
            from_default_topic: false,
            source: Default::default(),
            send_header_constants: None,
        }
    }

    #[test]
    fn rewind_gives_the_same_queue_again() {
        let r = route();
        let mut s = QueueSelector::new(3);
        let mark = s.position("T");
        let first = s.select("T", &r, None).unwrap().clone();
        s.rewind("T", mark);
        assert_eq!(s.select("T", &r, None).unwrap(), &first);
        let Selected {
            queue: second,
            index,
            mark,
        } = s.select_marked("T", &r, None, &|_| true).unwrap();
        assert!(std::ptr::eq(second, &r.queues[index]));
        let second = second.clone();
        assert_ne!(second, first);
        s.rewind("T", mark);
        assert_eq!(s.select("T", &r, None).unwrap(), &second);
    }

    #[test]
    fn a_large_seed_and_a_shrunk_route_still_rotate_over_every_queue() {
        let r = route();
        let mut s = QueueSelector::new(usize::MAX);
        let ids = |s: &mut QueueSelector, r: &TopicRoute, n| -> Vec<(String, i32)> {
            (0..n)
                .map(|_| {
                    let q = s.select("T", r, None).unwrap();
                    (q.broker_name.to_string(), q.queue_id)
                })
                .collect()
        };
        let mut first = ids(&mut s, &r, 4);
        assert_eq!(
            ids(&mut s, &r, 4),
            first,
            "a second round repeats the first"
        );
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 4, "every queue once per round");
        assert!(s.position("T") < 4);
        let shrunk = TopicRoute {
            queues: r.queues[..3].to_vec(),
            ..r.clone()
        };
        let mut seen = ids(&mut s, &shrunk, 3);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "a shrunk route is rotated over whole");
    }

    #[test]
    fn round_robin_and_avoidance() {
        let r = route();
        let mut s = QueueSelector::new(7);
        let picks: Vec<_> = (0..4)
            .map(|_| s.select("T", &r, None).unwrap().clone())
            .collect();
        let mut unique = picks.clone();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        for _ in 0..10 {
            assert_eq!(&*s.select("T", &r, Some("a")).unwrap().broker_name, "b");
        }
        let only_a = TopicRoute {
            queues: r.queues[..2].to_vec(),
            ..r.clone()
        };
        assert_eq!(
            &*s.select("T", &only_a, Some("a")).unwrap().broker_name,
            "a"
        );
        for _ in 0..10 {
            let q = s.select_available("T", &r, None, &|b| b != "b").unwrap();
            assert_eq!(&*q.broker_name, "a");
        }
        // Nothing available: plain round robin still answers.
        assert!(s.select_available("T", &r, None, &|_| false).is_some());
        let empty = TopicRoute {
            queues: vec![],
            ..r
        };
        assert!(s.select("T", &empty, None).is_none());
    }

    /// What happens to one topic's round robin.
    #[derive(Debug, Clone)]
    enum Step {
        Select {
            topic: usize,
        },
        /// The last selection of `topic` goes unused (the fast path falling back).
        Rewind {
            topic: usize,
        },
        /// The route table evicted `topic`: its position is forgotten.
        Forget {
            topic: usize,
        },
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Topics sent to in any interleaving rotate exactly as each would alone: keeping the
        /// last topic's position beside the map never leaks one topic's position into another
        /// or loses a step.
        #[test]
        fn interleaved_topics_rotate_as_each_would_alone(
            steps in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => (0usize..3).prop_map(|topic| Step::Select { topic }),
                    2 => (0usize..3).prop_map(|topic| Step::Rewind { topic }),
                    1 => (0usize..3).prop_map(|topic| Step::Forget { topic }),
                ],
                1..120,
            )
        ) {
            let names = ["T0", "T1", "T2"];
            let r = route();
            let mut shared = QueueSelector::new(5);
            // One selector per topic, each seeing only its own topic.
            let mut alone: Vec<QueueSelector> = (0..3).map(|_| QueueSelector::new(5)).collect();
            let mut marks: [Option<(usize, usize)>; 3] = [None; 3];
            for step in steps {
                match step {
                    Step::Select { topic } => {
                        let name = names[topic];
                        let got = shared.select_marked(name, &r, None, &|_| true).unwrap();
                        let want = alone[topic].select_marked(name, &r, None, &|_| true).unwrap();
                        prop_assert_eq!(got.queue, want.queue);
                        prop_assert!(std::ptr::eq(got.queue, &r.queues[got.index]));
                        marks[topic] = Some((got.mark, want.mark));
                    }
                    Step::Rewind { topic } => {
                        if let Some((got, want)) = marks[topic].take() {
                            shared.rewind(names[topic], got);
                            alone[topic].rewind(names[topic], want);
                        }
                    }
                    Step::Forget { topic } => {
                        shared.retain(|t| t != names[topic]);
                        alone[topic] = QueueSelector::new(5);
                        marks[topic] = None;
                    }
                }
                for (topic, name) in names.iter().enumerate() {
                    prop_assert_eq!(shared.position(name), alone[topic].position(name));
                }
            }
        }
    }
}
