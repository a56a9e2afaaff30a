//! `SendMessageRequestHeaderV2` (Java class of the same name): the short-named send header.

use bytes::{BufMut, BytesMut};

use super::command::RemotingCommand;
use super::decode_error::DecodeError;
use super::ext_fields::{parse_bool, parse_i64, CustomHeader, EncodedFields, ExtFieldWriter};
use super::short_copy::copy_short;

/// The default topic a producer names so the broker can auto-create a new topic.
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Queue count the Java producer asks for when a topic is auto-created.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// Fields of a send request, written with the V2 names `a`…`n` in declaration order
/// (Java `SendMessageRequestHeaderV2.encode`, the `FastCodesHeader` path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessageRequestHeaderV2<'a> {
    /// `a`: producer group.
    pub producer_group: &'a str,
    /// `b`: topic.
    pub topic: &'a str,
    /// `c`: default topic (`TBW102`).
    pub default_topic: &'a str,
    /// `d`: default topic queue count (4).
    pub default_topic_queue_nums: i32,
    /// `e`: queue id.
    pub queue_id: i32,
    /// `f`: sysFlag.
    pub sys_flag: i32,
    /// `g`: born timestamp, unix ms.
    pub born_timestamp: i64,
    /// `h`: user flag.
    pub flag: i32,
    /// `i`: properties string.
    pub properties: &'a str,
    /// `j`: reconsume times.
    pub reconsume_times: i32,
    /// `k`: unit mode.
    pub unit_mode: bool,
    /// `l`: max reconsume times (retry topics only).
    pub max_reconsume_times: Option<i32>,
    /// `m`: batch.
    pub batch: bool,
    /// `n`: target broker name (4.9.5+; older brokers ignore it).
    pub broker_name: Option<&'a str>,
    /// `a`–`d` encoded in advance by [`constant_fields`] for these very values: copied as one
    /// slice instead of written field by field.
    pub constant_fields: Option<&'a EncodedFields>,
}

/// Fields `a`–`d` of a send header, which stay the same for every send of one producer to one
/// topic: encode them once per route and pass them as
/// [`SendMessageRequestHeaderV2::constant_fields`].
pub fn constant_fields(
    producer_group: &str,
    topic: &str,
    default_topic: &str,
    default_topic_queue_nums: i32,
) -> EncodedFields {
    EncodedFields::new(&ConstantFields {
        producer_group,
        topic,
        default_topic,
        default_topic_queue_nums,
    })
}

struct ConstantFields<'a> {
    producer_group: &'a str,
    topic: &'a str,
    default_topic: &'a str,
    default_topic_queue_nums: i32,
}

impl CustomHeader for ConstantFields<'_> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        out.put_str("a", self.producer_group);
        out.put_str("b", self.topic);
        out.put_str("c", self.default_topic);
        out.put_i64("d", self.default_topic_queue_nums as i64);
    }
}

impl CustomHeader for SendMessageRequestHeaderV2<'_> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        match self.constant_fields {
            Some(encoded) => out.put_encoded(encoded),
            None => ConstantFields {
                producer_group: self.producer_group,
                topic: self.topic,
                default_topic: self.default_topic,
                default_topic_queue_nums: self.default_topic_queue_nums,
            }
            .write_fields(out),
        }
        out.put_i64("e", self.queue_id as i64);
        out.put_i64("f", self.sys_flag as i64);
        out.put_i64("g", self.born_timestamp);
        out.put_i64("h", self.flag as i64);
        if !self.properties.is_empty() {
            out.put_str("i", self.properties);
        }
        out.put_i64("j", self.reconsume_times as i64);
        out.put_bool("k", self.unit_mode);
        if let Some(max) = self.max_reconsume_times {
            out.put_i64("l", max as i64);
        }
        out.put_bool("m", self.batch);
        if let Some(name) = self.broker_name {
            out.put_str("n", name);
        }
    }

    /// The binary fields written in a few copies: the pre-encoded `a`–`d`, then the short fields
    /// written in place into room made for them at once (a field by field write made ~40 tiny
    /// copies and capacity checks per send, ~10 % of a sending core). Only with
    /// [`SendMessageRequestHeaderV2::constant_fields`].
    fn write_binary_fields(&self, out: &mut BytesMut) -> bool {
        let Some(constant) = self.constant_fields else {
            return false;
        };
        out.put_slice(&constant.binary);
        let room = ShortFields::room(&[self.properties, self.broker_name.unwrap_or_default()]);
        let start = out.len();
        out.resize(start + room, 0);
        let mut run = ShortFields::new(&mut out[start..]);
        run.number(b'e', i64::from(self.queue_id));
        run.number(b'f', i64::from(self.sys_flag));
        run.timestamp(b'g', self.born_timestamp);
        run.number(b'h', i64::from(self.flag));
        run.text(b'i', self.properties.as_bytes());
        run.number(b'j', i64::from(self.reconsume_times));
        run.text(b'k', bool_text(self.unit_mode));
        if let Some(max) = self.max_reconsume_times {
            run.number(b'l', i64::from(max));
        }
        run.text(b'm', bool_text(self.batch));
        if let Some(name) = self.broker_name {
            run.text(b'n', name.as_bytes());
        }
        let written = run.len;
        out.truncate(start + written);
        true
    }
}

