//! The load itself: workers on the producer cores (no hop) or on application threads.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rocketmq_tpc::{
    BatchResult, Error, LocalProducer, LocalTransactionState, Message, Producer, ReceivedMessage,
    SendFuture, SendOptions, SendResult, SendStatus, SendTarget, TransactionListener,
    TransactionProducer, TransactionSendResult,
};

use crate::cli::Mode;

/// Hands out message numbers. Numbering is global: message n of the run is number n, whichever
/// worker sends it (it names the `--keys` suffix, the ordered mode's key and the `--messages`
/// bound).
pub enum Numbers {
    /// One sequence shared by every worker.
    Shared(Arc<AtomicU64>),
    /// Ordered mode: the numbers whose key (`n % keys`) belongs to this worker (key k belongs
    /// to worker `k % workers`), in increasing order. Each key is sent by one worker only, so
    /// its messages reach the engine in number order.
    OwnKeys {
        first_key: u64,
        workers: u64,
        keys: u64,
        /// How many keys this worker owns (0 when there are more workers than keys).
        own: u64,
        next: AtomicU64,
    },
}

impl Numbers {
    /// The numbers of worker `worker` of `workers` in ordered mode with `keys` keys.
    pub fn own_keys(worker: u64, workers: u64, keys: u64) -> Numbers {
        Numbers::OwnKeys {
            first_key: worker,
            workers,
            keys,
            own: keys.saturating_sub(worker).div_ceil(workers),
            next: AtomicU64::new(0),
        }
    }

    /// The first of `count` consecutive numbers (`OwnKeys`: always one number), or `None` when
    /// this worker has none.
    fn take(&self, count: u64) -> Option<u64> {
        match self {
            Numbers::Shared(next) => Some(next.fetch_add(count, Ordering::Relaxed)),
            Numbers::OwnKeys {
                first_key,
                workers,
                keys,
                own,
                next,
            } => {
                if *own == 0 {
                    return None;
                }
                let j = next.fetch_add(1, Ordering::Relaxed);
                Some(j / own * keys + first_key + j % own * workers)
            }
        }
    }
}

/// The transaction listener of `--mode transaction`: every local transaction commits, and so
/// does every check-back (they are counted: the broker should not need any).
#[derive(Default)]
pub struct CommitAll {
    pub checks: AtomicU64,
}

impl TransactionListener for CommitAll {
    type Arg = ();

    fn execute_local_transaction(&self, _: &Message, _: &str, _: ()) -> LocalTransactionState {
        LocalTransactionState::Commit
    }

    fn check_local_transaction(&self, _: &ReceivedMessage) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::Relaxed);
        LocalTransactionState::Commit
    }
}

/// The producer of `--mode transaction`.
pub type Transactions = TransactionProducer<CommitAll>;

/// A transaction counts as acked when its half message was stored (`SEND_OK`), the local
/// transaction committed and END_TRANSACTION was written.
fn transaction_outcome(result: Result<TransactionSendResult, Error>) -> Result<(), String> {
    let r = result.map_err(|e| e.kind().as_str().to_owned())?;
    if r.send_result.status != SendStatus::SendOk || r.state != LocalTransactionState::Commit {
        return Err(format!("rolled_back_half_{:?}", r.send_result.status));
    }
    match r.end_error {
        Some(e) => Err(format!("end_transaction_{}", e.kind())),
        None => Ok(()),
    }
}

/// What every worker must do.
#[derive(Clone)]
pub struct Plan {
    pub mode: Mode,
    pub topic: rocketmq_tpc::Topic,
    /// A body of the largest size; messages take a prefix of it (zero-copy).
    pub body: bytes::Bytes,
    /// Body sizes MIN..=MAX, else every body is `body`.
    pub size_range: Option<(usize, usize)>,
    pub tags: Option<String>,
    pub keys: Option<String>,
    /// Ordered mode: message n goes with key `n % keys_count`.
    pub keys_count: u64,
    /// This worker's message numbers.
    pub numbers: Arc<Numbers>,
    /// Messages of the whole run (all workers).
    pub messages: Option<u64>,
    pub until: Instant,
    pub inflight: usize,
    /// Messages per request (explicit batch mode), else 1.
    pub batch: usize,
    /// Messages per second of the whole run (open loop), if any.
    pub rate: Option<f64>,
    pub started: Instant,
}

