//! JSON header (serialize type 0): the fastjson form of `RemotingCommand`.
//!
//! Encoding follows fastjson's default features: fields in alphabetical order, nulls omitted,
//! every ext value a JSON string, control characters escaped as `\u00XX`.

use bytes::{BufMut, BytesMut};
use serde::Deserialize;

use super::command::{LanguageCode, RemotingCommand};
use super::decode_error::DecodeError;
use super::ext_fields::{CustomHeader, ExtFieldWriter, ExtFields};

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
struct JsonHeader {
    code: Option<i32>,
    language: Option<String>,
    version: Option<i32>,
    opaque: Option<i32>,
    flag: Option<i32>,
    remark: Option<String>,
    ext_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Decodes a JSON header into a command with an empty body.
///
/// Lenient like fastjson: unknown fields are ignored, missing numbers are 0, ext values that are
/// numbers or booleans are turned into their text.
pub fn decode(bytes: &[u8]) -> Result<RemotingCommand, DecodeError> {
    let header: JsonHeader = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::malformed("JSON header", e.to_string()))?;
    let mut ext_fields = ExtFields::new();
    if let Some(map) = header.ext_fields {
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => continue,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(DecodeError::malformed(
                        "JSON header",
                        format!("ext field {key} is not a scalar: {other}"),
                    ))
                }
            };
            ext_fields.push(&key, &text);
        }
    }
    Ok(RemotingCommand {
        code: header.code.unwrap_or(0),
        language: header
            .language
            .as_deref()
            .map(LanguageCode::from_name)
            .unwrap_or(LanguageCode::JAVA),
        version: header.version.unwrap_or(0),
        opaque: header.opaque.unwrap_or(0),
        flag: header.flag.unwrap_or(0),
        remark: header.remark,
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
    fn garbage_is_an_error() {
        assert!(decode(b"{\"code\":").is_err());
        assert!(decode(b"[]").is_err());
        assert!(decode(br#"{"extFields":{"a":[1]}}"#).is_err());
    }
}
