//! The queue of a send whose caller chose it ([`SendTarget`] other than `Auto`), checked
//! against the route (Java `DefaultMQProducerImpl.sendSelectImpl`).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use super::core::Core;
use super::prepared::Outgoing;
use crate::error::Error;
use crate::route::{PublishQueue, TopicRoute};
use crate::send_result::MessageQueue;
use crate::target::{index_by_hash, SendTarget};

/// The publish queues of `route` as the caller sees them (namespace stripped from the topic).
pub(crate) fn publish_queues(route: &TopicRoute, namespace: Option<&str>) -> Vec<MessageQueue> {
    let topic = crate::namespace::caller_topic(namespace, &route.topic);
    route
        .queues
        .iter()
        .map(|q| MessageQueue {
            topic: topic.clone(),
            broker_name: Arc::clone(&q.broker_name),
            queue_id: q.queue_id,
        })
        .collect()
}

/// The route's queue that `target` names for `message`.
///
/// # Errors
///
/// [`Error::InvalidTarget`] when the target names a queue the route does not have (another
/// topic, an unknown broker or queue id, or a selector that returned nothing).
pub(crate) fn pick(
    core: &Rc<Core>,
    target: &SendTarget,
    route: &TopicRoute,
    message: &Outgoing,
) -> Result<PublishQueue, Error> {
    let queues = &route.queues;
    let invalid = |reason: String| Error::InvalidTarget {
        returned: crate::error::Returned::NOTHING,
        reason,
    };
    if queues.is_empty() {
        return Err(Error::NoRoute {
            returned: crate::error::Returned::NOTHING,
            topic: message.topic().to_owned(),
            reason: "the route has no writable queue".into(),
            outcome: crate::error::Outcome::NotStored,
        });
    }
    let namespace = core.shared.config.namespace.as_deref();
    let chosen = |mq: &MessageQueue| -> Result<PublishQueue, Error> {
        let wire_topic = match namespace {
            Some(ns) => Cow::Owned(crate::namespace::wrap(ns, &mq.topic)),
            None => Cow::Borrowed(&*mq.topic),
        };
        if *wire_topic != *route.topic {
            return Err(invalid(format!(
                "queue {mq:?} belongs to topic {}, the message to {}",
                mq.topic,
                message.topic()
            )));
        }
        queues
            .iter()
            .find(|q| *q.broker_name == *mq.broker_name && q.queue_id == mq.queue_id)
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "topic {} has no writable queue {} on broker {} (fetch_publish_queues lists them)",
                    mq.topic, mq.queue_id, mq.broker_name
                ))
            })
    };
    match target {
        SendTarget::Auto | SendTarget::RoundRobin => core
            .selector
            .borrow_mut()
            .select(&route.topic, route, None)
            .cloned()
            .ok_or_else(|| invalid("the route has no writable queue".into())),
        SendTarget::ByKey(key) => Ok(queues[index_by_hash(key, queues.len())].clone()),
        SendTarget::Random => {
            Ok(queues[super::prepared::random_u32() as usize % queues.len()].clone())
        }
        SendTarget::Queue(mq) => chosen(mq),
        SendTarget::Selector(selector) => {
            let Outgoing::One(one) = message else {
                return Err(invalid(
                    "a selector picks a queue per message; give a batch a Queue or ByKey target"
                        .into(),
                ));
            };
            let list = publish_queues(route, namespace);
            // The caller's code: a panic in it refuses this message, as a `None` does.
            let picked = super::guarded::call_guarded(|| selector.select(&list, &one.original))
                .map_err(|text| invalid(format!("the selector panicked: {text}")))?
                .ok_or_else(|| invalid("the selector returned no queue".into()))?;
            chosen(&picked)
        }
    }
}
