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
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};

use super::batcher::BatchItem;
use super::connection::{failure_to_error, ConnSettings, Connection};
use super::deadline::{deadline_after, until};
use super::inbox::{Inbox, Job, RemoteReply, SendMode};
use super::prepared::Outgoing;
use super::records::{Delivery, ReplyTarget};
use super::selector::QueueSelector;
use super::send::send_message;
use super::single_flight::SingleFlight;
use super::stats::CoreStats;
use crate::config::{CoreConfig, ProducerConfig};
use crate::error::{Error, Outcome};
use crate::local_producer::LocalProducer;
use crate::protocol::ext_fields::CustomHeader;
use crate::protocol::send_request_header;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::route::{publish_queues, RouteTable, TopicRoute};

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
    connections: RefCell<HashMap<String, Vec<Option<Rc<Connection>>>>>,
    connects: Rc<ConnectFlights>,
    /// Round-robin position over the connection slots of a broker.
    next_slot: Cell<usize>,
    route_fetches: Rc<SingleFlight<String, Result<Arc<TopicRoute>, Error>>>,
    /// When each topic's last background refresh was scheduled ([`Core::schedule_refresh`]):
    /// the failures of one lost connection schedule one refresh per topic per
    /// [`REFRESH_COOLDOWN`], not one per message.
    refreshes_scheduled: RefCell<HashMap<String, Instant>>,
    /// The route of the topic sent to last, with the route table's change count when it was
    /// read: consecutive sends to one topic skip the table lookup.
    last_route: RefCell<Option<(u64, Arc<TopicRoute>)>>,
    /// The route table's use epoch when this core last marked `last_route` used.
    touched_epoch: Cell<u64>,
    /// Where the automatic batcher hands local callers their outcomes.
    pub reply_slots: Rc<super::reply_slots::ReplySlots>,
    pub selector: RefCell<QueueSelector>,
    /// Broker availability for latency fault avoidance (used when enabled).
    pub faults: RefCell<super::latency::FaultTracker>,
    ns_cursor: Cell<usize>,
    pub permits: Rc<Semaphore>,
    /// Message bytes in progress (`max_buffered_bytes`).
    pub byte_permits: Rc<Semaphore>,
    pub aborting: Cell<bool>,
    /// Keeps sends to chosen queues in the order they reached the core.
    pub order_gate: Rc<super::order_gate::OrderGate>,
    /// One request in flight per chosen queue, in order (see `send_attempt`).
    queue_orders: RefCell<HashMap<QueueKey, Rc<super::order_gate::OrderGate>>>,
    /// Which sends a `flush()` waits for.
    pub flush_gate: Rc<super::flush_gate::FlushGate>,
    pub stats: CoreStats,
    /// Open automatic batches, when auto-batching is on.
    pub batcher: Option<super::batcher::Batcher>,
    /// Counters of connections that closed (so totals survive reconnects).
    closed_counters: super::connection::ConnCounters,
    /// Plain sends in flight on the fast path (see [`super::records`]).
    pub records: Rc<super::records::RecordBook>,
    /// Where reported sends (`send_reported`) deliver their outcomes on this core.
    pub delivery: RefCell<Option<Rc<super::records::DeliveryHandler>>>,
}