fn bool_text(value: bool) -> &'static [u8] {
    if value {
        b"true"
    } else {
        b"false"
    }
}

/// Binary fields with one-letter keys written in place into room made for them beforehand
/// ([`ShortFields::room`]): each field is a fixed-size prefix and a short value copied without a
/// call (see [`copy_short`]). Empty values are skipped, as the field-by-field writer skips them.
struct ShortFields<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl<'a> ShortFields<'a> {
    /// A key's length (2 bytes), the key (1) and the value's length (4).
    const PREFIX: usize = 7;
    /// Fields a send header can have (`e`–`n`).
    const FIELDS: usize = 10;
    /// The longest number or flag value (`i64::MIN` has 20 characters).
    const SHORT_VALUE: usize = 20;

    /// Room for every field of a send header whose text values (properties, broker name) are
    /// `texts`: numbers and flags take at most [`ShortFields::SHORT_VALUE`] bytes each.
    fn room(texts: &[&str]) -> usize {
        Self::FIELDS * (Self::PREFIX + Self::SHORT_VALUE)
            + texts.iter().map(|t| t.len()).sum::<usize>()
    }

    fn new(out: &'a mut [u8]) -> Self {
        ShortFields { out, len: 0 }
    }

    #[inline]
    fn number(&mut self, key: u8, value: i64) {
        // Most numbers of a send header are one digit (queue id, flags, reconsume times).
        if (0..10).contains(&value) {
            self.text(key, &[b'0' + value as u8]);
            return;
        }
        let mut digits = itoa::Buffer::new();
        self.text(key, digits.format(value).as_bytes());
    }

    /// [`ShortFields::number`] for the born timestamp, whose digits change once a millisecond:
    /// the last one's are kept per thread rather than formatted for every send.
    #[inline]
    fn timestamp(&mut self, key: u8, millis: i64) {
        thread_local! {
            static LAST: std::cell::Cell<(i64, [u8; 20], u8)> =
                const { std::cell::Cell::new((i64::MIN, [0; 20], 0)) };
        }
        let (last, mut digits, len) = LAST.get();
        // `len == 0`: nothing kept yet (whatever `last` says, even for `i64::MIN`).
        if len == 0 || last != millis {
            let mut buffer = itoa::Buffer::new();
            let text = buffer.format(millis).as_bytes();
            digits[..text.len()].copy_from_slice(text);
            LAST.set((millis, digits, text.len() as u8));
            self.text(key, text);
        } else {
            self.text(key, &digits[..len as usize]);
        }
    }

    #[inline]
    fn text(&mut self, key: u8, value: &[u8]) {
        if value.is_empty() {
            return;
        }
        let at = self.len;
        let mut prefix = [0, 1, key, 0, 0, 0, 0];
        prefix[3..].copy_from_slice(&(value.len() as i32).to_be_bytes());
        self.out[at..at + Self::PREFIX].copy_from_slice(&prefix);
        let end = at + Self::PREFIX + value.len();
        copy_short(&mut self.out[at + Self::PREFIX..end], value);
        self.len = end;
    }
}

