//! Custom-header fields: the trait every request header implements to write itself.

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
}

/// A custom header (Java `CommandCustomHeader`) that can write its fields.
pub trait CustomHeader {
    /// Writes every non-null field.
    fn write_fields(&self, out: &mut dyn ExtFieldWriter);
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

/// Custom-header fields as decoded or to be sent: wire order kept, duplicates allowed, lookups
/// return the last value (like Java's `HashMap` after decoding).
///
/// All keys and values live in one string with spans into it, so decoding a header costs two
/// allocations however many fields it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    text: String,
    spans: Vec<[u32; 3]>,
}

impl ExtFields {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `fields` fields of `bytes` bytes in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        ExtFields {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Appends a field.
    pub fn push(&mut self, key: &str, value: &str) {
        let start = self.text.len() as u32;
        self.text.push_str(key);
        let middle = self.text.len() as u32;
        self.text.push_str(value);
        self.spans.push([start, middle, self.text.len() as u32]);
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The fields in wire order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|[a, b, c]| {
            (
                &self.text[*a as usize..*b as usize],
                &self.text[*b as usize..*c as usize],
            )
        })
    }

    /// Number of fields (duplicates counted).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields sorted by key then value (comparisons in tests ignore wire order).
    pub fn sorted(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        all.sort();
        all
    }
}

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
pub(crate) fn parse_bool(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}
