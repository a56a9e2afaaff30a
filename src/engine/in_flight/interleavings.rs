//! A property test of the in-flight table: random interleavings of requests, responses, time,
//! writes, polls, dropped futures and a lost connection, driven the way a connection drives it.

use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::tests::response;
use super::{Answer, DoneRecords, InFlight, Responded};

/// One step of the connection's life, as the connection drives the table.
#[derive(Debug, Clone)]
enum Step {
    /// A request is queued (a future's or a record's), with its attempt deadline.
    Insert {
        record: bool,
        oneway: bool,
        deadline_ms: u64,
    },
    /// A response arrives for the `pick`-th opaque ever used (or an unknown one).
    Respond { pick: usize },
    /// The same, read in place: a record waiting for it is taken out, else the frame goes to
    /// the general decoder and `respond` (as `Connection::complete_in_place` does).
    RespondInPlace { pick: usize },
    /// Time passes and the expiry task runs.
    Advance { ms: u64 },
    /// The writer hands frames up to the `pick`-th sequence to the socket.
    Write { pick: usize },
    /// A future's owner polls it.
    Poll { pick: usize },
    /// A future is dropped before its answer (its slot goes).
    Drop { pick: usize },
    /// The connection is lost.
    Lose { protocol: bool },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (any::<bool>(), proptest::bool::weighted(0.2), 0u64..50).prop_map(
            |(record, oneway, deadline_ms)| Step::Insert { record, oneway, deadline_ms }
        ),
        2 => (0usize..64).prop_map(|pick| Step::Respond { pick }),
        2 => (0usize..64).prop_map(|pick| Step::RespondInPlace { pick }),
        2 => (0u64..20).prop_map(|ms| Step::Advance { ms }),
        2 => (0usize..64).prop_map(|pick| Step::Write { pick }),
        2 => (0usize..64).prop_map(|pick| Step::Poll { pick }),
        1 => (0usize..64).prop_map(|pick| Step::Drop { pick }),
        1 => any::<bool>().prop_map(|protocol| Step::Lose { protocol }),
    ]
}

/// What the test knows of one request.
struct Sent {
    opaque: i32,
    seq: u64,
    record: Option<u32>,
    oneway: bool,
    deadline: Instant,
    dropped: bool,
    /// Each outcome, with what had been written and the time when it came.
    outcomes: Vec<(Answer, u64, Instant)>,
}

