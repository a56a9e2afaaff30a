//! The send loop: one timeout budget across route lookup and every attempt
//! (Java `DefaultMQProducerImpl.sendDefaultImpl` + `MQClientAPIImpl.processSendResponse`).
//!
//! ```text
//!  for attempt in 0..max_attempts (budget left):
//!      route ─► queue (avoid the broker that just failed) ─► connection ─► SEND_MESSAGE_V2
//!      ├─ SUCCESS / FLUSH_* / SLAVE_NOT_AVAILABLE ─► SendResult (never retried: it is stored,
//!      │    even when the rest of the reply is unreadable; FLUSH_* / SLAVE_* are retried elsewhere
//!      │    only with `retry_another_broker_when_not_store_ok`, and then kept as the result if
//!      │    the later attempts fail)
//!      ├─ retryable error (transport, timeout, codes 1 2 14 16 17 204 205 1500) ─► next attempt
//!      └─ other error ─► returned at once
//! ```

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection::failure_to_error;
use super::core::{attempt_timeout, shut_down, Core};
use super::deadline::{deadline_after, until};
use super::inbox::{SendMode, SendReply};
use super::order_gate::OrderTicket;
use super::prepared::{unix_millis, Outgoing, Reply};
use super::send_wire::{send_header, to_reply};
use crate::error::{Error, Outcome};
use crate::hooks::AttemptContext;
use crate::protocol::send_response_header::SendResponse;
use crate::protocol::ResponseCode;
use crate::route::{PublishQueue, TopicRoute};
use crate::send_result::SendStatus;

/// Where a send stands when a send record hands it to this loop after its first attempt
/// failed with a retryable error (see [`super::records`]).
pub(crate) struct Resume {
    pub attempts: u32,
    pub last_broker: Rc<str>,
    pub last_error: Error,
    pub any_unknown: bool,
}

/// Pause before retrying after SYSTEM_BUSY (back-pressure), so a busy broker is not hammered.
const BUSY_BACKOFF: Duration = Duration::from_millis(5);

