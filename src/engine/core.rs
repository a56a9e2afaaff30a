//! One producer core: a pinned thread running a glommio executor that owns its connections,
//! queue-selector shard and in-flight sends.
//!
//! ```text
//!  inbox ──► drain task ── permit (max_inflight) ──► start_send ─┬─► automatic batcher
//!                                                               ├─► send record (fast path: cached
//!                                                               │   route, open connection)
//!                                                               └─► send task (everything else:
//!                                                                   route fetch, connect, retries)
//!  core 0 only: control task ── route refresh + heartbeats every 30 s
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod admission;
mod routes;
mod run;

#[cfg(test)]
pub(crate) use admission::Caps;
pub(crate) use admission::InFlightPermit;
pub(crate) use routes::CoreRoute;
pub(crate) use run::{spawn_core, start_send_at, start_unbatched};

use super::connection::{ConnSettings, Connection};
use super::deadline::{deadline_after, until};
use super::selector::QueueSelector;
use super::single_flight::SingleFlight;
use super::stats::CoreStats;
use super::text_hasher::TextMap;
use crate::config::{CoreConfig, ProducerConfig};
use crate::error::{Error, Outcome};
use crate::route::{RouteTable, TopicRoute};

/// State shared by all cores of one producer (read-mostly; nothing here is touched per message
/// except the route snapshot load).
pub(crate) struct Shared {
    pub config: ProducerConfig,
    pub routes: RouteTable,
    pub client_id: String,
    pub closing: AtomicBool,
    pub shutdown_deadline: Mutex<Option<Instant>>,
    pub conn_settings: ConnSettings,
    /// Check-backs and pushed replies from brokers, for every connection of every core.
    pub broker_requests: Arc<super::broker_requests::BrokerRequests>,
    /// Send, check-forbidden and request hooks.
    pub hooks: Arc<crate::hooks::Hooks>,
    /// Where reported sends deliver their outcomes (`ProducerBuilder::on_delivery`).
    pub delivery: Option<Arc<super::records::SharedDeliveryHandler>>,
}

