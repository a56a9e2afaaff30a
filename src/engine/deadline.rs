//! Bounding a future by a deadline on the core's timer.

use std::future::Future;
use std::time::Instant;

/// Runs `fut` until `deadline`; `None` when the deadline came first (the future is dropped).
pub(crate) async fn until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    let now = Instant::now();
    if deadline <= now {
        return None;
    }
    let timer = glommio::timer::Timer::new(deadline - now);
    futures_lite::future::or(async { Some(fut.await) }, async {
        timer.await;
        None
    })
    .await
}