/// Sends one prepared message with retries until `deadline`; `started` is a recent clock
/// reading (the caller's, so the hot path reads the clock once for both).
///
/// `ticket` is the send's place in its core's order, taken at hand-over (in the order sends
/// reach the core) for sends to chosen queues; see [`super::order_gate`].
pub(crate) async fn send_message(
    core: &Rc<Core>,
    outgoing: Outgoing,
    mode: SendMode,
    (started, deadline): (Instant, Instant),
    ticket: Option<OrderTicket>,
    resume: Option<Resume>,
) -> SendReply {
    let message = &outgoing;
    let config = &core.shared.config;
    // A send to a chosen queue makes one attempt unless its caller opted in (Java's rule).
    let target = message
        .extras()
        .filter(|e| !e.target.is_auto())
        .map(|e| (&e.target, e.retry_targeted));
    let max_attempts = match (mode, target) {
        (SendMode::Oneway, _) | (_, Some((_, false))) => 1,
        (SendMode::Sync, _) => config.retries_when_send_failed.saturating_add(1),
        (SendMode::Async, _) => config.retries_when_send_async_failed.saturating_add(1),
    };
    let topic = message.topic();
    let count = match message {
        Outgoing::One(_) => 1,
        Outgoing::Batch(b) => b.uniq_keys.len() as u64,
    };
    let (mut attempts, mut last_broker, mut last_error, mut any_unknown) = match resume {
        // A resumed send was counted when its record started.
        Some(r) => (
            r.attempts,
            Some(r.last_broker),
            Some(r.last_error),
            r.any_unknown,
        ),
        None => {
            core.stats.started.set(core.stats.started.get() + count);
            (0, None, None, false)
        }
    };
    // The last answer that stored the message with a warning status, while another broker is
    // tried (`retry_another_broker_when_not_store_ok`).
    let mut stored: Option<Reply> = None;
    let result = loop {
        if core.aborting.get() {
            break Err(shut_down(if any_unknown {
                Outcome::Unknown
            } else {
                Outcome::NotStored
            }));
        }
        // The first attempt starts when the send did: one clock read fewer per message.
        let now = if attempts == 0 {
            started
        } else {
            Instant::now()
        };
        if attempts >= max_attempts || now >= deadline {
            break Err(exhausted(
                started,
                deadline,
                attempts,
                any_unknown,
                last_error,
            ));
        }
        if attempts > 0 {
            core.stats.retries.set(core.stats.retries.get() + 1);
            if last_error.as_ref().and_then(Error::response_code) == Some(ResponseCode::SystemBusy)
            {
                let pause = BUSY_BACKOFF.saturating_mul(attempts);
                if Box::pin(until(deadline, glommio::timer::sleep(pause)))
                    .await
                    .is_none()
                {
                    continue;
                }
            }
        }
        attempts += 1;
        let route = match core.route_for(topic, deadline).await {
            Ok(route) => route,
            // The NameServer was already tried in full; Java gives up here too.
            Err(e) => break Err(upgrade(e, any_unknown)),
        };
        let queue = if let Some((target, _)) = target {
            match super::target_queue::pick(core, target, &route, message) {
                Ok(queue) => queue,
                Err(e) => break Err(upgrade(e, any_unknown)),
            }
        } else {
            let mut selector = core.selector.borrow_mut();
            let selected = if config.send_latency_fault_enable {
                let faults = core.faults.borrow();
                // The attempt's start time is recent enough to judge availability by.
                selector.select_available(topic, &route, last_broker.as_deref(), &|b| {
                    faults.is_available(b, now)
                })
            } else {
                selector.select(topic, &route, last_broker.as_deref())
            };
            match selected {
                Some(q) => q.clone(),
                None => {
                    break Err(upgrade(
                        Error::NoRoute {
                            returned: crate::error::Returned::NOTHING,
                            topic: topic.to_owned(),
                            reason: "the route has no writable queue".into(),
                            outcome: Outcome::NotStored,
                        },
                        any_unknown,
                    ))
                }
            }
        };
        let Some(addr) = route.master_addr(&queue.broker_name) else {
            core.schedule_refresh(topic);
            last_broker = Some(Rc::from(&*queue.broker_name));
            last_error = Some(Error::NoRoute {
                returned: crate::error::Returned::NOTHING,
                topic: topic.to_owned(),
                reason: format!("broker {} has no master address", queue.broker_name),
                outcome: Outcome::NotStored,
            });
            continue;
        };
        let attempt_started = if attempts == 1 { now } else { Instant::now() };
        let attempt_deadline =
            deadline.min(deadline_after(attempt_started, config.attempt_timeout));
        let born_millis = match message {
            Outgoing::One(m) if attempts == 1 => m.born_millis,
            _ => unix_millis(),
        };
        let hooks = &core.shared.hooks;
        let context = hooks.any_attempt_hook().then(|| AttemptContext {
            producer_group: &config.producer_group,
            topic,
            message: match message {
                Outgoing::One(m) => Some(&m.original),
                Outgoing::Batch(_) => None,
            },
            broker_addr: addr,
            broker_name: &queue.broker_name,
            queue_id: queue.queue_id,
            attempt: attempts,
            unique_id: match message {
                Outgoing::One(m) => Some(&m.uniq_key),
                Outgoing::Batch(_) => None,
            },
            batch_unique_ids: match message {
                Outgoing::One(_) => None,
                Outgoing::Batch(b) => Some(&b.uniq_keys),
            },
            body_len: match message {
                Outgoing::One(m) => m.body().len(),
                Outgoing::Batch(b) => b.body.len(),
            },
            started: attempt_started,
            started_unix_ms: born_millis,
        });
        if let Some(context) = &context {
            if let Err(e) = hooks.before(context) {
                break Err(upgrade(e, any_unknown));
            }
        }
        let attempt = send_attempt(
            core,
            addr,
            (&route, &queue),
            (message, ticket.as_ref().filter(|_| attempts == 1)),
            mode,
            (attempt_started, born_millis),
            (attempt_deadline, deadline),
        )
        .await;
        if let Some(ticket) = &ticket {
            ticket.pass();
        }
        if let Some(context) = &context {
            match &attempt {
                Ok(Reply::One(r)) => hooks.after(context, Ok(Some(r))),
                Ok(Reply::Batch(answer, _)) => {
                    let ids = context.batch_unique_ids.unwrap_or_default();
                    let results: Vec<_> = answer.results_for(ids).collect();
                    hooks.after_batch(context, Ok(&results));
                }
                Ok(Reply::Written) => hooks.after(context, Ok(None)),
                Err(e) if context.batch_unique_ids.is_some() => hooks.after_batch(context, Err(e)),
                Err(e) => hooks.after(context, Err(e)),
            }
        }
        if config.send_latency_fault_enable {
            // Java isolates a broker on transport failures; broker error codes count their latency.
            let failed = matches!(
                attempt,
                Err(Error::Connection { .. } | Error::Protocol { .. } | Error::Timeout { .. })
            );
            let attempt_ended = Instant::now();
            core.faults.borrow_mut().record(
                &queue.broker_name,
                attempt_ended - attempt_started,
                failed,
                attempt_ended,
            );
        }
        match attempt {
            Ok(Reply::Written) => break Ok(Reply::Written),
            Ok(reply) => {
                let status = match &reply {
                    Reply::One(r) => r.status,
                    Reply::Batch(answer, _) => answer.status,
                    Reply::Written => SendStatus::SendOk,
                };
                if status != SendStatus::SendOk
                    && config.retry_another_broker_when_not_store_ok
                    && attempts < max_attempts
                {
                    last_broker = Some(Rc::from(&*queue.broker_name));
                    last_error = None;
                    stored = Some(reply);
                    continue;
                }
                break Ok(reply);
            }
            Err(e) => {
                core.stats.note_attempt_error(&queue.broker_name);
                any_unknown |= e.outcome() == Outcome::Unknown;
                let refresh = matches!(e, Error::Connection { .. } | Error::Protocol { .. })
                    || e.response_code() == Some(ResponseCode::TopicNotExist);
                if refresh {
                    core.schedule_refresh(topic);
                }
                if !e.is_retryable() {
                    break Err(upgrade(e, any_unknown));
                }
                // Per message, so trace: the connection's own loss is logged once, at error.
                tracing::trace!(core = core.index, topic, broker = %addr, attempt = attempts, code = ?e.response_code(), error = %e, "send attempt failed; retrying");
                last_broker = Some(Rc::from(&*queue.broker_name));
                last_error = Some(e);
            }
        }
    };
    // A stored answer stands whatever the later attempts did: Java returns the last SendResult.
    let result = match (result, stored) {
        (Err(e), Some(stored)) => {
            tracing::debug!(core = core.index, topic, error = %e, "a retry after a stored answer failed; returning the stored answer");
            Ok(stored)
        }
        (result, _) => result,
    };
    core.stats.record(
        count,
        result.is_ok(),
        result.as_ref().err().map(Error::kind),
        started.elapsed().as_micros() as u64,
    );
    Reply::finish(result, outgoing)
}

