//! What a request on a connection gets back: its [`Answer`], or the [`ConnFailure`] that says
//! why none came.

use crate::protocol::RemotingCommand;

/// Why a request on a connection got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnFailure {
    /// What happened.
    pub reason: String,
    /// Whether the request's bytes had been handed to the socket.
    pub written: bool,
    /// Whether the peer sent something unparseable (else the transport failed).
    pub protocol: bool,
    /// Whether the request's deadline passed before an answer arrived (the connection is fine).
    pub timed_out: bool,
}

/// Answer of a request: the response, or `None` for a written oneway.
pub(crate) type Answer = Result<Option<RemotingCommand>, ConnFailure>;

/// The failure of a request whose attempt deadline passed.
#[inline]
pub(super) fn timed_out() -> ConnFailure {
    ConnFailure {
        reason: "no answer before the attempt's deadline".into(),
        written: true,
        protocol: false,
        timed_out: true,
    }
}
