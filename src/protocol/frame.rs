//! Frame codec: `length:i32 | type:u8 headerLength:u24 | header | body` (Java `RemotingCommand.encode/decode`).
//!
//! ```text
//!  socket bytes ──► decode() ──► Incomplete (wait) | RemotingCommand | Malformed (close)
//!  head+fields+body ──► encode() ──► bytes appended to the connection's write buffer
//! ```

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

use super::command::{HeaderEncoding, RemotingCommand};
use super::decode_error::DecodeError;
use super::ext_fields::CustomHeader;
use super::header_json::CommandHead;
use super::{header_binary, header_json};

/// Largest whole frame (length prefix included) a Java server accepts by default
/// (`com.rocketmq.remoting.frameMaxLength`, Netty compares `length + 4`).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest header length the 3-byte field can carry.
pub const MAX_HEADER_BYTES: usize = (1 << 24) - 1;

/// A command that cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The frame would exceed the peer's frame limit.
    #[error("frame of {size} bytes exceeds the {limit}-byte frame limit")]
    FrameTooLarge {
        /// Size the frame would have had, prefix included.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Appends one frame to `out`. On error `out` is left exactly as it was.
pub fn encode(
    out: &mut BytesMut,
    encoding: HeaderEncoding,
    head: &CommandHead<'_>,
    fields: &dyn CustomHeader,
    body: &[u8],
    max_frame_bytes: usize,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.reserve(8 + 256 + body.len());
    out.put_u64(0);
    match encoding {
        HeaderEncoding::Json => header_json::encode(out, head, fields),
        HeaderEncoding::Binary => header_binary::encode(out, head, fields),
    }
    let header_len = out.len() - start - 8;
    let size = out.len() - start + body.len();
    if header_len > MAX_HEADER_BYTES || size > max_frame_bytes {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            size,
            limit: max_frame_bytes.min(MAX_HEADER_BYTES + 8),
        });
    }
    out.put_slice(body);
    let length = (size - 4) as u32;
    let type_and_len = ((encoding.type_byte() as u32) << 24) | header_len as u32;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&type_and_len.to_be_bytes());
    Ok(())
}

/// Appends `command` as one frame (convenience for non-hot paths and tests).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn encode_command(
    out: &mut BytesMut,
    encoding: HeaderEncoding,
    command: &RemotingCommand,
    max_frame_bytes: usize,
) -> Result<(), EncodeError> {
    let head = CommandHead {
        code: command.code,
        language: command.language,
        version: command.version,
        opaque: command.opaque,
        flag: command.flag,
        remark: command.remark.as_deref(),
    };
    encode(
        out,
        encoding,
        &head,
        &command.ext_fields,
        &command.body,
        max_frame_bytes,
    )
}

