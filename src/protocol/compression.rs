//! Body compression (Java `ZlibCompressor`: `Deflater(level)`, RFC 1950 stream; 4.9.4+
//! `Lz4Compressor`: LZ4 frame format; `ZstdCompressor`: zstd frame format) and sysFlag bits.
//!
//! ```text
//!  sysFlag bit 0 = compressed; bits 8-10 = type: 0x100 LZ4, 0x200 ZSTD, 0x300 ZLIB (0 reads as
//!  zlib: servers and consumers older than 4.9.4 know zlib only)
//! ```

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
    /// Compression type LZ4 (since 4.9.4).
    pub const COMPRESSION_LZ4: i32 = 0x100;
    /// Compression type ZSTD (since 4.9.4).
    pub const COMPRESSION_ZSTD: i32 = 0x200;
    /// Transaction type prepared.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
}

/// Java's default `rocketmq.message.compressLevel`.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
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

/// A body compression algorithm (Java `CompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressionType {
    /// zlib (RFC 1950), what every server and consumer reads (default).
    #[default]
    Zlib,
    /// LZ4 frame format; consumers need 4.9.4+.
    Lz4,
    /// Zstandard frame format; consumers need 4.9.4+.
    Zstd,
}

impl CompressionType {
    /// The sysFlag bits of a body compressed this way (COMPRESSED + type).
    pub fn sys_flag(self) -> i32 {
        sys_flag::COMPRESSED
            | match self {
                CompressionType::Zlib => sys_flag::COMPRESSION_ZLIB,
                CompressionType::Lz4 => sys_flag::COMPRESSION_LZ4,
                CompressionType::Zstd => sys_flag::COMPRESSION_ZSTD,
            }
    }

    /// The type a compressed body's sysFlag names (type 0 is zlib).
    ///
    /// # Errors
    ///
    /// A decode error for a type this client does not know.
    pub fn from_sys_flag(flag: i32) -> Result<Self, DecodeError> {
        match flag & sys_flag::COMPRESSION_TYPE_MASK {
            0 | sys_flag::COMPRESSION_ZLIB => Ok(CompressionType::Zlib),
            sys_flag::COMPRESSION_LZ4 => Ok(CompressionType::Lz4),
            sys_flag::COMPRESSION_ZSTD => Ok(CompressionType::Zstd),
            other => Err(DecodeError::malformed(
                "sysFlag",
                format!("unknown compression type {other:#x}"),
            )),
        }
    }

    /// The name in configuration (`zlib`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    /// The type named `name` (`zlib`, `lz4`, `zstd`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "zlib" => Some(CompressionType::Zlib),
            "lz4" => Some(CompressionType::Lz4),
            "zstd" => Some(CompressionType::Zstd),
            _ => None,
        }
    }
}

/// Compresses `body` as `kind` at `level` (zlib 0–9, zstd 1–22 clamped; LZ4 has no level).
pub fn compress_as(kind: CompressionType, body: &[u8], level: u32) -> Vec<u8> {
    match kind {
        CompressionType::Zlib => compress(body, level),
        CompressionType::Lz4 => {
            let mut encoder =
                lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2 + 64));
            encoder
                .write_all(body)
                .expect("writing into a Vec cannot fail");
            encoder.finish().expect("writing into a Vec cannot fail")
        }
        CompressionType::Zstd => {
            let level = level.clamp(1, 22) as i32;
            zstd::bulk::compress(body, level).expect("zstd into a Vec cannot fail")
        }
    }
}

/// Decompresses a body whose sysFlag says it is compressed, by the type the sysFlag names,
/// refusing output larger than `max_output`.
///
/// # Errors
///
/// [`DecodeError`] for an unknown type, a corrupt body or one that inflates beyond the limit.
pub fn decompress_by_flag(
    flag: i32,
    data: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, DecodeError> {
    match CompressionType::from_sys_flag(flag)? {
        CompressionType::Zlib => decompress(data, max_output),
        CompressionType::Lz4 => bounded_read(
            lz4_flex::frame::FrameDecoder::new(data),
            "lz4 body",
            max_output,
        ),
        CompressionType::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| DecodeError::malformed("zstd body", e.to_string()))?;
            bounded_read(decoder, "zstd body", max_output)
        }
    }
}

fn bounded_read(
    reader: impl Read,
    what: &'static str,
    max_output: usize,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(max_output as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::malformed(what, e.to_string()))?;
    if out.len() > max_output {
        return Err(DecodeError::malformed(
            what,
            format!("inflates beyond {max_output} bytes"),
        ));
    }
    Ok(out)
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
    fn every_type_round_trips_by_its_sys_flag() {
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{{\"id\":{i},\"ok\":true}}").into_bytes())
            .collect();
        for kind in [
            CompressionType::Zlib,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let packed = compress_as(kind, &text, DEFAULT_LEVEL);
            assert!(
                packed.len() < text.len() / 3,
                "{kind:?}: {} of {}",
                packed.len(),
                text.len()
            );
            let flag = kind.sys_flag();
            assert_eq!(flag & sys_flag::COMPRESSED, 1);
            assert_eq!(CompressionType::from_sys_flag(flag).unwrap(), kind);
            assert_eq!(decompress_by_flag(flag, &packed, text.len()).unwrap(), text);
            assert!(
                decompress_by_flag(flag, &packed, text.len() - 1).is_err(),
                "{kind:?} bomb guard"
            );
            assert!(decompress_by_flag(flag, b"garbage, not compressed", 1000).is_err());
            assert_eq!(CompressionType::from_name(kind.name()), Some(kind));
        }
        // LZ4 frame magic 04 22 4D 18; zstd frame magic 28 B5 2F FD (what the Java codecs write).
        assert_eq!(
            &compress_as(CompressionType::Lz4, b"x", 5)[..4],
            &[0x04, 0x22, 0x4D, 0x18]
        );
        assert_eq!(
            &compress_as(CompressionType::Zstd, b"x", 5)[..4],
            &[0x28, 0xB5, 0x2F, 0xFD]
        );
        assert_eq!(
            CompressionType::from_sys_flag(1).unwrap(),
            CompressionType::Zlib,
            "type 0"
        );
        assert!(CompressionType::from_sys_flag(0x401).is_err());
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
