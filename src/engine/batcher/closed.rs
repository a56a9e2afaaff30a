//! A closed batch on its way: members whose budget ran out while it lingered are left out, a
//! lone message goes as a plain send, the rest as one SEND_BATCH_MESSAGE whose answer (or error)
//! is handed to every member: each under its own deadline (a task watches them), or, when all
//! are due within a millisecond of each other, under the earliest (one send record).
//!
//! ```text
//!  closed ─► expired members out (Timeout, NotStored) ─┬─ one left, unencoded ─► plain send
//!                                                      ├─ all due within 1 ms ─► send record
//!                                                      └─ else ─► batch task: send_message
//!                    ◄── a member's own deadline first: Timeout, Unknown (the batch goes on)
//!  answer ─► permits released ─► result i to member i | error (each with its message) to all
//! ```

use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::{BatchMembers, Member, OpenBatch};
use crate::engine::core::start_unbatched;
use crate::engine::core::{Core, InFlightPermit};
use crate::engine::deadline::until;
use crate::engine::in_flight::EXPIRY_GRANULARITY;
use crate::engine::inbox::{SendMode, SendReply};
use crate::engine::prepared::{batch_wrapper_properties, Outgoing, PreparedBatch, Reply};
use crate::engine::records::ReplyTarget;
use crate::engine::send::send_message;
use crate::error::{Error, Outcome, Returned};

/// A member's own budget ran out (`started`: when its batch opened).
fn member_timeout(started: Instant, deadline: Instant, outcome: Outcome) -> Error {
    Error::Timeout {
        returned: Returned::NOTHING,
        elapsed: started.elapsed(),
        budget: deadline.saturating_duration_since(started),
        attempts: u32::from(outcome == Outcome::Unknown),
        outcome,
        last_error: None,
    }
}

/// Sends `batch` from `core`.
pub(super) fn send(core: &Rc<Core>, mut batch: OpenBatch) {
    let mode = batch.kind.mode();
    let now = core.records.now();
    if let Some(first) = batch.first.take() {
        let Some(member) = batch.members.pop() else {
            return;
        };
        let (Some(reply), Some(permit)) = (member.reply, batch.permit.take()) else {
            return;
        };
        if member.deadline <= now {
            // Its budget ran out while the batch lingered: it is not sent at all.
            let timeout = member_timeout(batch.opened, member.deadline, Outcome::NotStored);
            reply.send(Err(timeout.with_message(first.original)));
            return;
        }
        let times = (batch.opened, member.deadline);
        start_unbatched(core, Outgoing::One(first), mode, times, permit, reply);
        return;
    }
    leave_out_expired(&mut batch, now);
    if batch.members.is_empty() {
        return;
    }
    let outgoing = Outgoing::Batch(PreparedBatch {
        topic: batch.topic.clone(),
        uniq_keys: std::mem::take(&mut batch.uniq_keys),
        body: std::mem::take(&mut batch.body).freeze(),
        sys_flag: batch.kind.sys_flag,
        properties: std::borrow::Cow::Borrowed(batch_wrapper_properties(batch.kind.wait)),
        extras: None,
        originals: std::mem::take(&mut batch.originals),
    });
    // Members whose deadlines lie within the expiry granularity of each other (sends with one
    // timeout made within a millisecond) share the earliest, and the batch goes as a send record:
    // no task, no future, its answer fanned out where the connection reads it. Others keep a
    // task that answers each member at its own deadline.
    let deadlines = || batch.members.iter().map(|m| m.deadline);
    if let (Some(earliest), Some(latest)) = (deadlines().min(), deadlines().max()) {
        if latest.saturating_duration_since(earliest) <= EXPIRY_GRANULARITY {
            if let Some(permit) = batch.permit.take() {
                let members = ReplyTarget::Members(Box::new(BatchMembers(batch.members)));
                let times = (batch.opened, earliest);
                start_unbatched(core, outgoing, mode, times, permit, members);
                return;
            }
        }
    }
    let core = Rc::clone(core);
    // A panic drops the members: each caller gets CoreStopped.
    crate::engine::guarded::spawn_guarded(
        "batch send",
        async move {
            let (members, permit) = (batch.members, batch.permit);
            send_batch(&core, mode, batch.opened, (members, permit), outgoing).await
        },
        |_| {},
    );
}

