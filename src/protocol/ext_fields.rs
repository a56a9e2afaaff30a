//! Custom-header fields: the trait every request header implements to write itself, and
//! [`ExtFields`], the fields of a decoded (or hand-built) command.

use bytes::BytesMut;
use smallvec::SmallVec;

/// Receives a header's fields one by one, in the order the header declares them.
///
/// Both header encodings implement it, so a header type is written once and sent either way,
/// straight into the output buffer: no intermediate map, no per-field allocation.
pub trait ExtFieldWriter {
    /// Writes a string field.
    fn put_str(&mut self, key: &str, value: &str);

    /// Writes an integer field as decimal text (Java `Long.toString`).
    fn put_i64(&mut self, key: &str, value: i64) {
        let mut digits = itoa::Buffer::new();
        self.put_str(key, digits.format(value));
    }

    /// Writes a boolean field as `true` / `false` (Java `Boolean.toString`).
    fn put_bool(&mut self, key: &str, value: bool) {
        self.put_str(key, if value { "true" } else { "false" });
    }

    /// Writes fields encoded earlier by [`EncodedFields::new`], as one copy.
    fn put_encoded(&mut self, fields: &EncodedFields);
}

/// Fields encoded once in both header encodings, to be copied into many frames (the constant
/// part of a send header: group, topic, default topic, queue count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFields {
    pub(crate) binary: bytes::Bytes,
    pub(crate) json: bytes::Bytes,
}

impl EncodedFields {
    /// Encodes `fields` for both encodings.
    pub fn new(fields: &dyn CustomHeader) -> Self {
        let mut binary = BytesMut::new();
        super::header_binary::encode_fields(&mut binary, fields);
        let mut json = BytesMut::new();
        super::header_json::encode_fields(&mut json, fields);
        EncodedFields {
            binary: binary.freeze(),
            json: json.freeze(),
        }
    }
}

/// A custom header (Java `CommandCustomHeader`) that can write its fields.
pub trait CustomHeader {
    /// Writes every non-null field.
    fn write_fields(&self, out: &mut dyn ExtFieldWriter);

    /// Appends the fields in the binary encoding straight to `out` when the header has a faster
    /// way than field by field (the same bytes [`CustomHeader::write_fields`] would give);
    /// `false`, the default, means it has none and `out` is untouched.
    fn write_binary_fields(&self, _out: &mut BytesMut) -> bool {
        false
    }
}

/// A header with no fields.
pub struct NoHeader;

impl CustomHeader for NoHeader {
    fn write_fields(&self, _out: &mut dyn ExtFieldWriter) {}
}

impl CustomHeader for Vec<(String, String)> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        for (key, value) in self {
            out.put_str(key, value);
        }
    }
}

impl<const N: usize> CustomHeader for [(&str, &str); N] {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        for (key, value) in self {
            out.put_str(key, value);
        }
    }
}

/// Where one field's key and value lie in [`ExtFields`]' text: `[key start, key end, value
/// start, value end]`.
pub(crate) type Span = [u32; 4];

/// Fields a header usually has at most; more spill to the heap.
pub(crate) const INLINE_FIELDS: usize = 8;

/// The spans of a decoded header, kept inline up to [`INLINE_FIELDS`].
pub(crate) type Spans = SmallVec<[Span; INLINE_FIELDS]>;

/// Custom-header fields as decoded or to be sent: wire order kept, duplicates allowed, lookups
/// return the last value (like Java's `HashMap` after decoding).
///
/// A decoded header's fields are spans over the frame's own header bytes (shared with the read
/// buffer, not copied), and up to eight fields are tracked inline: decoding a typical response
/// header allocates nothing. Fields pushed by hand are appended to the same text.
#[derive(Clone, Default)]
pub struct ExtFields {
    /// Every span below covers valid UTF-8 within this text (checked when decoding, or copied
    /// from a `&str` by [`ExtFields::push`]); the text is only ever appended to.
    text: BytesMut,
    spans: SmallVec<[Span; INLINE_FIELDS]>,
    /// A part of the text known to be ASCII: spans inside it need no UTF-8 check.
    ascii: std::ops::Range<usize>,
}

