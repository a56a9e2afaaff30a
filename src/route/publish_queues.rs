//! Route data → the queues a producer may write to (Java `MQClientInstance.topicRouteData2TopicPublishInfo`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::protocol::ext_fields::EncodedFields;
use crate::protocol::route_data::{TopicRouteData, PERM_WRITE};

/// Most queues one topic's route may yield. Real topics have tens to hundreds; a NameServer
/// answer claiming more is treated as garbage (found by the `route_json` fuzz target: a queue
/// count of 837,795,835 would have allocated 20 GB).
pub const MAX_QUEUES_PER_TOPIC: usize = 65_536;

/// Appends queues `0..nums` of `broker`, within [`MAX_QUEUES_PER_TOPIC`] in total.
fn push_queues(queues: &mut Vec<PublishQueue>, broker: &Arc<str>, nums: i32) {
    let room = MAX_QUEUES_PER_TOPIC.saturating_sub(queues.len());
    let nums = (nums.max(0) as usize).min(room);
    queues.extend((0..nums).map(|queue_id| PublishQueue {
        broker_name: broker.clone(),
        queue_id: queue_id as i32,
    }));
}

/// One writable queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublishQueue {
    /// Broker name.
    pub broker_name: Arc<str>,
    /// Queue id on that broker.
    pub queue_id: i32,
}

/// The publish view of a topic (Java `TopicPublishInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    /// The topic (set when the route is installed in the [`crate::route::RouteTable`]); shared
    /// by every [`crate::SendResult`] for it.
    pub topic: crate::topic::Topic,
    /// Writable queues, grouped by broker name in name order (order topics: configured order).
    pub queues: Vec<PublishQueue>,
    /// Master address per broker name.
    pub master_addrs: BTreeMap<Arc<str>, String>,
    /// Whether the route came from `orderTopicConf`.
    pub order_topic: bool,
    /// Whether the queues were derived from the default topic (`TBW102`) because the topic does
    /// not exist yet; the broker creates it on the first send.
    pub from_default_topic: bool,
    /// The NameServer's answer this was built from (a refresh compares it to skip needless swaps).
    pub source: TopicRouteData,
    /// Send-header fields `a`–`d` for this topic, encoded once when the producer installs the
    /// route (`None` until then).
    pub send_header_constants: Option<EncodedFields>,
}

impl TopicRoute {
    /// The master address of `broker_name`.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.master_addrs.get(broker_name).map(String::as_str)
    }
}

fn master_addrs(data: &TopicRouteData) -> BTreeMap<Arc<str>, String> {
    data.broker_datas
        .iter()
        .filter_map(|b| {
            b.master_addr()
                .map(|addr| (Arc::<str>::from(b.broker_name.as_str()), addr.to_owned()))
        })
        .collect()
}

/// Builds the publish queues of a topic from its own route.
pub fn from_route(data: TopicRouteData) -> TopicRoute {
    let masters = master_addrs(&data);
    let mut queues = Vec::new();
    let order_conf = data.order_topic_conf.as_deref().unwrap_or("").trim();
    if !order_conf.is_empty() {
        for entry in order_conf.split(';') {
            let Some((name, nums)) = entry.split_once(':') else {
                continue;
            };
            let Ok(nums) = nums.trim().parse::<i32>() else {
                continue;
            };
            let name: Arc<str> = Arc::from(name.trim());
            push_queues(&mut queues, &name, nums);
        }
        return TopicRoute {
            topic: crate::Topic::default(),
            queues,
            master_addrs: masters,
            order_topic: true,
            from_default_topic: false,
            source: data,
            send_header_constants: None,
        };
    }
    let mut queue_datas: Vec<_> = data.queue_datas.iter().collect();
    queue_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    for qd in queue_datas {
        if qd.perm & PERM_WRITE == 0 {
            continue;
        }
        let Some((name, _)) = masters.get_key_value(qd.broker_name.as_str()) else {
            continue;
        };
        push_queues(&mut queues, name, qd.write_queue_nums);
    }
    TopicRoute {
        topic: crate::Topic::default(),
        queues,
        master_addrs: masters,
        order_topic: false,
        from_default_topic: false,
        source: data,
        send_header_constants: None,
    }
}

