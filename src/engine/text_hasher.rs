//! A fast hash for the per-core maps keyed by names (topics from the application, broker
//! addresses from the application's NameServers): looked up once or more per send, where SipHash
//! cost ~4 % of a core.
//!
//! Word-at-a-time and multiplicative (the scheme of rustc's FxHasher): a few multiplies for a
//! short name (byte-at-a-time FNV still cost ~4 %). The keys come from the application and the
//! NameServers it trusts, not from an arbitrary peer, so the hash needs no flooding resistance.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from text to `V` hashed with [`TextHasher`].
pub(crate) type TextMap<V> = HashMap<String, V, BuildHasherDefault<TextHasher>>;

/// The hasher (see the module's notes).
#[derive(Default)]
pub(crate) struct TextHasher(u64);

impl TextHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for TextHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hash;

    use super::*;

    #[test]
    fn names_hash_apart_and_maps_find_them() {
        let hash = |text: &str| {
            let mut h = TextHasher::default();
            text.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash("BenchTopic"), hash("BenchTopic"));
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "TopicA",
            "TopicB",
            "TopicA1",
            "exactly8",
            "exactly8b",
            "127.0.0.1:10911",
            "127.0.0.1:10912",
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a:?} and {b:?}");
            }
        }
        let mut map: TextMap<u8> = TextMap::default();
        map.insert("TopicA".into(), 1);
        map.insert("TopicB".into(), 2);
        assert_eq!((map.get("TopicA"), map.get("TopicB")), (Some(&1), Some(&2)));
    }
}
