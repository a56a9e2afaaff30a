//! Knows when every send a core took in before a point in time has finished, for `flush()`.
//!
//! ```text
//!  sends get the current epoch with their in-flight permit ─ counts[epoch] += 1
//!  flush(): a new epoch starts; wait until every older epoch's count is 0
//!  permit dropped (its n sends finished) ─ counts[epoch] -= n ─ drained epochs leave the front
//!  permits merged (an automatic batch's) ─ the newer one's n move to the older epoch
//! ```
//!
//! Sends taken in after the flush started belong to a newer epoch, so a flush under steady
//! load still ends. Merged sends end together, so counting them in the older epoch makes no
//! flush end early and keeps none waiting longer than its own sends take. Core-local
//! (`Cell`/`RefCell`), O(1) per send.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
pub(crate) struct FlushGate {
    /// Epoch of `counts[0]`.
    front: Cell<u64>,
    /// Sends in progress per epoch, oldest first; the last is the current epoch.
    counts: RefCell<VecDeque<u64>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Default for FlushGate {
    fn default() -> Self {
        FlushGate {
            front: Cell::new(0),
            counts: RefCell::new(VecDeque::from([0])),
            waiters: RefCell::new(Vec::new()),
        }
    }
}

impl FlushGate {
    /// Counts a send into the current epoch, which it returns: the send hands it back to
    /// [`FlushGate::leave`] when it ends.
    pub(crate) fn enter(&self) -> u64 {
        let mut counts = self.counts.borrow_mut();
        let epoch = self.front.get() + counts.len() as u64 - 1;
        if let Some(current) = counts.back_mut() {
            *current += 1;
        }
        epoch
    }

