//! One TCP connection to a NameServer or broker, owned by one core.
//!
//! ```text
//!  request() ─ encode frame into write_buf ─ register opaque ─ wake writer
//!  writer task: swap write_buf with its own buffer ─ send(2) everything queued in one go
//!  reader task: recv into one buffer ─ decode whole frames in place ─ complete by opaque, pausing
//!               every 128 answers so the woken senders and the writer run in between
//!  expiry task: at the earliest deadline of the requests in flight, fail those that are due
//!  any I/O or decode error ─ close(): every waiting request fails (written or not), tasks exit
//! ```
//!
//! Frames queued while a write is in progress go out together in the next write, so under load
//! one `send(2)` carries many requests.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::in_flight::{DoneRecords, InFlight, Responded};
use super::records::RecordBook;
use crate::error::{Error, Outcome};
use crate::protocol::ext_fields::CustomHeader;
use crate::protocol::frame::{self, EncodeError};
use crate::protocol::header_json::CommandHead;
use crate::protocol::{HeaderEncoding, LanguageCode, RemotingCommand, ResponseCode};

mod response;
mod tasks;

pub(crate) use response::{failure_to_error, ResponseFuture};

const READ_CHUNK: usize = 64 * 1024;

/// Responses the reader hands out before letting the woken senders and the writer run.
///
/// Without a pause the core answers a whole read's worth of responses (hundreds) before any new
/// request is written, and producer and broker take turns instead of working at the same time;
/// handing out 128 at a time keeps both busy (`loadgen --sink --mode async`, 256 in flight, on
/// this 2-core machine: ~155k → ~290k msg/s; 16, 32, 64 and 256 measured lower; see tuning.md).
const DISPATCH_BURST: usize = 128;

/// Per-connection settings copied from the producer config.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub encoding: HeaderEncoding,
    pub language: LanguageCode,
    pub version: i32,
    pub max_frame_bytes: usize,
    pub max_in_flight: usize,
    /// What to do with requests the peer sends (check-backs, pushed replies).
    pub broker_requests: Option<Arc<super::broker_requests::BrokerRequests>>,
    /// The producer's hooks (request hooks run on every request written here).
    pub hooks: Arc<crate::hooks::Hooks>,
    /// Host names to addresses, on a helper thread.
    pub resolver: super::resolve::Resolver,
    /// Most bytes queued for writing (queued + the write in progress); a request that would
    /// go past it fails at once, not stored.
    pub max_queued_bytes: usize,
    /// TLS to every peer, when configured.
    pub tls: Option<crate::tls::TlsSetup>,
    /// A connection whose writes make no progress for this long is closed (its peer stopped
    /// reading), which fails its requests and frees what was queued.
    pub stall_timeout: std::time::Duration,
}

/// Counters a connection keeps for the core's metrics.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    pub writes: Cell<u64>,
    pub frames_written: Cell<u64>,
    pub bytes_written: Cell<u64>,
    pub reads: Cell<u64>,
}

impl ConnCounters {
    pub(crate) fn absorb(&self, other: &ConnCounters) {
        self.writes.set(self.writes.get() + other.writes.get());
        self.frames_written
            .set(self.frames_written.get() + other.frames_written.get());
        self.bytes_written
            .set(self.bytes_written.get() + other.bytes_written.get());
        self.reads.set(self.reads.get() + other.reads.get());
    }
}

/// The socket: plaintext or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

pub(crate) struct Connection {
    peer: String,
    settings: ConnSettings,
    stream: RefCell<Stream>,
    write_buf: RefCell<BytesMut>,
    /// Bytes of the write in progress not yet accepted by the socket.
    writing: Cell<usize>,
    /// When the writer last made progress, while it has bytes to write (`None`: idle).
    write_progress_at: Cell<Option<Instant>>,
    writer_waker: Cell<Option<Waker>>,
    reader_waker: Cell<Option<Waker>>,
    /// The deadline the expiry task sleeps until (`None`: parked, nothing waiting).
    expiry_armed: Cell<Option<Instant>>,
    /// Set when a request's deadline is earlier than `expiry_armed`: the task re-arms.
    expiry_kicked: Cell<bool>,
    expiry_waker: Cell<Option<Waker>>,
    in_flight: RefCell<InFlight>,
    next_opaque: Cell<i32>,
    queued_seq: Cell<u64>,
    attempted_seq: Cell<u64>,
    closed: RefCell<Option<String>>,
    pub(crate) counters: ConnCounters,
    /// The core's send records, which record slots of `in_flight` name.
    records: Option<Rc<RecordBook>>,
    /// Reused list of record slots a table operation finished.
    done_records: Cell<DoneRecords>,
}

