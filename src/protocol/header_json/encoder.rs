//! Encoding a JSON header the way fastjson writes it: fields in alphabetical order, nulls
//! omitted, every ext value a JSON string, control characters escaped as `\u00XX`.

use bytes::{BufMut, BytesMut};

use super::CommandHead;
use crate::protocol::ext_fields::{CustomHeader, EncodedFields, ExtFieldWriter};

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
/// [`EncodedFields`]).
#[inline]
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
