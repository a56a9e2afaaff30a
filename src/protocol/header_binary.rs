//! Binary "ROCKETMQ" header (serialize type 1, Java `RocketMQSerializable`).
//!
//! ```text
//! code:i16 language:u8 version:i16 opaque:i32 flag:i32
//! remarkLen:i32 remark  extLen:i32 { keyLen:i16 key valLen:i32 value }*
//! ```

use bytes::{BufMut, BytesMut};

use super::command::{LanguageCode, RemotingCommand};
use super::decode_error::DecodeError;
use super::ext_fields::{CustomHeader, EncodedFields, ExtFieldWriter, ExtFields, Spans};
use super::header_json::CommandHead;

const WHAT: &str = "binary header";

/// Appends the binary header for `head` and `fields` to `out`.
///
/// Codes above 32767 cannot be carried (the field is an i16, as in Java, which truncates).
pub fn encode(out: &mut BytesMut, head: &CommandHead<'_>, fields: &dyn CustomHeader) {
    out.put_i16(head.code as i16);
    out.put_u8(head.language.0);
    out.put_i16(head.version as i16);
    out.put_i32(head.opaque);
    out.put_i32(head.flag);
    match head.remark {
        Some(remark) if !remark.is_empty() => {
            out.put_i32(remark.len() as i32);
            out.put_slice(remark.as_bytes());
        }
        _ => out.put_i32(0),
    }
    let length_at = out.len();
    out.put_i32(0);
    if !fields.write_binary_fields(out) {
        fields.write_fields(&mut BinaryFieldWriter { out });
    }
    let ext_len = (out.len() - length_at - 4) as i32;
    out[length_at..length_at + 4].copy_from_slice(&ext_len.to_be_bytes());
}

/// Appends just the ext-field bytes of `fields` (for [`super::ext_fields::EncodedFields`]).
pub(crate) fn encode_fields(out: &mut BytesMut, fields: &dyn CustomHeader) {
    fields.write_fields(&mut BinaryFieldWriter { out });
}

struct BinaryFieldWriter<'a> {
    out: &'a mut BytesMut,
}

impl ExtFieldWriter for BinaryFieldWriter<'_> {
    fn put_str(&mut self, key: &str, value: &str) {
        // Java's decoder turns a zero length into null, so an empty key or value would not
        // survive; skipping it matches what the receiver would see anyway.
        if key.is_empty() || value.is_empty() {
            return;
        }
        self.out.put_i16(key.len() as i16);
        self.out.put_slice(key.as_bytes());
        self.out.put_i32(value.len() as i32);
        self.out.put_slice(value.as_bytes());
    }

    fn put_encoded(&mut self, fields: &EncodedFields) {
        self.out.put_slice(&fields.binary);
    }
}

/// Reads the header's numbers and slices front to back. Decoding a sound header is the hot path
/// (every answer), so the errors are built out of line. The `next_*` steps say only whether the
/// bytes are there (what [`super::binary_response`] needs: an `Option` stays in registers where a
/// `Result` with an error was ~7 ns slower per answer); the others name what is missing.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The next `n` bytes, if there are that many.
    #[inline]
    pub(super) fn next(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    #[inline]
    pub(super) fn next_i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.next(2)?.try_into().ok()?))
    }

    #[inline]
    pub(super) fn next_i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.next(4)?.try_into().ok()?))
    }

    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let left = self.bytes.len() - self.pos;
        self.next(n).ok_or_else(|| too_short(field, n, left))
    }

    #[inline]
    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let left = self.bytes.len() - self.pos;
        self.next_i16().ok_or_else(|| too_short(field, 2, left))
    }

    #[inline]
    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let left = self.bytes.len() - self.pos;
        self.next_i32().ok_or_else(|| too_short(field, 4, left))
    }

    /// A length field's value, which must not be negative.
    #[inline]
    fn length(raw: i32, field: &'static str) -> Result<usize, DecodeError> {
        usize::try_from(raw).map_err(|_| negative_length(field, raw))
    }

    fn str(&mut self, len: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        let raw = self.take(len, field)?;
        std::str::from_utf8(raw)
            .map_err(|_| DecodeError::malformed(WHAT, format!("{field} is not UTF-8")))
    }
}

#[cold]
#[inline(never)]
fn too_short(field: &str, needed: usize, left: usize) -> DecodeError {
    DecodeError::malformed(WHAT, format!("{field} needs {needed} bytes, {left} left"))
}

#[cold]
#[inline(never)]
fn negative_length(field: &str, raw: i32) -> DecodeError {
    DecodeError::malformed(WHAT, format!("negative {field} length {raw}"))
}

/// Decodes a binary header (exactly `bytes`, no trailing data) into a command with an empty body.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn decode(bytes: &[u8]) -> Result<RemotingCommand, DecodeError> {
    decode_in_place(BytesMut::from(bytes))
}