impl Connection {
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Bytes waiting to be written: queued frames plus the unwritten part of the write in
    /// progress.
    #[inline]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.write_buf.borrow().len() + self.writing.get()
    }

    /// When the writer has been stuck since `now - stall_timeout` or longer.
    #[inline]
    fn write_stalled(&self, now: Instant) -> Option<std::time::Duration> {
        let since = self.write_progress_at.get()?;
        let stuck = now.saturating_duration_since(since);
        (stuck >= self.settings.stall_timeout).then_some(stuck)
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Queues a request and returns the future of its answer, which fails with a `timed_out`
    /// [`ConnFailure`] once `deadline` passes without one.
    ///
    /// Fails at once (nothing written) when the connection is closed, over its in-flight cap, or
    /// the frame is too large.
    pub(crate) fn request(
        self: &Rc<Self>,
        code: i32,
        header: &dyn CustomHeader,
        body: &[u8],
        oneway: bool,
        deadline: Instant,
    ) -> Result<ResponseFuture, Error> {
        let (opaque, seq) = self.enqueue(code, header, body, oneway)?;
        self.in_flight
            .borrow_mut()
            .insert(opaque, seq, oneway, deadline);
        self.after_enqueue(deadline);
        Ok(ResponseFuture {
            conn: Rc::clone(self),
            opaque,
            done: false,
        })
    }

    /// Like [`Connection::request`], for send record `record` of the core's [`RecordBook`]: its
    /// answer (or failure) goes to [`RecordBook::complete`].
    pub(crate) fn request_record(
        &self,
        code: i32,
        header: &dyn CustomHeader,
        body: &[u8],
        oneway: bool,
        deadline: Instant,
        record: u32,
    ) -> Result<(), Error> {
        let (opaque, seq) = self.enqueue(code, header, body, oneway)?;
        self.in_flight
            .borrow_mut()
            .insert_record(opaque, seq, oneway, deadline, record);
        self.after_enqueue(deadline);
        Ok(())
    }

    /// Wakes the writer, and the expiry task when `deadline` is earlier than the one it waits for.
    fn after_enqueue(&self, deadline: Instant) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        if self.expiry_armed.get().is_none_or(|armed| deadline < armed) {
            self.expiry_armed.set(Some(deadline));
            self.expiry_kicked.set(true);
            if let Some(w) = self.expiry_waker.take() {
                w.wake();
            }
        }
    }

    /// Checks the connection can take a request and encodes its frame into the write buffer;
    /// returns its opaque and sequence number.
    fn enqueue(
        &self,
        code: i32,
        header: &dyn CustomHeader,
        body: &[u8],
        oneway: bool,
    ) -> Result<(i32, u64), Error> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Err(Error::Connection {
                returned: crate::error::Returned::NOTHING,
                peer: self.peer.clone(),
                reason: reason.clone(),
                outcome: Outcome::NotStored,
            });
        }
        let queued = self.queued_bytes();
        if queued > 0 && queued + body.len() > self.settings.max_queued_bytes {
            return Err(Error::Connection {
                returned: crate::error::Returned::NOTHING,
                peer: self.peer.clone(),
                reason: format!(
                    "{queued} bytes already wait to be written (the peer is not reading)"
                ),
                outcome: Outcome::NotStored,
            });
        }
        if self.in_flight.borrow().len() >= self.settings.max_in_flight {
            return Err(Error::Broker {
                returned: crate::error::Returned::NOTHING,
                broker: self.peer.clone(),
                code: ResponseCode::SystemBusy,
                remark: format!(
                    "client-side: {} requests already in flight on this connection",
                    self.settings.max_in_flight
                )
                .into(),
                outcome: Outcome::NotStored,
            });
        }
        let opaque = self.next_free_opaque();
        let head = CommandHead {
            code,
            language: self.settings.language,
            version: self.settings.version,
            opaque,
            flag: if oneway {
                crate::protocol::command::FLAG_ONEWAY
            } else {
                0
            },
            remark: None,
        };
        let hooked = self.settings.hooks.hooked_header(code, header, body);
        let header: &dyn CustomHeader = match &hooked {
            Some(fields) => fields,
            None => header,
        };
        frame::encode(
            &mut self.write_buf.borrow_mut(),
            self.settings.encoding,
            &head,
            header,
            body,
            self.settings.max_frame_bytes,
        )
        .map_err(
            |EncodeError::FrameTooLarge { size, limit }| Error::FrameTooLarge {
                returned: crate::error::Returned::NOTHING,
                size,
                limit,
            },
        )?;
        let seq = self.queued_seq.get() + 1;
        self.queued_seq.set(seq);
        Ok((opaque, seq))
    }

    /// Runs `finish` on the in-flight table with the reused done list, then completes the record
    /// slots it finished, after the table's borrow ends (a completion may queue new requests).
    fn finish_records<R>(&self, finish: impl FnOnce(&mut InFlight, &mut DoneRecords) -> R) -> R {
        let mut done = self.done_records.take();
        let result = finish(&mut self.in_flight.borrow_mut(), &mut done);
        if let Some(book) = &self.records {
            for (record, answer) in done.drain(..) {
                book.complete(record, answer, &self.peer);
            }
        }
        done.clear();
        self.done_records.set(done);
        result
    }

    fn next_free_opaque(&self) -> i32 {
        let in_flight = self.in_flight.borrow();
        loop {
            let opaque = self.next_opaque.get();
            self.next_opaque.set(opaque.wrapping_add(1));
            if !in_flight.contains(opaque) {
                return opaque;
            }
        }
    }

    /// Closes the connection: every waiting request fails, the I/O tasks exit.
    pub(crate) fn close(&self, reason: &str, protocol: bool) {
        if self.closed.borrow().is_some() {
            return;
        }
        *self.closed.borrow_mut() = Some(reason.to_owned());
        let waiting = self.in_flight.borrow().len();
        if waiting > 0 {
            tracing::error!(peer = %self.peer, waiting, reason, "connection lost with requests in flight");
        } else {
            tracing::info!(peer = %self.peer, reason, "connection closed");
        }
        let attempted = self.attempted_seq.get();
        self.finish_records(|table, done| table.fail_all(reason, protocol, attempted, done));
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
        if let Some(w) = self.expiry_waker.take() {
            w.wake();
        }
    }

    #[inline]
    fn poll_read_some(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
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
    fn poll_write_some(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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
    fn poll_flush_some(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Poll::Ready(Err(io::Error::other(reason.clone())));
        }
        match &mut *self.stream.borrow_mut() {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    #[inline]
    fn dispatch(self: &Rc<Self>, command: RemotingCommand) {
        if command.is_response() {
            let responded = self.in_flight.borrow_mut().respond(command.opaque, command);
            match (responded, &self.records) {
                (Responded::Record(record, command), Some(book)) => {
                    book.complete(record, Ok(Some(command)), &self.peer)
                }
                (Responded::Record(..), None) => {
                    tracing::error!(peer = %self.peer, "a record slot on a connection without records")
                }
                (Responded::Future, _) => {}
                (Responded::Ignored, _) => {
                    tracing::trace!(peer = %self.peer, "dropping a response nobody waits for");
                }
            }
            return;
        }
        match &self.settings.broker_requests {
            Some(handler) => handler.handle(self, command),
            None if command.is_oneway() => {}
            None => {
                let remark = format!(" request type {} not supported", command.code);
                self.respond(
                    command.opaque,
                    ResponseCode::RequestCodeNotSupported,
                    Some(&remark),
                );
            }
        }
    }

    /// Writes the answer to the peer's request `opaque`.
    pub(crate) fn respond(&self, opaque: i32, code: ResponseCode, remark: Option<&str>) {
        if self.is_closed() {
            return;
        }
        let head = CommandHead {
            code: code.as_i32(),
            language: self.settings.language,
            version: self.settings.version,
            opaque,
            flag: crate::protocol::command::FLAG_RESPONSE,
            remark,
        };
        let encoded = frame::encode(
            &mut self.write_buf.borrow_mut(),
            self.settings.encoding,
            &head,
            &crate::protocol::ext_fields::NoHeader,
            &[],
            self.settings.max_frame_bytes,
        );
        if encoded.is_ok() {
            if let Some(w) = self.writer_waker.take() {
                w.wake();
            }
        }
    }
}
