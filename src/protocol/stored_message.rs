//! Stored-message records (Java `MessageDecoder.decode`), as PULL_MESSAGE and VIEW_MESSAGE_BY_ID return
//! them. A producer only needs this to prove what a broker stored.

use bytes::{Buf, Bytes};

use super::compression::{self, sys_flag};
use super::decode_error::DecodeError;
use super::properties;

const MAGIC_V1: u32 = 0xDAA3_20A7;
const MAGIC_V2: u32 = 0xDAA3_20AB;
const BORNHOST_V6: i32 = 0x10;
const STOREHOST_V6: i32 = 0x20;

/// A message as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: i64,
    /// User flag.
    pub flag: i32,
    /// sysFlag as stored.
    pub sys_flag: i32,
    /// Born timestamp.
    pub born_timestamp: i64,
    /// Body, decompressed when sysFlag bit 0 is set.
    pub body: Bytes,
    /// Decoded properties.
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Decodes every record of a pull/view body. `max_body` bounds decompression.
pub fn decode_all(mut data: Bytes, max_body: usize) -> Result<Vec<StoredMessage>, DecodeError> {
    let bad = |reason: String| DecodeError::malformed("stored message", reason);
    let mut out = Vec::new();
    while data.has_remaining() {
        if data.remaining() < 8 {
            return Err(bad("truncated record".into()));
        }
        let total = data.get_i32();
        if total < 8 || (total as usize - 4) > data.remaining() {
            return Err(bad(format!("total size {total}")));
        }
        let mut rec = data.split_to(total as usize - 4);
        let need = |rec: &Bytes, n: usize| {
            if rec.remaining() < n {
                Err(bad("truncated record".into()))
            } else {
                Ok(())
            }
        };
        need(&rec, 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8)?;
        let magic = rec.get_u32();
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(bad(format!("magic {magic:#x}")));
        }
        let _body_crc = rec.get_i32();
        let queue_id = rec.get_i32();
        let flag = rec.get_i32();
        let queue_offset = rec.get_i64();
        let _physical_offset = rec.get_i64();
        let sys_flag_value = rec.get_i32();
        let born_timestamp = rec.get_i64();
        let born_host = if sys_flag_value & BORNHOST_V6 != 0 {
            20
        } else {
            8
        };
        let store_host = if sys_flag_value & STOREHOST_V6 != 0 {
            20
        } else {
            8
        };
        need(&rec, born_host + 8 + store_host + 4 + 8 + 4)?;
        rec.advance(born_host);
        let _store_timestamp = rec.get_i64();
        rec.advance(store_host);
        let _reconsume = rec.get_i32();
        let _prepared = rec.get_i64();
        let body_len = rec.get_i32();
        if body_len < 0 || body_len as usize > rec.remaining() {
            return Err(bad(format!("body length {body_len}")));
        }
        let raw_body = rec.split_to(body_len as usize);
        let topic_len = if magic == MAGIC_V2 {
            need(&rec, 2)?;
            rec.get_i16() as i64
        } else {
            need(&rec, 1)?;
            rec.get_u8() as i64
        };
        if topic_len < 0 || topic_len as usize > rec.remaining() {
            return Err(bad(format!("topic length {topic_len}")));
        }
        let topic = String::from_utf8(rec.split_to(topic_len as usize).to_vec())
            .map_err(|_| bad("topic is not UTF-8".into()))?;
        need(&rec, 2)?;
        let props_len = rec.get_i16();
        if props_len < 0 || props_len as usize > rec.remaining() {
            return Err(bad(format!("properties length {props_len}")));
        }
        let props = String::from_utf8(rec.split_to(props_len as usize).to_vec())
            .map_err(|_| bad("properties are not UTF-8".into()))?;
        let body = if sys_flag_value & sys_flag::COMPRESSED != 0 {
            Bytes::from(compression::decompress_by_flag(
                sys_flag_value,
                &raw_body,
                max_body,
            )?)
        } else {
            raw_body
        };
        out.push(StoredMessage {
            topic,
            queue_id,
            queue_offset,
            flag,
            sys_flag: sys_flag_value,
            born_timestamp,
            body,
            properties: properties::decode(&props),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use proptest::prelude::*;

    fn record(body: &[u8], sys: i32, topic: &str, props: &str) -> BytesMut {
        let mut r = BytesMut::new();
        r.put_u32(MAGIC_V1);
        r.put_i32(0);
        r.put_i32(3);
        r.put_i32(9);
        r.put_i64(11);
        r.put_i64(1234);
        r.put_i32(sys);
        r.put_i64(99);
        r.put_slice(&[127, 0, 0, 1, 0, 0, 0, 1]);
        r.put_i64(100);
        r.put_slice(&[127, 0, 0, 1, 0, 0, 0, 2]);
        r.put_i32(0);
        r.put_i64(0);
        r.put_i32(body.len() as i32);
        r.put_slice(body);
        r.put_u8(topic.len() as u8);
        r.put_slice(topic.as_bytes());
        r.put_i16(props.len() as i16);
        r.put_slice(props.as_bytes());
        let mut whole = BytesMut::new();
        whole.put_i32(r.len() as i32 + 4);
        whole.put_slice(&r);
        whole
    }

    #[test]
    fn decodes_plain_and_compressed() {
        let mut data = record(b"plain", 0, "T", "TAGS\u{1}a");
        data.extend_from_slice(&record(&compression::compress(b"zipped", 5), 1, "T", ""));
        let msgs = decode_all(data.freeze(), 1 << 20).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].body[..], b"plain");
        assert_eq!(msgs[0].properties["TAGS"], "a");
        assert_eq!(msgs[0].queue_offset, 11);
        assert_eq!(&msgs[1].body[..], b"zipped");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_all(Bytes::from(bytes), 1 << 16);
        }
    }
}
