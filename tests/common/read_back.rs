//! Proves storage: reads back what the broker stored (GET_MAX_OFFSET + PULL_MESSAGE) and compares
//! it with what was sent, matched by UNIQ_KEY.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use rocketmq_tpc::protocol::stored_message::{self, StoredMessage};
use rocketmq_tpc::protocol::{LanguageCode, RemotingCommand};
use rocketmq_tpc::{Message, ShortString};

/// A blocking RemotingCommand client for test read-back.
pub struct Remote {
    addr: String,
    stream: TcpStream,
    frames: super::frames::FrameReader,
    opaque: i32,
}

/// How long read-back waits for one answer before it asks again on a fresh connection.
const CALL_WAIT: Duration = Duration::from_secs(5);
/// How many times read-back asks.
const CALL_TRIES: usize = 3;

impl Remote {
    pub fn connect(addr: &str) -> Remote {
        Remote {
            addr: addr.to_owned(),
            stream: Self::open(addr),
            frames: Default::default(),
            opaque: 1000,
        }
    }

    fn open(addr: &str) -> TcpStream {
        let stream = TcpStream::connect(addr).expect("connect for read-back");
        stream.set_read_timeout(Some(CALL_WAIT)).unwrap();
        stream
    }

    /// One request and its answer. Read-back only reads (routes, offsets, messages), so a
    /// request left unanswered (a flooded broker drops some) is asked again on a fresh
    /// connection, [`CALL_TRIES`] times at most.
    pub fn call(&mut self, code: i32, fields: &[(&str, String)]) -> RemotingCommand {
        let mut failures = Vec::new();
        // A broker flooded by another test answers SYSTEM_BUSY (2, "transport admission
        // rejected"): ask again shortly, for up to 10 s.
        let busy_until = std::time::Instant::now() + Duration::from_secs(10);
        let mut tries = 0;
        while tries < CALL_TRIES {
            tries += 1;
            match self.try_call(code, fields) {
                Ok(reply) if reply.code == 2 && std::time::Instant::now() < busy_until => {
                    tries -= 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(reply) => return reply,
                Err(e) => {
                    failures.push(e);
                    self.stream = Self::open(&self.addr);
                    self.frames.clear();
                }
            }
        }
        panic!(
            "read-back request {code} to {}: no answer in {CALL_TRIES} tries: {failures:?}",
            self.addr
        );
    }

    fn try_call(
        &mut self,
        code: i32,
        fields: &[(&str, String)],
    ) -> Result<RemotingCommand, String> {
        self.opaque += 1;
        let mut cmd = RemotingCommand::request(code, self.opaque, LanguageCode::JAVA, 407);
        for (k, v) in fields {
            cmd.push_ext(*k, v.clone());
        }
        super::frames::write_command(&mut self.stream, &cmd).map_err(|e| format!("write: {e}"))?;
        loop {
            let reply = self.frames.next(&mut self.stream)?;
            if reply.opaque == self.opaque {
                return Ok(reply);
            }
        }
    }

    pub fn max_offset(&mut self, topic: &str, queue_id: i32) -> i64 {
        let reply = self.call(
            30,
            &[("topic", topic.into()), ("queueId", queue_id.to_string())],
        );
        assert_eq!(reply.code, 0, "GET_MAX_OFFSET: {:?}", reply.remark);
        reply.ext("offset").unwrap().parse().unwrap()
    }

    /// Pulls up to 32 messages from `offset`.
    pub fn pull(&mut self, topic: &str, queue_id: i32, offset: i64) -> Vec<StoredMessage> {
        let reply = self.call(
            11,
            &[
                ("consumerGroup", "tpc_readback".into()),
                ("topic", topic.into()),
                ("queueId", queue_id.to_string()),
                ("queueOffset", offset.to_string()),
                ("maxMsgNums", "32".into()),
                ("sysFlag", "4".into()),
                ("commitOffset", "0".into()),
                ("suspendTimeoutMillis", "0".into()),
                ("subscription", "*".into()),
                ("subVersion", "0".into()),
                ("expressionType", "TAG".into()),
            ],
        );
        if reply.code != 0 {
            return Vec::new();
        }
        stored_message::decode_all(reply.body, 64 << 20).expect("stored messages decode")
    }

    /// Every message stored in `topic` queue `queue_id`.
    pub fn all(&mut self, topic: &str, queue_id: i32) -> Vec<StoredMessage> {
        let max = self.max_offset(topic, queue_id);
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < max {
            let got = self.pull(topic, queue_id, offset);
            if got.is_empty() {
                break;
            }
            offset = got.last().unwrap().queue_offset + 1;
            out.extend(got);
        }
        out
    }
}

/// Names of the brokers the NameServer at `namesrv` lists with writable queues for `topic`
/// (empty when the topic is unknown to it).
pub fn route_brokers(namesrv: &str, topic: &str) -> std::collections::BTreeSet<String> {
    let mut remote = Remote::connect(namesrv);
    let reply = remote.call(105, &[("topic", topic.into())]);
    if reply.code != 0 {
        return Default::default();
    }
    let route = rocketmq_tpc::protocol::route_data::parse(&reply.body).expect("route JSON");
    route
        .queue_datas
        .iter()
        .filter(|q| {
            q.write_queue_nums > 0 && q.perm & rocketmq_tpc::protocol::route_data::PERM_WRITE != 0
        })
        .map(|q| q.broker_name.clone())
        .collect()
}

/// Where read-back looks for a topic's messages: broker addresses, each with the number of
/// queues to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub queues: BTreeMap<String, i32>,
}

