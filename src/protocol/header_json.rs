//! JSON header (serialize type 0): the fastjson form of `RemotingCommand`.
//!
//! Encoding follows fastjson's default features: fields in alphabetical order, nulls omitted,
//! every ext value a JSON string, control characters escaped as `\u00XX`.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, BytesMut};
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use smallvec::SmallVec;

use super::command::{LanguageCode, RemotingCommand};
use super::decode_error::DecodeError;
use super::ext_fields::{CustomHeader, EncodedFields, ExtFieldWriter, ExtFields};

/// The fixed part of a header: everything but the custom fields and the body.
#[derive(Debug, Clone, Copy)]
pub struct CommandHead<'a> {
    /// Request or response code.
    pub code: i32,
    /// Sender language.
    pub language: LanguageCode,
    /// Sender version.
    pub version: i32,
    /// Request id.
    pub opaque: i32,
    /// Flag bits.
    pub flag: i32,
    /// Optional remark.
    pub remark: Option<&'a str>,
}

impl CommandHead<'static> {
    /// The head of a request: flag 0, no remark.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn request(code: i32, opaque: i32, language: LanguageCode, version: i32) -> Self {
        CommandHead {
            code,
            language,
            version,
            opaque,
            flag: 0,
            remark: None,
        }
    }
}

/// Appends the JSON header for `head` and `fields` to `out`.
pub fn encode(out: &mut BytesMut, head: &CommandHead<'_>, fields: &dyn CustomHeader) {
    let mut digits = itoa::Buffer::new();
    out.put_slice(b"{\"code\":");
    out.put_slice(digits.format(head.code).as_bytes());
    let rollback = out.len();
    out.put_slice(b",\"extFields\":{");
    let mut writer = JsonFieldWriter { out, first: true };
    fields.write_fields(&mut writer);
    if writer.first {
        out.truncate(rollback);
    } else {
        out.put_u8(b'}');
    }
    out.put_slice(b",\"flag\":");
    out.put_slice(digits.format(head.flag).as_bytes());
    out.put_slice(b",\"language\":\"");
    out.put_slice(head.language.name().as_bytes());
    out.put_slice(b"\",\"opaque\":");
    out.put_slice(digits.format(head.opaque).as_bytes());
    if let Some(remark) = head.remark {
        out.put_slice(b",\"remark\":");
        put_json_string(out, remark);
    }
    out.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.put_slice(digits.format(head.version).as_bytes());
    out.put_u8(b'}');
}

/// Appends `fields` as comma-separated `"key":"value"` pairs (for
/// [`super::ext_fields::EncodedFields`]).
pub(crate) fn encode_fields(out: &mut BytesMut, fields: &dyn CustomHeader) {
    fields.write_fields(&mut JsonFieldWriter { out, first: true });
}

struct JsonFieldWriter<'a> {
    out: &'a mut BytesMut,
    first: bool,
}

impl ExtFieldWriter for JsonFieldWriter<'_> {
    fn put_str(&mut self, key: &str, value: &str) {
        if !self.first {
            self.out.put_u8(b',');
        }
        self.first = false;
        put_json_string(self.out, key);
        self.out.put_u8(b':');
        put_json_string(self.out, value);
    }

    fn put_encoded(&mut self, fields: &EncodedFields) {
        if fields.json.is_empty() {
            return;
        }
        if !self.first {
            self.out.put_u8(b',');
        }
        self.first = false;
        self.out.put_slice(&fields.json);
    }
}

/// Writes `s` as a quoted JSON string.
fn put_json_string(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        match escape {
            Some(seq) => out.put_slice(seq),
            None => out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeader<'a> {
    code: Option<i32>,
    #[serde(borrow)]
    language: Option<Cow<'a, str>>,
    version: Option<i32>,
    opaque: Option<i32>,
    flag: Option<i32>,
    remark: Option<String>,
    #[serde(borrow)]
    ext_fields: Option<RawExtFields<'a>>,
}

/// An ext key or value as the JSON parser found it.
enum RawText<'a> {
    /// Text without escapes, still in the header bytes.
    Borrowed(&'a str),
    /// Unescaped text, or the text of a number or boolean.
    Owned(String),
    /// `null`: the field is absent.
    Null,
}

/// The `extFields` object, in wire order (a repeated key keeps both; lookups take the last).
struct RawExtFields<'a>(SmallVec<[(RawText<'a>, RawText<'a>); 8]>);

impl<'de: 'a, 'a> Deserialize<'de> for RawText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawTextVisitor(std::marker::PhantomData))
    }
}

