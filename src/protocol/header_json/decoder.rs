//! Decoding a JSON header, leniently like fastjson, into a command whose ext fields are spans
//! over the header's own bytes wherever the text needs no unescaping.

use std::borrow::Cow;
use std::ops::Range;

use bytes::BytesMut;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use smallvec::SmallVec;

use crate::protocol::command::{LanguageCode, RemotingCommand};
use crate::protocol::decode_error::DecodeError;
use crate::protocol::ext_fields::ExtFields;

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
    let head = (
        code.unwrap_or(0),
        language,
        version.unwrap_or(0),
        opaque.unwrap_or(0),
        flag.unwrap_or(0),
    );
    let mut ext_fields = ExtFields::over(header, 0);
    if !owned.is_empty() {
        ext_fields.append_text(&owned);
    }
    RemotingCommand::decoded(head, remark, ext_fields, spans, WHAT)
}