    /// `sends` sends of `epoch` ended.
    pub(crate) fn leave(&self, epoch: u64, sends: u64) {
        if sends == 0 {
            return;
        }
        let mut counts = self.counts.borrow_mut();
        let Some(count) = counts.get_mut((epoch - self.front.get()) as usize) else {
            return;
        };
        *count = count.saturating_sub(sends);
        let mut advanced = false;
        while counts.len() > 1 && counts.front() == Some(&0) {
            counts.pop_front();
            self.front.set(self.front.get() + 1);
            advanced = true;
        }
        let drained = counts.len() == 1 && counts.front() == Some(&0);
        drop(counts);
        if advanced || drained {
            for waker in self.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Makes two groups of sends that end together (`sends` sends of `epoch` each, neither
    /// ended) one group, counted in the older epoch, which it returns: a flush of the newer
    /// epoch waits for the older anyway, and one of the older now also waits for sends that
    /// end at the same moment as its own.
    pub(crate) fn merge(&self, a: (u64, u64), b: (u64, u64)) -> u64 {
        let ((older, _), (newer, moved)) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        if older != newer && moved > 0 {
            let front = self.front.get();
            let mut counts = self.counts.borrow_mut();
            if let Some(count) = counts.get_mut((newer - front) as usize) {
                *count = count.saturating_sub(moved);
            }
            if let Some(count) = counts.get_mut((older - front) as usize) {
                *count += moved;
            }
        }
        older
    }

    /// Starts a new epoch; the returned future ends once every send of the older epochs ended.
    pub(crate) fn flush(self: &Rc<Self>) -> impl Future<Output = ()> + 'static {
        let epoch = {
            let mut counts = self.counts.borrow_mut();
            let epoch = self.front.get() + counts.len() as u64 - 1;
            counts.push_back(0);
            epoch
        };
        // The new epoch may make the old one leave at once (nothing in progress).
        self.leave_empty_front();
        FlushWait {
            gate: Rc::clone(self),
            epoch,
        }
    }

    fn leave_empty_front(&self) {
        let mut counts = self.counts.borrow_mut();
        while counts.len() > 1 && counts.front() == Some(&0) {
            counts.pop_front();
            self.front.set(self.front.get() + 1);
        }
    }

    fn is_done(&self, epoch: u64) -> bool {
        let front = self.front.get();
        epoch < front || (epoch == front && self.counts.borrow().front() == Some(&0))
    }
}

struct FlushWait {
    gate: Rc<FlushGate>,
    epoch: u64,
}

impl Future for FlushWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.is_done(self.epoch) {
            return Poll::Ready(());
        }
        self.gate.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A send's place in its epoch, leaving it when dropped (as a permit does).
    struct FlushTicket {
        gate: Rc<FlushGate>,
        epoch: u64,
        sends: u64,
    }

    impl Drop for FlushTicket {
        fn drop(&mut self) {
            self.gate.leave(self.epoch, self.sends);
        }
    }

    fn enter(gate: &Rc<FlushGate>) -> FlushTicket {
        FlushTicket {
            gate: Rc::clone(gate),
            epoch: gate.enter(),
            sends: 1,
        }
    }

    fn ready(f: &mut Pin<Box<dyn Future<Output = ()>>>) -> bool {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        f.as_mut().poll(&mut Context::from_waker(&waker)).is_ready()
    }

    #[test]
    fn flush_waits_for_older_sends_only() {
        let gate = Rc::new(FlushGate::default());
        let mut idle: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        assert!(ready(&mut idle), "nothing in progress: done at once");
        let a = enter(&gate);
        let b = enter(&gate);
        let mut first: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        let c = enter(&gate); // after the flush: not waited for
        assert!(!ready(&mut first));
        drop(a);
        assert!(!ready(&mut first));
        let mut second: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        drop(b);
        assert!(ready(&mut first), "a and b done");
        assert!(!ready(&mut second), "c still runs");
        drop(c);
        assert!(ready(&mut second));
        let d = enter(&gate);
        drop(d);
        let mut third: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        assert!(ready(&mut third));
    }

    /// One step of a core's life as the gate sees it.
    #[derive(Debug, Clone)]
    enum Step {
        /// A send is taken in.
        Enter,
        /// The `pick`-th send ever taken in ends (if it has not).
        Leave { pick: usize },
        /// `flush()` is called.
        Flush,
        /// The caller of the `pick`-th flush polls it.
        Poll { pick: usize },
        /// The caller of the `pick`-th flush gives up on it.
        Abandon { pick: usize },
        /// The sends of `a`'s group and `b`'s become one group, ending together (an automatic
        /// batch's permits absorbing each other).
        Absorb { a: usize, b: usize },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => Just(Step::Enter),
            4 => (0usize..48).prop_map(|pick| Step::Leave { pick }),
            2 => Just(Step::Flush),
            3 => (0usize..16).prop_map(|pick| Step::Poll { pick }),
            1 => (0usize..16).prop_map(|pick| Step::Abandon { pick }),
            2 => (0usize..48, 0usize..48).prop_map(|(a, b)| Step::Absorb { a, b }),
        ]
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Waiting {
        future: Option<Pin<Box<dyn Future<Output = ()>>>>,
        /// Sends taken in before it (by their number).
        before: usize,
        wakes: std::sync::Arc<Counter>,
        /// Wake-ups counted when it last returned Pending (`None`: not pending).
        pending_at: Option<usize>,
    }

    proptest::proptest! {
        /// Random interleavings of sends taken in, merged into groups and ending, flushes started,
        /// polled and abandoned: a flush is ready exactly when every send taken in before it has
        /// ended (a merged send ends with its group), and one that returned Pending is woken once
        /// that happens (no flush hangs).
        #[test]
        fn a_flush_ends_exactly_when_older_sends_have_and_is_woken(
            steps in proptest::collection::vec(step(), 1..150)
        ) {
            use std::sync::atomic::Ordering;
            let gate = Rc::new(FlushGate::default());
            // One group per send at first; `group_of[i]` is send i's (a live ticket: not ended).
            let mut groups: Vec<Option<FlushTicket>> = Vec::new();
            let mut group_of: Vec<usize> = Vec::new();
            let mut flushes: Vec<Waiting> = Vec::new();
            let ended_before = |groups: &[Option<FlushTicket>], group_of: &[usize], n: usize| {
                group_of[..n].iter().all(|&g| groups[g].is_none())
            };
            for step in steps {
                match step {
                    Step::Enter => {
                        group_of.push(groups.len());
                        groups.push(Some(enter(&gate)));
                    }
                    Step::Leave { pick } => {
                        if let Some(&g) = group_of.get(pick) {
                            groups[g].take();
                        }
                    }
                    Step::Absorb { a, b } => {
                        let (Some(&ga), Some(&gb)) = (group_of.get(a), group_of.get(b)) else {
                            continue;
                        };
                        if ga == gb || groups[ga].is_none() || groups[gb].is_none() {
                            continue;
                        }
                        let mut absorbed = groups[gb].take().unwrap();
                        let into = groups[ga].as_mut().unwrap();
                        into.epoch = gate.merge(
                            (into.epoch, into.sends),
                            (absorbed.epoch, absorbed.sends),
                        );
                        into.sends += std::mem::take(&mut absorbed.sends);
                        drop(absorbed);
                        for g in group_of.iter_mut().filter(|g| **g == gb) {
                            *g = ga;
                        }
                    }
                    Step::Flush => flushes.push(Waiting {
                        future: Some(Box::pin(gate.flush())),
                        before: group_of.len(),
                        wakes: std::sync::Arc::new(Counter(0.into())),
                        pending_at: None,
                    }),
                    Step::Poll { pick } => {
                        if let Some(w) = flushes.get_mut(pick) {
                            let done = ended_before(&groups, &group_of, w.before);
                            if let Some(future) = w.future.as_mut() {
                                let waker = std::task::Waker::from(w.wakes.clone());
                                let ready = future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
                                proptest::prop_assert_eq!(ready, done, "flush {} ready", pick);
                                w.pending_at = (!ready).then(|| w.wakes.0.load(Ordering::SeqCst));
                                if ready {
                                    w.future = None;
                                }
                            }
                        }
                    }
                    Step::Abandon { pick } => {
                        if let Some(w) = flushes.get_mut(pick) {
                            w.future = None;
                        }
                    }
                }
                for (i, w) in flushes.iter().enumerate() {
                    let (Some(_), Some(at)) = (&w.future, w.pending_at) else { continue };
                    if ended_before(&groups, &group_of, w.before) {
                        proptest::prop_assert!(
                            w.wakes.0.load(Ordering::SeqCst) > at,
                            "flush {} can end but was not woken", i
                        );
                    }
                }
            }
        }
    }
}
