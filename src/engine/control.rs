//! The control task (core 0 only): periodic route refresh, heartbeats to master brokers, and
//! UNREGISTER_CLIENT at shutdown (Java `MQClientInstance` scheduled tasks).

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::deadline::deadline_after;
use crate::error::bounded_remark;
use crate::protocol::ext_fields::NoHeader;
use crate::protocol::heartbeat::{heartbeat_body, UnregisterClientHeader};
use crate::protocol::RequestCode;

const TICK: Duration = Duration::from_millis(500);

/// How long a topic may go unused before its route is dropped.
const IDLE_TOPIC: Duration = Duration::from_secs(600);

/// Starts the control task on this core; it starts again if it panics.
pub(crate) fn spawn(core: Rc<Core>) {
    let again = Rc::clone(&core);
    super::guarded::spawn_guarded("control", control_loop(core), move |_| spawn(again));
}

async fn control_loop(core: Rc<Core>) {
    let config = &core.shared.config;
    let mut last_refresh = Instant::now();
    let mut last_heartbeat: Option<Instant> = None;
    let mut known_masters = BTreeSet::new();
    loop {
        glommio::timer::sleep(TICK).await;
        core.shared.broker_requests.expire_replies(Instant::now());
        core.shared.routes.advance_epoch();
        if core.aborting.get()
            || core
                .shared
                .closing
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if last_refresh.elapsed() >= config.route_refresh_interval {
            last_refresh = Instant::now();
            // Each refresh is its own task: a silent NameServer delays none of the others, nor
            // the heartbeats below (brokers drop a producer not heard from for 120 s).
            // Topics not used for ten minutes (or two refresh intervals, if longer) are dropped,
            // not refreshed; they are fetched again on their next send. (The `max_topics` cap
            // bounds memory in between.)
            let idle_for = (2 * config.route_refresh_interval).max(IDLE_TOPIC);
            let idle = (idle_for.as_millis() / TICK.as_millis()).max(1);
            let evicted = core.shared.routes.evict_idle(idle as u64);
            if !evicted.is_empty() {
                tracing::debug!(topics = evicted.len(), "routes of idle topics dropped");
            }
            let topics: Vec<String> = core.shared.routes.load().topics.keys().cloned().collect();
            for topic in topics {
                core.schedule_refresh(&topic);
            }
        }
        // Brokers that know this producer stay heartbeated after their topics' routes were
        // dropped as idle: they route transaction check-backs and replies by the registration.
        let mut masters = core.shared.routes.load().master_addrs();
        masters.extend(core.shared.broker_requests.announced());
        let due = last_heartbeat.is_none_or(|t| t.elapsed() >= config.heartbeat_interval);
        if !masters.is_empty() && (due || masters != known_masters) {
            last_heartbeat = Some(Instant::now());
            heartbeat(&core, &masters).await;
            known_masters = masters;
        }
    }
}

/// HEART_BEAT to each of `masters` from this core; brokers then route check-backs and replies
/// to this core's connection.
pub(crate) async fn heartbeat(core: &Rc<Core>, masters: &BTreeSet<String>) {
    let config = &core.shared.config;
    let body = heartbeat_body(&core.shared.client_id, &config.producer_group);
    // All brokers at once: a silent one costs one attempt timeout, not one per broker.
    let mut pending: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> = masters
        .iter()
        .map(|addr| {
            let body = &body;
            Box::pin(async move {
                let deadline = deadline_after(Instant::now(), config.attempt_timeout);
                match core
                    .round_trip(addr, RequestCode::HeartBeat, &NoHeader, body, deadline)
                    .await
                {
                    Ok(reply) if reply.code == 0 => {
                        core.shared.broker_requests.mark_announced(addr);
                        tracing::trace!(broker = %addr, "heartbeat ok")
                    }
                    Ok(reply) => {
                        tracing::warn!(broker = %addr, code = reply.code, remark = %bounded_remark(reply.remark.as_deref().unwrap_or_default()), "heartbeat refused")
                    }
                    Err(e) => tracing::warn!(broker = %addr, error = %e, "heartbeat failed"),
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>
        })
        .collect();
    futures_lite::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Heartbeats the masters of `topic`'s route that have not yet accepted one from this producer,
/// so they know where to push replies (Java `sendHeartbeatToAllBrokerWithLock` before a request
/// to a new topic).
///
/// # Errors
///
/// Route errors of `topic`.
pub(crate) async fn announce(core: &Rc<Core>, topic: &str) -> Result<(), crate::error::Error> {
    let deadline = deadline_after(Instant::now(), core.shared.config.send_timeout);
    let route = core.route_for(topic, deadline).await?;
    let missing: BTreeSet<String> = route
        .master_addrs
        .values()
        .filter(|addr| !core.shared.broker_requests.is_announced(addr))
        .cloned()
        .collect();
    if !missing.is_empty() {
        heartbeat(core, &missing).await;
    }
    Ok(())
}

/// Best-effort UNREGISTER_CLIENT to every master this producer knows (bounded to 500 ms).
pub(crate) async fn unregister(core: &Rc<Core>) {
    let masters = core.shared.routes.load().master_addrs();
    let header = UnregisterClientHeader {
        client_id: &core.shared.client_id,
        producer_group: &core.shared.config.producer_group,
    };
    let deadline = Instant::now() + Duration::from_millis(500);
    for addr in masters {
        if core.open_connections().iter().all(|c| c.peer() != addr) {
            continue;
        }
        if let Err(e) = core
            .round_trip(&addr, RequestCode::UnregisterClient, &header, &[], deadline)
            .await
        {
            tracing::debug!(broker = %addr, error = %e, "unregister failed");
        }
    }
}
