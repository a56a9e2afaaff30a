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

/// A reusable zlib compressor: creating deflate state costs far more than compressing a small
/// body, so callers keep one and reuse it (the state is reset between bodies).
pub struct Compressor {
    level: u32,
    state: flate2::Compress,
}

impl Compressor {
    /// A compressor at `level` (0–9), writing RFC 1950 zlib streams.
    pub fn new(level: u32) -> Self {
        let level = level.min(9);
        Compressor {
            level,
            state: flate2::Compress::new(Compression::new(level), true),
        }
    }

    /// The level this compressor writes.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Compresses `body` into a new zlib stream.
    pub fn compress(&mut self, body: &[u8]) -> Vec<u8> {
        self.state.reset();
        let mut out = Vec::with_capacity(body.len() / 2 + 64);
        loop {
            let consumed = self.state.total_in() as usize;
            let status = self
                .state
                .compress_vec(&body[consumed..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflate into a Vec cannot fail");
            if status == flate2::Status::StreamEnd {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// Compresses `body` into an RFC 1950 zlib stream at `level` (0–9) with a fresh compressor.
/// Prefer a reused [`Compressor`] on hot paths.
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

    #[test]
    fn reused_compressor_matches_one_shot() {
        let mut c = Compressor::new(DEFAULT_LEVEL);
        for body in [&b""[..], b"a", &[7u8; 100_000][..], b"hello hello hello"] {
            let packed = c.compress(body);
            assert_eq!(packed, compress(body, DEFAULT_LEVEL));
            assert_eq!(decompress(&packed, body.len()).unwrap(), body);
        }
    }
}
