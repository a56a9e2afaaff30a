//! Message properties string (Java `MessageDecoder.messageProperties2String` / `string2messageProperties`).
//!
//! `name 0x01 value 0x02 name 0x01 value` — no trailing separator (4.9.1–5.1.x form; every server
//! version accepts both).

use std::collections::BTreeMap;

/// Separator between a name and its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separator between two properties.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Largest properties string a broker accepts (`Short.MAX_VALUE`).
pub const MAX_PROPERTIES_BYTES: usize = i16::MAX as usize;

/// Property names (Java `MessageConst`) this client sets.
pub mod keys {
    /// User keys, joined by one space.
    pub const KEYS: &str = "KEYS";
    /// User tag.
    pub const TAGS: &str = "TAGS";
    /// Wait for store (`true`/`false`).
    pub const WAIT: &str = "WAIT";
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// Unique client message id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Namespace of the producer that sent the message.
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    /// Half message of a transaction (`true`).
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group of a half message.
    pub const PGROUP: &str = "PGROUP";
    /// Transaction id a check-back reports (`PROPERTY_TRANSACTION_ID`).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// The original topic of a half or scheduled message.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// The original queue of a half or scheduled message.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub const REAL_QID: &str = "REAL_QID";
    /// Request-reply: correlates a reply with its request.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Request-reply: the client id the reply is pushed to.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request-reply: time to live of the request in milliseconds.
    pub const TTL: &str = "TTL";
    /// Request-reply: the cluster of the broker that stored the request.
    pub const CLUSTER: &str = "CLUSTER";
    /// Request-reply: `reply` on a reply message.
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// 5.x timer message: delay in seconds.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// 5.x timer message: delay in milliseconds.
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// 5.x timer message: delivery time in Unix milliseconds.
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
}

/// Names a user may not set (Java 5.x `MessageConst.STRING_HASH_SET`, a superset of 4.9.7's).
pub const RESERVED_NAMES: &[&str] = &[
    "TRACE_ON",
    "MSG_REGION",
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "ARRIVE_TIME",
    "PUSH_REPLY_TIME",
    "CLUSTER",
    "MSG_TYPE",
    "INNER_MULTI_QUEUE_OFFSET",
    "POP_CK",
    "POP_CK_OFFSET",
    "1ST_POP_TIME",
    "TRAN_PREPARED_QUEUE_OFFSET",
    "DUP_INFO",
    "EXTEND_UNIQ_INFO",
    "TIMER_DELAY_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELIVER_MS",
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    "TIMER_OUT_MS",
    "TIMER_DEL_UNIQKEY",
    "TIMER_DELAY_LEVEL",
    "__BORNHOST",
    "BORN_TIMESTAMP",
    "DLQ_ORIGIN_TOPIC",
    "DLQ_ORIGIN_MESSAGE_ID",
    "__CRC32#",
];

/// Whether `name` is reserved for the client or broker.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.contains(&name)
}

/// Appends `name 0x01 value` to `out`, with a `0x02` before it unless `out` is empty.
pub fn push_property(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(PROPERTY_SEPARATOR);
    }
    out.push_str(name);
    out.push(NAME_VALUE_SEPARATOR);
    out.push_str(value);
}

/// Encodes `(name, value)` pairs in order.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        push_property(&mut out, name, value);
    }
    out
}

/// Decodes a properties string like Java: segments without a name or a value are dropped and the
/// last duplicate wins. Never fails.
pub fn decode(s: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for segment in s.split(PROPERTY_SEPARATOR) {
        if let Some((name, value)) = segment.split_once(NAME_VALUE_SEPARATOR) {
            if !name.is_empty() && !value.is_empty() {
                map.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden() {
        // MessageDecoder.messageProperties2String (4.9.7: last separator dropped).
        assert_eq!(
            encode([("TAGS", "a"), ("WAIT", "true")]),
            "TAGS\u{1}a\u{2}WAIT\u{1}true"
        );
        assert_eq!(encode([]), "");
    }

    #[test]
    fn decode_like_java() {
        let map = decode("A\u{1}1\u{2}\u{1}x\u{2}B\u{1}\u{2}A\u{1}2\u{2}C\u{1}3\u{2}");
        assert_eq!(map.len(), 2);
        assert_eq!(map["A"], "2");
        assert_eq!(map["C"], "3");
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::btree_map("[A-Za-z_]{1,10}", "[ -~]{1,20}", 0..8)) {
            let s = encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(decode(&s), pairs);
        }

        #[test]
        fn decode_never_panics(s in "\\PC*") {
            let _ = decode(&s);
        }
    }
}
