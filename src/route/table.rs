//! The shared route table: an immutable snapshot behind an atomic pointer swap.
//!
//! ```text
//!  send (any core) ── load() ──► Arc<RouteSnapshot> ──► topic → Arc<TopicRoute>   (never blocks)
//!  refresh (one core) ── build new snapshot ── rcu swap ──► readers see it on their next load
//!  use: cores `touch` a topic (on a route-cache miss, and once per epoch while they keep
//!       sending to it) with the table's coarse epoch; topics idle for long are evicted, and a full table drops its
//!       least recently used quarter, so memory does not grow with the topics ever named
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64 as UseStamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::publish_queues::TopicRoute;

/// An immutable view of every known topic's route.
#[derive(Debug, Default)]
pub struct RouteSnapshot {
    /// Increases by one with every swap.
    pub generation: u64,
    /// Topic → route.
    pub topics: HashMap<String, Arc<TopicRoute>>,
    /// Topic → the epoch it was last used in (shared by every snapshot holding the topic).
    used: HashMap<String, Arc<UseStamp>>,
}

impl RouteSnapshot {
    /// Every master address named by any route (heartbeat targets).
    pub fn master_addrs(&self) -> BTreeSet<String> {
        self.topics
            .values()
            .flat_map(|r| r.master_addrs.values().cloned())
            .collect()
    }
}

/// Routes kept at most by default (see [`RouteTable::with_max_topics`]).
pub const DEFAULT_MAX_TOPICS: usize = 4096;

/// Routes shared by all cores.
#[derive(Debug)]
pub struct RouteTable {
    current: ArcSwap<RouteSnapshot>,
    /// Bumped after every swap: a reader that cached a route can tell it may be stale with one
    /// atomic load.
    changes: AtomicU64,
    /// Coarse clock of use: advanced by the control task, stamped on topics as they are used.
    epoch: AtomicU64,
    max_topics: usize,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::with_max_topics(DEFAULT_MAX_TOPICS)
    }
}

impl RouteTable {
    /// An empty table.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table that keeps at most `max_topics` routes (at least 1).
    pub fn with_max_topics(max_topics: usize) -> Self {
        RouteTable {
            current: ArcSwap::default(),
            changes: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            max_topics: max_topics.max(1),
        }
    }

    /// The coarse clock of use.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Advances the coarse clock of use by one step.
    pub fn advance_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that `topic` is in use now (one load, and a store at most once per epoch).
    pub fn touch(&self, topic: &str) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(stamp) = self.current.load().used.get(topic) {
            if stamp.load(Ordering::Relaxed) != epoch {
                stamp.store(epoch, Ordering::Relaxed);
            }
        }
    }

    /// Removes the topics not used for `idle` epochs; returns them.
    pub fn evict_idle(&self, idle: u64) -> Vec<String> {
        let now = self.epoch.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        self.current.rcu(|old| {
            evicted = old
                .used
                .iter()
                .filter(|(_, stamp)| stamp.load(Ordering::Relaxed).saturating_add(idle) < now)
                .map(|(topic, _)| topic.clone())
                .collect();
            if evicted.is_empty() {
                return Arc::clone(old);
            }
            let mut next = RouteSnapshot {
                generation: old.generation + 1,
                topics: old.topics.clone(),
                used: old.used.clone(),
            };
            for topic in &evicted {
                next.topics.remove(topic);
                next.used.remove(topic);
            }
            Arc::new(next)
        });
        if !evicted.is_empty() {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        evicted
    }

    /// Topics known.
    pub fn len(&self) -> usize {
        self.current.load().topics.len()
    }

    /// Whether no topic is known.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many swaps have happened; read it before [`RouteTable::get`] and a route cached with
    /// it is current while this stays the same.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<RouteSnapshot> {
        self.current.load_full()
    }

    /// The current route of `topic`.
    pub fn get(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        self.current.load().topics.get(topic).cloned()
    }

    /// Installs `route` for `topic` (and sets its [`TopicRoute::topic`]). Returns `false` (and swaps nothing) when the table already
    /// holds an equal route, so repeated refreshes that learn nothing cost no swap.
    pub fn update(&self, topic: &str, mut route: TopicRoute) -> bool {
        route.topic = crate::Topic::from(topic);
        let route = Arc::new(route);
        let mut changed = false;
        let epoch = self.epoch.load(Ordering::Relaxed);
        self.current.rcu(|old| {
            if old.topics.get(topic).is_some_and(|r| **r == *route) {
                changed = false;
                return Arc::clone(old);
            }
            changed = true;
            let mut topics = old.topics.clone();
            let mut used = old.used.clone();
            if !topics.contains_key(topic) && topics.len() >= self.max_topics {
                // Full: the least recently used quarter makes room (amortised over the inserts
                // that fill it again).
                let mut by_use: Vec<(u64, &String)> = old
                    .used
                    .iter()
                    .map(|(t, stamp)| (stamp.load(Ordering::Relaxed), t))
                    .collect();
                by_use.sort_unstable();
                for (_, t) in by_use.iter().take((self.max_topics / 4).max(1)) {
                    topics.remove(*t);
                    used.remove(*t);
                }
            }
            topics.insert(topic.to_owned(), Arc::clone(&route));
            used.entry(topic.to_owned())
                .or_insert_with(|| Arc::new(UseStamp::new(epoch)));
            Arc::new(RouteSnapshot {
                generation: old.generation + 1,
                topics,
                used,
            })
        });
        if changed {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::publish_queues::from_route;

    #[test]
    fn swap_only_on_change() {
        let table = RouteTable::new();
        let route = from_route(Default::default());
        assert!(table.update("T", route.clone()));
        let g = table.load().generation;
        let changes = table.changes();
        assert!(!table.update("T", route.clone()));
        assert_eq!(table.load().generation, g);
        assert_eq!(table.changes(), changes);
        let mut other = route;
        other.from_default_topic = true;
        assert!(table.update("T", other));
        assert_eq!(table.load().generation, g + 1);
        assert_eq!(table.changes(), changes + 1);
        assert!(table.get("T").unwrap().from_default_topic);
        assert!(table.get("U").is_none());
    }

    #[test]
    fn a_full_table_drops_its_least_recently_used_quarter() {
        let table = RouteTable::with_max_topics(8);
        let route = from_route(Default::default());
        for i in 0..8 {
            table.advance_epoch();
            assert!(table.update(&format!("t{i}"), route.clone()));
        }
        table.advance_epoch();
        table.touch("t0");
        table.touch("t1");
        assert!(table.update("new", route.clone()));
        let snapshot = table.load();
        assert_eq!(snapshot.topics.len(), 7, "8 - 2 + 1");
        for kept in ["t0", "t1", "t4", "t7", "new"] {
            assert!(snapshot.topics.contains_key(kept), "{kept}");
        }
        for dropped in ["t2", "t3"] {
            assert!(!snapshot.topics.contains_key(dropped), "{dropped}");
        }
        for _ in 0..2000 {
            let name = format!("x{}", table.len());
            table.update(&name, route.clone());
            assert!(table.len() <= 8);
        }
    }

    #[test]
    fn idle_topics_are_evicted() {
        let table = RouteTable::new();
        let route = from_route(Default::default());
        table.update("busy", route.clone());
        table.update("idle", route);
        for _ in 0..5 {
            table.advance_epoch();
            table.touch("busy");
        }
        assert_eq!(table.evict_idle(3), vec!["idle".to_owned()]);
        assert!(table.get("busy").is_some());
        assert!(table.get("idle").is_none());
        assert!(table.evict_idle(3).is_empty());
    }
}
