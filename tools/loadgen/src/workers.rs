//! The load itself: workers on the producer cores (no hop) or on application threads.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rocketmq_tpc::{Error, LocalProducer, Message, Producer, SendFuture, SendResult};

use crate::cli::Mode;

/// What every worker must do.
#[derive(Clone)]
pub struct Plan {
    pub mode: Mode,
    pub topic: String,
    /// A body of the largest size; messages take a prefix of it (zero-copy).
    pub body: bytes::Bytes,
    /// Body sizes MIN..=MAX, else every body is `body`.
    pub size_range: Option<(usize, usize)>,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub messages: Option<u64>,
    pub until: Instant,
    pub inflight: usize,
    /// Messages per request (explicit batch mode), else 1.
    pub batch: usize,
    /// Requests per second for this worker (open loop), if any.
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

    /// When the request starting at message `n` should start (open loop).
    fn intended(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.started + Duration::from_secs_f64(n as f64 / r))
    }

    /// Messages in the request starting at `n` at time `now`, or `None` when the worker is done.
    fn next_count(&self, n: u64, now: Instant) -> Option<u64> {
        if self.messages.is_some_and(|m| n >= m) || now >= self.until {
            return None;
        }
        Some((self.batch as u64).min(self.messages.map_or(u64::MAX, |m| m - n)))
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
        self.sent.set(self.sent.get() + messages);
        live.sent.fetch_add(messages, Ordering::Relaxed);
    }

    fn done(&self, live: &Live, result: Result<(), Error>, from: Instant, messages: u64) {
        let micros = from.elapsed().as_micros().max(1) as u64;
        let _ = self.latency.borrow_mut().record(micros);
        match result {
            Ok(()) => {
                self.acked.set(self.acked.get() + messages);
                live.acked.fetch_add(messages, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.set(self.failed.get() + messages);
                live.failed.fetch_add(messages, Ordering::Relaxed);
                let mut errors = self.errors.borrow_mut();
                *errors.entry(e.kind().to_owned()).or_insert(0) += messages;
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

/// Runs `plan` on a producer core with `plan.inflight` concurrent tasks.
pub async fn core_worker(local: LocalProducer, plan: Plan, live: Arc<Live>) -> Outcome {
    let tally = Rc::new(Tally::new());
    let next = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for _ in 0..plan.inflight.max(1) {
        let (local, plan, live, tally, next) = (
            local.clone(),
            plan.clone(),
            live.clone(),
            tally.clone(),
            next.clone(),
        );
        tasks.push(glommio::spawn_local(async move {
            loop {
                let n = next.get();
                // One clock read serves the end check and the latency start.
                let now = Instant::now();
                let Some(count) = plan.next_count(n, now) else {
                    return;
                };
                next.set(n + count);
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
                    Mode::Oneway => local.send_oneway(plan.message(n)).await,
                    Mode::Batch => {
                        let batch = (n..n + count).map(|i| plan.message(i)).collect();
                        local.send_batch(batch).await.map(|_| ())
                    }
                    Mode::Sync | Mode::Async | Mode::AutoBatch => {
                        local.send(plan.message(n)).await.map(|_| ())
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
    Batch(SendFuture<Vec<SendResult>>),
}

impl Pending {
    fn wait(self) -> Result<(), Error> {
        match self {
            Pending::One(f) => f.wait().map(|_| ()),
            Pending::Oneway(f) => f.wait(),
            Pending::Batch(f) => f.wait().map(|_| ()),
        }
    }
}

/// Runs `plan` on an application thread (sync: one at a time; others: a window of futures).
pub fn thread_worker(producer: Producer, plan: Plan, live: Arc<Live>) -> Outcome {
    let tally = Tally::new();
    let window_size = if plan.mode == Mode::Sync {
        1
    } else {
        plan.inflight.max(1)
    };
    let mut window: VecDeque<(Pending, Instant, u64)> = VecDeque::new();
    let mut n = 0u64;
    let mut done = false;
    loop {
        if !done && window.len() < window_size {
            let now = Instant::now();
            if let Some(count) = plan.next_count(n, now) {
                let from = match plan.intended(n) {
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
                let first = n;
                n += count;
                tally.start(&live, count);
                let pending = match plan.mode {
                    Mode::Sync => {
                        let result = producer.send(plan.message(first)).map(|_| ());
                        tally.done(&live, result, from, count);
                        continue;
                    }
                    Mode::Async | Mode::AutoBatch => {
                        Pending::One(producer.send_async(plan.message(first)))
                    }
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