/// Answers the members whose deadline passed while the batch lingered (`Timeout`, `NotStored`,
/// with their messages) and takes their records out of the body. Rare: the body is rebuilt only
/// when one did.
fn leave_out_expired(batch: &mut OpenBatch, now: Instant) {
    if batch.members.iter().all(|m| m.deadline > now) {
        return;
    }
    let mut body = std::mem::take(&mut batch.body);
    let mut kept = BytesMut::with_capacity(body.len());
    let members = std::mem::take(&mut batch.members);
    let uniq_keys = std::mem::take(&mut batch.uniq_keys);
    let originals = std::mem::take(&mut batch.originals);
    for ((member, uniq_key), original) in members.into_iter().zip(uniq_keys).zip(originals) {
        // Each record starts with its own total size (`encode_record`).
        let size = (&body[..4]).get_i32() as usize;
        let record = body.split_to(size);
        if member.deadline > now {
            kept.extend_from_slice(&record);
            batch.members.push(member);
            batch.uniq_keys.push(uniq_key);
            batch.originals.push(original);
        } else {
            // Its share goes first, so a caller sending again from its handler finds room.
            if let Some(all) = &mut batch.permit {
                drop(all.split_off(member.bytes));
            }
            if let Some(reply) = member.reply {
                let timeout = member_timeout(batch.opened, member.deadline, Outcome::NotStored);
                reply.send(Err(timeout.with_message(original)));
            }
        }
    }
    batch.body = kept;
}

async fn send_batch(
    core: &Rc<Core>,
    mode: SendMode,
    started: Instant,
    (mut members, permit): (Vec<Member>, Option<InFlightPermit>),
    outgoing: Outgoing,
) {
    let Some(latest) = members.iter().map(|m| m.deadline).max() else {
        return;
    };
    let send = send_message(core, outgoing, mode, (started, latest), None, None);
    let mut send = std::pin::pin!(send);
    let result = loop {
        // The next member deadline before the batch's own (none: just wait for the batch).
        let next = members
            .iter()
            .filter(|m| m.reply.is_some() && m.deadline < latest)
            .map(|m| m.deadline)
            .min();
        let Some(next) = next else {
            break send.as_mut().await;
        };
        if let Some(result) = until(next, send.as_mut()).await {
            break result;
        }
        let now = Instant::now();
        for member in &mut members {
            if member.deadline <= now {
                if let Some(reply) = member.reply.take() {
                    reply.send(Err(member_timeout(
                        started,
                        member.deadline,
                        Outcome::Unknown,
                    )));
                }
            }
        }
    };
    // Released first, so callers that send again from their handlers find room.
    drop(permit);
    // One clock read for the whole fan-out: the callers that send again from their delivery
    // handlers stamp their sends with it, as they do when a connection dispatches answers.
    let _clock = core.records.hold_clock();
    answer_members(members, result);
}

