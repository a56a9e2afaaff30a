//! One TCP connection to a NameServer or broker, owned by one core.
//!
//! ```text
//!  request() ─ encode frame into write_buf ─ register opaque ─ wake writer
//!  writer task: swap write_buf with its own buffer ─ send(2) everything queued in one go
//!  reader task: recv into one buffer ─ a send record's answer read in place, any other frame
//!               copied out and decoded ─ complete by opaque, pausing every 128 answers so
//!               the woken senders and the writer run in between
//!  expiry task: at the earliest deadline of the requests in flight, fail those that are due
//!  any I/O or decode error ─ close(): every waiting request fails (written or not), tasks exit
//! ```
//!
//! Frames queued while a write is in progress go out together in the next write, so under load
//! one `send(2)` carries many requests.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;

use super::in_flight::{DoneRecords, InFlight, Responded};
use super::records::{RecordAnswer, RecordBook};
use crate::protocol::send_response_header::SendResponse;
use crate::protocol::{binary_response, RemotingCommand, ResponseCode};

mod enqueue;
mod read_buffer;
mod response;
mod settings;
mod stream;
mod tasks;

pub(crate) use response::{failure_to_error, ResponseFuture};
pub(crate) use settings::{ConnCounters, ConnSettings};
use stream::Stream;

const READ_CHUNK: usize = 64 * 1024;

/// Responses the reader hands out before letting the woken senders and the writer run.
///
/// Without a pause the core answers a whole read's worth of responses (hundreds) before any new
/// request is written, and producer and broker take turns instead of working at the same time;
/// handing out 128 at a time keeps both busy (`loadgen --sink --mode async`, 256 in flight, on
/// this 2-core machine: ~155k → ~290k msg/s; 16, 32, 64 and 256 measured lower; see tuning.md).
const DISPATCH_BURST: usize = 128;

/// Bytes in the write buffer at which the reader, handing out responses, pauses as after
/// [`DISPATCH_BURST`] responses: what goes out in one write is bounded by size as well as count,
/// so larger requests (1 KiB bodies, batches) reach the broker in pieces it can start on while
/// the rest is encoded (`loadgen --sink --mode async --size 1024 --inflight 1024`, five
/// alternated pairs: 0.75–0.91M → 1.01–1.15M msg/s; 16 and 64 KiB measured lower, 24 and 40
/// KiB the same within noise; see tuning.md). A writer stuck on a full socket makes it pause
/// every [`DISPATCH_BURST_MIN`] responses: slower, nothing more.
const DISPATCH_BURST_BYTES: usize = 32 * 1024;

/// Responses handed out before [`DISPATCH_BURST_BYTES`] may pause the reader: an automatic batch
/// answered here sends its callers' next batch at once (50 KB for 256 small messages), and a
/// pause after each would write one request per `send(2)` (`--mode auto-batch --batch 256`:
/// 1.4–2.1M against 2.1–2.5M msg/s with a pause after 8).
const DISPATCH_BURST_MIN: usize = 8;

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

    /// Completes a send record with the answer in `frame` (one whole frame, as
    /// [`frame::check`](crate::protocol::frame::check) measured it) read where it lies, no decoded command; `false` leaves the
    /// frame to the reader, which copies it out for
    /// [`frame::decode`](crate::protocol::frame::decode) and [`Connection::dispatch`]: not a
    /// clean binary response, or no record waits for it.
    #[inline]
    fn complete_in_place(&self, frame: &[u8]) -> bool {
        let Some(book) = self.records.as_deref() else {
            return false;
        };
        let Some(opaque) = binary_response::response_opaque(frame) else {
            return false;
        };
        // Read only when a record waits: answers that futures wait for are not read twice.
        let taken = self
            .in_flight
            .borrow_mut()
            .take_record_read(opaque, || SendResponse::read_frame(frame).map(|(_, r)| r));
        let Some((record, response)) = taken else {
            return false;
        };
        book.complete_with(record, RecordAnswer::Response(response), &self.peer);
        true
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
}
