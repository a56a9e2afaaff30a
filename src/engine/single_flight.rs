//! Core-local "single flight": concurrent callers asking for the same key share one piece of work
//! (one connect per broker, one route fetch per topic).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::rc::Rc;
use std::task::{Poll, Waker};

struct Flight<V> {
    result: RefCell<Option<V>>,
    /// The work panicked: the waiters get `None`.
    failed: std::cell::Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// Shares in-progress work per key, on one core.
pub(crate) struct SingleFlight<K, V> {
    flights: RefCell<HashMap<K, Rc<Flight<V>>>>,
}

impl<K: Hash + Eq + Clone + 'static, V: Clone + 'static> SingleFlight<K, V> {
    pub(crate) fn new() -> Self {
        SingleFlight {
            flights: RefCell::new(HashMap::new()),
        }
    }

    /// Runs `work` for `key` unless it is already running, and waits for its result (`None`
    /// when the work panicked).
    ///
    /// The work runs in its own detached task, so a caller that gives up (timeout) does not cancel
    /// it for the others. Callers bound their own wait.
    pub(crate) async fn run<F>(self: &Rc<Self>, key: K, work: impl FnOnce() -> F) -> Option<V>
    where
        F: Future<Output = V> + 'static,
    {
        let existing = self.flights.borrow().get(&key).cloned();
        let flight = match existing {
            Some(flight) => flight,
            None => {
                let flight = Rc::new(Flight {
                    result: RefCell::new(None),
                    failed: std::cell::Cell::new(false),
                    waiters: RefCell::new(Vec::new()),
                });
                self.flights
                    .borrow_mut()
                    .insert(key.clone(), flight.clone());
                let fut = work();
                let this = Rc::clone(self);
                let leader = flight.clone();
                let (failed_this, failed_flight, failed_key) =
                    (Rc::clone(self), flight.clone(), key.clone());
                super::guarded::spawn_guarded(
                    "shared work",
                    async move {
                        let value = fut.await;
                        this.flights.borrow_mut().remove(&key);
                        *leader.result.borrow_mut() = Some(value);
                        for w in leader.waiters.borrow_mut().drain(..) {
                            w.wake();
                        }
                    },
                    move |_| {
                        failed_this.flights.borrow_mut().remove(&failed_key);
                        failed_flight.failed.set(true);
                        for w in failed_flight.waiters.borrow_mut().drain(..) {
                            w.wake();
                        }
                    },
                );
                flight
            }
        };
        futures_lite::future::poll_fn(|cx| {
            if let Some(v) = flight.result.borrow().as_ref() {
                return Poll::Ready(Some(v.clone()));
            }
            if flight.failed.get() {
                return Poll::Ready(None);
            }
            let mut waiters = flight.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}
