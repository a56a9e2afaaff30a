//! JSON header (serialize type 0): the fastjson form of `RemotingCommand`.
//!
//! Encoding follows fastjson's default features: fields in alphabetical order, nulls omitted,
//! every ext value a JSON string, control characters escaped as `\u00XX`.

use super::command::LanguageCode;

mod decoder;
mod encoder;

pub use decoder::{decode, decode_in_place};
pub use encoder::encode;
pub(crate) use encoder::encode_fields;

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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

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
