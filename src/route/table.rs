//! The shared route table: an immutable snapshot behind an atomic pointer swap.
//!
//! ```text
//!  send (any core) ── load() ──► Arc<RouteSnapshot> ──► topic → Arc<TopicRoute>   (never blocks)
//!  refresh (one core) ── build new snapshot ── rcu swap ──► readers see it on their next load
//! ```

use std::collections::{BTreeSet, HashMap};
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

/// Routes shared by all cores.
#[derive(Debug, Default)]
pub struct RouteTable {
    current: ArcSwap<RouteSnapshot>,
    /// Bumped after every swap: a reader that cached a route can tell it may be stale with one
    /// atomic load.
    changes: AtomicU64,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
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
        route.topic = Arc::from(topic);
        let route = Arc::new(route);
        let mut changed = false;
        self.current.rcu(|old| {
            if old.topics.get(topic).is_some_and(|r| **r == *route) {
                changed = false;
                return Arc::clone(old);
            }
            changed = true;
            let mut topics = old.topics.clone();
            topics.insert(topic.to_owned(), Arc::clone(&route));
            Arc::new(RouteSnapshot {
                generation: old.generation + 1,
                topics,
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
}
