//! Keeps sends to chosen queues in the order they started on a core.
//!
//! ```text
//!  targeted send starts ─ ticket n ─ route, connection (may wait: connect, route fetch)
//!      ─ wait until tickets < n are written or gone ─ write the request ─ next ticket's turn
//! ```
//!
//! Without it a send that finds the connection already open overtakes earlier sends still
//! waking from the connect they shared, and one key's messages are stored out of order. The
//! wait is normally nothing (every step before the write is synchronous on a warm core).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct OrderGate {
    next: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets given up before their turn (their send ended early).
    abandoned: RefCell<BTreeSet<u64>>,
    waiters: RefCell<Vec<Waker>>,
}

/// A send's place in its core's order; gives its turn up when dropped.
#[derive(Debug)]
pub(crate) struct OrderTicket {
    gate: Rc<OrderGate>,
    number: u64,
    done: Cell<bool>,
}

impl OrderGate {
    /// The next ticket.
    pub(crate) fn ticket(self: &Rc<Self>) -> OrderTicket {
        let number = self.next.get();
        self.next.set(number + 1);
        OrderTicket {
            gate: Rc::clone(self),
            number,
            done: Cell::new(false),
        }
    }

    fn advance(&self) {
        let mut serving = self.serving.get() + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while abandoned.remove(&serving) {
                serving += 1;
            }
        }
        self.serving.set(serving);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

impl OrderTicket {
    /// Resolves once every earlier ticket was written or given up.
    pub(crate) fn turn(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(move |cx| {
            if self.gate.serving.get() >= self.number {
                return Poll::Ready(());
            }
            self.gate.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Hands the turn to the next ticket (once this send's request is queued, or failed).
    pub(crate) fn pass(&self) {
        if self.done.replace(true) {
            return;
        }
        if self.gate.serving.get() == self.number {
            self.gate.advance();
        } else {
            self.gate.abandoned.borrow_mut().insert(self.number);
        }
    }
}

impl Drop for OrderTicket {
    fn drop(&mut self) {
        self.pass();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_turn(t: &OrderTicket) -> bool {
        t.gate.serving.get() >= t.number
    }

    #[test]
    fn turns_in_ticket_order_skipping_abandoned() {
        let gate = Rc::new(OrderGate::default());
        let a = gate.ticket();
        let b = gate.ticket();
        let c = gate.ticket();
        let d = gate.ticket();
        assert!(is_turn(&a));
        assert!(!is_turn(&b));
        drop(c); // gave up before its turn
        a.pass();
        assert!(is_turn(&b));
        assert!(!is_turn(&d));
        b.pass();
        assert!(is_turn(&d), "c was skipped");
        b.pass(); // twice is harmless
        drop(d);
        let e = gate.ticket();
        assert!(is_turn(&e));
    }
}
