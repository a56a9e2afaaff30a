//! [`LocalProducer`]: the producer as seen from code already running on one of its cores.

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::batch_result::BatchResult;
use crate::engine::batcher::PlainRefusal;
use crate::engine::core::{current_core, Core};
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::SendMode;
use crate::engine::local_send::{
    admit, budget, drive, hand_over_plain, is_closing, no_reply_slot, Step,
};
use crate::engine::prepared::{is_plain, prepare_at, prepare_batch, Outgoing, Reply, SendExtras};
use crate::engine::records::{Delivery, ReplyTarget};
use crate::engine::reply_slots::reply_pair;
use crate::error::{Error, Returned};
use crate::message::Message;
use crate::send_options::SendOptions;
use crate::send_result::{MessageQueue, SendResult};

/// Bodies at least this large are compressed off the core (on glommio's blocking pool).
const OFFLOAD_COMPRESSION_OVER: usize = 64 * 1024;

/// A core-local handle: sends go straight into this core's engine, with no cross-thread hop and
/// no lock. It is `!Send` on purpose; get one with [`LocalProducer::current`] or from
/// [`crate::Producer::run_on_core`].
///
/// # Example
///
/// ```no_run
/// # use rocketmq_tpc::{Message, Producer};
/// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
/// let handle = producer.run_on_core(0, |local| async move {
///     local.send(Message::new("orders", "from the core")).await
/// })?;
/// let result = handle.wait()??;
/// println!("stored at offset {}", result.queue_offset);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalProducer {
    core: Rc<Core>,
}

