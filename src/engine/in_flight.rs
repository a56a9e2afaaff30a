//! Requests awaiting an answer on one connection, keyed by opaque.
//!
//! Core-local (`RefCell`, no locks). A slot lives from the moment a request is queued until its
//! answer is taken or its waiter gives up (a dropped `ResponseFuture` removes it, so a late reply
//! is dropped as "unknown opaque", like Java does).
//!
//! A slot's waiter is either a future (`ResponseFuture`, woken through its waker) or a send record
//! of the core's [`super::records::RecordBook`] (completed by the connection once the table's borrow
//! ends: the record's completion may queue more requests on the same connection). The methods
//! that finish record slots push `(record, answer)` into the caller's `done` list.
//!
//! Each slot carries its attempt's deadline. The connection's expiry task calls
//! [`InFlight::expire`] when the earliest one comes due, so a request needs no timer of its own:
//! under load that task wakes about once per attempt timeout, not once per request.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::protocol::RemotingCommand;

mod answer;
#[cfg(test)]
mod interleavings;
mod opaque_hasher;

use answer::timed_out;
pub(crate) use answer::{Answer, ConnFailure};
use opaque_hasher::OpaqueHasher;

// A slot holds an answer only from its arrival to the sender's next poll. Boxed, so slots stay
// small (the table moves them): one allocation per answer of a future, none for records.
enum SlotState {
    Waiting(Option<Waker>),
    Done(Box<Answer>),
    /// A send record waiting for its answer (completed outside the table).
    Record(u32),
}

/// What became of a response ([`InFlight::respond`]).
// Returned once and taken apart at once: boxing the response would cost an allocation per answer.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Responded {
    /// A future's slot took it.
    Future,
    /// Record `n`'s slot was waiting for it: complete the record with it.
    Record(u32, RemotingCommand),
    /// Nobody waits for it.
    Ignored,
}

/// Record slots finished by a table operation, to complete once its borrow ends.
pub(crate) type DoneRecords = Vec<(u32, Answer)>;

struct Slot {
    seq: u64,
    oneway: bool,
    deadline: Instant,
    state: SlotState,
}

/// Expiry never runs more often than this, so a stalled connection full of requests with
/// deadlines microseconds apart costs at most one scan per millisecond.
pub(crate) const EXPIRY_GRANULARITY: Duration = Duration::from_millis(1);

#[derive(Default)]
pub(crate) struct InFlight {
    slots: HashMap<i32, Slot, BuildHasherDefault<OpaqueHasher>>,
    /// At least the oneway slots in the table (counted exactly by each scan for them; slots
    /// leaving otherwise do not lower it): with none, a write scans nothing.
    oneways: usize,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn contains(&self, opaque: i32) -> bool {
        self.slots.contains_key(&opaque)
    }

    pub(crate) fn insert(&mut self, opaque: i32, seq: u64, oneway: bool, deadline: Instant) {
        self.insert_slot(opaque, seq, oneway, deadline, SlotState::Waiting(None));
    }

    /// Registers a send record's request (see [`super::records`]).
    pub(crate) fn insert_record(
        &mut self,
        opaque: i32,
        seq: u64,
        oneway: bool,
        deadline: Instant,
        record: u32,
    ) {
        self.insert_slot(opaque, seq, oneway, deadline, SlotState::Record(record));
    }

    fn insert_slot(
        &mut self,
        opaque: i32,
        seq: u64,
        oneway: bool,
        deadline: Instant,
        state: SlotState,
    ) {
        let slot = Slot {
            seq,
            oneway,
            deadline,
            state,
        };
        self.oneways += usize::from(oneway);
        self.slots.insert(opaque, slot);
    }

