//! A core's NameServer client and route fetching: requests to the NameServers in turn, the
//! route of a topic from the shared snapshot or fetched once for all waiters (single flight),
//! the `TBW102` fallback, and background refreshes after failures (coalesced per topic).

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{attempt_timeout, Core, MAX_BROKERS_PER_ROUTE};
use crate::engine::connection::{failure_to_error, Connection};
use crate::engine::deadline::{deadline_after, until};
use crate::error::{Error, Outcome};
use crate::protocol::ext_fields::CustomHeader;
use crate::protocol::send_request_header;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::route::{publish_queues, TopicRoute};

/// A route as a core holds it for its sends: shared on the core by a count that is not atomic,
/// with the connection each queue's sends went out on last.
pub(crate) struct CoreRoute {
    route: Arc<TopicRoute>,
    /// Per queue (as `route.queues`), the connection its last record went out on: the next one
    /// finds it without looking up the broker's address and the address's connection.
    connections: RefCell<Vec<Weak<Connection>>>,
}

impl std::ops::Deref for CoreRoute {
    type Target = TopicRoute;

    fn deref(&self) -> &TopicRoute {
        &self.route
    }
}

/// How many routes a core keeps at hand ([`RecentRoutes`]).
const RECENT_ROUTES: usize = 4;

/// The routes of the topics a core sent to last, at most [`RECENT_ROUTES`] (the oldest goes
/// first), all read at the route table's change count `changes`: sends to a few topics in turn
/// find theirs without the table's lookup and keep their remembered connections.
#[derive(Default)]
pub(crate) struct RecentRoutes {
    changes: u64,
    routes: Vec<RecentRoute>,
}

struct RecentRoute {
    /// The route table's use epoch when this core last marked the topic used.
    touched: u64,
    route: Rc<CoreRoute>,
}

impl CoreRoute {
    fn new(route: Arc<TopicRoute>) -> Self {
        let connections = RefCell::new(route.queues.iter().map(|_| Weak::new()).collect());
        CoreRoute { route, connections }
    }
}

impl Core {
    /// The open connection to the master of queue `index` of `route`, chosen as
    /// [`Core::open_send_connection`] chooses; with one connection per broker it is remembered
    /// in the route for the queue's next send (an open connection is the one its slot holds, so
    /// a remembered one that is still open is still the right one).
    #[inline]
    pub(crate) fn open_queue_connection(
        &self,
        route: &CoreRoute,
        index: usize,
    ) -> Option<Rc<Connection>> {
        let one_slot = self.core_config.connections_per_broker <= 1;
        if one_slot {
            let remembered = route
                .connections
                .borrow()
                .get(index)
                .and_then(Weak::upgrade);
            if let Some(conn) = remembered.filter(|conn| !conn.is_closed()) {
                return Some(conn);
            }
        }
        let queue = route.queues.get(index)?;
        let conn = route
            .master_addr(&queue.broker_name)
            .and_then(|addr| self.open_send_connection(addr))?;
        if one_slot {
            if let Some(slot) = route.connections.borrow_mut().get_mut(index) {
                *slot = Rc::downgrade(&conn);
            }
        }
        Some(conn)
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
            // Only oneway requests resolve without a reply, and this one is not oneway.
            Ok(None) => Err(Error::Protocol {
                returned: crate::error::Returned::NOTHING,
                peer: addr.to_owned(),
                reason: "the request resolved without a reply".into(),
                outcome: crate::Outcome::Unknown,
            }),
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
            returned: crate::error::Returned::NOTHING,
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
        self.cached_route_here(topic)
            .map(|route| Arc::clone(&route.route))
    }

    /// [`Core::cached_route`] as this core's own handle on it: sends to the few topics sent to
    /// last ([`RecentRoutes`]) share it by a count that is not atomic (the send path's clone and
    /// drop of the route's `Arc` were two atomic operations per message), with the connections
    /// its queues' sends went out on.
    pub(crate) fn cached_route_here(&self, topic: &str) -> Option<Rc<CoreRoute>> {
        let changes = self.shared.routes.changes();
        {
            let mut recent = self.recent_routes.borrow_mut();
            if recent.changes != changes {
                // The table changed: every route read before may be stale.
                recent.routes.clear();
                recent.changes = changes;
            }
            if let Some(hit) = recent.routes.iter_mut().find(|r| &*r.route.topic == topic) {
                // The table learns the topic is in use once per use epoch (500 ms), not per
                // send: one relaxed load of a rarely written counter per send.
                let epoch = self.shared.routes.epoch();
                if epoch != hit.touched {
                    hit.touched = epoch;
                    self.shared.routes.touch(topic);
                }
                return Some(Rc::clone(&hit.route));
            }
        }
        let route = self.shared.routes.get(topic)?;
        self.shared.routes.touch(topic);
        let route = Rc::new(CoreRoute::new(route));
        {
            let mut recent = self.recent_routes.borrow_mut();
            if recent.routes.len() >= RECENT_ROUTES {
                recent.routes.remove(0);
            }
            recent.routes.push(RecentRoute {
                touched: self.shared.routes.epoch(),
                route: Rc::clone(&route),
            });
        }
        let mut selector = self.selector.borrow_mut();
        if selector.topics() > 2 * self.shared.routes.len() + 64 {
            // Forget positions of topics the table evicted.
            let routes = self.shared.routes.load();
            selector.retain(|t| routes.topics.contains_key(t));
        }
        Some(route)
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
            returned: crate::error::Returned::NOTHING,
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
        crate::engine::guarded::spawn_guarded(
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
            returned: crate::error::Returned::NOTHING,
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
}

/// The least time between two background refreshes of one topic on one core (a broker that is
/// down fails every send to it; each failure asks for a refresh).
const REFRESH_COOLDOWN: Duration = Duration::from_secs(1);