/// Queues scanned on a broker when the NameServer has no route for the topic (yet).
const QUEUES_WITHOUT_ROUTE: i32 = 16;

impl Layout {
    /// Every master of `topic`'s route at `namesrv`, scanned over every queue the route gives it
    /// there (the larger of `readQueueNums` and `writeQueueNums`), and `brokers` the route does
    /// not name, over the most queues any broker of the route has (queues 0..16 while the
    /// NameServer has no route for the topic). Take it while the NameServer runs and lists every
    /// broker the topic lives on.
    pub fn of(namesrv: &str, brokers: &[String], topic: &str) -> Layout {
        let mut remote = Remote::connect(namesrv);
        let reply = remote.call(105, &[("topic", topic.into())]);
        let mut queues = BTreeMap::new();
        let mut most = QUEUES_WITHOUT_ROUTE;
        if reply.code == 0 {
            let route = rocketmq_tpc::protocol::route_data::parse(&reply.body).expect("route JSON");
            let by_name: BTreeMap<&str, i32> = route
                .queue_datas
                .iter()
                .map(|q| {
                    (
                        q.broker_name.as_str(),
                        q.read_queue_nums.max(q.write_queue_nums),
                    )
                })
                .collect();
            most = by_name
                .values()
                .copied()
                .max()
                .unwrap_or(QUEUES_WITHOUT_ROUTE);
            for broker in &route.broker_datas {
                if let (Some(addr), Some(n)) = (
                    broker.master_addr(),
                    by_name.get(broker.broker_name.as_str()),
                ) {
                    queues.insert(addr.to_owned(), *n);
                }
            }
        }
        for broker in brokers {
            queues.entry(broker.clone()).or_insert(most);
        }
        Layout { queues }
    }

    /// Every message stored in `topic` now, over every broker and queue of the layout, keyed by
    /// UNIQ_KEY.
    pub fn stored_now(&self, topic: &str) -> BTreeMap<String, Vec<StoredMessage>> {
        let mut map: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
        for (broker, queues) in &self.queues {
            let mut remote = Remote::connect(broker);
            for queue in 0..*queues {
                for m in remote.all(topic, queue) {
                    let key = m.properties.get("UNIQ_KEY").cloned().unwrap_or_default();
                    map.entry(key).or_default().push(m);
                }
            }
        }
        map
    }
}

/// How long [`stored_when`] waits at most.
pub const VISIBLE_WITHIN: Duration = Duration::from_secs(15);

/// Every message stored in `topic` over `layout`, keyed by UNIQ_KEY, once every key in
/// `expected` is visible and the number of stored messages has not changed over two reads
/// 500 ms apart; or what is stored after [`VISIBLE_WITHIN`].
pub fn stored_when_visible(
    layout: &Layout,
    topic: &str,
    expected: &[&str],
) -> BTreeMap<String, Vec<StoredMessage>> {
    stored_when(layout, topic, |stored| {
        expected.iter().all(|k| stored.contains_key(*k))
    })
}