impl Plan {
    fn message(&self, n: u64) -> Message {
        let body = match self.size_range {
            Some((lo, hi)) => {
                // Deterministic spread over the range (a multiplicative hash of n).
                let span = (hi - lo + 1) as u64;
                let len =
                    lo + (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % span as usize;
                self.body.slice(..len)
            }
            None => self.body.clone(),
        };
        let mut m = Message::new(self.topic.clone(), body);
        if let Some(t) = &self.tags {
            m = m.with_tags(t.clone());
        }
        if let Some(k) = &self.keys {
            m = m.with_keys([format!("{k}{n}")]);
        }
        m
    }

    /// Per-call options of message `n`: ordered mode sends it with its key's target.
    fn options(&self, n: u64) -> SendOptions {
        let options = SendOptions::new();
        if self.mode == Mode::Ordered {
            options.target(SendTarget::by_key(format!("{}", n % self.keys_count)))
        } else {
            options
        }
    }

    /// When the request starting at message `n` should start (open loop).
    fn intended(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.started + Duration::from_secs_f64(n as f64 / r))
    }

    /// The next request at time `now`: its first message number and how many messages it
    /// holds, or `None` when the worker is done.
    fn claim(&self, now: Instant) -> Option<(u64, u64)> {
        if now >= self.until {
            return None;
        }
        let n = self.numbers.take(self.batch as u64)?;
        let limit = self.messages.unwrap_or(u64::MAX);
        if n >= limit {
            return None;
        }
        Some((n, (self.batch as u64).min(limit - n)))
    }
}

/// Live counters of one worker (written by that worker only).
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

/// What a worker reports at the end.
pub struct Outcome {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Histogram<u64>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

struct Tally {
    errors: RefCell<BTreeMap<String, u64>>,
    latency: RefCell<Histogram<u64>>,
    sent: Cell<u64>,
    acked: Cell<u64>,
    failed: Cell<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            errors: RefCell::new(BTreeMap::new()),
            latency: RefCell::new(new_histogram()),
            sent: Cell::new(0),
            acked: Cell::new(0),
            failed: Cell::new(0),
        }
    }

    fn start(&self, live: &Live, messages: u64) {
        // One writer per `Live`: a plain store of the count, no locked read-modify-write.
        self.sent.set(self.sent.get() + messages);
        live.sent.store(self.sent.get(), Ordering::Relaxed);
    }

    /// Records the outcome of a request; an error is counted under its kind.
    fn done(&self, live: &Live, result: Result<(), String>, from: Instant, messages: u64) {
        self.done_at(live, result, from, Instant::now(), messages)
    }

    /// [`Tally::done`] for an outcome that came at `now`.
    fn done_at(
        &self,
        live: &Live,
        result: Result<(), String>,
        from: Instant,
        now: Instant,
        messages: u64,
    ) {
        let nanos = now.saturating_duration_since(from).as_nanos();
        self.done_after(
            live,
            result,
            nanos.min(u128::from(u64::MAX)) as u64,
            messages,
        )
    }

    /// [`Tally::done`] for an outcome that took `nanos` (a delivery report works in nanoseconds
    /// since the run's start: one clock subtraction per message instead of three).
    fn done_after(&self, live: &Live, result: Result<(), String>, nanos: u64, messages: u64) {
        let micros = (nanos / 1000).max(1);
        let _ = self.latency.borrow_mut().record(micros);
        match result {
            Ok(()) => {
                self.acked.set(self.acked.get() + messages);
                live.acked.store(self.acked.get(), Ordering::Relaxed);
            }
            Err(kind) => {
                self.failed.set(self.failed.get() + messages);
                live.failed.store(self.failed.get(), Ordering::Relaxed);
                *self.errors.borrow_mut().entry(kind).or_insert(0) += messages;
            }
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            sent: self.sent.get(),
            acked: self.acked.get(),
            failed: self.failed.get(),
            errors: self.errors.borrow().clone(),
            latency_us: self.latency.borrow().clone(),
        }
    }
}

/// Kind of an error, for the report.
fn kind<T>(result: Result<T, Error>) -> Result<(), String> {
    kind_of(&result)
}

/// [`kind`] of an outcome left where it is (a delivery handler's, dropped after).
fn kind_of<T>(result: &Result<T, Error>) -> Result<(), String> {
    result
        .as_ref()
        .map(|_| ())
        .map_err(|e| e.kind().as_str().to_owned())
}

/// Whether `plan` runs through delivery reports on the cores (async, sync and automatic
/// batching, closed or open loop, unless `--futures`).
pub fn uses_reports(plan: &Plan, futures: bool) -> bool {
    !futures && matches!(plan.mode, Mode::Async | Mode::Sync | Mode::AutoBatch)
}

