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

/// Parses a decimal integer ext value the way Java's `Long.parseLong` does (optional sign, digits).
pub(crate) fn parse_i64(value: &str) -> Option<i64> {
    value.parse::<i64>().ok()
}

/// Parses a boolean ext value like Java's `Boolean.parseBoolean`: `true` in any case, else false.
pub(crate) fn parse_bool(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}
