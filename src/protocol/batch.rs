//! SEND_BATCH_MESSAGE body (Java `MessageDecoder.encodeMessages`).
//!
//! Per message: `totalSize:i32 magic:i32(0) bodyCRC:i32(0) flag:i32 bodyLen:i32 body propsLen:i16 props`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::decode_error::DecodeError;
use super::properties::MAX_PROPERTIES_BYTES;

/// Bytes a record adds around its body and properties.
pub const RECORD_OVERHEAD: usize = 20 + 2;

/// Appends one batch record. The caller checks `properties.len() <= 32767`.
pub fn encode_record(out: &mut BytesMut, flag: i32, body: &[u8], properties: &str) {
    debug_assert!(properties.len() <= MAX_PROPERTIES_BYTES);
    let total = RECORD_OVERHEAD + body.len() + properties.len();
    out.reserve(total);
    out.put_i32(total as i32);
    out.put_i32(0);
    out.put_i32(0);
    out.put_i32(flag);
    out.put_i32(body.len() as i32);
    out.put_slice(body);
    out.put_i16(properties.len() as i16);
    out.put_slice(properties.as_bytes());
}

/// One message read back from a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub struct BatchRecord {
    /// User flag.
    pub flag: i32,
    /// Body as sent.
    pub body: Bytes,
    /// Properties string.
    pub properties: String,
}

/// Splits a batch body into its records.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn decode(mut body: Bytes) -> Result<Vec<BatchRecord>, DecodeError> {
    let bad = |reason: String| DecodeError::malformed("batch body", reason);
    let mut records = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 20 {
            return Err(bad(format!("{} trailing bytes", body.remaining())));
        }
        let total = body.get_i32();
        let _magic = body.get_i32();
        let _crc = body.get_i32();
        let flag = body.get_i32();
        let body_len = body.get_i32();
        if body_len < 0 || body_len as usize > body.remaining() {
            return Err(bad(format!("body length {body_len}")));
        }
        let message_body = body.split_to(body_len as usize);
        if body.remaining() < 2 {
            return Err(bad("missing properties length".into()));
        }
        let props_len = body.get_i16();
        if props_len < 0 || props_len as usize > body.remaining() {
            return Err(bad(format!("properties length {props_len}")));
        }
        let props = body.split_to(props_len as usize);
        if total as i64 != (RECORD_OVERHEAD + message_body.len() + props.len()) as i64 {
            return Err(bad(format!("total size {total} does not match its parts")));
        }
        let properties = String::from_utf8(props.to_vec())
            .map_err(|_| bad("properties are not UTF-8".into()))?;
        records.push(BatchRecord {
            flag,
            body: message_body,
            properties,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_record() {
        // MessageDecoder.encodeMessage: 4+4+4+4+4+body+2+props.
        let mut out = BytesMut::new();
        encode_record(&mut out, 7, b"hi", "K\u{1}v");
        assert_eq!(
            &out[..],
            &[
                0, 0, 0, 27, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, b'h', b'i', 0, 3,
                b'K', 1, b'v'
            ]
        );
    }

    proptest! {
        #[test]
        fn round_trip(msgs in proptest::collection::vec((any::<i32>(), proptest::collection::vec(any::<u8>(), 0..40), "[a-z\u{1}\u{2}]{0,20}"), 0..6)) {
            let mut out = BytesMut::new();
            for (flag, body, props) in &msgs {
                encode_record(&mut out, *flag, body, props);
            }
            let back = decode(out.freeze()).unwrap();
            prop_assert_eq!(back.len(), msgs.len());
            for (rec, (flag, body, props)) in back.iter().zip(&msgs) {
                prop_assert_eq!(rec.flag, *flag);
                prop_assert_eq!(&rec.body[..], &body[..]);
                prop_assert_eq!(&rec.properties, props);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(Bytes::from(bytes));
        }
    }
}