impl ExtFields {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `fields` fields of `bytes` bytes in all.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        ExtFields {
            text: BytesMut::with_capacity(bytes),
            spans: SmallVec::with_capacity(fields),
            ascii: 0..0,
        }
    }

    /// Fields over `text` (a decoded header), none yet: add them with [`ExtFields::push_span`].
    ///
    /// `fields_from` is where the fields start in the text: when everything from there on is
    /// ASCII (one fast check), the spans added later need no UTF-8 check each.
    #[inline]
    pub(crate) fn over(text: BytesMut, fields_from: usize) -> Self {
        let ascii = match text.get(fields_from..) {
            Some(rest) if rest.is_ascii() => fields_from..text.len(),
            _ => 0..0,
        };
        ExtFields {
            text,
            spans: SmallVec::new(),
            ascii,
        }
    }

    /// The fields of a decoded header: `spans` over `text`, in wire order. When everything
    /// from `fields_from` on is ASCII (one fast check), no span needs a UTF-8 check of its own.
    ///
    /// # Errors
    ///
    /// Why a span cannot be a field: outside the text, or not UTF-8.
    #[inline]
    pub(crate) fn with_spans(
        text: BytesMut,
        fields_from: usize,
        spans: Spans,
    ) -> Result<Self, &'static str> {
        let mut fields = ExtFields::over(text, fields_from);
        for &[a, b, c, d] in &spans {
            fields.check_span(a as usize..b as usize, c as usize..d as usize)?;
        }
        fields.spans = spans;
        Ok(fields)
    }

    /// Whether `key` and `value` lie in the text and are UTF-8.
    #[inline]
    fn check_span(
        &self,
        key: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
    ) -> Result<(), &'static str> {
        let text = &self.text[..];
        let (Some(k), Some(v)) = (text.get(key.clone()), text.get(value.clone())) else {
            return Err("field outside the header");
        };
        let inside_ascii =
            |r: &std::ops::Range<usize>| self.ascii.start <= r.start && r.end <= self.ascii.end;
        if !(inside_ascii(&key) && inside_ascii(&value)) {
            if std::str::from_utf8(k).is_err() {
                return Err("key is not UTF-8");
            }
            if std::str::from_utf8(v).is_err() {
                return Err("value is not UTF-8");
            }
        }
        Ok(())
    }

    /// Adds a field whose key and value already lie in the text.
    ///
    /// # Errors
    ///
    /// Why the ranges cannot be a field: outside the text, or not UTF-8.
    pub(crate) fn push_span(
        &mut self,
        key: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
    ) -> Result<(), &'static str> {
        self.check_span(key.clone(), value.clone())?;
        let limit = u32::MAX as usize;
        if key.end > limit || value.end > limit {
            return Err("header larger than 4 GiB");
        }
        self.spans.push([
            key.start as u32,
            key.end as u32,
            value.start as u32,
            value.end as u32,
        ]);
        Ok(())
    }

    /// Appends a field.
    pub fn push(&mut self, key: &str, value: &str) {
        let key_start = self.text.len() as u32;
        self.text.extend_from_slice(key.as_bytes());
        let value_start = self.text.len() as u32;
        self.text.extend_from_slice(value.as_bytes());
        self.spans
            .push([key_start, value_start, value_start, self.text.len() as u32]);
    }

    /// Appends `text` (for decoders that must unescape a value) and returns where it lies.
    pub(crate) fn append_text(&mut self, text: &str) -> std::ops::Range<usize> {
        let start = self.text.len();
        self.text.extend_from_slice(text.as_bytes());
        start..self.text.len()
    }

    fn str_at(&self, start: u32, end: u32) -> &str {
        let bytes = &self.text[start as usize..end as usize];
        // SAFETY: every span was checked to be UTF-8 (or to lie in a part of the text checked to
        // be ASCII) when it was added (`push_span`, `with_spans`), or copied
        // from a `&str` (`push`, `append_text`), and the text is never changed, only appended to.
        // `utf8_spans_stay_valid` in the tests exercises both kinds of span.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(bytes)
        }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The fields in wire order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + '_ {
        self.spans
            .iter()
            .map(|[a, b, c, d]| (self.str_at(*a, *b), self.str_at(*c, *d)))
    }

    /// Number of fields (duplicates counted).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields sorted by key then value (comparisons in tests ignore wire order).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn sorted(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        all.sort();
        all
    }
}

/// Equal when the same fields appear in the same order, wherever their bytes lie.
impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = ExtFields::new();
        for (k, v) in iter {
            fields.push(k.as_ref(), v.as_ref());
        }
        fields
    }
}

impl CustomHeader for ExtFields {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        for (key, value) in self.iter() {
            out.put_str(key, value);
        }
    }
}

/// Parses a decimal integer ext value the way Java's `Long.parseLong` does (optional sign, digits).
pub(crate) fn parse_i64(value: &str) -> Option<i64> {
    value.parse::<i64>().ok()
}

/// Parses a boolean ext value like Java's `Boolean.parseBoolean`: `true` in any case, else false.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub(crate) fn parse_bool(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_spans_stay_valid() {
        let mut fields = ExtFields::over(BytesMut::from(&b"kv\xffk\xc3\xa9"[..]), 0);
        fields.push_span(0..1, 1..2).unwrap();
        assert_eq!(fields.push_span(0..1, 2..3), Err("value is not UTF-8"));
        assert_eq!(fields.push_span(3..4, 4..5), Err("value is not UTF-8"));
        fields.push_span(3..4, 4..6).unwrap();
        assert_eq!(
            fields.push_span(0..1, 5..9),
            Err("field outside the header")
        );
        fields.push("key", "wert\u{e9}");
        let range = fields.append_text("z\u{2603}");
        fields
            .push_span(range.start..range.start + 1, range.start + 1..range.end)
            .unwrap();
        let all: Vec<_> = fields.iter().collect();
        assert_eq!(
            all,
            [
                ("k", "v"),
                ("k", "\u{e9}"),
                ("key", "wert\u{e9}"),
                ("z", "\u{2603}")
            ]
        );
        assert_eq!(fields.get("k"), Some("\u{e9}"));
        let built: ExtFields = all.iter().copied().collect();
        assert_eq!(built, fields);
        assert_ne!(built, ExtFields::new());
        // An ASCII tail skips the per-field checks; a span reaching outside it is still checked.
        let mut tail = ExtFields::over(BytesMut::from(&b"\xc3kv"[..]), 1);
        tail.push_span(1..2, 2..3).unwrap();
        assert_eq!(tail.push_span(0..1, 2..3), Err("key is not UTF-8"));
        assert_eq!(tail.iter().collect::<Vec<_>>(), [("k", "v")]);
        let mixed = ExtFields::over(BytesMut::from(&b"k\xc3\xa9"[..]), 0);
        assert_eq!(mixed.ascii, 0..0);
    }
}