struct RawTextVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for RawTextVisitor<'a> {
    type Value = RawText<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(RawText::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawText::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(RawText::Owned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(RawText::Owned(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(RawText::Owned(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(RawText::Owned(
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
        ))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(RawText::Owned(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawText::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawText::Null)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawExtFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MapVisitor<'a> {
            type Value = RawExtFields<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of scalar ext fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = SmallVec::new();
                while let Some(key) = map.next_key::<RawText<'a>>()? {
                    let value = map.next_value::<RawText<'a>>()?;
                    fields.push((key, value));
                }
                Ok(RawExtFields(fields))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// Decodes a JSON header into a command with an empty body.
///
/// Lenient like fastjson: unknown fields are ignored, missing numbers are 0, ext values that are
/// numbers or booleans are turned into their text.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn decode(bytes: &[u8]) -> Result<RemotingCommand, DecodeError> {
    decode_in_place(BytesMut::from(bytes))
}

/// Like [`decode`], keeping the header's bytes: ext keys and values without escapes are spans
/// over them, not copies.
pub fn decode_in_place(header: BytesMut) -> Result<RemotingCommand, DecodeError> {
    const WHAT: &str = "JSON header";
    let JsonHeader {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields: raw_fields,
    } = serde_json::from_slice(&header).map_err(|e| DecodeError::malformed(WHAT, e.to_string()))?;
    let language = language
        .as_deref()
        .map(LanguageCode::from_name)
        .unwrap_or(LanguageCode::JAVA);
    let base = header.as_ptr() as usize;
    let header_len = header.len();
    // Where borrowed text lies in the header; owned text is appended after it.
    let place = |text: &RawText<'_>, owned: &mut String| -> Option<Range<usize>> {
        match text {
            RawText::Borrowed(s) => {
                let start = s.as_ptr() as usize - base;
                Some(start..start + s.len())
            }
            RawText::Owned(s) => {
                let start = header_len + owned.len();
                owned.push_str(s);
                Some(start..start + s.len())
            }
            RawText::Null => None,
        }
    };
    let mut owned = String::new();
    let mut spans: SmallVec<[(Range<usize>, Range<usize>); 8]> = SmallVec::new();
    for (key, value) in raw_fields.iter().flat_map(|f| f.0.iter()) {
        if matches!(value, RawText::Null) {
            continue;
        }
        let (Some(key), Some(value)) = (place(key, &mut owned), place(value, &mut owned)) else {
            return Err(DecodeError::malformed(WHAT, "an ext field's key is null"));
        };
        spans.push((key, value));
    }
    drop(raw_fields);
    let (code, version, opaque, flag) = (
        code.unwrap_or(0),
        version.unwrap_or(0),
        opaque.unwrap_or(0),
        flag.unwrap_or(0),
    );
    let mut ext_fields = ExtFields::over(header, 0);
    if !owned.is_empty() {
        ext_fields.append_text(&owned);
    }
    for (key, value) in spans {
        ext_fields
            .push_span(key, value)
            .map_err(|why| DecodeError::malformed(WHAT, why))?;
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_route_request() {
        // Protocol notes §1 worked example; layout from RemotingCommand.headerEncode (fastjson,
        // SortField, WriteEnumUsingName).
        let mut out = BytesMut::new();
        let head = CommandHead::request(105, 1, LanguageCode::JAVA, 407);
        encode(&mut out, &head, &[("topic", "T")]);
        assert_eq!(
            &out[..],
            br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":407}"#
        );
        assert_eq!(out.len(), 123);
    }

    #[test]
    fn no_fields_omits_ext_fields_and_escapes_remark() {
        let mut out = BytesMut::new();
        let head = CommandHead {
            code: 1,
            language: LanguageCode::RUST,
            version: 1,
            opaque: -7,
            flag: 1,
            remark: Some("a\"b\u{1}"),
        };
        encode(&mut out, &head, &super::super::ext_fields::NoHeader);
        assert_eq!(
            &out[..],
            br#"{"code":1,"flag":1,"language":"RUST","opaque":-7,"remark":"a\"b\u0001","serializeTypeCurrentRPC":"JSON","version":1}"#
        );
        let back = decode(&out).unwrap();
        assert_eq!(back.remark.as_deref(), Some("a\"b\u{1}"));
        assert_eq!(back.opaque, -7);
        assert_eq!(back.language, LanguageCode::RUST);
    }

    #[test]
    fn decode_accepts_non_string_ext_values() {
        let cmd = decode(br#"{"code":0,"extFields":{"queueId":3,"ok":true,"n":null},"opaque":9}"#)
            .unwrap();
        assert_eq!(cmd.ext("queueId"), Some("3"));
        assert_eq!(cmd.ext("ok"), Some("true"));
        assert_eq!(cmd.ext("n"), None);
    }

    #[test]
    fn escaped_and_plain_values_mix_in_wire_order() {
        let header = br#"{"code":0,"extFields":{"a":"x\"y","b":"plain","a\u0001":"\u00e9","c":1.5,"b":"again"}}"#;
        let cmd = decode(header).unwrap();
        let fields: Vec<_> = cmd.ext_fields.iter().collect();
        assert_eq!(
            fields,
            [
                ("a", "x\"y"),
                ("b", "plain"),
                ("a\u{1}", "\u{e9}"),
                ("c", "1.5"),
                ("b", "again")
            ]
        );
        assert_eq!(cmd.ext("b"), Some("again"));
        assert_eq!(cmd.language, LanguageCode::JAVA);
        let escaped_language = decode(br#"{"language":"R\u0055ST"}"#).unwrap();
        assert_eq!(escaped_language.language, LanguageCode::RUST);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"{\"code\":").is_err());
        assert!(decode(b"[]").is_err());
        assert!(decode(br#"{"extFields":{"a":[1]}}"#).is_err());
    }
}
