//! `TopicRouteData` JSON from GET_ROUTEINFO_BY_TOPIC (Java `TopicRouteData`, `QueueData`, `BrokerData`).
//!
//! Java NameServers older than 4.9.4 (and newer ones talking to old clients) write `brokerAddrs`
//! with bare numeric keys (`{0:"ip:port"}`), which is not JSON. [`parse`] quotes such keys first.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::decode_error::DecodeError;

/// `PermName.PERM_WRITE`.
pub const PERM_WRITE: i32 = 2;
/// `PermName.PERM_READ`.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub const PERM_READ: i32 = 4;
/// Broker id of a master (`MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// A topic's route as the NameServer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// `brokerName:queueNums;…` for order topics.
    pub order_topic_conf: Option<String>,
    /// Queue layout per broker name.
    pub queue_datas: Vec<QueueData>,
    /// Addresses per broker name.
    pub broker_datas: Vec<BrokerData>,
}

/// Queue counts and permissions of one broker name for the topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// Broker name.
    pub broker_name: String,
    /// Readable queue count.
    pub read_queue_nums: i32,
    /// Writable queue count.
    pub write_queue_nums: i32,
    /// `PermName` bits.
    pub perm: i32,
    /// Topic sys flag (`topicSynFlag` before 4.9.0).
    #[serde(alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
}

/// The addresses of one broker name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Broker id (0 = master) → `ip:port`.
    #[serde(deserialize_with = "broker_addrs")]
    pub broker_addrs: BTreeMap<i64, String>,
}

impl BrokerData {
    /// The master's address, if the broker name has a master.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

fn broker_addrs<'de, D>(d: D) -> Result<BTreeMap<i64, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, String>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            k.trim()
                .parse::<i64>()
                .map(|id| (id, v))
                .map_err(|_| serde::de::Error::custom(format!("broker id {k:?} is not a number")))
        })
        .collect()
}

/// Parses route JSON, accepting both quoted and bare numeric object keys.
pub fn parse(body: &[u8]) -> Result<TopicRouteData, DecodeError> {
    let text =
        std::str::from_utf8(body).map_err(|_| DecodeError::malformed("route JSON", "not UTF-8"))?;
    let fixed = quote_bare_numeric_keys(text);
    serde_json::from_str(&fixed).map_err(|e| DecodeError::malformed("route JSON", e.to_string()))
}

/// Quotes an optionally signed integer token that stands as an object key, outside string literals.
///
/// A token is a key when it follows `{` or `,` inside an object (skipping white space) and is
/// followed by `:`. Everything else, strings included, is copied unchanged.
pub fn quote_bare_numeric_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    // Stack of open containers: true = object.
    let mut containers: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                expect_key = false;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => {
                containers.push(true);
                expect_key = true;
                i += 1;
            }
            b'[' => {
                containers.push(false);
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                containers.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = containers.last() == Some(&true);
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'-' | b'0'..=b'9' if expect_key => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let mut j = i;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < bytes.len() && bytes[j] == b':' {
                    out.push_str(&text[copied..start]);
                    out.push('"');
                    out.push_str(&text[start..i]);
                    out.push('"');
                    copied = i;
                }
                expect_key = false;
            }
            _ => {
                expect_key = false;
                i += 1;
            }
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STANDARD: &str = r#"{"orderTopicConf":null,"queueDatas":[{"brokerName":"broker-a","readQueueNums":8,"writeQueueNums":8,"perm":7,"topicSysFlag":0}],"brokerDatas":[{"cluster":"DefaultCluster","brokerName":"broker-a","brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"}}],"filterServerTable":{}}"#;

    #[test]
    fn standard_json() {
        let route = parse(STANDARD.as_bytes()).unwrap();
        assert_eq!(route.queue_datas[0].write_queue_nums, 8);
        assert_eq!(route.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    }

    #[test]
    fn fastjson_bare_keys() {
        // fastjson NoneStringKeyTest form, as 4.9.3 NameServers send it.
        let legacy = r#"{"brokerDatas":[{"brokerAddrs":{0:"172.168.0.104:10911", -1 :"x:1"},"brokerName":"b","cluster":"c"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"topicSynFlag":0,"writeQueueNums":4}]}"#;
        let route = parse(legacy.as_bytes()).unwrap();
        assert_eq!(
            route.broker_datas[0].master_addr(),
            Some("172.168.0.104:10911")
        );
        assert_eq!(route.broker_datas[0].broker_addrs[&-1], "x:1");
    }

    #[test]
    fn numbers_in_values_and_strings_untouched() {
        let text = r#"{"a":[1,2,{"b":3}],"s":"{0:\"1\"}","n":{5:"x"}}"#;
        assert_eq!(
            quote_bare_numeric_keys(text),
            r#"{"a":[1,2,{"b":3}],"s":"{0:\"1\"}","n":{"5":"x"}}"#
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"\xff").is_err());
        assert!(parse(br#"{"brokerDatas":[{"brokerAddrs":{"x":"a"}}]}"#).is_err());
        assert!(parse(b"{\"queueDatas\":7}").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(s.as_bytes());
        }

        #[test]
        fn never_panics_on_jsonish(s in "[{}\\[\\],:\"0-9a-z\\- \\\\]{0,120}") {
            let _ = parse(s.as_bytes());
        }
    }
}
