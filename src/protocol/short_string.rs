//! [`ShortString`]: a string kept inline when short, so message ids cost no allocation.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest text kept inline: a message id of an IPv4 host (32 hex digits) fits with room to spare.
pub(crate) const INLINE_CAPACITY: usize = 38;

/// A string stored inline up to 38 bytes and on the heap beyond, immutable to its users (the
/// crate rewrites the results it lends in place).
///
/// The ids and names in a [`crate::SendResult`] use it: a unique id or an offset id of an IPv4
/// host is 32 characters, a region name a dozen, so building a result allocates nothing. It
/// derefs to `str` and compares with `&str` and `String`.
///
/// # Example
///
/// ```
/// use rocketmq_tpc::ShortString;
///
/// let id = ShortString::from("7F00000100002A9F0000000000000000");
/// assert_eq!(id, "7F00000100002A9F0000000000000000");
/// assert_eq!(id.len(), 32);
/// let owned: String = id.to_string();
/// assert_eq!(owned, id);
/// ```
#[derive(Clone)]
pub struct ShortString(Repr);

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is valid UTF-8: it was copied from a `&str` (`new`, `assign`), or its maker
    /// vouched for every byte being ASCII (`from_ascii_unchecked`, for unique ids' hex digits).
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Heap(Box<str>),
}

/// Whether every byte is ASCII, by one OR over them all, which the compiler vectorises
/// (`<[u8]>::is_ascii` can become a loop of one byte a turn when inlined).
#[inline]
pub(crate) fn all_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |any, &b| any | b) < 0x80
}

impl ShortString {
    /// A copy of `text`.
    pub fn new(text: &str) -> Self {
        if text.len() <= INLINE_CAPACITY {
            let mut bytes = [0; INLINE_CAPACITY];
            super::short_copy::copy_short(&mut bytes[..text.len()], text.as_bytes());
            ShortString(Repr::Inline {
                len: text.len() as u8,
                bytes,
            })
        } else {
            ShortString(Repr::Heap(text.into()))
        }
    }

    /// Makes this a copy of `text` where it lies: inline text is overwritten in place (no new
    /// value built and moved in, which for a field of a result rewritten per message is most of
    /// the cost).
    #[inline]
    pub(crate) fn assign(&mut self, text: &str) {
        match &mut self.0 {
            Repr::Inline { len, bytes } if text.len() <= INLINE_CAPACITY => {
                super::short_copy::copy_short(&mut bytes[..text.len()], text.as_bytes());
                *len = text.len() as u8;
            }
            _ => *self = ShortString::new(text),
        }
    }

    /// The first `len` bytes of `bytes` (at most [`INLINE_CAPACITY`]), not checked.
    ///
    /// # Safety
    ///
    /// `bytes` must be ASCII, the unused tail included (debug builds check it): a unique id's
    /// digits, written from a table of hex digits, are.
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn from_ascii_unchecked(bytes: &[u8; INLINE_CAPACITY], len: usize) -> Self {
        debug_assert!(all_ascii(bytes) && len <= INLINE_CAPACITY);
        ShortString(Repr::Inline {
            len: len.min(INLINE_CAPACITY) as u8,
            bytes: *bytes,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..*len as usize];
                // SAFETY: an inline value's first `len` bytes were copied from a `&str` in
                // `ShortString::new` or `ShortString::assign` (which sets `len` with them), or
                // are ASCII by `ShortString::from_ascii_unchecked`'s contract, and nothing else
                // changes them; the tests below cover empty, ASCII, multi-byte and
                // boundary-length text, both constructors and assignments over each other.
                #[allow(unsafe_code)]
                unsafe {
                    std::str::from_utf8_unchecked(bytes)
                }
            }
            Repr::Heap(text) => text,
        }
    }

    /// Whether the text is kept inline (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl Default for ShortString {
    fn default() -> Self {
        ShortString::new("")
    }
}