/// Checks whether `buf` starts with a whole, plausible frame and returns its total size.
///
/// `Incomplete` means wait for more bytes; `Malformed` means the stream is broken.
pub fn check(buf: &[u8], max_frame_bytes: usize) -> Result<usize, DecodeError> {
    if buf.len() < 8 {
        return Err(DecodeError::Incomplete { needed: 8 });
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let type_and_len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if length < 4 || length > max_frame_bytes.saturating_sub(4) {
        return Err(DecodeError::malformed(
            "frame",
            format!("length {length} outside 4..={}", max_frame_bytes - 4),
        ));
    }
    let serialize_type = type_and_len >> 24;
    if serialize_type > 1 {
        return Err(DecodeError::malformed(
            "frame",
            format!("unknown serialize type {serialize_type}"),
        ));
    }
    let header_len = (type_and_len & 0x00FF_FFFF) as usize;
    if header_len > length - 4 {
        return Err(DecodeError::malformed(
            "frame",
            format!("header length {header_len} exceeds frame length {length}"),
        ));
    }
    let total = length + 4;
    if buf.len() < total {
        return Err(DecodeError::Incomplete { needed: total });
    }
    Ok(total)
}

/// Takes one frame off the front of `buf` and decodes it.
///
/// Returns `Ok(None)` when `buf` holds no whole frame yet. The body is a zero-copy slice of the
/// frame. On `Err` the stream cannot be resynchronised and the connection must be closed.
pub fn decode(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<RemotingCommand>, DecodeError> {
    let total = match check(buf, max_frame_bytes) {
        Ok(total) => total,
        Err(DecodeError::Incomplete { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut frame = buf.split_to(total);
    frame.advance(4);
    let type_and_len = frame.get_u32();
    let header_len = (type_and_len & 0x00FF_FFFF) as usize;
    // Header and body stay in the read buffer: the fields are spans over the header bytes, the
    // body a shared slice.
    let header = frame.split_to(header_len);
    let mut command = if type_and_len >> 24 == 0 {
        header_json::decode_in_place(header)?
    } else {
        header_binary::decode_in_place(header)?
    };
    let frame = frame.freeze();
    command.body = frame;
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::LanguageCode;
    use crate::protocol::header_binary::hex;
    use proptest::prelude::*;

    fn route_request(encoding: HeaderEncoding) -> BytesMut {
        let mut out = BytesMut::new();
        let head = CommandHead::request(105, 1, LanguageCode::JAVA, 407);
        encode(
            &mut out,
            encoding,
            &head,
            &[("topic", "T")],
            b"",
            MAX_FRAME_BYTES,
        )
        .unwrap();
        out
    }

    #[test]
    fn golden_binary_frame() {
        // Protocol notes §1: RemotingCommand.encode with RocketMQSerializable.
        // Frame length, serialize type + header length, then the header.
        let expected = hex(&format!(
            "0000002501000021{}",
            crate::protocol::header_binary::GOLDEN_ROUTE_HEADER
        ));
        assert_eq!(&route_request(HeaderEncoding::Binary)[..], &expected[..]);
    }

    #[test]
    fn golden_json_frame_prefix() {
        let frame = route_request(HeaderEncoding::Json);
        assert_eq!(&frame[..8], &hex("0000007f0000007b")[..]);
        assert_eq!(frame.len(), 4 + 0x7f);
    }

    #[test]
    fn decode_splits_frames_and_waits_for_more() {
        let mut stream = route_request(HeaderEncoding::Binary);
        stream.extend_from_slice(&route_request(HeaderEncoding::Json));
        let whole = stream.clone();
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            let mut got = 0;
            while let Some(cmd) = decode(&mut partial, MAX_FRAME_BYTES).unwrap() {
                assert_eq!(cmd.ext("topic"), Some("T"));
                got += 1;
            }
            assert!(got <= 2);
        }
        assert!(decode(&mut stream, MAX_FRAME_BYTES).unwrap().is_some());
        assert!(decode(&mut stream, MAX_FRAME_BYTES).unwrap().is_some());
        assert!(stream.is_empty());
    }

    #[test]
    fn oversize_encode_rolls_back() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let head = CommandHead::request(310, 1, LanguageCode::JAVA, 407);
        let body = vec![0u8; 100];
        let err = encode(
            &mut out,
            HeaderEncoding::Binary,
            &head,
            &super::super::ext_fields::NoHeader,
            &body,
            64,
        );
        assert!(matches!(err, Err(EncodeError::FrameTooLarge { .. })));
        assert_eq!(&out[..], b"keep");
    }

    #[test]
    fn bad_prefixes_are_malformed() {
        for bad in [
            hex("0000000300000000"), // length < 4
            hex("7fffffff00000000"), // length over the limit
            hex("0000000802000000"), // serialize type 2
            hex("0000000800000010"), // header longer than frame
        ] {
            let mut buf = BytesMut::from(&bad[..]);
            assert!(decode(&mut buf, MAX_FRAME_BYTES).is_err(), "{bad:02x?}");
        }
    }

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..14,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[a-z\u{1}\u{2}\"\\\\é]{1,20}"),
            proptest::collection::vec(("[a-zA-Z_]{1,8}", "[ -~\u{1}\u{2}]{1,30}"), 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(code, lang, version, opaque, flag, remark, ext, body)| {
                let mut dedup = Vec::<(String, String)>::new();
                for (k, v) in ext {
                    if !dedup.iter().any(|(dk, _)| *dk == k) {
                        dedup.push((k, v));
                    }
                }
                RemotingCommand {
                    code: code as i32,
                    language: LanguageCode(lang),
                    version: version as i32,
                    opaque,
                    flag,
                    remark,
                    ext_fields: dedup.into_iter().collect(),
                    body: body.into(),
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip_both_encodings(cmd in arb_command(), json in any::<bool>()) {
            let encoding = if json { HeaderEncoding::Json } else { HeaderEncoding::Binary };
            let mut buf = BytesMut::new();
            encode_command(&mut buf, encoding, &cmd, MAX_FRAME_BYTES).unwrap();
            let mut back = decode(&mut buf, MAX_FRAME_BYTES).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            let want = cmd.clone();
            prop_assert_eq!(back.ext_fields.sorted(), want.ext_fields.sorted());
            back.ext_fields = want.ext_fields.clone();
            prop_assert_eq!(back, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode(&mut buf, MAX_FRAME_BYTES) {}
        }

        #[test]
        fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), json in any::<bool>()) {
            let mut frame = BytesMut::new();
            frame.put_u32(bytes.len() as u32 + 4);
            frame.put_u32(((!json as u32) << 24) | bytes.len() as u32);
            frame.put_slice(&bytes);
            let _ = decode(&mut frame, MAX_FRAME_BYTES);
        }
    }
}