/// Runs `plan` on a producer core through [`LocalProducer::send_reported`], the crate's fast
/// path: `plan.inflight` sends outstanding, and each outcome, reported on the core, records its
/// latency and sends the next message from inside the delivery handler (no task, future or
/// wake-up per message). In open loop (`--rate`) one pacing loop sleeps until the next message
/// is due and sends every message due by then: one timer for the worker, not one per send.
pub async fn reported_worker(local: LocalProducer, plan: Plan, live: Arc<Live>) -> Outcome {
    let pump = Rc::new(Pump {
        local: local.clone(),
        base: plan.started,
        plan,
        live,
        tally: Tally::new(),
        outstanding: Cell::new(0),
        refused: RefCell::new(None),
        held: Cell::new(None),
        exhausted: Cell::new(false),
        waker: Cell::new(None),
    });
    let handler_pump = Rc::clone(&pump);
    local.set_delivery_handler(move |token, result| {
        let pump = &handler_pump;
        pump.outstanding.set(pump.outstanding.get() - 1);
        // The token is the send's start in nanoseconds since `base`.
        let now = pump
            .local
            .now()
            .saturating_duration_since(pump.base)
            .as_nanos() as u64;
        pump.tally
            .done_after(&pump.live, kind_of(&result), now.saturating_sub(token), 1);
        pump.fill();
    });
    pump.fill();
    loop {
        futures_lite::future::poll_fn(|cx| {
            if pump.finished() || pump.held.get().is_some() {
                return std::task::Poll::Ready(());
            }
            pump.waker.set(Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
        .await;
        let Some((_, due)) = pump.held.get() else {
            break;
        };
        let now = Instant::now();
        if due > now {
            glommio::timer::sleep(due - now).await;
        }
        pump.fill();
    }
    // Drops the handler, and with it its hold on the pump.
    local.set_delivery_handler(|_, _| {});
    pump.tally.outcome()
}

struct Pump {
    local: LocalProducer,
    /// The run's start: tokens are nanoseconds since it (the send's start, or its intended
    /// time in open loop).
    base: Instant,
    plan: Plan,
    live: Arc<Live>,
    tally: Tally,
    outstanding: Cell<usize>,
    /// A message the core refused for lack of room, sent again after the next outcome.
    refused: RefCell<Option<(Message, u64)>>,
    /// Open loop: the next message number and when it is due, claimed but not yet due.
    held: Cell<Option<(u64, Instant)>>,
    exhausted: Cell<bool>,
    waker: Cell<Option<std::task::Waker>>,
}

impl Pump {
    fn finished(&self) -> bool {
        self.exhausted.get() && self.outstanding.get() == 0 && self.refused.borrow().is_none()
    }

    /// The next message number to send at `now` and when it was due (`now` in closed loop),
    /// or `None` when the plan is done or (open loop) the next one is not due yet.
    fn next_due(&self, now: Instant) -> Option<(u64, Instant)> {
        let (n, due) = match self.held.take() {
            Some(held) => held,
            None => {
                let Some((n, _)) = self.plan.claim(now) else {
                    self.exhausted.set(true);
                    return None;
                };
                match self.plan.intended(n) {
                    Some(at) if at > self.plan.until => {
                        self.exhausted.set(true);
                        return None;
                    }
                    Some(at) => (n, at),
                    None => (n, now),
                }
            }
        };
        if due > now {
            self.held.set(Some((n, due)));
            return None;
        }
        Some((n, due))
    }

    /// Sends until `inflight` are outstanding, the plan is done or the next message is not due.
    fn fill(&self) {
        while self.outstanding.get() < self.plan.inflight.max(1) {
            let next = self.refused.borrow_mut().take();
            let (message, token) = match next {
                Some(next) => next,
                None => {
                    let Some((n, due)) = self.next_due(self.local.now()) else {
                        break;
                    };
                    self.tally.start(&self.live, 1);
                    (self.plan.message(n), (due - self.base).as_nanos() as u64)
                }
            };
            match self.local.send_reported(message, token) {
                Ok(()) => self.outstanding.set(self.outstanding.get() + 1),
                Err(e @ Error::QueueFull { .. })
                    if self.outstanding.get() > 0 && e.returned().message().is_some() =>
                {
                    let message = e.into_message().expect("checked in the guard");
                    *self.refused.borrow_mut() = Some((message, token));
                    break;
                }
                Err(e) => {
                    let from = self.base + Duration::from_nanos(token);
                    self.tally.done(&self.live, kind::<()>(Err(e)), from, 1);
                }
            }
        }
        if self.finished() || self.held.get().is_some() {
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }
}

/// Runs `plan` on a producer core with `plan.inflight` concurrent tasks.
pub async fn core_worker(local: LocalProducer, plan: Plan, live: Arc<Live>) -> Outcome {
    let tally = Rc::new(Tally::new());
    let mut tasks = Vec::new();
    for _ in 0..plan.inflight.max(1) {
        let (local, plan, live, tally) = (local.clone(), plan.clone(), live.clone(), tally.clone());
        tasks.push(glommio::spawn_local(async move {
            loop {
                // One clock read serves the end check and the latency start.
                let now = Instant::now();
                let Some((n, count)) = plan.claim(now) else {
                    return;
                };
                let from = match plan.intended(n) {
                    Some(at) if at > plan.until => return,
                    Some(at) => {
                        if at > now {
                            glommio::timer::sleep(at - now).await;
                        }
                        at
                    }
                    None => now,
                };
                tally.start(&live, count);
                let result = match plan.mode {
                    Mode::Oneway => kind(local.send_oneway(plan.message(n)).await),
                    Mode::Batch => {
                        let batch = (n..n + count).map(|i| plan.message(i)).collect();
                        kind(local.send_batch(batch).await)
                    }
                    Mode::Ordered => kind(local.send_with(plan.message(n), plan.options(n)).await),
                    // Transactions block: `run` gives them application threads.
                    Mode::Sync | Mode::Async | Mode::AutoBatch | Mode::Transaction => {
                        kind(local.send(plan.message(n)).await)
                    }
                };
                tally.done(&live, result, from, count);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    tally.outcome()
}

enum Pending {
    One(SendFuture<SendResult>),
    Oneway(SendFuture<()>),
    Batch(SendFuture<BatchResult>),
}

impl Pending {
    fn wait(self) -> Result<(), String> {
        match self {
            Pending::One(f) => kind(f.wait()),
            Pending::Oneway(f) => kind(f.wait()),
            Pending::Batch(f) => kind(f.wait()),
        }
    }
}

/// Runs `plan` on an application thread (sync and transaction: one at a time; others: a window
/// of futures). `transactions` is set in transaction mode.
pub fn thread_worker(
    producer: Producer,
    transactions: Option<Arc<Transactions>>,
    plan: Plan,
    live: Arc<Live>,
) -> Outcome {
    let tally = Tally::new();
    let window_size = if matches!(plan.mode, Mode::Sync | Mode::Transaction) {
        1
    } else {
        plan.inflight.max(1)
    };
    let mut window: VecDeque<(Pending, Instant, u64)> = VecDeque::new();
    let mut done = false;
    loop {
        if !done && window.len() < window_size {
            let now = Instant::now();
            if let Some((first, count)) = plan.claim(now) {
                let from = match plan.intended(first) {
                    Some(at) if at > plan.until => {
                        done = true;
                        continue;
                    }
                    Some(at) => {
                        if at > now {
                            std::thread::sleep(at - now);
                        }
                        at
                    }
                    None => now,
                };
                tally.start(&live, count);
                let pending = match plan.mode {
                    Mode::Sync | Mode::Transaction => {
                        let result = match &transactions {
                            Some(tx) => {
                                transaction_outcome(tx.send_in_transaction(plan.message(first), ()))
                            }
                            None => kind(producer.send(plan.message(first))),
                        };
                        tally.done(&live, result, from, count);
                        continue;
                    }
                    Mode::Async | Mode::AutoBatch => {
                        Pending::One(producer.send_async(plan.message(first)))
                    }
                    Mode::Ordered => Pending::One(
                        producer.send_async_with(plan.message(first), plan.options(first)),
                    ),
                    Mode::Oneway => Pending::Oneway(producer.send_oneway(plan.message(first))),
                    Mode::Batch => {
                        let batch = (first..first + count).map(|i| plan.message(i)).collect();
                        Pending::Batch(producer.send_batch(batch))
                    }
                };
                window.push_back((pending, from, count));
                continue;
            }
            done = true;
        }
        match window.pop_front() {
            Some((pending, from, count)) => tally.done(&live, pending.wait(), from, count),
            None if done => break,
            None => {}
        }
    }
    tally.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_keys_cover_every_number_once_in_order() {
        for (workers, keys) in [(1, 16), (2, 16), (3, 16), (4, 3), (2, 1)] {
            let mut all = Vec::new();
            for w in 0..workers {
                let numbers = Numbers::own_keys(w, workers, keys);
                let mine: Vec<u64> = std::iter::from_fn(|| numbers.take(1))
                    .take_while(|n| *n < 100)
                    .collect();
                assert!(mine.windows(2).all(|p| p[0] < p[1]), "{mine:?}");
                assert!(mine.iter().all(|n| n % keys % workers == w));
                all.extend(mine);
            }
            all.sort_unstable();
            assert_eq!(
                all,
                (0..100).collect::<Vec<_>>(),
                "{workers} workers, {keys} keys"
            );
        }
    }

    #[test]
    fn shared_numbers_are_global() {
        let shared = Arc::new(AtomicU64::new(0));
        let (a, b) = (
            Numbers::Shared(shared.clone()),
            Numbers::Shared(shared.clone()),
        );
        assert_eq!(a.take(1), Some(0));
        assert_eq!(b.take(4), Some(1));
        assert_eq!(a.take(1), Some(5));
    }
}
