//! [`ArenaText`]: short text carved out of a per-thread chunk, so a message's encoded properties
//! cost no allocation of their own.
//!
//! ```text
//!  thread's chunk (16 KiB) │props 1│props 2│props 3│ … free … │
//!                             ▲ each an `ArenaText` (a shared `Bytes` slice); the chunk is freed
//!                               when its last slice is dropped, a new one taken when it is full
//! ```

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use bytes::{Bytes, BytesMut};

/// Size of a chunk: room for a few hundred properties strings.
const CHUNK_BYTES: usize = 16 * 1024;

thread_local! {
    static CHUNK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Immutable UTF-8 text sharing a per-thread chunk with other short texts.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct ArenaText(
    /// Always valid UTF-8: only [`ArenaText::copy`] builds it, from a `&str`.
    Bytes,
);

impl ArenaText {
    /// A copy of `text` in this thread's current chunk (a new chunk when it is full; text longer
    /// than a chunk gets a buffer of its own).
    pub(crate) fn copy(text: &str) -> Self {
        CHUNK.with(|chunk| {
            let mut chunk = chunk.borrow_mut();
            if chunk.capacity() < text.len() {
                *chunk = BytesMut::with_capacity(CHUNK_BYTES.max(text.len()));
            }
            chunk.extend_from_slice(text.as_bytes());
            ArenaText(chunk.split().freeze())
        })
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: the bytes were copied from a `&str` in `ArenaText::copy` and `Bytes` is
        // immutable; `copies_stay_intact` below covers ASCII, multi-byte and chunk-crossing text.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }
}

impl Deref for ArenaText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ArenaText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_stay_intact() {
        let texts: Vec<String> = (0..2_000)
            .map(|i| {
                format!(
                    "KEYS\u{1}k{i}\u{2}WAIT\u{1}true\u{2}é☃{}",
                    "x".repeat(i % 50)
                )
            })
            .chain(["".to_owned(), "z".repeat(CHUNK_BYTES * 2)])
            .collect();
        let copies: Vec<ArenaText> = texts.iter().map(|t| ArenaText::copy(t)).collect();
        for (text, copy) in texts.iter().zip(&copies) {
            assert_eq!(copy.as_str(), text);
            assert_eq!(&**copy, text.as_str());
        }
        assert_eq!(format!("{:?}", ArenaText::copy("a\"b")), "\"a\\\"b\"");
    }
}
