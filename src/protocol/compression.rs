//! zlib body compression (Java `ZlibCompressor`: `Deflater(level)`, RFC 1950 stream) and sysFlag bits.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::decode_error::DecodeError;

/// sysFlag bits (Java `MessageSysFlag`).
pub mod sys_flag {
    /// The body is compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// Compression type mask (since 4.9.4).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// Compression type zlib (since 4.9.4); older servers treat "compressed, type 0" as zlib.
    pub const COMPRESSION_ZLIB: i32 = 0x300;
    /// Transaction type prepared.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
}

/// Java's default `rocketmq.message.compressLevel`.
pub const DEFAULT_LEVEL: u32 = 5;

/// Compresses `body` into an RFC 1950 zlib stream at `level` (0–9).
pub fn compress(body: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(body.len() / 2 + 64),
        Compression::new(level.min(9)),
    );
    encoder
        .write_all(body)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("writing into a Vec cannot fail")
}

/// Decompresses a zlib stream, refusing output larger than `max_output` (a bomb guard).
pub fn decompress(data: &[u8], max_output: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut decoder = ZlibDecoder::new(data).take(max_output as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::malformed("zlib body", e.to_string()))?;
    if out.len() > max_output {
        return Err(DecodeError::malformed(
            "zlib body",
            format!("inflates beyond {max_output} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header() {
        let body = vec![b'x'; 10_000];
        let packed = compress(&body, DEFAULT_LEVEL);
        // RFC 1950: CMF 0x78 (deflate, 32K window), FCHECK makes the 16-bit header divisible by 31.
        assert_eq!(packed[0], 0x78);
        assert_eq!(u16::from_be_bytes([packed[0], packed[1]]) % 31, 0);
        assert!(packed.len() < 200);
        assert_eq!(decompress(&packed, 10_000).unwrap(), body);
        assert!(decompress(&packed, 9_999).is_err());
        assert!(decompress(b"not zlib", 100).is_err());
    }
}
