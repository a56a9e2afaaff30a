//! [`ErrorKind`]: the kind of an [`Error`](enum@crate::Error) without its payload.

/// The kind of an [`Error`](enum@crate::Error), without its payload: one per variant.
///
/// ```
/// use rocketmq_tpc::{Error, ErrorKind};
///
/// let e = Error::InvalidConfig { reason: "namesrv is empty".into() };
/// assert_eq!(e.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(e.kind().as_str(), "invalid_config");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InvalidMessage`](crate::Error::InvalidMessage).
    InvalidMessage,
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget).
    InvalidTarget,
    /// [`Error::Forbidden`](crate::Error::Forbidden).
    Forbidden,
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig).
    InvalidConfig,
    /// [`Error::QueueFull`](crate::Error::QueueFull).
    QueueFull,
    /// [`Error::ShutDown`](crate::Error::ShutDown).
    ShutDown,
    /// [`Error::NameServerUnavailable`](crate::Error::NameServerUnavailable).
    NameServerUnavailable,
    /// [`Error::NoRoute`](crate::Error::NoRoute).
    NoRoute,
    /// [`Error::Connection`](crate::Error::Connection).
    Connection,
    /// [`Error::Broker`](crate::Error::Broker).
    Broker,
    /// [`Error::Protocol`](crate::Error::Protocol).
    Protocol,
    /// [`Error::Timeout`](crate::Error::Timeout).
    Timeout,
    /// [`Error::FrameTooLarge`](crate::Error::FrameTooLarge).
    FrameTooLarge,
    /// [`Error::ReplyTimeout`](crate::Error::ReplyTimeout).
    ReplyTimeout,
    /// [`Error::NotSupported`](crate::Error::NotSupported).
    NotSupported,
    /// [`Error::AccessDenied`](crate::Error::AccessDenied).
    AccessDenied,
    /// [`Error::CoreStopped`](crate::Error::CoreStopped).
    CoreStopped,
    /// [`Error::Startup`](crate::Error::Startup).
    Startup,
}

impl ErrorKind {
    /// A short stable snake_case name (metrics labels, loadgen's error counts).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidMessage => "invalid_message",
            ErrorKind::InvalidTarget => "invalid_target",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::ShutDown => "shut_down",
            ErrorKind::NameServerUnavailable => "nameserver_unavailable",
            ErrorKind::NoRoute => "no_route",
            ErrorKind::Connection => "connection",
            ErrorKind::Broker => "broker",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Timeout => "timeout",
            ErrorKind::FrameTooLarge => "frame_too_large",
            ErrorKind::ReplyTimeout => "reply_timeout",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::CoreStopped => "core_stopped",
            ErrorKind::Startup => "startup",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
