//! Bounding a peer's remark before an [`Error`](enum@crate::Error) carries it: escaped for logs,
//! cut at [`MAX_REMARK_BYTES`], shared behind an `Arc`.

use std::fmt::Write as _;
use std::sync::Arc;

/// Longest broker or NameServer remark an [`Error`](enum@crate::Error) keeps, in bytes, before the
/// note of its original length. A peer may send up to 16 MiB; each caller's error (and every log
/// line of a retry) would carry a copy.
pub const MAX_REMARK_BYTES: usize = 512;

/// A peer's remark the way an [`Error`](enum@crate::Error) carries it: control and
/// bidirectional-override characters escaped (errors get logged), cut after
/// [`MAX_REMARK_BYTES`] with the original length noted, and behind an `Arc` so the callers of
/// one batch share one copy.
pub(crate) fn bounded_remark(remark: &str) -> Arc<str> {
    let mut out = String::with_capacity(remark.len().min(MAX_REMARK_BYTES) + 40);
    for c in remark.chars() {
        let before = out.len();
        if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > MAX_REMARK_BYTES {
            out.truncate(before);
            let _ = write!(out, "... (truncated, {} bytes in all)", remark.len());
            break;
        }
    }
    Arc::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remarks_are_escaped_and_bounded() {
        assert_eq!(
            &*bounded_remark("topic 'T' not exist"),
            "topic 'T' not exist"
        );
        assert_eq!(
            &*bounded_remark("a\nb\r\t\u{1b}[0m\u{202e}é"),
            "a\\nb\\r\\t\\u{1b}[0m\\u{202e}é"
        );
        let long = "é".repeat(1 << 20);
        let bounded = bounded_remark(&long);
        assert!(bounded.len() <= MAX_REMARK_BYTES + 48, "{}", bounded.len());
        assert!(bounded.starts_with("éé"));
        assert!(
            bounded.ends_with("... (truncated, 2097152 bytes in all)"),
            "{bounded}"
        );
        let escapes = "\n".repeat(1000);
        assert!(bounded_remark(&escapes).len() <= MAX_REMARK_BYTES + 48);
        let exact = "x".repeat(MAX_REMARK_BYTES);
        assert_eq!(&*bounded_remark(&exact), exact);
    }
}