    /// Fails every waiting slot whose deadline is at or before `now` (its waiter sees a
    /// `timed_out` failure) and returns the earliest deadline still waiting.
    ///
    /// A frame that timed out before the writer took it is still written later (it sits in the
    /// connection's write buffer), so a timed-out request always counts as written: its outcome
    /// is unknown, never "not stored".
    pub(crate) fn expire(&mut self, now: Instant, done: &mut DoneRecords) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        self.slots.retain(|_, slot| match slot.state {
            SlotState::Record(record) if slot.deadline <= now => {
                done.push((record, Err(timed_out())));
                false
            }
            _ => true,
        });
        for slot in self.slots.values_mut() {
            let waker = match &mut slot.state {
                SlotState::Waiting(waker) => waker,
                SlotState::Record(_) => {
                    if earliest.is_none_or(|e| slot.deadline < e) {
                        earliest = Some(slot.deadline);
                    }
                    continue;
                }
                SlotState::Done(_) => continue,
            };
            if slot.deadline <= now {
                let waker = waker.take();
                slot.state = SlotState::Done(Box::new(Err(timed_out())));
                if let Some(w) = waker {
                    w.wake();
                }
            } else if earliest.is_none_or(|e| slot.deadline < e) {
                earliest = Some(slot.deadline);
            }
        }
        earliest
    }

    /// Delivers a response in one lookup: a future's slot is completed (its waker woken), a
    /// record's slot is taken out and handed back with the response (the caller completes the
    /// record once the table's borrow ends). An unknown opaque (the waiter gave up), a oneway slot
    /// (a peer must not answer those) or a slot already answered ignores it.
    pub(crate) fn respond(&mut self, opaque: i32, response: RemotingCommand) -> Responded {
        let std::collections::hash_map::Entry::Occupied(mut entry) = self.slots.entry(opaque)
        else {
            return Responded::Ignored;
        };
        if entry.get().oneway {
            return Responded::Ignored;
        }
        match entry.get().state {
            SlotState::Record(record) => {
                entry.remove();
                Responded::Record(record, response)
            }
            SlotState::Waiting(_) => {
                let done = SlotState::Done(Box::new(Ok(Some(response))));
                if let SlotState::Waiting(Some(waker)) =
                    std::mem::replace(&mut entry.get_mut().state, done)
                {
                    waker.wake();
                }
                Responded::Future
            }
            SlotState::Done(_) => Responded::Ignored,
        }
    }

    /// When a send record (not a future, not a oneway) waits for the answer to `opaque`: reads
    /// the answer with `read` and, if it reads, takes the slot out and returns the record's
    /// number with what `read` made. Otherwise (another kind of slot, none, or `read` gives
    /// `None`) the slot stays as it was. One look-up of the slot for both.
    #[inline]
    pub(crate) fn take_record_read<T>(
        &mut self,
        opaque: i32,
        read: impl FnOnce() -> Option<T>,
    ) -> Option<(u32, T)> {
        let std::collections::hash_map::Entry::Occupied(entry) = self.slots.entry(opaque) else {
            return None;
        };
        let SlotState::Record(record) = entry.get().state else {
            return None;
        };
        if entry.get().oneway {
            return None;
        }
        let answer = read()?;
        entry.remove();
        Some((record, answer))
    }

    /// Resolves every oneway slot whose frame is now written (`seq <= written`).
    pub(crate) fn complete_written_oneways(&mut self, written: u64, done: &mut DoneRecords) {
        if self.oneways == 0 {
            return;
        }
        self.slots.retain(|_, slot| match slot.state {
            SlotState::Record(record) if slot.oneway && slot.seq <= written => {
                done.push((record, Ok(None)));
                false
            }
            _ => true,
        });
        for slot in self.slots.values_mut() {
            if slot.oneway && slot.seq <= written {
                if let SlotState::Waiting(waker) = &mut slot.state {
                    let waker = waker.take();
                    slot.state = SlotState::Done(Box::new(Ok(None)));
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            }
        }
        self.oneways = self
            .slots
            .values()
            .filter(|slot| slot.oneway && !matches!(slot.state, SlotState::Done(_)))
            .count();
    }

    /// Fails every waiting slot; `attempted` is the last sequence handed to the socket.
    pub(crate) fn fail_all(
        &mut self,
        reason: &str,
        protocol: bool,
        attempted: u64,
        done: &mut DoneRecords,
    ) {
        self.slots.retain(|_, slot| match slot.state {
            SlotState::Record(record) => {
                done.push((
                    record,
                    Err(ConnFailure {
                        reason: reason.to_owned(),
                        written: slot.seq <= attempted,
                        protocol,
                        timed_out: false,
                    }),
                ));
                false
            }
            _ => true,
        });
        for slot in self.slots.values_mut() {
            if let SlotState::Waiting(waker) = &mut slot.state {
                let waker = waker.take();
                slot.state = SlotState::Done(Box::new(Err(ConnFailure {
                    reason: reason.to_owned(),
                    written: slot.seq <= attempted,
                    protocol,
                    timed_out: false,
                })));
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }

    /// Polls the slot of `opaque`; takes it out once done.
    pub(crate) fn poll(&mut self, opaque: i32, cx: &mut Context<'_>) -> Poll<Answer> {
        let Some(slot) = self.slots.get_mut(&opaque) else {
            return Poll::Ready(Err(ConnFailure {
                reason: "request slot vanished".into(),
                written: true,
                protocol: false,
                timed_out: false,
            }));
        };
        match &mut slot.state {
            SlotState::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            SlotState::Done(_) => match self.slots.remove(&opaque).map(|s| s.state) {
                Some(SlotState::Done(answer)) => Poll::Ready(*answer),
                _ => unreachable!("state checked above"),
            },
            SlotState::Record(_) => Poll::Ready(Err(ConnFailure {
                reason: "a future polled a send record's slot".into(),
                written: true,
                protocol: false,
                timed_out: false,
            })),
        }
    }

    pub(crate) fn remove(&mut self, opaque: i32) {
        self.slots.remove(&opaque);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LanguageCode;
    use std::task::Waker;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    pub(super) fn response(opaque: i32) -> RemotingCommand {
        RemotingCommand::request(0, opaque, LanguageCode::JAVA, 1)
    }

    fn cx_poll(table: &mut InFlight, opaque: i32) -> Poll<Answer> {
        let mut cx = Context::from_waker(Waker::noop());
        table.poll(opaque, &mut cx)
    }

    #[test]
    fn response_then_poll() {
        let mut t = InFlight::default();
        t.insert(1, 1, false, later());
        assert!(cx_poll(&mut t, 1).is_pending());
        assert!(matches!(t.respond(1, response(1)), Responded::Future));
        assert!(matches!(cx_poll(&mut t, 1), Poll::Ready(Ok(Some(_)))));
        assert_eq!(t.len(), 0);
        assert!(matches!(t.respond(1, response(1)), Responded::Ignored));
    }

    #[test]
    fn a_oneway_is_resolved_after_scans_that_found_none() {
        let mut t = InFlight::default();
        let mut done = DoneRecords::new();
        t.insert(1, 1, false, later());
        t.complete_written_oneways(1, &mut done);
        t.insert(2, 2, true, later());
        t.insert_record(3, 3, true, later(), 7);
        t.complete_written_oneways(2, &mut done);
        assert!(matches!(cx_poll(&mut t, 2), Poll::Ready(Ok(None))));
        assert!(done.is_empty(), "record 7's frame is not written yet");
        t.complete_written_oneways(3, &mut done);
        assert!(matches!(done.as_slice(), [(7, Ok(None))]));
        assert!(cx_poll(&mut t, 1).is_pending(), "not a oneway");
    }

    #[test]
    fn failure_marks_written() {
        let mut t = InFlight::default();
        t.insert(1, 1, false, later());
        t.insert(2, 2, false, later());
        t.insert(3, 3, true, later());
        let mut done = DoneRecords::new();
        t.complete_written_oneways(2, &mut done);
        assert!(cx_poll(&mut t, 3).is_pending());
        t.fail_all("gone", false, 1, &mut done);
        assert!(done.is_empty(), "no record slots here");
        match cx_poll(&mut t, 1) {
            Poll::Ready(Err(f)) => assert!(f.written),
            _ => panic!(),
        }
        match cx_poll(&mut t, 2) {
            Poll::Ready(Err(f)) => assert!(!f.written),
            _ => panic!(),
        }
    }

    #[test]
    fn expiry_fails_only_what_is_due_and_reports_the_next_deadline() {
        let mut t = InFlight::default();
        let now = Instant::now();
        let soon = now + Duration::from_millis(5);
        t.insert(1, 1, false, now);
        t.insert(2, 2, false, soon);
        t.insert(3, 3, true, now - Duration::from_millis(1));
        t.insert(4, 4, false, later());
        assert!(matches!(t.respond(4, response(4)), Responded::Future));
        let mut done = DoneRecords::new();
        assert_eq!(
            t.expire(now, &mut done),
            Some(soon),
            "answered slots do not count"
        );
        for opaque in [1, 3] {
            match cx_poll(&mut t, opaque) {
                Poll::Ready(Err(f)) => assert!(f.timed_out && f.written && !f.protocol),
                other => panic!("{opaque}: {other:?}"),
            }
        }
        assert!(cx_poll(&mut t, 2).is_pending());
        assert!(matches!(cx_poll(&mut t, 4), Poll::Ready(Ok(Some(_)))));
        assert_eq!(t.expire(soon, &mut done), None);
        assert!(done.is_empty());
        assert!(matches!(cx_poll(&mut t, 2), Poll::Ready(Err(f)) if f.timed_out));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn record_slots_are_handed_back_for_completion_outside_the_table() {
        let mut t = InFlight::default();
        let now = Instant::now();
        t.insert_record(1, 1, false, later(), 10);
        t.insert_record(2, 2, false, now, 20);
        t.insert_record(3, 3, true, later(), 30);
        t.insert_record(4, 4, false, later(), 40);
        t.insert(5, 5, false, later());
        assert!(matches!(
            t.respond(1, response(1)),
            Responded::Record(10, _)
        ));
        assert!(
            matches!(t.respond(1, response(1)), Responded::Ignored),
            "a record slot is answered once"
        );
        assert!(
            matches!(t.respond(3, response(3)), Responded::Ignored),
            "a oneway record's slot takes no response"
        );
        let read = || -> Option<()> { panic!("read only when a record waits") };
        assert!(t.take_record_read(3, read).is_none(), "nor in place");
        assert!(t.take_record_read(5, read).is_none(), "a future's slot");
        t.insert_record(6, 6, false, later(), 60);
        assert!(
            t.take_record_read(6, || None::<()>).is_none(),
            "an answer that does not read leaves the slot"
        );
        assert_eq!(t.take_record_read(6, || Some('a')), Some((60, 'a')));
        assert!(t.take_record_read(6, read).is_none(), "taken once");
        let mut done = DoneRecords::new();
        assert!(t.expire(now, &mut done).is_some());
        assert!(matches!(&done[..], [(20, Err(f))] if f.timed_out && f.written));
        done.clear();
        t.complete_written_oneways(3, &mut done);
        assert!(matches!(&done[..], [(30, Ok(None))]));
        done.clear();
        t.fail_all("gone", true, 3, &mut done);
        assert!(matches!(&done[..], [(40, Err(f))] if !f.written && f.protocol));
        assert_eq!(t.len(), 1, "the future's slot stays until polled");
        assert!(matches!(cx_poll(&mut t, 5), Poll::Ready(Err(_))));
    }
}
