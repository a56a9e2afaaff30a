//! Queuing frames for the writer: a request, answered through a [`ResponseFuture`] or a send
//! record, checked against the connection's limits and encoded straight into the write buffer;
//! and the answer to a request the peer sent.

use std::rc::Rc;
use std::time::Instant;

use super::{Connection, ResponseFuture};
use crate::error::{Error, Outcome};
use crate::protocol::ext_fields::CustomHeader;
use crate::protocol::frame::{self, EncodeError};
use crate::protocol::header_json::CommandHead;
use crate::protocol::ResponseCode;

impl Connection {
    /// Queues a request and returns the future of its answer, which fails with a `timed_out`
    /// [`ConnFailure`](crate::engine::in_flight::ConnFailure) once `deadline` passes without one.
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

    /// Like [`Connection::request`], for send record `record` of the core's
    /// [`RecordBook`](crate::engine::records::RecordBook): its answer (or failure) goes to
    /// [`RecordBook::complete`](crate::engine::records::RecordBook::complete).
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
    #[inline]
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
        let hooked = self.settings.hooks.hooked_header(code, header, body)?;
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

    #[inline]
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