impl LocalProducer {
    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        LocalProducer { core }
    }

    /// The core this handle sends on.
    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
    }

    /// The producer of the core this thread runs, or `None` off the producer's cores.
    pub fn current() -> Option<LocalProducer> {
        current_core().map(LocalProducer::from_core)
    }

    /// Index of this core (0-based).
    pub fn core_index(&self) -> usize {
        self.core.index
    }

    /// A recent clock reading: inside a delivery handler, the time the answers being reported
    /// were read (one clock read shared by all of them), else the clock itself. Cheap enough to
    /// stamp every message with.
    pub fn now(&self) -> Instant {
        self.core.records.now()
    }

    /// This core's counters.
    pub fn snapshot(&self) -> crate::stats::CoreStatsSnapshot {
        self.core.snapshot()
    }

    /// Sends and waits for the broker's answer, with the producer's send timeout and retries.
    ///
    /// The message is validated and prepared when this is called. A plain one (no namespace,
    /// delay or timer, a body below `compress_over`) is also handed over at the call: its
    /// request is started, or with automatic batching it joins its batch, and dropping the
    /// future drops only its outcome. Any other message is sent by the returned future (nothing
    /// is sent if it is dropped unpolled).
    ///
    /// # Errors
    ///
    /// Any [`Error`]; see [`Error::is_retryable`] and [`Error::outcome`].
    pub fn send(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<SendResult, Error>> + 'static {
        self.single(
            message,
            SendMode::Async,
            &SendOptions::default(),
            Reply::into_one,
        )
    }

    /// Like [`LocalProducer::send`] with per-call options (budget, target queue). The
    /// `sharding_key` option has no effect here: the send runs on this core.
    ///
    /// # Errors
    ///
    /// Any [`Error`].
    pub fn send_with(
        &self,
        message: Message,
        options: SendOptions,
    ) -> impl Future<Output = Result<SendResult, Error>> + 'static {
        self.single(message, SendMode::Async, &options, Reply::into_one)
    }

    /// Sends `message` and reports its outcome to this core's delivery handler with `token`
    /// (the fastest way to send: no future, channel or task per message). The handler is the
    /// one set with [`crate::ProducerBuilder::on_delivery`], or the one set on this core with
    /// [`LocalProducer::set_delivery_handler`]; it is called exactly once per message accepted
    /// here, on this core, and borrows the result for the call (`result.cloned()` keeps it).
    ///
    /// Does not wait: when this core already has `max_inflight` sends in progress the message
    /// is refused with [`Error::QueueFull`] (send again after some outcomes come in). The body
    /// is compressed here, on the core, when it reaches `compress_over`.
    ///
    /// # Errors
    ///
    /// Refusals, each with the message handed back where it has one: [`Error::InvalidConfig`]
    /// without a delivery handler, [`Error::InvalidMessage`], [`Error::QueueFull`],
    /// [`Error::ShutDown`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use rocketmq_tpc::{Message, Producer};
    /// # fn demo(producer: &Producer) -> Result<(), rocketmq_tpc::Error> {
    /// producer.run_on_core(0, |local| async move {
    ///     local.set_delivery_handler(|token, result| {
    ///         if let Err(e) = result {
    ///             eprintln!("message {token}: {e}");
    ///         }
    ///     });
    ///     for n in 0..100 {
    ///         local.send_reported(Message::new("TopicTest", "payload"), n)?;
    ///     }
    ///     local.flush(std::time::Duration::from_secs(5)).await
    /// })?
    /// .wait()??;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn send_reported(&self, message: Message, token: u64) -> Result<(), Error> {
        self.send_reported_with(message, token, SendOptions::default())
    }

    /// [`LocalProducer::send_reported`] with per-call options (timeout, target queue or
    /// selector, sharding key), as every other send mode takes them.
    ///
    /// # Errors
    ///
    /// As [`LocalProducer::send_reported`].
    pub fn send_reported_with(
        &self,
        message: Message,
        token: u64,
        options: SendOptions,
    ) -> Result<(), Error> {
        let core = &self.core;
        let Some(handler) = core.delivery.borrow().clone() else {
            return Err(Error::InvalidConfig {
                reason: "send_reported needs a delivery handler (ProducerBuilder::on_delivery or LocalProducer::set_delivery_handler)".into(),
            });
        };
        if is_closing(core) {
            return Err(Error::ShutDown {
                returned: Returned::one(message),
                outcome: crate::Outcome::NotStored,
            });
        }
        let config = &core.shared.config;
        let (started, born) = core.records.now_and_millis();
        let deadline = deadline_after(started, options.timeout.unwrap_or(config.send_timeout));
        let reply = || ReplyTarget::Report(Delivery::new(handler, token));
        if options.target.is_auto() && is_plain(&message, config) {
            let handed = hand_over_plain(
                core,
                message,
                SendMode::Async,
                (started, deadline),
                born,
                reply,
            );
            return match handed {
                Ok(()) => Ok(()),
                Err(PlainRefusal::Invalid(e)) => Err(e),
                Err(PlainRefusal::NoRoom(message)) => {
                    core.stats.refused.set(core.stats.refused.get() + 1);
                    Err(Error::QueueFull {
                        returned: Returned::one(message),
                    })
                }
            };
        }
        let extras = SendExtras::from_options(&options);
        let prepared = prepare_at(message, config, extras, born)?;
        let Some(permit) = core.try_permit(prepared.body().len() + prepared.properties.len())
        else {
            core.stats.refused.set(core.stats.refused.get() + 1);
            return Err(Error::QueueFull {
                returned: Returned::one(prepared.original),
            });
        };
        crate::engine::core::start_send_at(
            core,
            Outgoing::One(prepared),
            SendMode::Async,
            (started, deadline),
            permit,
            reply(),
        );
        Ok(())
    }

    /// Sets the delivery handler of reported sends on this core
    /// ([`LocalProducer::send_reported`], and [`crate::Producer::send_reported`] calls this core
    /// takes), replacing the producer's. It runs on this core and need not be `Send`; a panic
    /// in it ends that call only (logged).
    pub fn set_delivery_handler(
        &self,
        handler: impl Fn(u64, Result<&SendResult, Error>) + 'static,
    ) {
        *self.core.delivery.borrow_mut() = Some(Rc::new(handler));
    }

    /// Sends `messages` as one batch; see [`crate::Producer::send_batch`] for the rules.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] when the batch breaks a rule, else any send error.
    pub fn send_batch(
        &self,
        messages: Vec<Message>,
    ) -> impl Future<Output = Result<BatchResult, Error>> + 'static {
        self.send_batch_with(messages, SendOptions::default())
    }

    /// [`LocalProducer::send_batch`] with per-call options.
    ///
    /// # Errors
    ///
    /// As [`LocalProducer::send_batch`].
    pub fn send_batch_with(
        &self,
        messages: Vec<Message>,
        options: SendOptions,
    ) -> impl Future<Output = Result<BatchResult, Error>> + 'static {
        let timeout = options
            .timeout
            .unwrap_or(self.core.shared.config.send_timeout);
        let (started, deadline) = budget(timeout);
        let extras = SendExtras::from_options(&options);
        let step = match prepare_batch(messages, &self.core.shared.config, extras) {
            Ok(batch) => admit(
                &self.core,
                Outgoing::Batch(batch),
                SendMode::Async,
                deadline,
            ),
            Err(e) => Step::Done(Err(e)),
        };
        drive(
            Rc::clone(&self.core),
            step,
            SendMode::Async,
            (started, deadline),
            Reply::into_batch,
        )
    }

    /// Sends without waiting for the broker: resolves once the request is written to the socket.
    /// Without automatic batching a plain message is handed over at the call, as with
    /// [`LocalProducer::send`].
    ///
    /// # Errors
    ///
    /// Validation, route and connection errors.
    pub fn send_oneway(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<(), Error>> + 'static {
        self.send_oneway_with(message, SendOptions::default())
    }

    /// [`LocalProducer::send_oneway`] with per-call options.
    ///
    /// # Errors
    ///
    /// As [`LocalProducer::send_oneway`].
    pub fn send_oneway_with(
        &self,
        message: Message,
        options: SendOptions,
    ) -> impl Future<Output = Result<(), Error>> + 'static {
        self.single(message, SendMode::Oneway, &options, Reply::into_written)
    }

    /// Waits until every send this core took in before the call has its outcome (sends made
    /// meanwhile are not waited for), or until `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when sends were still in progress at the deadline (they go on).
    pub fn flush(&self, timeout: Duration) -> impl Future<Output = Result<(), Error>> + 'static {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let wait = self.core.caps.flush.flush();
        async move {
            let finished = match deadline {
                Some(deadline) => crate::engine::deadline::until(deadline, wait)
                    .await
                    .is_some(),
                None => {
                    wait.await;
                    true
                }
            };
            if finished {
                Ok(())
            } else {
                Err(Error::Timeout {
                    returned: crate::error::Returned::NOTHING,
                    elapsed: started.elapsed(),
                    budget: timeout,
                    attempts: 0,
                    outcome: crate::Outcome::Unknown,
                    last_error: None,
                })
            }
        }
    }

    /// The queues a message of `topic` may be sent to; see
    /// [`crate::Producer::fetch_publish_queues`].
    ///
    /// # Errors
    ///
    /// As [`crate::Producer::fetch_publish_queues`].
    pub fn fetch_publish_queues(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<MessageQueue>, Error>> + 'static {
        let core = Rc::clone(&self.core);
        let topic = topic.to_owned();
        async move {
            crate::message::validate_topic(&topic)?;
            let config = &core.shared.config;
            let wire = match &config.namespace {
                Some(ns) => crate::namespace::wrap(ns, &topic),
                None => topic,
            };
            let deadline = deadline_after(Instant::now(), config.send_timeout);
            let route = core.route_for(&wire, deadline).await?;
            Ok(crate::engine::target_queue::publish_queues(
                &route,
                config.namespace.as_deref(),
            ))
        }
    }

    /// One message sent in `mode` with `options`, its reply mapped by `finish`.
    fn single<T: 'static>(
        &self,
        message: Message,
        mode: SendMode,
        options: &SendOptions,
        finish: fn(Reply) -> Result<T, Error>,
    ) -> impl Future<Output = Result<T, Error>> + 'static {
        let timeout = options
            .timeout
            .unwrap_or(self.core.shared.config.send_timeout);
        // One clock read for the budget and the born time (none while answers are dispatched).
        let (started, born) = self.core.records.now_and_millis();
        let deadline = deadline_after(started, timeout);
        let extras = SendExtras::from_options(options);
        let step = self.start_one(message, extras, mode, (started, deadline), born);
        drive(
            Rc::clone(&self.core),
            step,
            mode,
            (started, deadline),
            finish,
        )
    }

    /// Prepares `message` here (a plain one joins its automatic batch at once, or starts with
    /// its properties written straight into the request), or hands a large body that must be
    /// compressed to the blocking pool, then takes the message to the point where it waits.
    fn start_one(
        &self,
        message: Message,
        extras: Option<Box<SendExtras>>,
        mode: SendMode,
        (started, deadline): (Instant, Instant),
        born: i64,
    ) -> Step {
        let core = &self.core;
        let config = &core.shared.config;
        if message.body.len() >= config.compress_over
            && message.body.len() >= OFFLOAD_COMPRESSION_OVER
        {
            return Step::Compress(message, extras);
        }
        let mut message = message;
        if extras.is_none()
            && (core.batcher.is_none() || mode != SendMode::Oneway)
            && is_plain(&message, config)
            && !is_closing(core)
        {
            let mut answer = None;
            let open_slot = || {
                let (reply, receiver) = reply_pair(&core.reply_slots);
                answer = Some(receiver);
                ReplyTarget::Slot(reply)
            };
            match hand_over_plain(core, message, mode, (started, deadline), born, open_slot) {
                Ok(()) => match answer {
                    Some(answer) => return Step::Waiting(answer),
                    None => return Step::Done(Err(no_reply_slot())),
                },
                Err(PlainRefusal::Invalid(e)) => return Step::Done(Err(e)),
                // No room: prepared as usual below, to wait for a permit.
                Err(PlainRefusal::NoRoom(refused)) => message = refused,
            }
        }
        match prepare_at(message, config, extras, born) {
            Ok(prepared) => admit(&self.core, Outgoing::One(prepared), mode, deadline),
            Err(refused) => Step::Done(Err(refused)),
        }
    }
}
