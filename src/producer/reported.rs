//! Reported sends from application threads: the outcome goes to the producer's delivery handler
//! with the caller's token (no future or channel per message).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{enter_open, shut_down_refusal, Producer};
use crate::config::QueueFullPolicy;
use crate::engine::core::current_core;
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::{Job, RemoteReply, SendMode};
use crate::engine::prepared::{prepare, Outgoing, SendExtras};
use crate::error::{Error, Returned};
use crate::message::Message;
use crate::send_options::SendOptions;

impl Producer {
    /// Sends `message` and reports its outcome to the delivery handler set with
    /// [`ProducerBuilder::on_delivery`](crate::ProducerBuilder::on_delivery), with `token` (the fast path: no future or channel per
    /// message). Returns once the message is handed to a core; blocks while that core's inbox
    /// is full under [`QueueFullPolicy::Wait`], up to the send timeout (on a producer core it
    /// never waits: a full inbox refuses at once, since that core may be the one to drain it).
    ///
    /// Every message handed over gets exactly one call of the handler; a message refused here
    /// gets none (it comes back in the error).
    ///
    /// # Errors
    ///
    /// Refusals before hand-over: [`Error::InvalidConfig`] without a delivery handler,
    /// [`Error::InvalidMessage`], [`Error::QueueFull`], [`Error::ShutDown`] (the last two hand
    /// the message back).
    pub fn send_reported(&self, message: Message, token: u64) -> Result<(), Error> {
        self.send_reported_with(message, token, SendOptions::default())
    }

    /// [`Producer::send_reported`] with per-call options (timeout, target queue or selector,
    /// sharding key), as every other send mode takes them.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_reported`].
    pub fn send_reported_with(
        &self,
        message: Message,
        token: u64,
        options: SendOptions,
    ) -> Result<(), Error> {
        let shared = &self.inner.shared;
        if shared.delivery.is_none() {
            return Err(Error::InvalidConfig {
                reason: "send_reported needs a delivery handler (ProducerBuilder::on_delivery)"
                    .into(),
            });
        }
        let deadline = deadline_after(
            Instant::now(),
            options.timeout.unwrap_or(shared.config.send_timeout),
        );
        let slot = &self.inner.cores[self.pick_core(&options)];
        if !enter_open(shared, slot) {
            return Err(shut_down_refusal(Returned::one(message)));
        }
        let extras = SendExtras::from_options(&options);
        let prepared = match prepare(message, &shared.config, extras) {
            Ok(p) => Outgoing::One(p),
            Err(refused) => {
                slot.inbox.leave();
                return Err(refused);
            }
        };
        let mut job = Job::Send {
            message: prepared,
            mode: SendMode::Async,
            deadline,
            reply: RemoteReply::Report(token),
        };
        // On a producer core, waiting would stall the very core that drains the inbox.
        let may_wait =
            shared.config.queue_full == QueueFullPolicy::Wait && current_core().is_none();
        let result = loop {
            match slot.inbox.push(job) {
                Ok(()) => break Ok(()),
                Err(back) => {
                    let full = !may_wait
                        || Instant::now() >= deadline
                        || shared.closing.load(Ordering::SeqCst);
                    if full {
                        let Job::Send { message, .. } = back;
                        slot.inbox.note_refused();
                        break Err(Error::QueueFull {
                            returned: message.into_returned(),
                        });
                    }
                    job = back;
                    // The core frees room quickly; a short park instead of a waker per caller.
                    std::thread::park_timeout(std::time::Duration::from_micros(50));
                }
            }
        };
        slot.inbox.leave();
        result
    }
}
