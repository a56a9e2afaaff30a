//! The load itself: workers on the producer cores (no hop) or on application threads.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rocketmq_tpc::{Error, LocalProducer, Message, Producer};

use crate::cli::Mode;

/// What every worker must do.
#[derive(Clone)]
pub struct Plan {
    pub mode: Mode,
    pub topic: String,
    pub body: bytes::Bytes,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub messages: Option<u64>,
    pub until: Instant,
    pub inflight: usize,
    /// Messages per second for this worker (open loop), if any.
    pub rate: Option<f64>,
    pub started: Instant,
}

impl Plan {
    fn message(&self, n: u64) -> Message {
        let mut m = Message::new(self.topic.clone(), self.body.clone());
        if let Some(t) = &self.tags {
            m = m.with_tags(t.clone());
        }
        if let Some(k) = &self.keys {
            m = m.with_keys([format!("{k}{n}")]);
        }
        m
    }

    /// When message `n` of this worker should start (open loop), or now.
    fn intended(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.started + Duration::from_secs_f64(n as f64 / r))
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

    fn done(&self, live: &Live, result: Result<(), Error>, from: Instant) {
        let _ = self
            .latency
            .borrow_mut()
            .record(from.elapsed().as_micros().max(1) as u64);
        match result {
            Ok(()) => {
                self.acked.set(self.acked.get() + 1);
                live.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.set(self.failed.get() + 1);
                live.failed.fetch_add(1, Ordering::Relaxed);
                *self
                    .errors
                    .borrow_mut()
                    .entry(e.kind().to_owned())
                    .or_insert(0) += 1;
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

/// Runs `plan` on producer core `core` with `plan.inflight` concurrent tasks.
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
                if plan.messages.is_some_and(|m| n >= m) || Instant::now() >= plan.until {
                    return;
                }
                next.set(n + 1);
                let from = match plan.intended(n) {
                    Some(at) => {
                        if at > plan.until {
                            return;
                        }
                        let now = Instant::now();
                        if at > now {
                            glommio::timer::sleep(at - now).await;
                        }
                        at
                    }
                    None => Instant::now(),
                };
                tally.sent.set(tally.sent.get() + 1);
                live.sent.fetch_add(1, Ordering::Relaxed);
                let message = plan.message(n);
                let result = match plan.mode {
                    Mode::Oneway => local.send_oneway(message).await,
                    _ => local.send(message).await.map(|_| ()),
                };
                tally.done(&live, result, from);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    tally.outcome()
}

/// Runs `plan` on an application thread (sync: one at a time; async/oneway: a window of futures).
pub fn thread_worker(producer: Producer, plan: Plan, live: Arc<Live>) -> Outcome {
    let tally = Tally::new();
    let mut window: VecDeque<(Pending, Instant)> = VecDeque::new();
    let mut n = 0u64;
    loop {
        let more = plan.messages.is_none_or(|m| n < m) && Instant::now() < plan.until;
        if !more && window.is_empty() {
            break;
        }
        if more
            && (plan.mode != Mode::Sync && window.len() < plan.inflight.max(1) || window.is_empty())
        {
            let from = match plan.intended(n) {
                Some(at) if at > plan.until => {
                    n = u64::MAX;
                    continue;
                }
                Some(at) => {
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    at
                }
                None => Instant::now(),
            };
            let message = plan.message(n);
            n += 1;
            tally.sent.set(tally.sent.get() + 1);
            live.sent.fetch_add(1, Ordering::Relaxed);
            match plan.mode {
                Mode::Sync => {
                    let r = producer.send(message).map(|_| ());
                    tally.done(&live, r, from);
                }
                Mode::Async => {
                    window.push_back((Pending::Result(producer.send_async(message)), from))
                }
                Mode::Oneway => {
                    window.push_back((Pending::Unit(producer.send_oneway(message)), from))
                }
            }
            continue;
        }
        if let Some((f, from)) = window.pop_front() {
            tally.done(&live, f.wait(), from);
        }
    }
    tally.outcome()
}

enum Pending {
    Result(rocketmq_tpc::SendFuture<rocketmq_tpc::SendResult>),
    Unit(rocketmq_tpc::SendFuture<()>),
}

impl Pending {
    fn wait(self) -> Result<(), Error> {
        match self {
            Pending::Result(f) => f.wait().map(|_| ()),
            Pending::Unit(f) => f.wait(),
        }
    }
}