impl Deref for ShortString {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortString {
    fn from(text: &str) -> Self {
        ShortString::new(text)
    }
}

impl From<String> for ShortString {
    fn from(text: String) -> Self {
        if text.len() <= INLINE_CAPACITY {
            ShortString::new(&text)
        } else {
            ShortString(Repr::Heap(text.into_boxed_str()))
        }
    }
}

impl From<ShortString> for String {
    fn from(text: ShortString) -> Self {
        match text.0 {
            Repr::Heap(text) => text.into_string(),
            Repr::Inline { .. } => text.as_str().to_owned(),
        }
    }
}

impl fmt::Display for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for ShortString {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortString {}

impl PartialOrd for ShortString {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortString {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for ShortString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

macro_rules! compare_with {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for ShortString {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }

        impl PartialEq<ShortString> for $other {
            fn eq(&self, other: &ShortString) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

compare_with!(str, &str, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_long_text_on_the_heap() {
        for text in [
            "",
            "DefaultRegion",
            "7F00000100002A9F0000000000000000",
            "é☃ mixed ✓",
            &"x".repeat(INLINE_CAPACITY),
        ] {
            let s = ShortString::new(text);
            assert!(s.is_inline(), "{text}");
            assert_eq!(s, text);
            assert_eq!(s.as_str(), text);
            assert_eq!(String::from(s.clone()), text);
        }
        let long = "y".repeat(INLINE_CAPACITY + 1);
        let s = ShortString::from(long.clone());
        assert!(!s.is_inline());
        assert_eq!(s, long);
        assert_eq!(String::from(s), long);
        // A multi-byte character ending exactly at the capacity stays whole.
        let edge = format!("{}é", "z".repeat(INLINE_CAPACITY - 2));
        assert_eq!(ShortString::new(&edge), edge.as_str());
    }

    #[test]
    fn an_assignment_leaves_exactly_the_new_text() {
        let long = "L".repeat(INLINE_CAPACITY + 5);
        let edge = format!("{}é", "z".repeat(INLINE_CAPACITY - 2));
        let texts = [
            "",
            "7F00000100002A9F0000000000000000",
            "é☃",
            "ab",
            edge.as_str(),
            long.as_str(),
            "after the heap",
        ];
        for from in texts {
            for to in texts {
                let mut s = ShortString::new(from);
                s.assign(to);
                assert_eq!(s.as_str(), to, "{from:?} then {to:?}");
                assert_eq!(s.is_inline(), to.len() <= INLINE_CAPACITY);
            }
        }
    }

    #[test]
    fn unchecked_ascii_keeps_prefixes_that_fit_inline() {
        let mut bytes = [b'x'; INLINE_CAPACITY];
        bytes[..4].copy_from_slice(b"7F00");
        // SAFETY (all three): `bytes` is ASCII.
        #[allow(unsafe_code)]
        let (four, none, all) = unsafe {
            (
                ShortString::from_ascii_unchecked(&bytes, 4),
                ShortString::from_ascii_unchecked(&bytes, 0),
                ShortString::from_ascii_unchecked(&bytes, INLINE_CAPACITY),
            )
        };
        assert_eq!(four, "7F00");
        assert!(four.is_inline());
        assert_eq!(none, "");
        assert_eq!(all.len(), INLINE_CAPACITY);
        assert!(all.starts_with("7F00x") && all.ends_with("xx"));
    }

    #[test]
    fn compares_hashes_and_orders_like_its_text() {
        use std::collections::HashSet;
        let a = ShortString::from("a");
        let b = ShortString::from("b".to_owned());
        assert!(a < b);
        assert_eq!(a, "a");
        assert_eq!("a", a);
        assert_eq!(a, "a".to_owned());
        let set: HashSet<ShortString> = [a.clone(), b].into_iter().collect();
        assert!(set.contains("a"));
        assert_eq!(format!("{a} {a:?}"), "a \"a\"");
        assert_eq!(std::mem::size_of::<ShortString>(), 40);
    }
}
