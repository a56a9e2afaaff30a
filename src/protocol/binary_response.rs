//! A binary-header response read where it lies in the read buffer: a send's answer needs its
//! code, opaque, remark and a few fields, not a decoded [`super::RemotingCommand`].
//!
//! Only a clean frame is read this way: binary header flagged as a response, every length in
//! bounds, remark, keys and values ASCII, nothing after the fields. Anything else gives `None`,
//! and the caller decodes the frame the general way ([`super::frame::decode`]), which accepts
//! or refuses it with its usual error: this is a shortcut, never a second opinion.
//!
//! ```text
//!  frame:  length:i32 type:u8 headerLength:u24 | header | body (ignored)
//!  header: code:i16 language:u8 version:i16 opaque:i32 flag:i32
//!          remarkLen:i32 remark extLen:i32 { keyLen:i16 key valLen:i32 value }*
//! ```

use super::command::FLAG_RESPONSE;
use super::header_binary::Reader;
use super::short_string::all_ascii;

/// Where the header starts in a frame (after the length and the type-and-length fields).
const HEADER_AT: usize = 8;
/// Where the opaque and the flag lie in a frame.
const OPAQUE_AT: usize = HEADER_AT + 5;
const FLAG_AT: usize = HEADER_AT + 9;
/// Code, language, version, opaque, flag, remark length.
const FIXED_HEAD: usize = 2 + 1 + 2 + 4 + 4 + 4;

/// The opaque of `frame` (one whole frame, as [`super::frame::check`] measured it) when its
/// header is binary and flagged as a response.
#[inline]
pub fn response_opaque(frame: &[u8]) -> Option<i32> {
    if frame.get(4) != Some(&1) {
        return None;
    }
    let flag = i32::from_be_bytes(frame.get(FLAG_AT..FLAG_AT + 4)?.try_into().ok()?);
    if flag & FLAG_RESPONSE == 0 {
        return None;
    }
    Some(i32::from_be_bytes(
        frame.get(OPAQUE_AT..OPAQUE_AT + 4)?.try_into().ok()?,
    ))
}

/// The head of a response read by [`read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The response code.
    pub code: i32,
    /// The opaque of the request it answers.
    pub opaque: i32,
    /// The remark, if not empty.
    pub remark: Option<&'a str>,
}

/// Reads the response in `frame` (one whole frame, as [`super::frame::check`] measured it),
/// handing each field with a non-empty key and value to `field` in wire order; `None` (and
/// fields handed so far are to be discarded) when the frame is not a clean binary response.
#[inline]
pub fn read<'a>(
    frame: &'a [u8],
    mut field: impl FnMut(&'a str, &'a str),
) -> Option<ResponseHead<'a>> {
    let opaque = response_opaque(frame)?;
    let header_len = u32::from_be_bytes(frame.get(4..HEADER_AT)?.try_into().ok()?) & 0x00FF_FFFF;
    let header = frame.get(HEADER_AT..HEADER_AT + header_len as usize)?;
    // The general decoder's reader, through its steps that build no error.
    let mut r = Reader::new(header);
    let fixed = r.next(FIXED_HEAD)?;
    let code = i32::from(i16::from_be_bytes([fixed[0], fixed[1]]));
    let remark_len = i32::from_be_bytes(fixed[13..17].try_into().ok()?);
    let remark = ascii(r.next(usize::try_from(remark_len).ok()?)?, false)?;
    let ext_len = usize::try_from(r.next_i32()?).ok()?;
    if r.pos + ext_len != header.len() {
        return None;
    }
    // The fields are usually ASCII, their lengths included (they are small): one check of them
    // all instead of one per key and value (a third of this read).
    let fields_ascii = all_ascii(&header[r.pos..]);
    while r.pos < header.len() {
        let key_len = usize::try_from(r.next_i16()?).ok()?;
        let key = ascii(r.next(key_len)?, fields_ascii)?;
        let value_len = usize::try_from(r.next_i32()?).ok()?;
        let value = ascii(r.next(value_len)?, fields_ascii)?;
        if !key.is_empty() && !value.is_empty() {
            field(key, value);
        }
    }
    Some(ResponseHead {
        code,
        opaque,
        remark: (!remark.is_empty()).then_some(remark),
    })
}