/// A send header read back from a request (used by the in-process sink and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub struct DecodedSendHeader {
    /// Producer group.
    pub producer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// sysFlag.
    pub sys_flag: i32,
    /// Born timestamp.
    pub born_timestamp: i64,
    /// User flag.
    pub flag: i32,
    /// Properties string.
    pub properties: String,
    /// Batch flag.
    pub batch: bool,
}

impl DecodedSendHeader {
    /// Reads the V2 short names (code 310/320) or the V1 long names (code 10).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn from_command(command: &RemotingCommand) -> Result<Self, DecodeError> {
        let v2 = command.ext("a").is_some();
        let name = |short: &'static str, long: &'static str| if v2 { short } else { long };
        let required = |key: &'static str| {
            command.ext(key).ok_or_else(|| {
                DecodeError::malformed("send header", format!("missing field {key}"))
            })
        };
        let number = |key: &'static str| {
            required(key).and_then(|v| {
                parse_i64(v).ok_or_else(|| {
                    DecodeError::malformed("send header", format!("field {key} is not a number"))
                })
            })
        };
        Ok(DecodedSendHeader {
            producer_group: required(name("a", "producerGroup"))?.to_owned(),
            topic: required(name("b", "topic"))?.to_owned(),
            queue_id: number(name("e", "queueId"))? as i32,
            sys_flag: number(name("f", "sysFlag"))? as i32,
            born_timestamp: number(name("g", "bornTimestamp"))?,
            flag: number(name("h", "flag"))? as i32,
            properties: command
                .ext(name("i", "properties"))
                .unwrap_or_default()
                .to_owned(),
            batch: command.ext(name("m", "batch")).is_some_and(parse_bool),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::{HeaderEncoding, LanguageCode};
    use crate::protocol::frame;
    use crate::protocol::header_json::CommandHead;
    use bytes::BytesMut;

    fn header() -> SendMessageRequestHeaderV2<'static> {
        SendMessageRequestHeaderV2 {
            producer_group: "PG",
            topic: "T",
            default_topic: DEFAULT_TOPIC,
            default_topic_queue_nums: 4,
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: "WAIT\u{1}true",
            reconsume_times: 0,
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
            broker_name: Some("broker-a"),
            constant_fields: None,
        }
    }

    #[test]
    fn pre_encoded_constant_fields_give_the_same_bytes() {
        let constant = constant_fields("PG", "T", DEFAULT_TOPIC, 4);
        for encoding in [HeaderEncoding::Json, HeaderEncoding::Binary] {
            let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
            let mut plain = BytesMut::new();
            frame::encode(&mut plain, encoding, &head, &header(), b"x", 1 << 20).unwrap();
            let mut fast = BytesMut::new();
            let with_constant = SendMessageRequestHeaderV2 {
                constant_fields: Some(&constant),
                ..header()
            };
            frame::encode(&mut fast, encoding, &head, &with_constant, b"x", 1 << 20).unwrap();
            assert_eq!(plain, fast, "{encoding:?}");
        }
        // A header whose only fields are pre-encoded still gets well-formed JSON.
        let mut out = BytesMut::new();
        let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
        crate::protocol::header_json::encode(&mut out, &head, &[("z", "1")]);
        let only = |out: &mut dyn ExtFieldWriter| out.put_encoded(&constant);
        struct Only<F>(F);
        impl<F: Fn(&mut dyn ExtFieldWriter)> CustomHeader for Only<F> {
            fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
                (self.0)(out)
            }
        }
        let mut json = BytesMut::new();
        crate::protocol::header_json::encode(&mut json, &head, &Only(only));
        let text = std::str::from_utf8(&json).unwrap();
        assert!(
            text.contains(r#""extFields":{"a":"PG","b":"T","c":"TBW102","d":"4"},"flag""#),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(text).unwrap();
    }

    #[test]
    fn repeated_and_changing_numbers_give_the_field_by_field_bytes() {
        std::thread::spawn(|| {
            let constant = constant_fields("PG", "T", DEFAULT_TOPIC, 4);
            let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
            // `i64::MIN` first, on a thread of its own: against a cache that holds nothing yet.
            let borns = [
                i64::MIN,
                1,
                1,
                1_700_000_000_000,
                1_700_000_000_000,
                1_700_000_000_001,
                -5,
                9,
                10,
            ];
            for (n, born) in borns
                .into_iter()
                .chain([i64::MIN, i64::MIN, i64::MAX])
                .enumerate()
            {
                let header = SendMessageRequestHeaderV2 {
                    born_timestamp: born,
                    queue_id: n as i32 * 7 - 20,
                    ..header()
                };
                let mut plain = BytesMut::new();
                crate::protocol::header_binary::encode(&mut plain, &head, &header);
                let mut fast = BytesMut::new();
                let with_constant = SendMessageRequestHeaderV2 {
                    constant_fields: Some(&constant),
                    ..header
                };
                crate::protocol::header_binary::encode(&mut fast, &head, &with_constant);
                assert_eq!(plain, fast, "born {born}, queue {}", header.queue_id);
            }
        })
        .join()
        .unwrap();
    }

    proptest::proptest! {
        /// The in-place binary fields are the bytes the field-by-field writer gives.
        #[test]
        fn fast_binary_fields_match_field_by_field(
            queue_id in proptest::prelude::any::<i32>(),
            sys_flag in proptest::prelude::any::<i32>(),
            born in proptest::prelude::any::<i64>(),
            flag in proptest::prelude::any::<i32>(),
            properties in "[ -~\u{1}\u{2}]{0,300}",
            reconsume in proptest::prelude::any::<i32>(),
            unit_mode in proptest::prelude::any::<bool>(),
            max in proptest::option::of(proptest::prelude::any::<i32>()),
            batch in proptest::prelude::any::<bool>(),
            broker in proptest::option::of("[a-z-]{0,200}"),
        ) {
            let constant = constant_fields("PG", "T", DEFAULT_TOPIC, 4);
            let header = SendMessageRequestHeaderV2 {
                queue_id,
                sys_flag,
                born_timestamp: born,
                flag,
                properties: &properties,
                reconsume_times: reconsume,
                unit_mode,
                max_reconsume_times: max,
                batch,
                broker_name: broker.as_deref(),
                ..header()
            };
            let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
            let mut plain = BytesMut::new();
            crate::protocol::header_binary::encode(&mut plain, &head, &header);
            let mut fast = BytesMut::new();
            let with_constant = SendMessageRequestHeaderV2 { constant_fields: Some(&constant), ..header };
            crate::protocol::header_binary::encode(&mut fast, &head, &with_constant);
            proptest::prop_assert_eq!(plain, fast);
        }
    }

    #[test]
    fn golden_json_field_order() {
        // SendMessageRequestHeaderV2 field declaration order a..n, nulls (l) skipped.
        let mut out = BytesMut::new();
        let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
        crate::protocol::header_json::encode(&mut out, &head, &header());
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"code":310,"extFields":{"a":"PG","b":"T","c":"TBW102","d":"4","e":"3","f":"0","g":"1700000000000","h":"0","i":"WAIT\u0001true","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":407}"#
        );
    }

    #[test]
    fn golden_binary_fields() {
        let mut out = BytesMut::new();
        let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
        crate::protocol::header_binary::encode(&mut out, &head, &header());
        // RocketMQSerializable.writeStr(short key, int value) per field, after the 21-byte fixed part.
        assert_eq!(
            &out[21..21 + 2 + 1 + 4 + 2],
            &[0, 1, b'a', 0, 0, 0, 2, b'P', b'G']
        );
    }

    #[test]
    fn decode_back_both_encodings() {
        for encoding in [HeaderEncoding::Json, HeaderEncoding::Binary] {
            let mut out = BytesMut::new();
            let head = CommandHead::request(310, 5, LanguageCode::JAVA, 407);
            frame::encode(&mut out, encoding, &head, &header(), b"body", 1 << 20).unwrap();
            let cmd = frame::decode(&mut out, 1 << 20).unwrap().unwrap();
            let back = DecodedSendHeader::from_command(&cmd).unwrap();
            assert_eq!(back.topic, "T");
            assert_eq!(back.queue_id, 3);
            assert_eq!(back.properties, "WAIT\u{1}true");
            assert_eq!(&cmd.body[..], b"body");
        }
    }
}