thread_local! {
    static CURRENT_CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// The core running on this thread, if this is a producer core.
pub(crate) fn current_core() -> Option<Rc<Core>> {
    CURRENT_CORE.with(|c| c.borrow().clone())
}

/// Connects in progress, keyed by (peer address, connection slot).
type ConnectFlights = SingleFlight<(String, usize), Result<Rc<Connection>, Error>>;

/// Most brokers one route may name: each costs a connection per core and its buffers, and a
/// NameServer answer naming more is treated as garbage.
pub(crate) const MAX_BROKERS_PER_ROUTE: usize = 256;

/// A queue: broker name and queue id.
type QueueKey = (Arc<str>, i32);

/// Everything one core owns.
pub(crate) struct Core {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub core_config: CoreConfig,
    /// Open connections per peer address, `connections_per_broker` slots each.
    connections: RefCell<TextMap<Vec<Option<Rc<Connection>>>>>,
    connects: Rc<ConnectFlights>,
    /// Round-robin position over the connection slots of a broker.
    next_slot: Cell<usize>,
    /// The connection the last plain send found (one slot per broker): the next send to the
    /// same address, the common case, takes it without hashing the address.
    last_send_connection: RefCell<std::rc::Weak<Connection>>,
    route_fetches: Rc<SingleFlight<String, Result<Arc<TopicRoute>, Error>>>,
    /// When each topic's last background refresh was scheduled ([`Core::schedule_refresh`]):
    /// the failures of one lost connection schedule one refresh per topic per
    /// [`REFRESH_COOLDOWN`], not one per message.
    refreshes_scheduled: RefCell<HashMap<String, Instant>>,
    /// The routes of the topics sent to last: sends to them skip the table lookup.
    recent_routes: RefCell<routes::RecentRoutes>,
    /// Where the automatic batcher hands local callers their outcomes.
    pub reply_slots: Rc<super::reply_slots::ReplySlots>,
    pub selector: RefCell<QueueSelector>,
    /// Broker availability for latency fault avoidance (used when enabled).
    pub faults: RefCell<super::latency::FaultTracker>,
    ns_cursor: Cell<usize>,
    /// Messages and bytes in progress (`max_inflight`, `max_buffered_bytes`), and which of
    /// them a `flush()` waits for.
    pub caps: Rc<admission::Caps>,
    pub aborting: Cell<bool>,
    /// Keeps sends to chosen queues in the order they reached the core.
    pub order_gate: Rc<super::order_gate::OrderGate>,
    /// One request in flight per chosen queue, in order (see `send_attempt`).
    queue_orders: RefCell<HashMap<QueueKey, Rc<super::order_gate::OrderGate>>>,
    pub stats: CoreStats,
    /// Open automatic batches, when auto-batching is on.
    pub batcher: Option<super::batcher::Batcher>,
    /// Counters of connections that closed (so totals survive reconnects).
    closed_counters: super::connection::ConnCounters,
    /// Plain sends in flight on the fast path (see [`super::records`]).
    pub records: Rc<super::records::RecordBook>,
    /// Where reported sends (`send_reported`) deliver their outcomes on this core.
    pub delivery: RefCell<Option<Rc<super::records::DeliveryHandler>>>,
    /// Scratch for the properties of plain messages sent on this core
    /// ([`super::local_send::start_plain`]); taken out while in use.
    pub plain_properties: Cell<String>,
}

impl Core {
    fn new(index: usize, cpu: usize, shared: Arc<Shared>, this: std::rc::Weak<Core>) -> Self {
        let core_config = shared.config.core_for(cpu).clone();
        let batcher = core_config.auto_batch.map(super::batcher::Batcher::new);
        Core {
            index,
            caps: Rc::new(admission::Caps::new(
                core_config.max_inflight,
                core_config.max_buffered_bytes,
            )),
            connections: RefCell::new(TextMap::default()),
            connects: Rc::new(SingleFlight::new()),
            next_slot: Cell::new(0),
            last_send_connection: RefCell::new(std::rc::Weak::new()),
            route_fetches: Rc::new(SingleFlight::new()),
            recent_routes: RefCell::default(),
            reply_slots: Rc::default(),
            selector: RefCell::new(QueueSelector::new(
                super::prepared::random_u32() as usize + index,
            )),
            ns_cursor: Cell::new(0),
            faults: RefCell::new(super::latency::FaultTracker::new(
                shared.config.fault_table.clone(),
            )),
            aborting: Cell::new(false),
            order_gate: Rc::default(),
            queue_orders: RefCell::default(),
            core_config,
            stats: CoreStats::default(),
            batcher,
            closed_counters: Default::default(),
            refreshes_scheduled: RefCell::default(),
            records: Rc::new(super::records::RecordBook::new(this)),
            delivery: RefCell::new(shared.delivery.as_ref().map(|handler| {
                let handler = Arc::clone(handler);
                Rc::new(
                    move |token, result: Result<&crate::SendResult, crate::Error>| {
                        handler(token, result)
                    },
                ) as Rc<super::records::DeliveryHandler>
            })),
            shared,
            plain_properties: Cell::new(String::new()),
        }
    }

    fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// An open connection to `addr`, connecting (once, shared by concurrent callers) if needed.
    pub(crate) async fn connection(
        self: &Rc<Self>,
        addr: &str,
        deadline: Instant,
    ) -> Result<Rc<Connection>, Error> {
        self.connection_slot(addr, 0, deadline).await
    }

    /// One of the `connections_per_broker` connections to `addr`: the one `slot` names (modulo
    /// their number), else the next, round robin.
    pub(crate) async fn send_connection(
        self: &Rc<Self>,
        addr: &str,
        slot: Option<usize>,
        deadline: Instant,
    ) -> Result<Rc<Connection>, Error> {
        let slots = self.core_config.connections_per_broker.max(1);
        let slot = match slot {
            Some(slot) => slot % slots,
            None => {
                let next = self.next_slot.get();
                self.next_slot.set(next.wrapping_add(1));
                next % slots
            }
        };
        if let Some(conn) = self.open_connection(addr, slot) {
            return Ok(conn);
        }
        // Connecting is rare: boxed, so its large future does not inflate every send's.
        Box::pin(self.connection_slot(addr, slot, deadline)).await
    }

    /// An open connection to `addr` for a plain send (round robin over its slots), if one is
    /// open now.
    pub(crate) fn open_send_connection(&self, addr: &str) -> Option<Rc<Connection>> {
        let slots = self.core_config.connections_per_broker.max(1);
        if slots == 1 {
            if let Some(conn) = self.last_send_connection.borrow().upgrade() {
                // An open connection is the one its slot holds: a slot is refilled only once
                // its connection closed.
                if conn.peer() == addr && !conn.is_closed() {
                    return Some(conn);
                }
            }
            let conn = self.open_connection(addr, 0)?;
            *self.last_send_connection.borrow_mut() = Rc::downgrade(&conn);
            return Some(conn);
        }
        let next = self.next_slot.get();
        self.next_slot.set(next.wrapping_add(1));
        self.open_connection(addr, next % slots)
    }

    /// The open connection in `addr`'s `slot`, if there is one.
    fn open_connection(&self, addr: &str, slot: usize) -> Option<Rc<Connection>> {
        let connections = self.connections.borrow();
        let conn = connections.get(addr)?.get(slot)?.as_ref()?;
        (!conn.is_closed()).then(|| Rc::clone(conn))
    }

    async fn connection_slot(
        self: &Rc<Self>,
        addr: &str,
        slot: usize,
        deadline: Instant,
    ) -> Result<Rc<Connection>, Error> {
        if let Some(conn) = self.open_connection(addr, slot) {
            return Ok(conn);
        }
        {
            let mut connections = self.connections.borrow_mut();
            if let Some(entry) = connections
                .get_mut(addr)
                .and_then(|slots| slots.get_mut(slot))
            {
                if let Some(old) = entry.take() {
                    self.closed_counters.absorb(&old.counters);
                }
            }
        }
        if self.aborting.get() {
            return Err(shut_down(Outcome::NotStored));
        }
        let this = Rc::clone(self);
        let key = addr.to_owned();
        let connect_deadline = deadline_after(Instant::now(), self.config().attempt_timeout);
        let flight = self.connects.run((key.clone(), slot), move || async move {
            let mut settings = this.shared.conn_settings.clone();
            settings.max_in_flight = this.core_config.max_inflight_per_connection;
            settings.max_queued_bytes = this.core_config.max_buffered_bytes;
            let records = Some(Rc::clone(&this.records));
            let result = Connection::connect(&key, settings, records, connect_deadline).await;
            if let Ok(conn) = &result {
                let mut connections = this.connections.borrow_mut();
                let slots = connections.entry(key).or_default();
                if slots.len() <= slot {
                    slots.resize(slot + 1, None);
                }
                slots[slot] = Some(Rc::clone(conn));
            }
            result
        });
        let fail = |reason: &str| Error::Connection {
            returned: crate::error::Returned::NOTHING,
            peer: addr.to_owned(),
            reason: reason.to_owned(),
            outcome: Outcome::NotStored,
        };
        match until(deadline, flight).await {
            Some(Some(result)) => result,
            Some(None) => Err(fail("the connect panicked")),
            None => Err(fail("connect did not finish within the time left")),
        }
    }

    /// The order of requests to one queue (created on first use; one entry per queue this core
    /// sent targeted messages to).
    pub(crate) fn queue_order(
        &self,
        broker_name: &Arc<str>,
        queue_id: i32,
    ) -> Rc<super::order_gate::OrderGate> {
        let mut orders = self.queue_orders.borrow_mut();
        if let Some(gate) = orders.get(&(Arc::clone(broker_name), queue_id)) {
            return Rc::clone(gate);
        }
        let gate = Rc::new(super::order_gate::OrderGate::default());
        orders.insert((Arc::clone(broker_name), queue_id), Rc::clone(&gate));
        gate
    }

    /// Closes every connection (shutdown).
    pub(crate) fn close_all(&self, reason: &str) {
        for conn in self.connections.borrow().values().flatten().flatten() {
            conn.close(reason, false);
        }
    }

    /// Copies this core's counters out (runs on the core).
    pub(crate) fn snapshot(&self) -> crate::stats::CoreStatsSnapshot {
        let conns = self.open_connections();
        let sum = |f: &dyn Fn(&Connection) -> u64| conns.iter().map(|c| f(c)).sum::<u64>();
        crate::stats::CoreStatsSnapshot {
            core: self.index,
            started: self.stats.started.get(),
            acked: self.stats.acked.get(),
            failed: self.stats.failed.get(),
            failed_by_kind: self.stats.failed_by_kind.borrow().clone(),
            attempt_errors_by_broker: self
                .stats
                .attempt_errors_by_broker
                .borrow()
                .iter()
                .map(|(broker, n)| (broker.to_string(), *n))
                .collect(),
            retries: self.stats.retries.get(),
            refused: self.stats.refused.get(),
            in_flight: self.core_config.max_inflight as u64 - self.caps.messages.available(),
            connections: conns.len(),
            writes: self.closed_counters.writes.get() + sum(&|c| c.counters.writes.get()),
            frames_written: self.closed_counters.frames_written.get()
                + sum(&|c| c.counters.frames_written.get()),
            bytes_written: self.closed_counters.bytes_written.get()
                + sum(&|c| c.counters.bytes_written.get()),
            reads: self.closed_counters.reads.get() + sum(&|c| c.counters.reads.get()),
            queued_write_bytes: conns.iter().map(|c| c.queued_bytes() as u64).sum(),
            routes: self.shared.routes.len(),
            latency_us: self.stats.latency_us.borrow().clone(),
        }
    }

    pub(crate) fn open_connections(&self) -> Vec<Rc<Connection>> {
        self.connections
            .borrow()
            .values()
            .flatten()
            .flatten()
            .filter(|c| !c.is_closed())
            .cloned()
            .collect()
    }
}

pub(crate) fn shut_down(outcome: Outcome) -> Error {
    Error::ShutDown {
        returned: crate::error::Returned::NOTHING,
        outcome,
    }
}

/// An attempt whose request was queued on a connection but got no answer before `deadline`.
///
/// The outcome is unknown even when the frame had not reached the socket yet: it stays in the
/// connection's write buffer and is written as soon as the socket drains.
pub(crate) fn attempt_timeout(started: Instant, deadline: Instant) -> Error {
    Error::Timeout {
        returned: crate::error::Returned::NOTHING,
        elapsed: started.elapsed(),
        budget: deadline.saturating_duration_since(started),
        attempts: 1,
        outcome: Outcome::Unknown,
        last_error: None,
    }
}

/// What a core reports when it stops.
#[derive(Debug, Default, Clone)]
pub(crate) struct CoreReport {
    /// Sends still running at the shutdown deadline, failed with `ShutDown`.
    pub cut_at_deadline: u64,
    /// Queued messages failed with `ShutDown` because the deadline passed before they could start.
    pub refused_at_shutdown: u64,
}
