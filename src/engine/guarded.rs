//! Tasks whose panic stays theirs: a panic in one task (user code run with `run_on_core`, or a
//! bug of ours) ends that task only. Its future is dropped, so every reply it owed resolves
//! (`CoreStopped`), and the core goes on serving everybody else.
//!
//! Without it a panic unwinds the whole executor, and tasks kept alive by reference cycles
//! (connection → in-flight slot → waker → task) are never dropped: their callers wait forever.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt;

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `call` (callers' code: a handler, hook, selector or listener); a panic in it ends that
/// call only and comes back as its text, for the caller to log and answer.
pub(crate) fn call_guarded<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|payload| panic_text(&*payload))
}

/// Spawns `future` on this core; a panic inside it is logged and handed to `on_panic`.
pub(crate) fn spawn_guarded<F>(what: &'static str, future: F, on_panic: impl FnOnce(&str) + 'static)
where
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(async move {
        if let Err(payload) = AssertUnwindSafe(future).catch_unwind().await {
            let text = panic_text(&*payload);
            tracing::error!(task = what, panic = %text, "a task on a producer core panicked; the core goes on");
            on_panic(&text);
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::call_guarded;

    #[test]
    fn a_guarded_call_returns_its_value_or_its_panic_text() {
        assert_eq!(call_guarded(|| 7), Ok(7));
        assert_eq!(
            call_guarded(|| -> u8 { panic!("bad {}", 1) }),
            Err("bad 1".to_owned())
        );
        assert_eq!(
            call_guarded(|| -> u8 { std::panic::panic_any(3u8) }),
            Err("a panic without a message".to_owned())
        );
    }
}
