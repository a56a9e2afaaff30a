//! Knows when every send a core took in before a point in time has finished, for `flush()`.
//!
//! ```text
//!  sends get the current epoch with their in-flight permit ─ counts[epoch] += 1
//!  flush(): a new epoch starts; wait until every older epoch's count is 0
//!  permit dropped (send finished) ─ counts[epoch] -= 1 ─ drained epochs leave the front
//! ```
//!
//! Sends taken in after the flush started belong to a newer epoch, so a flush under steady
//! load still ends. Core-local (`Cell`/`RefCell`), O(1) per send.

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

/// A send's place in its epoch; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct FlushTicket {
    gate: Rc<FlushGate>,
    epoch: u64,
}

impl Drop for FlushTicket {
    fn drop(&mut self) {
        self.gate.leave(self.epoch);
    }
}

impl FlushGate {
    /// Counts a send into the current epoch.
    pub(crate) fn enter(self: &Rc<Self>) -> FlushTicket {
        let mut counts = self.counts.borrow_mut();
        let epoch = self.front.get() + counts.len() as u64 - 1;
        if let Some(current) = counts.back_mut() {
            *current += 1;
        }
        FlushTicket {
            gate: Rc::clone(self),
            epoch,
        }
    }

    fn leave(&self, epoch: u64) {
        let mut counts = self.counts.borrow_mut();
        let Some(count) = counts.get_mut((epoch - self.front.get()) as usize) else {
            return;
        };
        *count = count.saturating_sub(1);
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
        let a = gate.enter();
        let b = gate.enter();
        let mut first: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        let c = gate.enter(); // after the flush: not waited for
        assert!(!ready(&mut first));
        drop(a);
        assert!(!ready(&mut first));
        let mut second: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        drop(b);
        assert!(ready(&mut first), "a and b done");
        assert!(!ready(&mut second), "c still runs");
        drop(c);
        assert!(ready(&mut second));
        let d = gate.enter();
        drop(d);
        let mut third: Pin<Box<dyn Future<Output = ()>>> = Box::pin(gate.flush());
        assert!(ready(&mut third));
    }
}
