//! Errors of the sans-IO decoders.

use thiserror::Error;

/// Why bytes from a peer could not be turned into a value.
///
/// `Incomplete` is not a failure: it means "wait for more bytes". Every other
/// variant means the peer sent something no RocketMQ server sends; the
/// connection that carried it cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// More bytes are needed before anything can be decoded.
    #[error("incomplete input: need at least {needed} bytes")]
    Incomplete {
        /// The minimum total number of bytes needed to make progress.
        needed: usize,
    },
    /// The bytes can never form a valid value.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which wire structure was being decoded.
        what: &'static str,
        /// What exactly was wrong.
        reason: String,
    },
}

impl DecodeError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        DecodeError::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