/// Like [`decode`], keeping the header's bytes: the ext fields are spans over them, not copies.
pub fn decode_in_place(header: BytesMut) -> Result<RemotingCommand, DecodeError> {
    let bytes = &header[..];
    if bytes.len() > u32::MAX as usize {
        return Err(DecodeError::malformed(WHAT, "header larger than 4 GiB"));
    }
    let mut r = Reader::new(bytes);
    let code = r.i16("code")? as i32;
    let language = LanguageCode(r.take(1, "language")?[0]);
    let version = r.i16("version")? as i32;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = Reader::length(r.i32("remark length")?, "remark")?;
    let remark = if remark_len == 0 {
        None
    } else {
        Some(r.str(remark_len, "remark")?.to_owned())
    };
    let ext_len = Reader::length(r.i32("ext length")?, "ext")?;
    let ext_start = r.pos;
    r.take(ext_len, "ext fields")?;
    if r.pos != bytes.len() {
        return Err(DecodeError::malformed(
            WHAT,
            format!("{} bytes after the ext fields", bytes.len() - r.pos),
        ));
    }
    // Where each key and value lies (the header is at most 4 GiB, checked above); the fields
    // become spans over the header, not copies.
    let mut spans = Spans::new();
    r.pos = ext_start;
    while r.pos < bytes.len() {
        let key_len = Reader::length(i32::from(r.i16("key length")?), "key")?;
        let key_start = r.pos;
        r.take(key_len, "key")?;
        let key_end = r.pos;
        let value_len = Reader::length(r.i32("value length")?, "value")?;
        let value_start = r.pos;
        r.take(value_len, "value")?;
        if key_len != 0 && value_len != 0 {
            spans.push([
                key_start as u32,
                key_end as u32,
                value_start as u32,
                r.pos as u32,
            ]);
        }
    }
    let ext_fields = ExtFields::with_spans(header, ext_start, spans)
        .map_err(|why| DecodeError::malformed(WHAT, why))?;
    let head = (code, language, version, opaque, flag);
    RemotingCommand::decoded(head, remark, ext_fields, std::iter::empty(), WHAT)
}

/// The binary header of protocol notes §1's worked example (a GET_ROUTEINFO request for topic
/// `T`), as hex: code, language, version, opaque, flag, remark length, ext length, `topic`, `T`.
#[cfg(test)]
pub(crate) const GOLDEN_ROUTE_HEADER: &str = concat!(
    "0069",
    "00",
    "0197",
    "00000001",
    "00000000",
    "00000000",
    "0000000c",
    "0005",
    "746f706963",
    "00000001",
    "54",
);

/// Bytes from hex text (tests).
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_route_request() {
        // Protocol notes §1 worked example; layout from RocketMQSerializable.rocketMQProtocolEncode.
        let mut out = BytesMut::new();
        let head = CommandHead::request(105, 1, LanguageCode::JAVA, 407);
        encode(&mut out, &head, &[("topic", "T")]);
        assert_eq!(&out[..], &hex(GOLDEN_ROUTE_HEADER)[..]);
        assert_eq!(out.len(), 0x21);
        let back = decode(&out).unwrap();
        assert_eq!(back.code, 105);
        assert_eq!(back.version, 407);
        assert_eq!(back.ext("topic"), Some("T"));
    }

    #[test]
    fn remark_and_duplicates() {
        let mut out = BytesMut::new();
        let head = CommandHead {
            code: 2,
            language: LanguageCode::RUST,
            version: 479,
            opaque: -1,
            flag: 1,
            remark: Some("busy"),
        };
        encode(&mut out, &head, &[("a", "1"), ("a", "2"), ("e", "")]);
        let back = decode(&out).unwrap();
        assert_eq!(back.remark.as_deref(), Some("busy"));
        assert_eq!(back.ext("a"), Some("2"));
        assert_eq!(back.ext_fields.len(), 2);
        assert!(back.is_response());
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors() {
        let mut out = BytesMut::new();
        let head = CommandHead {
            code: 0,
            language: LanguageCode::JAVA,
            version: 1,
            opaque: 1,
            flag: 0,
            remark: Some("x"),
        };
        encode(&mut out, &head, &[("k", "v")]);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = out.to_vec();
        lying[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&lying).is_err());
        lying[13..17].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode(&lying).is_err());
    }

    #[test]
    fn field_text_must_be_utf8_and_may_be_more_than_ascii() {
        let head = CommandHead {
            code: 0,
            language: LanguageCode::JAVA,
            version: 1,
            opaque: 1,
            flag: 1,
            remark: None,
        };
        let mut out = BytesMut::new();
        encode(
            &mut out,
            &head,
            &[("k", "v"), ("名", "值 ✓"), ("empty", "")],
        );
        let back = decode(&out).unwrap();
        assert_eq!(back.ext("名"), Some("值 ✓"));
        assert_eq!(back.ext("k"), Some("v"));
        assert_eq!(back.ext_fields.len(), 2, "an empty value is no field");
        let mut broken = out.to_vec();
        let last = broken.len() - 1;
        broken[last] = 0xff;
        let e = decode(&broken).unwrap_err().to_string();
        assert!(e.contains("UTF-8"), "{e}");
        // A negative key length.
        let mut negative = BytesMut::new();
        encode(&mut negative, &head, &[("k", "v")]);
        let key_at = negative.len() - 1 - 4 - 1 - 2;
        negative[key_at..key_at + 2].copy_from_slice(&(-1i16).to_be_bytes());
        let e = decode(&negative).unwrap_err().to_string();
        assert!(e.contains("negative key length"), "{e}");
    }
}
