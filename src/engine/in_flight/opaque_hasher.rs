//! [`OpaqueHasher`]: the hasher of the in-flight table, keyed by opaque.

use std::hash::Hasher;

/// Hashes an opaque (a counter) by one multiplication: spreads sequential keys over the table's
/// high bits, which is all hashbrown needs, at a fraction of SipHash's cost.
#[derive(Default)]
pub(super) struct OpaqueHasher(u64);

impl Hasher for OpaqueHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_hasher_spreads_sequential_keys_over_high_bits() {
        use std::hash::Hash;
        let top7 = |n: i32| {
            let mut h = OpaqueHasher::default();
            n.hash(&mut h);
            h.finish() >> 57
        };
        let distinct: std::collections::BTreeSet<u64> = (0..128).map(top7).collect();
        assert!(distinct.len() > 64, "{} distinct tags", distinct.len());
    }
}