fn upgrade(e: Error, any_unknown: bool) -> Error {
    if any_unknown {
        e.with_unknown_outcome()
    } else {
        e
    }
}

fn exhausted(
    started: Instant,
    deadline: Instant,
    attempts: u32,
    any_unknown: bool,
    last_error: Option<Error>,
) -> Error {
    let timed_out = Instant::now() >= deadline;
    match last_error {
        Some(e) if !timed_out => upgrade(e, any_unknown),
        last_error => Error::Timeout {
            returned: crate::error::Returned::NOTHING,
            elapsed: started.elapsed(),
            budget: deadline.saturating_duration_since(started),
            attempts,
            outcome: if any_unknown {
                Outcome::Unknown
            } else {
                Outcome::NotStored
            },
            last_error: last_error.map(Box::new),
        },
    }
}

async fn send_attempt(
    core: &Rc<Core>,
    addr: &str,
    (route, queue): (&TopicRoute, &PublishQueue),
    (message, ticket): (&Outgoing, Option<&OrderTicket>),
    mode: SendMode,
    (started, born_millis): (Instant, i64),
    (deadline, budget): (Instant, Instant),
) -> Result<Reply, Error> {
    let config = &core.shared.config;
    let extras = message.extras();
    // A chosen queue always uses the same connection, so its messages stay in order.
    let slot = extras
        .filter(|e| !e.target.is_auto())
        .map(|_| queue.queue_id as usize);
    let conn = core.send_connection(addr, slot, deadline).await?;
    let (code, header, body) = send_header(core, route, queue, message, born_millis);
    let oneway = mode == SendMode::Oneway;
    // A send to a chosen queue waits for the sends that reached the core before it (they may
    // still be waking from a shared connect), then for the previous request to the same queue
    // to be answered: brokers store pipelined requests of one connection concurrently (seen on
    // rocketmq-rust; Java brokers use a thread pool), so one in flight per queue is what keeps
    // a key's messages in order.
    // The wait for the turn counts against the send's budget, not the attempt's own limit,
    // which starts when the request is queued (a key's 600th message waits for 599 round trips).
    let mut queue_turn = None;
    let mut deadline = deadline;
    if let Some(ticket) = ticket {
        let waited = until(budget, ticket.turn()).await;
        if waited.is_some() {
            let link = core
                .queue_order(&queue.broker_name, queue.queue_id)
                .ticket();
            ticket.pass();
            if until(budget, link.turn()).await.is_some() {
                queue_turn = Some(link);
            }
        }
        if queue_turn.is_none() {
            ticket.pass();
            return Err(Error::Timeout {
                returned: crate::error::Returned::NOTHING,
                elapsed: started.elapsed(),
                budget: budget.saturating_duration_since(started),
                attempts: 1,
                outcome: Outcome::NotStored,
                last_error: None,
            });
        }
        deadline = budget.min(deadline_after(Instant::now(), config.attempt_timeout));
    }
    let response = conn.request(code.as_i32(), &header, body, oneway, deadline);
    let response = response?;
    // The connection fails the request at `deadline`: no timer per attempt.
    let answer = response.await;
    drop(queue_turn);
    match answer {
        Err(failure) if failure.timed_out => Err(attempt_timeout(started, deadline)),
        Err(failure) => Err(failure_to_error(addr, failure)),
        Ok(None) => Ok(Reply::Written),
        Ok(Some(reply)) => {
            let topic = crate::namespace::caller_topic(config.namespace.as_deref(), &route.topic);
            to_reply(&SendResponse::of(&reply), addr, (&topic, queue), message)
        }
    }
}
