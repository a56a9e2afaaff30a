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
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use tracing::Instrument;

use super::in_flight::{Answer, ConnFailure, DoneRecords, InFlight, Responded, EXPIRY_GRANULARITY};
use super::records::RecordBook;
use crate::config::split_host_port;
use crate::error::{Error, Outcome};
use crate::protocol::ext_fields::CustomHeader;
use crate::protocol::frame::{self, EncodeError};
use crate::protocol::header_json::CommandHead;
use crate::protocol::{HeaderEncoding, LanguageCode, RemotingCommand, ResponseCode};

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
    /// Connects to `peer` (`host:port`) before `deadline` and starts the reader and writer tasks.
    pub(crate) async fn connect(
        peer: &str,
        settings: ConnSettings,
        records: Option<Rc<RecordBook>>,
        deadline: Instant,
    ) -> Result<Rc<Connection>, Error> {
        let fail = |reason: String| Error::Connection {
            peer: peer.to_owned(),
            reason,
            outcome: Outcome::NotStored,
        };
        let (host, port) =
            split_host_port(peer).ok_or_else(|| fail("address is not host:port".into()))?;
        let addrs = super::resolve::resolve(&settings.resolver, host, port, deadline)
            .await
            .map_err(fail)?;
        // Every address in turn (a name may resolve to ::1 and 127.0.0.1, one of them dead).
        let mut failures = Vec::new();
        let mut connected = None;
        for addr in &addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                failures.push(format!("{addr}: no time left"));
                break;
            }
            match TcpStream::connect_timeout(*addr, remaining).await {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => failures.push(format!("{addr}: {e}")),
            }
        }
        let stream =
            connected.ok_or_else(|| fail(format!("connect failed: {}", failures.join("; "))))?;
        let _ = stream.set_nodelay(true);
        let settings_tls = settings.tls.is_some();
        let stream = match &settings.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let name = tls.name_for(host).map_err(fail)?;
                let handshake = tls.connector.connect(name, stream);
                match super::deadline::until(deadline, handshake).await {
                    Some(Ok(tls_stream)) => Stream::Tls(Box::new(tls_stream)),
                    Some(Err(e)) => return Err(fail(format!("TLS handshake failed: {e}"))),
                    None => return Err(fail("the TLS handshake did not finish in time".into())),
                }
            }
        };
        let conn = Rc::new(Connection {
            peer: peer.to_owned(),
            settings,
            stream: RefCell::new(stream),
            write_buf: RefCell::new(BytesMut::with_capacity(READ_CHUNK)),
            writing: Cell::new(0),
            write_progress_at: Cell::new(None),
            writer_waker: Cell::new(None),
            reader_waker: Cell::new(None),
            expiry_armed: Cell::new(None),
            expiry_kicked: Cell::new(false),
            expiry_waker: Cell::new(None),
            in_flight: RefCell::new(InFlight::default()),
            next_opaque: Cell::new(1),
            queued_seq: Cell::new(0),
            attempted_seq: Cell::new(0),
            closed: RefCell::new(None),
            counters: ConnCounters::default(),
            records,
            done_records: Cell::new(DoneRecords::new()),
        });
        // Events of the connection's tasks carry its peer (a debug span: free at info).
        let span = tracing::debug_span!("connection", peer, tls = settings_tls);
        // A panic in one of them closes the connection: every request on it fails at once.
        for (what, task) in [
            (
                "writer",
                Box::pin(write_loop(Rc::clone(&conn)).instrument(span.clone()))
                    as Pin<Box<dyn Future<Output = ()>>>,
            ),
            (
                "reader",
                Box::pin(read_loop(Rc::clone(&conn)).instrument(span.clone())),
            ),
            (
                "expiry",
                Box::pin(expiry_loop(Rc::clone(&conn)).instrument(span.clone())),
            ),
        ] {
            let closing = Rc::clone(&conn);
            super::guarded::spawn_guarded(what, task, move |panic| {
                closing.close(
                    &format!("the connection's {what} task panicked: {panic}"),
                    false,
                )
            });
        }
        tracing::info!(peer, tls = settings_tls, "connected");
        Ok(conn)
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Bytes waiting to be written: queued frames plus the unwritten part of the write in
    /// progress.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.write_buf.borrow().len() + self.writing.get()
    }

    /// When the writer has been stuck since `now - stall_timeout` or longer.
    fn write_stalled(&self, now: Instant) -> Option<std::time::Duration> {
        let since = self.write_progress_at.get()?;
        let stuck = now.saturating_duration_since(since);
        (stuck >= self.settings.stall_timeout).then_some(stuck)
    }

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
                peer: self.peer.clone(),
                reason: reason.clone(),
                outcome: Outcome::NotStored,
            });
        }
        let queued = self.queued_bytes();
        if queued > 0 && queued + body.len() > self.settings.max_queued_bytes {
            return Err(Error::Connection {
                peer: self.peer.clone(),
                reason: format!(
                    "{queued} bytes already wait to be written (the peer is not reading)"
                ),
                outcome: Outcome::NotStored,
            });
        }
        if self.in_flight.borrow().len() >= self.settings.max_in_flight {
            return Err(Error::Broker {
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
            |EncodeError::FrameTooLarge { size, limit }| Error::FrameTooLarge { size, limit },
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
    fn poll_flush_some(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Poll::Ready(Err(io::Error::other(reason.clone())));
        }
        match &mut *self.stream.borrow_mut() {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

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

async fn write_loop(conn: Rc<Connection>) {
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let has_data = futures_lite::future::poll_fn(|cx| {
            if conn.is_closed() {
                return Poll::Ready(false);
            }
            if !conn.write_buf.borrow().is_empty() {
                return Poll::Ready(true);
            }
            conn.writer_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if !has_data {
            return;
        }
        std::mem::swap(&mut out, &mut *conn.write_buf.borrow_mut());
        conn.writing.set(out.len());
        if conn.write_progress_at.get().is_none() {
            let now = Instant::now();
            conn.write_progress_at.set(Some(now));
            // The expiry task watches for a stall from now on (under load it is already armed
            // for a request deadline no later than that).
            let stall_at = super::deadline::deadline_after(now, conn.settings.stall_timeout);
            if conn.expiry_armed.get().is_none_or(|armed| armed > stall_at) {
                conn.expiry_armed.set(Some(stall_at));
                conn.expiry_kicked.set(true);
                if let Some(w) = conn.expiry_waker.take() {
                    w.wake();
                }
            }
        }
        let upto = conn.queued_seq.get();
        let frames = upto - conn.attempted_seq.get();
        conn.attempted_seq.set(upto);
        let mut written = 0;
        while written < out.len() {
            match futures_lite::future::poll_fn(|cx| conn.poll_write_some(cx, &out[written..]))
                .await
            {
                Ok(0) => {
                    conn.close("the socket accepted no bytes", false);
                    return;
                }
                Ok(n) => {
                    written += n;
                    conn.writing.set(out.len() - written);
                    if written < out.len() {
                        // A partial write: the socket is full; progress is what counts.
                        conn.write_progress_at.set(Some(Instant::now()));
                    }
                    conn.counters.writes.set(conn.counters.writes.get() + 1);
                }
                Err(e) => {
                    conn.close(&format!("write failed: {e}"), false);
                    return;
                }
            }
        }
        if let Err(e) = futures_lite::future::poll_fn(|cx| conn.poll_flush_some(cx)).await {
            conn.close(&format!("write failed: {e}"), false);
            return;
        }
        conn.counters
            .frames_written
            .set(conn.counters.frames_written.get() + frames);
        conn.counters
            .bytes_written
            .set(conn.counters.bytes_written.get() + out.len() as u64);
        out.clear();
        conn.writing.set(0);
        if conn.write_buf.borrow().is_empty() {
            conn.write_progress_at.set(None);
        } else {
            conn.write_progress_at.set(Some(Instant::now()));
        }
        conn.finish_records(|table, done| table.complete_written_oneways(upto, done));
    }
}

/// Fails requests whose deadline passed; sleeps until the earliest deadline in flight (re-armed
/// by `request` when an earlier one arrives), or parks while nothing waits.
async fn expiry_loop(conn: Rc<Connection>) {
    loop {
        if conn.is_closed() {
            return;
        }
        let now = Instant::now();
        if let Some(stuck) = conn.write_stalled(now) {
            conn.close(
                &format!(
                    "writes made no progress for {stuck:?} with {} bytes queued (the peer stopped reading)",
                    conn.queued_bytes()
                ),
                false,
            );
            return;
        }
        let next = conn.finish_records(|table, done| table.expire(now, done));
        // While bytes wait to be written, also wake when they would count as stalled.
        let stall_check = conn
            .write_progress_at
            .get()
            .map(|since| super::deadline::deadline_after(since, conn.settings.stall_timeout));
        let next = match (next, stall_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        conn.expiry_armed.set(next);
        conn.expiry_kicked.set(false);
        let kicked = futures_lite::future::poll_fn(|cx| {
            if conn.expiry_kicked.get() || conn.is_closed() {
                return Poll::Ready(());
            }
            conn.expiry_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        });
        match next {
            None => kicked.await,
            Some(at) => {
                let sleep = at.max(now + EXPIRY_GRANULARITY) - now;
                futures_lite::future::or(
                    async {
                        glommio::timer::Timer::new(sleep).await;
                    },
                    kicked,
                )
                .await;
            }
        }
    }
}

async fn read_loop(conn: Rc<Connection>) {
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let read = futures_lite::future::poll_fn(|cx| conn.poll_read_some(cx, &mut scratch)).await;
        let n = match read {
            Ok(0) => {
                conn.close("connection closed by the peer", false);
                return;
            }
            Ok(n) => n,
            Err(e) => {
                conn.close(&format!("read failed: {e}"), false);
                return;
            }
        };
        conn.counters.reads.set(conn.counters.reads.get() + 1);
        buf.extend_from_slice(&scratch[..n]);
        let mut clock = conn.records.as_deref().map(RecordBook::hold_clock);
        let mut burst = 0;
        loop {
            match frame::decode(&mut buf, conn.settings.max_frame_bytes) {
                Ok(Some(command)) => {
                    conn.dispatch(command);
                    burst += 1;
                    if burst == DISPATCH_BURST {
                        // Twice: the senders woken above run first (queueing their next
                        // requests and waking the writer), then the writer, then this task.
                        burst = 0;
                        drop(clock.take());
                        futures_lite::future::yield_now().await;
                        futures_lite::future::yield_now().await;
                        clock = conn.records.as_deref().map(RecordBook::hold_clock);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    drop(clock.take());
                    conn.close(&format!("undecodable frame: {e}"), true);
                    return;
                }
            }
        }
    }
}

/// The answer of one request; dropping it abandons the request (a late reply is ignored).
pub(crate) struct ResponseFuture {
    conn: Rc<Connection>,
    opaque: i32,
    done: bool,
}

impl Future for ResponseFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let poll = self.conn.in_flight.borrow_mut().poll(self.opaque, cx);
        if poll.is_ready() {
            self.done = true;
        }
        poll
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if !self.done {
            self.conn.in_flight.borrow_mut().remove(self.opaque);
        }
    }
}

/// Maps a connection-level failure of a request to the public error.
pub(crate) fn failure_to_error(peer: &str, failure: ConnFailure) -> Error {
    let outcome = if failure.written {
        Outcome::Unknown
    } else {
        Outcome::NotStored
    };
    if failure.protocol {
        Error::Protocol {
            peer: peer.to_owned(),
            reason: failure.reason,
            outcome,
        }
    } else {
        Error::Connection {
            peer: peer.to_owned(),
            reason: failure.reason,
            outcome,
        }
    }
}
