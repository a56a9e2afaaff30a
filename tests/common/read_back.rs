//! Proves storage: reads back what the broker stored (GET_MAX_OFFSET + PULL_MESSAGE) and compares
//! it with what was sent, matched by UNIQ_KEY.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use rocketmq_tpc::protocol::command::HeaderEncoding;
use rocketmq_tpc::protocol::frame;
use rocketmq_tpc::protocol::stored_message::{self, StoredMessage};
use rocketmq_tpc::protocol::{LanguageCode, RemotingCommand};
use rocketmq_tpc::Message;

/// A blocking RemotingCommand client for test read-back.
pub struct Remote {
    stream: TcpStream,
    buf: BytesMut,
    opaque: i32,
}

impl Remote {
    pub fn connect(addr: &str) -> Remote {
        let stream = TcpStream::connect(addr).expect("connect for read-back");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Remote {
            stream,
            buf: BytesMut::new(),
            opaque: 1000,
        }
    }

    pub fn call(&mut self, code: i32, fields: &[(&str, String)]) -> RemotingCommand {
        self.opaque += 1;
        let mut cmd = RemotingCommand::request(code, self.opaque, LanguageCode::JAVA, 407);
        for (k, v) in fields {
            cmd.push_ext(*k, v.clone());
        }
        let mut out = BytesMut::new();
        frame::encode_command(&mut out, HeaderEncoding::Json, &cmd, frame::MAX_FRAME_BYTES)
            .unwrap();
        self.stream.write_all(&out).unwrap();
        loop {
            if let Some(reply) = frame::decode(&mut self.buf, frame::MAX_FRAME_BYTES).unwrap() {
                if reply.opaque == self.opaque {
                    return reply;
                }
                continue;
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read-back reply");
            assert!(n > 0, "broker closed the read-back connection");
            self.buf.extend_from_slice(&chunk[..n]);
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

/// Every message stored in `topic` on `broker` (queues 0..16), keyed by UNIQ_KEY.
pub fn stored_by_key(broker: &str, topic: &str) -> BTreeMap<String, Vec<StoredMessage>> {
    let mut remote = Remote::connect(broker);
    let mut map: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
    for queue in 0..16 {
        for m in remote.all(topic, queue) {
            let key = m.properties.get("UNIQ_KEY").cloned().unwrap_or_default();
            map.entry(key).or_default().push(m);
        }
    }
    map
}

/// Every message stored in `topic` over `brokers`, keyed by UNIQ_KEY, once every key in `expected`
/// is visible or 15 s have passed.
///
/// A broker acks a message once it is in the commit log; its consume queue (what GET_MAX_OFFSET
/// and PULL_MESSAGE read) is built asynchronously a moment later, so a read straight after the
/// ack can miss the newest messages. Waiting for the acked keys hides no loss: a key that never
/// shows up still fails the caller's check after the deadline.
pub fn stored_when_visible(
    brokers: &[String],
    topic: &str,
    expected: &[&str],
) -> BTreeMap<String, Vec<StoredMessage>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut stored: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
        for broker in brokers {
            for (key, copies) in stored_by_key(broker, topic) {
                stored.entry(key).or_default().extend(copies);
            }
        }
        let visible = expected.iter().all(|k| stored.contains_key(*k));
        if visible || std::time::Instant::now() > deadline {
            return stored;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Broker-added keys that read-back ignores (decisions.md).
const BROKER_KEYS: &[&str] = &["CLUSTER", "MSG_REGION", "TRACE_ON", "WAIT"];

/// Asserts that `stored` is `sent` (topic, body, tags, keys, user properties, UNIQ_KEY, flag).
pub fn assert_same(sent: &Message, uniq_key: &str, stored: &StoredMessage) {
    assert_eq!(stored.topic, sent.topic);
    assert_eq!(stored.body, sent.body, "body of {uniq_key}");
    assert_eq!(stored.flag, sent.flag);
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
    assert_eq!(got, want, "properties of {uniq_key}");
}