/// Every message stored in `topic` over `layout`, keyed by UNIQ_KEY, once `visible` says what
/// is stored is complete and the number of stored messages has not changed over two reads
/// 500 ms apart; or what is stored after [`VISIBLE_WITHIN`].
///
/// A broker acks a message once it is in the commit log; its consume queue (what GET_MAX_OFFSET
/// and PULL_MESSAGE read) is built asynchronously a moment later, so a read straight after the
/// ack can miss the newest messages, and an attempt the producer gave up on may still be stored
/// later (a late duplicate, a failed-but-stored message). Waiting hides no loss: a message that
/// never shows up still fails the caller's check after the deadline.
pub fn stored_when(
    layout: &Layout,
    topic: &str,
    visible: impl Fn(&BTreeMap<String, Vec<StoredMessage>>) -> bool,
) -> BTreeMap<String, Vec<StoredMessage>> {
    let deadline = std::time::Instant::now() + VISIBLE_WITHIN;
    let mut previous: Option<usize> = None;
    loop {
        let stored = layout.stored_now(topic);
        let count: usize = stored.values().map(Vec::len).sum();
        if (visible(&stored) && previous == Some(count)) || std::time::Instant::now() > deadline {
            return stored;
        }
        previous = Some(count);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Checks that every message of `sent` is stored in `topic` exactly once and equal to what was
/// sent, and that nothing else is stored there; returns each message's stored copy, in order.
///
/// A message with a UNIQ_KEY (from its send result) is found by it; one without (a oneway send has
/// no result) by its body, so the bodies of those must be distinct. Read-back waits until every
/// message is visible ([`stored_when`]). On failure the panic names `what`, the brokers read, and
/// every message that is missing, stored more than once, stored differently, or shares its key
/// with another, and every stored message that was never sent.
pub fn assert_stored_as_sent(
    what: &str,
    layout: &Layout,
    topic: &str,
    sent: &[(Message, Option<ShortString>)],
) -> Vec<StoredMessage> {
    let mut problems = Vec::new();
    let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_body: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, (m, key)) in sent.iter().enumerate() {
        let first = match key {
            Some(key) => by_key.insert(key.as_str(), i),
            None => by_body.insert(&m.body[..], i),
        };
        if let Some(first) = first {
            problems.push(match key {
                Some(key) => format!("messages {first} and {i} got one UNIQ_KEY {key}"),
                None => format!("messages {first} and {i} (no UNIQ_KEY) share one body"),
            });
        }
    }
    let copies_of = |stored: &BTreeMap<String, Vec<StoredMessage>>| {
        let mut copies: Vec<Vec<StoredMessage>> = vec![Vec::new(); sent.len()];
        let mut strangers = Vec::new();
        for (key, messages) in stored {
            for m in messages {
                let found = by_key
                    .get(key.as_str())
                    .or_else(|| by_body.get(&m.body[..]));
                match found {
                    Some(&i) => copies[i].push(m.clone()),
                    None => strangers.push(key.clone()),
                }
            }
        }
        (copies, strangers)
    };
    let stored = stored_when(layout, topic, |stored| {
        copies_of(stored).0.iter().all(|c| !c.is_empty())
    });
    let (copies, strangers) = copies_of(&stored);
    let mut missing = Vec::new();
    for (i, ((m, key), copies)) in sent.iter().zip(&copies).enumerate() {
        let name = match key {
            Some(key) => format!("message {i} ({key})"),
            None => format!("message {i} (found by body)"),
        };
        match copies.len() {
            0 => missing.push(i),
            1 => {
                let stored = &copies[0];
                let key = stored.properties.get("UNIQ_KEY").map_or("", String::as_str);
                for difference in differences(m, key, stored) {
                    problems.push(format!("{name}: {difference}"));
                }
            }
            n => problems.push(format!("{name}: stored {n} times")),
        }
    }
    if !missing.is_empty() {
        problems.insert(
            0,
            format!(
                "{} of {} messages not stored after {VISIBLE_WITHIN:?}: messages {:?}",
                missing.len(),
                sent.len(),
                &missing[..missing.len().min(20)]
            ),
        );
    }
    if !strangers.is_empty() {
        problems.push(format!(
            "stored but never sent: {} (UNIQ_KEYs {:?})",
            strangers.len(),
            &strangers[..strangers.len().min(20)]
        ));
    }
    assert!(
        problems.is_empty(),
        "{what}: {} sent to {topic}, read back from {:?}:\n  {}",
        sent.len(),
        layout.queues.keys().collect::<Vec<_>>(),
        problems[..problems.len().min(20)].join("\n  ")
    );
    copies.into_iter().map(|mut c| c.remove(0)).collect()
}

/// Broker-added keys that read-back ignores (decisions.md).
const BROKER_KEYS: &[&str] = &["CLUSTER", "MSG_REGION", "TRACE_ON", "WAIT"];

/// Asserts that `stored` is `sent` (topic, body, tags, keys, user properties, UNIQ_KEY, flag).
pub fn assert_same(sent: &Message, uniq_key: &str, stored: &StoredMessage) {
    let differences = differences(sent, uniq_key, stored);
    assert!(
        differences.is_empty(),
        "{uniq_key} is stored differently from what was sent: {}",
        differences.join("; ")
    );
}

/// How `stored` differs from `sent` (topic, body, tags, keys, user properties, UNIQ_KEY, flag),
/// one line per field; empty when it is stored as sent.
pub fn differences(sent: &Message, uniq_key: &str, stored: &StoredMessage) -> Vec<String> {
    let mut out = Vec::new();
    if stored.topic != sent.topic {
        out.push(format!("topic {:?}, sent {:?}", stored.topic, sent.topic));
    }
    if stored.body != sent.body {
        let at = stored
            .body
            .iter()
            .zip(sent.body.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(stored.body.len().min(sent.body.len()));
        out.push(format!(
            "body of {} bytes, sent {} bytes, first difference at byte {at}",
            stored.body.len(),
            sent.body.len()
        ));
    }
    if stored.flag != sent.flag {
        out.push(format!("flag {}, sent {}", stored.flag, sent.flag));
    }
    let mut want: BTreeMap<String, String> = sent.properties.iter().cloned().collect();
    if let Some(t) = &sent.tags {
        want.insert("TAGS".into(), t.clone());
    }
    if !sent.keys.is_empty() {
        want.insert("KEYS".into(), sent.keys.join(" "));
    }
    want.insert("UNIQ_KEY".into(), uniq_key.into());
    let got: BTreeMap<String, String> = stored
        .properties
        .iter()
        .filter(|(k, _)| !BROKER_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if got != want {
        out.push(format!("properties {got:?}, sent {want:?}"));
    }
    out
}
