//! Copies of short byte strings without a call: header fields and ids are mostly a few to a few
//! dozen bytes, where a `memcpy` call (and its size dispatch) costs more than the copy.

/// Copies `src` into `dst` (of the same length) with at most two fixed-size, overlapping copies
/// when it is at most 64 bytes, which the compiler turns into a few moves; longer ones call
/// `memcpy` (a call per tiny field was most of a send header's cost).
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    debug_assert_eq!(dst.len(), n);
    if n > 64 {
        dst.copy_from_slice(src);
    } else if n >= 32 {
        dst[..32].copy_from_slice(&src[..32]);
        dst[n - 32..].copy_from_slice(&src[n - 32..]);
    } else if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_exactly() {
        let src: Vec<u8> = (0..150u8).collect();
        for n in 0..=150 {
            let mut dst = vec![0xEE; n + 2];
            copy_short(&mut dst[1..n + 1], &src[..n]);
            assert_eq!(&dst[1..n + 1], &src[..n], "length {n}");
            assert_eq!(
                (dst[0], dst[n + 1]),
                (0xEE, 0xEE),
                "length {n} wrote outside"
            );
        }
    }
}