proptest::proptest! {
    /// The in-flight table under random interleavings of requests (futures' and records'),
    /// responses (known, unknown, late), time passing, writes, polls, dropped futures and a
    /// lost connection, with a fake clock: every request that was not dropped gets exactly
    /// one outcome, a timeout only after its deadline, "written" exactly when its frame was
    /// handed to the socket, a oneway `Ok(None)` only once written, and nothing after its
    /// outcome.
    #[test]
    fn every_request_gets_exactly_one_consistent_outcome(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let base = Instant::now();
        let mut now = base;
        let mut table = InFlight::default();
        let mut sent: Vec<Sent> = Vec::new();
        let mut written = 0u64;
        let mut lost = false;
        let mut done = DoneRecords::new();
        let mut cx = Context::from_waker(Waker::noop());
        for step in steps {
            match step {
                Step::Insert { record, oneway, deadline_ms } => {
                    if lost {
                        continue; // a closed connection takes no requests
                    }
                    let n = sent.len();
                    let (opaque, seq) = (n as i32 + 1, n as u64 + 1);
                    let deadline = now + Duration::from_millis(deadline_ms);
                    let record = record.then_some(n as u32);
                    match record {
                        Some(r) => table.insert_record(opaque, seq, oneway, deadline, r),
                        None => table.insert(opaque, seq, oneway, deadline),
                    }
                    sent.push(Sent { opaque, seq, record, oneway, deadline, dropped: false, outcomes: Vec::new() });
                }
                Step::Respond { pick } => {
                    let opaque = sent.get(pick).map_or(10_000 + pick as i32, |s| s.opaque);
                    // As the connection dispatches.
                    if let Responded::Record(r, answer) = table.respond(opaque, response(opaque)) {
                        done.push((r, Ok(Some(answer))));
                    }
                }
                Step::RespondInPlace { pick } => {
                    let opaque = sent.get(pick).map_or(10_000 + pick as i32, |s| s.opaque);
                    match table.take_record_read(opaque, || Some(response(opaque))) {
                        Some((r, answer)) => done.push((r, Ok(Some(answer)))),
                        None => {
                            if let Responded::Record(r, answer) = table.respond(opaque, response(opaque)) {
                                done.push((r, Ok(Some(answer))));
                            }
                        }
                    }
                }
                Step::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    table.expire(now, &mut done);
                }
                Step::Write { pick } => {
                    // A lost connection writes nothing more.
                    if let Some(s) = sent.get(pick).filter(|_| !lost) {
                        written = written.max(s.seq);
                        table.complete_written_oneways(written, &mut done);
                    }
                }
                Step::Poll { pick } => {
                    if let Some(s) = sent.get_mut(pick) {
                        if s.record.is_none() && !s.dropped && s.outcomes.is_empty() {
                            if let Poll::Ready(answer) = table.poll(s.opaque, &mut cx) {
                                s.outcomes.push((answer, written, now));
                            }
                        }
                    }
                }
                Step::Drop { pick } => {
                    if let Some(s) = sent.get_mut(pick) {
                        if s.record.is_none() && s.outcomes.is_empty() && !s.dropped {
                            s.dropped = true;
                            table.remove(s.opaque);
                        }
                    }
                }
                Step::Lose { protocol } => {
                    lost = true;
                    table.fail_all("lost", protocol, written, &mut done);
                }
            }
            for (r, answer) in done.drain(..) {
                sent[r as usize].outcomes.push((answer, written, now));
            }
            for s in &sent {
                proptest::prop_assert!(s.outcomes.len() <= 1, "request {} has {} outcomes", s.opaque, s.outcomes.len());
            }
        }
        // The end: the connection goes, every live future is polled once more.
        table.fail_all("end", false, written, &mut done);
        for (r, answer) in done.drain(..) {
            sent[r as usize].outcomes.push((answer, written, now));
        }
        for s in sent.iter_mut().filter(|s| s.record.is_none() && !s.dropped && s.outcomes.is_empty()) {
            match table.poll(s.opaque, &mut cx) {
                Poll::Ready(answer) => s.outcomes.push((answer, written, now)),
                Poll::Pending => proptest::prop_assert!(false, "future {} still pending after the end", s.opaque),
            }
        }
        proptest::prop_assert_eq!(table.len(), 0, "slots left behind");
        for s in &sent {
            if s.dropped {
                proptest::prop_assert!(s.outcomes.is_empty());
                continue;
            }
            proptest::prop_assert_eq!(s.outcomes.len(), 1, "request {}: outcomes", s.opaque);
            let (answer, written_then, at) = &s.outcomes[0];
            match answer {
                Ok(Some(_)) => proptest::prop_assert!(!s.oneway, "a oneway request got a response"),
                Ok(None) => proptest::prop_assert!(s.oneway && s.seq <= *written_then, "Ok(None) for {} unwritten or not oneway", s.opaque),
                Err(f) if f.timed_out => {
                    proptest::prop_assert!(s.deadline <= *at, "timed out before its deadline");
                    proptest::prop_assert!(f.written, "a timed-out frame counts as written");
                }
                // Nothing is written after a loss, so what was written when the outcome was
                // seen (a future polls late) is what the loss judged by.
                Err(f) => proptest::prop_assert_eq!(f.written, s.seq <= *written_then, "written flag of {}", s.opaque),
            }
        }
    }
}