/// Hands a batch's outcome to its members, in order: result i to member i, the same error
/// (each with its own message) to all; members already answered (their deadline came first)
/// are skipped.
pub(super) fn answer_members(members: Vec<Member>, result: SendReply) {
    match result {
        Ok(Reply::Batch(answer, _)) => {
            // One result rewritten member by member: lent to delivery handlers, copied for
            // other callers.
            let replies = members.into_iter().map(|m| m.reply);
            answer.fan_out(replies, |reply, result| reply.send_shared_result(result));
        }
        Ok(other) => {
            for reply in members.into_iter().filter_map(|m| m.reply) {
                reply.send(Ok(other.clone()));
            }
        }
        Err(e) => {
            // Each caller gets its own message back; clones share the bounded remark (an
            // `Arc`): no per-caller copy of broker text.
            let (e, returned) = e.split_returned();
            let mut messages = returned.into_messages().into_iter();
            for reply in members.into_iter().map(|m| m.reply) {
                let message = messages.next();
                if let Some(reply) = reply {
                    reply.send(Err(match message {
                        Some(message) => e.clone().with_message(message),
                        None => e.clone(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_channel::oneshot;

    use std::future::Future;

    use super::super::{Member, OpenBatch};
    use super::*;
    use crate::config::AutoBatch;
    use crate::engine::core::Caps;
    use crate::engine::prepared::prepare;
    use crate::engine::records::ReplyTarget;
    use crate::message::Message;
    use crate::protocol::batch;

    /// An open batch of `bodies`, member i due at `deadlines[i]`, and each member's answer.
    fn batch_of(
        bodies: &[&str],
        deadlines: &[Instant],
    ) -> (
        OpenBatch,
        Vec<oneshot::Receiver<crate::engine::inbox::SendReply>>,
    ) {
        batch_with_permits(bodies, deadlines, None)
    }

    /// [`batch_of`], each member with a permit from `caps` of as many byte units as its body
    /// has bytes (none without `caps`).
    fn batch_with_permits(
        bodies: &[&str],
        deadlines: &[Instant],
        caps: Option<&Rc<Caps>>,
    ) -> (
        OpenBatch,
        Vec<oneshot::Receiver<crate::engine::inbox::SendReply>>,
    ) {
        let config = super::super::tests::config();
        let kind = super::super::tests::kind(false);
        let now = Instant::now();
        let mut open = OpenBatch::new(0, "T".into(), kind, now);
        let mut answers = Vec::new();
        for (body, deadline) in bodies.iter().zip(deadlines) {
            let message = prepare(Message::new("T", body.to_string()), &config, None).unwrap();
            let size = message.body().len() + message.properties.len() + batch::RECORD_OVERHEAD;
            let (tx, rx) = oneshot::channel();
            let member = Member {
                reply: Some(ReplyTarget::Channel(tx)),
                deadline: *deadline,
                bytes: 0,
            };
            let permit = caps.map(|caps| InFlightPermit::for_tests(caps, body.len() as u64));
            open.join(message, (member, permit), size, (64, &AutoBatch::default()));
            answers.push(rx);
        }
        (open, answers)
    }

    fn bodies_of(batch: &OpenBatch) -> Vec<String> {
        batch::decode(batch.body.clone().freeze())
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_lone_message_stays_unencoded_and_the_second_encodes_both() {
        let later = Instant::now() + Duration::from_secs(5);
        let (one, _) = batch_of(&["a"], &[later]);
        assert!(one.first.is_some());
        assert!(one.body.is_empty() && one.uniq_keys.is_empty());
        let (two, _) = batch_of(&["a", "b"], &[later, later]);
        assert!(two.first.is_none());
        assert_eq!(bodies_of(&two), ["a", "b"]);
        assert_eq!(two.uniq_keys.len(), 2);
        assert_eq!(
            two.bytes,
            two.body.len(),
            "the byte count matches the records"
        );
    }

    #[test]
    fn expired_members_leave_the_body_with_their_message_and_not_stored() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let (mut open, mut answers) = batch_of(&["a", "b", "c", "d"], &[later, now, later, now]);
        let keys = open.uniq_keys.clone();
        leave_out_expired(&mut open, now);
        assert_eq!(bodies_of(&open), ["a", "c"]);
        assert_eq!(open.uniq_keys, [keys[0].clone(), keys[2].clone()]);
        let kept: Vec<_> = open.originals.iter().map(|m| m.body.clone()).collect();
        assert_eq!(kept, [&b"a"[..], &b"c"[..]]);
        assert_eq!(open.members.len(), 2);
        for (i, answer) in answers.iter_mut().enumerate() {
            let got = answer.try_recv().unwrap();
            match i {
                1 | 3 => {
                    let e = got.expect("an expired member is answered").unwrap_err();
                    assert!(matches!(e, Error::Timeout { .. }), "{e}");
                    assert_eq!(e.outcome(), Outcome::NotStored);
                    let body = if i == 1 { "b" } else { "d" };
                    assert_eq!(&e.into_message().unwrap().body[..], body.as_bytes());
                }
                _ => assert!(got.is_none(), "a member in time is not answered yet"),
            }
        }
    }

    #[test]
    fn an_expired_member_gives_back_its_own_share_at_once() {
        let caps = Rc::new(Caps::new(8, 1000));
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let bodies = ["a", "bbbb", "cc"];
        let (mut open, _answers) = batch_with_permits(&bodies, &[later, now, later], Some(&caps));
        let free = |caps: &Caps| (caps.messages.available(), caps.bytes.available());
        assert_eq!(free(&caps), (5, 993));
        let flush = caps.flush.flush();
        let mut flush = Box::pin(flush);
        leave_out_expired(&mut open, now);
        assert_eq!(free(&caps), (6, 997), "one message and its 4 bytes back");
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(
            flush.as_mut().poll(&mut cx).is_pending(),
            "a and cc still go"
        );
        drop(open);
        assert_eq!(free(&caps), (8, 1000));
        assert!(flush.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn nothing_expired_leaves_the_body_as_it_is() {
        let later = Instant::now() + Duration::from_secs(5);
        let (mut open, _) = batch_of(&["a", "b"], &[later, later]);
        let before = open.body.clone();
        leave_out_expired(&mut open, Instant::now());
        assert_eq!(open.body, before);
        assert_eq!(open.members.len(), 2);
    }
}