/// Builds a not-yet-existing topic's queues from the default topic's route, each broker's queue
/// counts clamped to `min(default_topic_queue_nums, readQueueNums)` (Java
/// `DefaultMQProducerImpl.tryToFindTopicPublishInfo` → `updateTopicRouteInfoFromNameServer(..., isDefault)`).
pub fn from_default_topic(
    mut default_route: TopicRouteData,
    default_topic_queue_nums: i32,
) -> TopicRoute {
    for qd in &mut default_route.queue_datas {
        let nums = default_topic_queue_nums.min(qd.read_queue_nums);
        qd.read_queue_nums = nums;
        qd.write_queue_nums = nums;
    }
    let mut route = from_route(default_route);
    route.from_default_topic = true;
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::route_data::{BrokerData, QueueData};

    fn data() -> TopicRouteData {
        let broker = |name: &str, master: bool| BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: if master {
                [(0, format!("{name}:1")), (1, format!("{name}:2"))].into()
            } else {
                [(1, format!("{name}:2"))].into()
            },
        };
        let queue = |name: &str, perm, n| QueueData {
            broker_name: name.into(),
            read_queue_nums: 8,
            write_queue_nums: n,
            perm,
            topic_sys_flag: 0,
        };
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![
                queue("b", 6, 2),
                queue("a", 6, 3),
                queue("ro", 4, 4),
                queue("slave-only", 6, 4),
                queue("missing", 6, 4),
            ],
            broker_datas: vec![
                broker("a", true),
                broker("b", true),
                broker("ro", true),
                broker("slave-only", false),
            ],
        }
    }

    #[test]
    fn writable_master_queues_sorted_by_broker() {
        let route = from_route(data());
        let got: Vec<_> = route
            .queues
            .iter()
            .map(|q| format!("{}{}", q.broker_name, q.queue_id))
            .collect();
        assert_eq!(got, ["a0", "a1", "a2", "b0", "b1"]);
        assert_eq!(route.master_addr("a"), Some("a:1"));
        assert_eq!(route.master_addr("slave-only"), None);
    }

    #[test]
    fn default_topic_clamps() {
        let route = from_default_topic(data(), 4);
        assert!(route.from_default_topic);
        // a: min(4, 8) = 4 queues, b: 4 queues.
        assert_eq!(route.queues.len(), 8);
    }

    #[test]
    fn implausible_queue_counts_are_capped() {
        // fuzz/regressions/route_json/oom-a281699508a616d9ab9fc9c0c8c0c00e201b4c08: a JSON array
        // read as a struct in sequence form, its first element becoming orderTopicConf.
        let input = include_bytes!(
            "../../fuzz/regressions/route_json/oom-a281699508a616d9ab9fc9c0c8c0c00e201b4c08"
        );
        let route = from_route(crate::protocol::route_data::parse(input).unwrap());
        assert_eq!(route.queues.len(), MAX_QUEUES_PER_TOPIC);
        let mut d = data();
        for qd in &mut d.queue_datas {
            qd.write_queue_nums = i32::MAX;
        }
        assert_eq!(from_route(d).queues.len(), MAX_QUEUES_PER_TOPIC);
    }

    #[test]
    fn order_topic_conf() {
        let mut d = data();
        d.order_topic_conf = Some("b:2;a:1;junk;x:y".into());
        let route = from_route(d);
        assert!(route.order_topic);
        let got: Vec<_> = route
            .queues
            .iter()
            .map(|q| format!("{}{}", q.broker_name, q.queue_id))
            .collect();
        assert_eq!(got, ["b0", "b1", "a0"]);
    }

    proptest::proptest! {
        #[test]
        fn any_route_json_gives_a_bounded_route(s in "[\\[\\]{}\"a-z0-9:; ,-]{0,80}") {
            if let Ok(data) = crate::protocol::route_data::parse(s.as_bytes()) {
                proptest::prop_assert!(from_route(data.clone()).queues.len() <= MAX_QUEUES_PER_TOPIC);
                proptest::prop_assert!(from_default_topic(data, 4).queues.len() <= MAX_QUEUES_PER_TOPIC);
            }
        }
    }
}