/// `bytes` as text when it is ASCII, checked here unless `known_ascii` says it lies in a region
/// already checked whole (`from_utf8` would check them a second time: in a profile of `loadgen
/// --sink --mode async` it was half of `SendResponse::read_frame`'s 10 % of the core).
#[inline]
fn ascii(bytes: &[u8], known_ascii: bool) -> Option<&str> {
    if known_ascii || bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8, and `known_ascii` is only set for parts of the
        // fields `all_ascii` checked (tested: `anything_unusual_is_left_to_the_general_decoder`
        // refuses non-ASCII text, `non_ascii_lengths_still_read_their_fields` covers the
        // fallback, the property test compares with the checked decoder).
        #[allow(unsafe_code)]
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::{HeaderEncoding, LanguageCode};
    use crate::protocol::frame::{self, MAX_FRAME_BYTES};
    use crate::protocol::header_json::CommandHead;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn response(
        encoding: HeaderEncoding,
        flag: i32,
        remark: Option<&str>,
        fields: &[(&str, &str)],
    ) -> BytesMut {
        let head = CommandHead {
            code: 10,
            language: LanguageCode::JAVA,
            version: 1,
            opaque: 77,
            flag,
            remark,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = BytesMut::new();
        frame::encode(&mut out, encoding, &head, &fields, b"body", MAX_FRAME_BYTES).unwrap();
        out
    }

    fn read_all(frame: &[u8]) -> Option<(ResponseHead<'_>, Vec<(&str, &str)>)> {
        let mut fields = Vec::new();
        let head = read(frame, |k, v| fields.push((k, v)))?;
        Some((head, fields))
    }

    #[test]
    fn a_clean_response_reads_like_the_general_decoder() {
        let out = response(
            HeaderEncoding::Binary,
            FLAG_RESPONSE,
            Some("stored"),
            &[
                ("msgId", "AB"),
                ("queueId", "3"),
                ("empty", ""),
                ("queueId", "4"),
            ],
        );
        let (head, fields) = read_all(&out).expect("clean");
        assert_eq!(
            (head.code, head.opaque, head.remark),
            (10, 77, Some("stored"))
        );
        assert_eq!(
            fields,
            [("msgId", "AB"), ("queueId", "3"), ("queueId", "4")]
        );
        let mut buf = out.clone();
        let general = frame::decode(&mut buf, MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!(general.ext("queueId"), Some("4"));
        assert_eq!(general.ext_fields.len(), fields.len());
    }

    #[test]
    fn non_ascii_lengths_still_read_their_fields() {
        // A 200-byte value's length has a byte above 0x7F: the header is not all ASCII, so each
        // part is checked on its own, and all of them are.
        let long = "x".repeat(200);
        let out = response(
            HeaderEncoding::Binary,
            FLAG_RESPONSE,
            Some("ok"),
            &[("msgId", "AB"), ("long", &long)],
        );
        let (head, fields) = read_all(&out).expect("clean");
        assert_eq!(head.remark, Some("ok"));
        assert_eq!(fields, [("msgId", "AB"), ("long", long.as_str())]);
        let wide = format!("{long}é");
        let out = response(
            HeaderEncoding::Binary,
            FLAG_RESPONSE,
            None,
            &[("long", &wide)],
        );
        assert!(
            read_all(&out).is_none(),
            "non-ASCII text in a header with a long length"
        );
    }

    #[test]
    fn anything_unusual_is_left_to_the_general_decoder() {
        let request = response(HeaderEncoding::Binary, 0, None, &[("k", "v")]);
        assert_eq!(response_opaque(&request), None, "not a response");
        assert!(read_all(&request).is_none());
        let json = response(HeaderEncoding::Json, FLAG_RESPONSE, None, &[("k", "v")]);
        assert!(read_all(&json).is_none(), "JSON header");
        let wide = response(HeaderEncoding::Binary, FLAG_RESPONSE, None, &[("k", "值")]);
        assert!(read_all(&wide).is_none(), "non-ASCII value");
        let remark = response(HeaderEncoding::Binary, FLAG_RESPONSE, Some("é"), &[]);
        assert!(read_all(&remark).is_none(), "non-ASCII remark");
        let clean = response(HeaderEncoding::Binary, FLAG_RESPONSE, None, &[("k", "v")]);
        assert!(read_all(&clean).is_some());
        // A key length that runs past the header, and a negative one.
        let key_len_at = clean.len() - 4 - 1 - 4 - 1 - 2;
        for bad in [i16::MAX, -1] {
            let mut lying = clean.to_vec();
            lying[key_len_at..key_len_at + 2].copy_from_slice(&bad.to_be_bytes());
            assert!(read_all(&lying).is_none(), "key length {bad}");
        }
        for cut in 0..clean.len() - 4 {
            assert!(read_all(&clean[..cut]).is_none(), "cut at {cut}");
        }
    }

    proptest! {
        /// Whatever the bytes, reading never panics, and whatever it accepts the general decoder
        /// decodes to the same code, opaque, remark and fields.
        #[test]
        fn accepted_frames_agree_with_the_general_decoder(
            code in any::<i16>(),
            remark in proptest::option::of("[ -~]{0,8}"),
            fields in proptest::collection::vec(("[a-z]{0,3}", "[ -~]{0,4}"), 0..5),
            flip in any::<usize>(),
            to in any::<u8>(),
        ) {
            let head = CommandHead {
                code: i32::from(code),
                language: LanguageCode::JAVA,
                version: 1,
                opaque: 5,
                flag: FLAG_RESPONSE,
                remark: remark.as_deref(),
            };
            let mut out = BytesMut::new();
            frame::encode(&mut out, HeaderEncoding::Binary, &head, &fields, b"", MAX_FRAME_BYTES).unwrap();
            let mut bytes = out.to_vec();
            let at = flip % bytes.len();
            if at >= 8 {
                bytes[at] = to;
            } else {
                prop_assert!(read_all(&bytes).is_some(), "a clean ASCII response is read in place");
            }
            if let Some((head, fast)) = read_all(&bytes) {
                let mut buf = BytesMut::from(&bytes[..]);
                let general = frame::decode(&mut buf, MAX_FRAME_BYTES).unwrap().unwrap();
                prop_assert_eq!(head.code, general.code);
                prop_assert_eq!(head.opaque, general.opaque);
                prop_assert_eq!(head.remark, general.remark.as_deref());
                let slow: Vec<_> = general.ext_fields.iter().collect();
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
