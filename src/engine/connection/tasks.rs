//! Opening a connection (TCP, then TLS when configured) and the three tasks that serve it: the
//! writer (one `send(2)` for everything queued), the reader (whole frames decoded in place,
//! answers handed out in bursts) and the expiry task (requests past their deadline fail).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;
use glommio::net::TcpStream;
use tracing::Instrument;

use super::read_buffer::ReadBuffer;
use super::{
    ConnCounters, ConnSettings, Connection, Stream, DISPATCH_BURST, DISPATCH_BURST_BYTES,
    DISPATCH_BURST_MIN, READ_CHUNK,
};
use crate::config::split_host_port;
use crate::engine::in_flight::{DoneRecords, InFlight, EXPIRY_GRANULARITY};
use crate::engine::records::RecordBook;
use crate::error::{Error, Outcome};
use crate::protocol::decode_error::DecodeError;
use crate::protocol::frame;

impl Connection {
    /// Connects to `peer` (`host:port`) before `deadline` and starts the reader and writer tasks.
    pub(crate) async fn connect(
        peer: &str,
        settings: ConnSettings,
        records: Option<Rc<RecordBook>>,
        deadline: Instant,
    ) -> Result<Rc<Connection>, Error> {
        let fail = |reason: String| Error::Connection {
            returned: crate::error::Returned::NOTHING,
            peer: peer.to_owned(),
            reason,
            outcome: Outcome::NotStored,
        };
        let (host, port) =
            split_host_port(peer).ok_or_else(|| fail("address is not host:port".into()))?;
        let addrs = crate::engine::resolve::resolve(&settings.resolver, host, port, deadline)
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
                match crate::engine::deadline::until(deadline, handshake).await {
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
            crate::engine::guarded::spawn_guarded(what, task, move |panic| {
                closing.close(
                    &format!("the connection's {what} task panicked: {panic}"),
                    false,
                )
            });
        }
        tracing::info!(peer, tls = settings_tls, "connected");
        Ok(conn)
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
            let stall_at =
                crate::engine::deadline::deadline_after(now, conn.settings.stall_timeout);
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
        let stall_check = conn.write_progress_at.get().map(|since| {
            crate::engine::deadline::deadline_after(since, conn.settings.stall_timeout)
        });
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
    let mut input = ReadBuffer::new(READ_CHUNK);
    // Frames that are not a send record's answer are copied here to be decoded (their fields
    // and bodies are slices of it); it reuses its room as the read buffer did before.
    let mut whole = BytesMut::with_capacity(READ_CHUNK);
    let max_frame_bytes = conn.settings.max_frame_bytes;
    let mut frame_size = None;
    loop {
        let read =
            futures_lite::future::poll_fn(|cx| conn.poll_read_some(cx, input.room(frame_size)))
                .await;
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
        input.filled(n);
        let mut clock = conn.records.as_deref().map(RecordBook::hold_clock);
        let mut burst = 0;
        loop {
            // A send record's answer is read where it lies; anything else is decoded whole.
            let answered = match frame::check(input.pending(), max_frame_bytes) {
                Ok(size) => {
                    let frame = &input.pending()[..size];
                    let answered = if conn.complete_in_place(frame) {
                        Ok(())
                    } else {
                        whole.extend_from_slice(frame);
                        match frame::decode(&mut whole, max_frame_bytes) {
                            Ok(Some(command)) => {
                                conn.dispatch(command);
                                Ok(())
                            }
                            Ok(None) => Err(DecodeError::malformed(
                                "frame",
                                "a whole frame read as incomplete",
                            )),
                            Err(e) => Err(e),
                        }
                    };
                    input.consume(size);
                    answered
                }
                Err(e) => Err(e),
            };
            match answered {
                Ok(()) => {
                    burst += 1;
                    if burst == DISPATCH_BURST
                        || (burst >= DISPATCH_BURST_MIN
                            && conn.write_buf.borrow().len() >= DISPATCH_BURST_BYTES)
                    {
                        // Twice: the senders woken above run first (queueing their next
                        // requests and waking the writer), then the writer, then this task.
                        burst = 0;
                        drop(clock.take());
                        futures_lite::future::yield_now().await;
                        futures_lite::future::yield_now().await;
                        clock = conn.records.as_deref().map(RecordBook::hold_clock);
                    }
                }
                Err(DecodeError::Incomplete { needed }) => {
                    frame_size = Some(needed);
                    break;
                }
                Err(e) => {
                    drop(clock.take());
                    conn.close(&format!("undecodable frame: {e}"), true);
                    return;
                }
            }
        }
    }
}