impl Core {
    fn new(index: usize, cpu: usize, shared: Arc<Shared>, this: std::rc::Weak<Core>) -> Self {
        let core_config = shared.config.core_for(cpu).clone();
        let batcher = core_config.auto_batch.map(super::batcher::Batcher::new);
        Core {
            index,
            permits: Rc::new(Semaphore::new(core_config.max_inflight as u64)),
            byte_permits: Rc::new(Semaphore::new(core_config.max_buffered_bytes as u64)),
            connections: RefCell::new(HashMap::new()),
            connects: Rc::new(SingleFlight::new()),
            next_slot: Cell::new(0),
            route_fetches: Rc::new(SingleFlight::new()),
            last_route: RefCell::new(None),
            touched_epoch: Cell::new(u64::MAX),
            reply_slots: Rc::default(),
            selector: RefCell::new(QueueSelector::new(
                super::prepared::random_u32() as usize + index,
            )),
            ns_cursor: Cell::new(0),
            faults: RefCell::new(super::latency::FaultTracker::new(
                shared.config.fault_table.clone(),
            )),
            aborting: Cell::new(false),
            flush_gate: Rc::default(),
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
                Rc::new(move |token, result| handler(token, result))
                    as Rc<super::records::DeliveryHandler>
            })),
            shared,
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

    /// One request/response exchange with `addr`, bounded by `deadline`.
    pub(crate) async fn round_trip(
        self: &Rc<Self>,
        addr: &str,
        code: RequestCode,
        header: &dyn CustomHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<RemotingCommand, Error> {
        let started = Instant::now();
        let conn = self.connection(addr, deadline).await?;
        let response = conn.request(code.as_i32(), header, body, false, deadline)?;
        match response.await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => unreachable!("only oneway requests resolve without a reply"),
            Err(failure) if failure.timed_out => Err(attempt_timeout(started, deadline)),
            Err(failure) => Err(failure_to_error(addr, failure)),
        }
    }

    /// Sends `header` to the NameServers in turn, starting with the last one that answered.
    pub(crate) async fn nameserver_request(
        self: &Rc<Self>,
        code: RequestCode,
        header: &dyn CustomHeader,
        deadline: Instant,
    ) -> Result<RemotingCommand, Error> {
        let addrs = &self.shared.config.namesrv_addrs;
        let start = self.ns_cursor.get();
        let mut last_error = None;
        for i in 0..addrs.len() {
            let index = (start + i) % addrs.len();
            let per_try = deadline.min(deadline_after(
                Instant::now(),
                self.config().attempt_timeout,
            ));
            match self
                .round_trip(&addrs[index], code, header, &[], per_try)
                .await
            {
                Ok(reply) => {
                    self.ns_cursor.set(index);
                    return Ok(reply);
                }
                Err(e) => {
                    tracing::warn!(core = self.index, namesrv = %addrs[index], error = %e, "NameServer request failed");
                    last_error = Some(e);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(Error::NameServerUnavailable {
            addrs: addrs.join(";"),
            reason: last_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no time left".into()),
            outcome: Outcome::NotStored,
        })
    }

    /// The route of `topic`: from the shared snapshot, else fetched (once per core at a time).
    pub(crate) async fn route_for(
        self: &Rc<Self>,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicRoute>, Error> {
        if let Some(route) = self.cached_route(topic) {
            return Ok(route);
        }
        // Fetching is rare: boxed, so its large future does not inflate every send's.
        Box::pin(self.refresh_route(topic, deadline)).await
    }

    /// The route of `topic` if the shared snapshot has it (no NameServer request).
    pub(crate) fn cached_route(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        let changes = self.shared.routes.changes();
        if let Some((seen, route)) = &*self.last_route.borrow() {
            if *seen == changes && &*route.topic == topic {
                // The table learns the topic is in use once per use epoch (500 ms), not per
                // send: one relaxed load of a rarely written counter per send.
                let epoch = self.shared.routes.epoch();
                if epoch != self.touched_epoch.get() {
                    self.touched_epoch.set(epoch);
                    self.shared.routes.touch(topic);
                }
                return Some(Arc::clone(route));
            }
        }
        if let Some(route) = self.shared.routes.get(topic) {
            self.shared.routes.touch(topic);
            self.touched_epoch.set(self.shared.routes.epoch());
            *self.last_route.borrow_mut() = Some((changes, Arc::clone(&route)));
            let mut selector = self.selector.borrow_mut();
            if selector.topics() > 2 * self.shared.routes.len() + 64 {
                // Forget positions of topics the table evicted.
                let routes = self.shared.routes.load();
                selector.retain(|t| routes.topics.contains_key(t));
            }
            return Some(route);
        }
        None
    }

    /// Fetches `topic`'s route from the NameServer and installs it; waits at most until `deadline`.
    pub(crate) async fn refresh_route(
        self: &Rc<Self>,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicRoute>, Error> {
        let this = Rc::clone(self);
        let key = topic.to_owned();
        let flight =
            self.route_fetches.run(
                key.clone(),
                move || async move { this.fetch_route(&key).await },
            );
        let fail = |reason: &str| Error::NoRoute {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
            outcome: Outcome::NotStored,
        };
        match until(deadline, flight).await {
            Some(Some(result)) => result,
            Some(None) => Err(fail("the route fetch panicked")),
            None => Err(fail("the NameServer did not answer within the time left")),
        }
    }

    /// Starts a background refresh of `topic` (after TOPIC_NOT_EXIST or a lost connection).
    pub(crate) fn schedule_refresh(self: &Rc<Self>, topic: &str) {
        let now = Instant::now();
        {
            let mut scheduled = self.refreshes_scheduled.borrow_mut();
            if scheduled
                .get(topic)
                .is_some_and(|at| now.saturating_duration_since(*at) < REFRESH_COOLDOWN)
            {
                return;
            }
            if scheduled.len() >= 1024 {
                scheduled.retain(|_, at| now.saturating_duration_since(*at) < REFRESH_COOLDOWN);
            }
            scheduled.insert(topic.to_owned(), now);
        }
        let this = Rc::clone(self);
        let topic = topic.to_owned();
        let deadline = deadline_after(now, self.config().send_timeout);
        super::guarded::spawn_guarded(
            "route refresh",
            async move {
                if let Err(e) = this.refresh_route(&topic, deadline).await {
                    tracing::warn!(topic, error = %e, "route refresh failed; keeping the cached route");
                }
            },
            |_| {},
        );
    }

    async fn fetch_route(self: &Rc<Self>, topic: &str) -> Result<Arc<TopicRoute>, Error> {
        let deadline = deadline_after(Instant::now(), self.config().send_timeout);
        let no_route = |reason: String| Error::NoRoute {
            topic: topic.to_owned(),
            reason,
            outcome: Outcome::NotStored,
        };
        let reply = self
            .nameserver_request(
                RequestCode::GetRouteInfoByTopic,
                &[("topic", topic)],
                deadline,
            )
            .await?;
        let route = match ResponseCode::from_i32(reply.code) {
            ResponseCode::Success => {
                let data = crate::protocol::route_data::parse(&reply.body)
                    .map_err(|e| no_route(format!("unreadable route: {e}")))?;
                publish_queues::from_route(data)
            }
            ResponseCode::TopicNotExist => {
                let default_topic = self.config().create_topic_key.clone();
                tracing::warn!(core = self.index, topic, default_topic, "topic not found on the NameServer; using the default topic's route (the broker auto-creates it)");
                let reply = self
                    .nameserver_request(
                        RequestCode::GetRouteInfoByTopic,
                        &[("topic", default_topic.as_str())],
                        deadline,
                    )
                    .await?;
                if reply.code != 0 {
                    return Err(no_route(format!(
                        "the topic does not exist and the default topic {default_topic} has no route ({})",
                        crate::error::bounded_remark(reply.remark.as_deref().unwrap_or_default())
                    )));
                }
                let data = crate::protocol::route_data::parse(&reply.body)
                    .map_err(|e| no_route(format!("unreadable default-topic route: {e}")))?;
                publish_queues::from_default_topic(data, self.config().default_topic_queue_nums)
            }
            code => {
                return Err(no_route(format!(
                    "the NameServer answered {code}: {}",
                    crate::error::bounded_remark(reply.remark.as_deref().unwrap_or_default())
                )))
            }
        };
        if route.queues.is_empty() {
            return Err(no_route(
                "the route has no writable queue on a master broker".into(),
            ));
        }
        if route.master_addrs.len() > MAX_BROKERS_PER_ROUTE {
            return Err(no_route(format!(
                "the route names {} brokers, over the {MAX_BROKERS_PER_ROUTE} this producer connects to",
                route.master_addrs.len()
            )));
        }
        let mut route = route;
        let config = self.config();
        if config.vip_channel {
            // Java `MixAll.brokerVIPChannel`: same host, port − 2.
            for addr in route.master_addrs.values_mut() {
                if let Some((host, port)) = addr.rsplit_once(':') {
                    if let Some(vip) = port.parse::<u16>().ok().and_then(|p| p.checked_sub(2)) {
                        *addr = format!("{host}:{vip}");
                    }
                }
            }
        }
        route.send_header_constants = Some(send_request_header::constant_fields(
            &config.producer_group,
            topic,
            &config.create_topic_key,
            config.default_topic_queue_nums,
        ));
        let before = self.shared.routes.get(topic).map(|r| r.queues.len());
        let (brokers, queues) = (route.master_addrs.len(), route.queues.len());
        if self.shared.routes.update(topic, route) {
            tracing::debug!(
                core = self.index,
                topic,
                brokers,
                queues,
                queues_before = before,
                "route updated"
            );
        }
        self.shared
            .routes
            .get(topic)
            .ok_or_else(|| no_route("route vanished after install".into()))
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
            in_flight: self.core_config.max_inflight as u64 - self.permits.available(),
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

/// The least time between two background refreshes of one topic on one core (a broker that is
/// down fails every send to it; each failure asks for a refresh).
const REFRESH_COOLDOWN: Duration = Duration::from_secs(1);

/// A message's share of its core's caps: one of `max_inflight` and its bytes of
/// `max_buffered_bytes`. Released when dropped.
pub(crate) struct InFlightPermit {
    _message: glommio::sync::StaticPermit,
    _bytes: glommio::sync::StaticPermit,
    _flush: super::flush_gate::FlushTicket,
}

impl Core {
    fn byte_units(&self, bytes: usize) -> u64 {
        bytes.clamp(1, self.core_config.max_buffered_bytes) as u64
    }

    /// Takes a permit at once if both caps allow it.
    pub(crate) fn try_permit(&self, bytes: usize) -> Option<InFlightPermit> {
        let message = self.permits.try_acquire_static_permit(1).ok()?;
        let bytes = self
            .byte_permits
            .try_acquire_static_permit(self.byte_units(bytes))
            .ok()?;
        Some(InFlightPermit {
            _message: message,
            _bytes: bytes,
            _flush: self.flush_gate.enter(),
        })
    }

    /// Waits for a permit until `deadline`.
    pub(crate) async fn permit_until(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Option<InFlightPermit> {
        let message = until(deadline, self.permits.acquire_static_permit(1))
            .await?
            .ok()?;
        let bytes = until(
            deadline,
            self.byte_permits
                .acquire_static_permit(self.byte_units(bytes)),
        )
        .await?
        .ok()?;
        Some(InFlightPermit {
            _message: message,
            _bytes: bytes,
            _flush: self.flush_gate.enter(),
        })
    }
}

pub(crate) fn shut_down(outcome: Outcome) -> Error {
    Error::ShutDown {
        message: None,
        outcome,
    }
}

/// An attempt whose request was queued on a connection but got no answer before `deadline`.
///
/// The outcome is unknown even when the frame had not reached the socket yet: it stays in the
/// connection's write buffer and is written as soon as the socket drains.
pub(crate) fn attempt_timeout(started: Instant, deadline: Instant) -> Error {
    Error::Timeout {
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

/// Starts core `index` pinned to `cpu`; returns once the executor runs (or failed to start).
pub(crate) fn spawn_core(
    index: usize,
    cpu: usize,
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
) -> Result<glommio::ExecutorJoinHandle<CoreReport>, Error> {
    let cfg = shared.config.core_for(cpu).clone();
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("rmq-tpc-{index}"))
        .io_memory(cfg.io_memory)
        .ring_depth(cfg.ring_depth);
    if !cfg.spin_before_park.is_zero() {
        builder = builder.spin_before_park(cfg.spin_before_park);
    }
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let handle = builder
        .spawn(move || {
            // However the thread ends, the inbox is marked dead when its thread-locals go, even
            // if a panic left this core's tasks (and the guard below) undropped.
            CORE_THREAD_EXIT.with(|g| *g.borrow_mut() = Some(MarkDeadOnDrop(Arc::clone(&inbox))));
            async move {
                // However this future ends (a panic unwinding the executor included), the inbox is
                // marked dead so no submitter waits for this core forever.
                let _dead_on_exit = MarkDeadOnDrop(Arc::clone(&inbox));
                let _ = started_tx.send(());
                run_core(index, cpu, shared, inbox).await
            }
        })
        .map_err(|e| Error::Startup {
            reason: format!("core {index} on CPU {cpu}: {e}"),
        })?;
    if started_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(Error::Startup {
            reason: format!(
                "core {index} on CPU {cpu} did not start (io_uring or locked memory unavailable? see `ulimit -l`)"
            ),
        });
    }
    Ok(handle)
}

thread_local! {
    /// Marks this core's inbox dead when the core's thread ends.
    static CORE_THREAD_EXIT: RefCell<Option<MarkDeadOnDrop>> = const { RefCell::new(None) };
}

/// Marks a core's inbox dead when dropped.
struct MarkDeadOnDrop(Arc<Inbox>);

impl Drop for MarkDeadOnDrop {
    fn drop(&mut self) {
        self.0.mark_dead();
    }
}

async fn run_core(index: usize, cpu: usize, shared: Arc<Shared>, inbox: Arc<Inbox>) -> CoreReport {
    let core = Rc::new_cyclic(|this| Core::new(index, cpu, shared, this.clone()));
    CURRENT_CORE.with(|c| *c.borrow_mut() = Some(Rc::clone(&core)));
    let span = tracing::debug_span!("core", core = index);
    let _enter = span.enter();
    tracing::debug!("producer core started");
    if index == 0 {
        super::control::spawn(Rc::clone(&core));
    }
    spawn_control_jobs(&core, &inbox);
    while let Some(job) = futures_lite::future::poll_fn(|cx| inbox.poll_next(cx)).await {
        match job {
            Job::Send {
                message,
                mode,
                deadline,
                reply,
            } => {
                let permit = match wait_for_permit(
                    &core,
                    &inbox,
                    deadline,
                    message.buffered_bytes(),
                )
                .await
                {
                    Ok(permit) => permit,
                    Err(error) => {
                        if matches!(error, Error::ShutDown { .. }) {
                            core.stats
                                .refused_at_shutdown
                                .set(core.stats.refused_at_shutdown.get() + 1);
                        }
                        inbox.fail(reply, error);
                        continue;
                    }
                };
                let Some(reply) = core.reply_target(reply) else {
                    continue;
                };
                start_send(&core, message, mode, deadline, permit, reply);
            }
        }
    }
    let report = stop_core(&core).await;
    CURRENT_CORE.with(|c| c.borrow_mut().take());
    report
}

/// Starts a permitted send: into the automatic batcher, as a send record (the fast path), or
/// as a task running the full send loop.
pub(crate) fn start_send(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    deadline: Instant,
    permit: InFlightPermit,
    reply: ReplyTarget,
) {
    start_send_at(
        core,
        message,
        mode,
        (Instant::now(), deadline),
        permit,
        reply,
    );
}

/// [`start_send`] for a send that started at `started` (a recent clock reading).
pub(crate) fn start_send_at(
    core: &Rc<Core>,
    message: Outgoing,
    mode: SendMode,
    (started, deadline): (Instant, Instant),
    permit: InFlightPermit,
    reply: ReplyTarget,
) {
    let (message, permit, reply) = match (message, core.batcher.as_ref()) {
        (Outgoing::One(message), Some(batcher))
            if mode != SendMode::Oneway && message.batchable() =>
        {
            let item = BatchItem {
                message,
                reply,
                deadline,
                mode,
                permit,
            };
            super::batcher::add(core, batcher, item);
            return;
        }
        (message, _) => {
            let times = (started, deadline);
            match super::records::try_start(core, message, mode, times, permit, move || reply) {
                Ok(()) => return,
                Err((message, permit, reply)) => (message, permit, reply()),
            }
        }
    };
    // Sends to chosen queues keep the order they reach the core in.
    let ticket = message.keeps_order().then(|| core.order_gate.ticket());
    let core = Rc::clone(core);
    // A panic drops `reply`: the caller gets CoreStopped, not silence.
    super::guarded::spawn_guarded(
        "send",
        async move {
            let result =
                send_message(&core, message, mode, (started, deadline), ticket, None).await;
            drop(permit);
            reply.send(result);
        },
        |_| {},
    );
}

impl Core {
    /// The reply target of an application thread's send on this core (`None`, logged, for a
    /// reported send on a producer without a delivery handler, which `send_reported` refuses).
    fn reply_target(&self, reply: RemoteReply) -> Option<ReplyTarget> {
        match reply {
            RemoteReply::Channel(tx) => Some(ReplyTarget::Channel(tx)),
            RemoteReply::Report(token) => match self.delivery.borrow().as_ref() {
                Some(handler) => Some(ReplyTarget::Report(Delivery::new(
                    Rc::clone(handler),
                    token,
                ))),
                None => {
                    tracing::error!(
                        token,
                        "a reported send on a core without a delivery handler"
                    );
                    None
                }
            },
        }
    }
}

/// Runs control jobs (`run_on_core`, `stats()`, flush) as they come, apart from sends.
fn spawn_control_jobs(core: &Rc<Core>, inbox: &Arc<Inbox>) {
    let (core, inbox) = (Rc::clone(core), Arc::clone(inbox));
    let jobs = async move {
        loop {
            let job = futures_lite::future::poll_fn(|cx| inbox.poll_control(cx)).await;
            job(LocalProducer::from_core(Rc::clone(&core)));
        }
    };
    super::guarded::spawn_guarded("control jobs", jobs, |_| {});
}

/// The shutdown deadline, once a shutdown set it.
fn shutdown_deadline(core: &Core) -> Option<Instant> {
    core.shared
        .shutdown_deadline
        .lock()
        .map(|d| *d)
        .unwrap_or_else(|e| *e.into_inner())
}

/// Waits for an in-flight permit until the message's deadline, or until a shutdown deadline
/// passes (then the message fails with `ShutDown`, definitely not stored).
async fn wait_for_permit(
    core: &Rc<Core>,
    inbox: &Inbox,
    deadline: Instant,
    bytes: usize,
) -> Result<InFlightPermit, Error> {
    const RECHECK: Duration = Duration::from_millis(20);
    loop {
        if let Some(permit) = core.try_permit(bytes) {
            return Ok(permit);
        }
        if inbox.stop_requested() && shutdown_deadline(core).is_some_and(|d| Instant::now() >= d) {
            return Err(shut_down(Outcome::NotStored));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                elapsed: Duration::ZERO,
                budget: Duration::ZERO,
                attempts: 0,
                outcome: Outcome::NotStored,
                last_error: Some(Box::new(Error::QueueFull { message: None })),
            });
        }
        // Wake at the earlier of the deadline and a short recheck (a shutdown may start meanwhile).
        if let Some(permit) = core.permit_until(bytes, deadline.min(now + RECHECK)).await {
            return Ok(permit);
        }
    }
}

async fn stop_core(core: &Rc<Core>) -> CoreReport {
    let deadline = shutdown_deadline(core).unwrap_or_else(Instant::now);
    let all = core.core_config.max_inflight as u64;
    let mut report = CoreReport {
        refused_at_shutdown: core.stats.refused_at_shutdown.get(),
        ..CoreReport::default()
    };
    if until(deadline, core.permits.acquire(all)).await.is_none() {
        report.cut_at_deadline = all - core.permits.available();
        tracing::warn!(
            core = core.index,
            sends = report.cut_at_deadline,
            "shutdown deadline passed; failing the sends still in flight"
        );
        core.aborting.set(true);
        core.close_all("the producer shut down before an answer arrived");
        let _ = until(
            Instant::now() + Duration::from_secs(2),
            core.permits.acquire(all),
        )
        .await;
    } else {
        core.permits.signal(all);
    }
    if core.index == 0 {
        super::control::unregister(core).await;
    }
    core.close_all("the producer shut down");
    report
}
