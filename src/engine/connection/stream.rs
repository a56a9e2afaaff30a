//! The socket under a connection, plaintext or TLS, and the reads, writes and flushes its
//! tasks poll (each fails at once once the connection is closed).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::Connection;

/// The socket: plaintext or TLS over it.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Connection {
    #[inline]
    pub(super) fn poll_read_some(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Poll::Ready(Err(io::Error::other(reason.clone())));
        }
        self.reader_waker.set(Some(cx.waker().clone()));
        match &mut *self.stream.borrow_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }

    #[inline]
    pub(super) fn poll_write_some(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Poll::Ready(Err(io::Error::other(reason.clone())));
        }
        match &mut *self.stream.borrow_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    /// Pushes what TLS buffered to the socket (nothing to do in plaintext).
    #[inline]
    pub(super) fn poll_flush_some(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Poll::Ready(Err(io::Error::other(reason.clone())));
        }
        match &mut *self.stream.borrow_mut() {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
}
