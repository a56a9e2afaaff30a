//! Hooks around sends and requests (Java `SendMessageHook`, `CheckForbiddenHook`, `RPCHook`).
//!
//! ```text
//!  each attempt:  check_forbidden ─ refuse ─► Error::Forbidden (not sent, not retried)
//!                 before_attempt ─► request hooks (extra header fields) ─► write ─► after_attempt
//!  every request the client writes (sends, heartbeats, route lookups, END_TRANSACTION...):
//!                 RequestHook::before_request(code, fields, body) ─► fields appended
//! ```
//!
//! Hooks run on the producer core that makes the attempt: they must be quick and must not
//! block. With no hook set, a send pays one emptiness check per attempt. A hook that panics
//! is logged and costs its own call or request only, as an exception does in Java: a send
//! hook's call is skipped (the send goes on, the other hooks are called), a forbidden-check
//! refuses the message (`Forbidden`), and a request hook fails its request (`InvalidConfig`:
//! a request without the hook's fields, a signature say, would be the wrong request).

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::message::Message;
use crate::send_result::SendResult;

/// What a hook learns about one attempt of a send.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AttemptContext<'a> {
    /// The producer group (namespace applied).
    pub producer_group: &'a str,
    /// The topic as sent (namespace applied).
    pub topic: &'a str,
    /// The message, for single sends (`None` for batches).
    pub message: Option<&'a Message>,
    /// The broker's address.
    pub broker_addr: &'a str,
    /// The broker's name.
    pub broker_name: &'a str,
    /// The queue id.
    pub queue_id: i32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The message's unique id (`UNIQ_KEY`), for single sends.
    pub unique_id: Option<&'a str>,
    /// Every member's unique id, in order, for batches (`None` for single sends).
    pub batch_unique_ids: Option<&'a [crate::ShortString]>,
    /// The body's size as sent (compressed, for a compressed body).
    pub body_len: usize,
    /// When the attempt started.
    pub started: std::time::Instant,
    /// Wall-clock time the attempt started (Unix ms).
    pub started_unix_ms: i64,
}

/// Called before and after every attempt of a send (Java `SendMessageHook`).
pub trait SendHook: Send + Sync + 'static {
    /// Before the attempt is written.
    fn before_attempt(&self, context: &AttemptContext<'_>) {
        let _ = context;
    }

    /// After the attempt ended: its result (the first of a batch's; `None` for a oneway
    /// request once written), or its error.
    fn after_attempt(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<Option<&SendResult>, &Error>,
    ) {
        let _ = (context, outcome);
    }

    /// After an attempt of a batch ended: every member's result, or the error. By default it
    /// calls [`SendHook::after_attempt`] with the first result.
    fn after_batch_attempt(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<&[SendResult], &Error>,
    ) {
        self.after_attempt(context, outcome.map(|results| results.first()));
    }
}

/// May refuse an attempt before it is written (Java `CheckForbiddenHook`): return the reason.
pub trait CheckForbiddenHook: Send + Sync + 'static {
    /// `Err(reason)` refuses the message with [`Error::Forbidden`].
    fn check_forbidden(&self, context: &AttemptContext<'_>) -> Result<(), String>;
}

/// Called for every request the client writes (Java `RPCHook.doBeforeRequest`): returns extra
/// header fields, appended after the request's own (how ACL signing plugs in).
pub trait RequestHook: Send + Sync + 'static {
    /// `fields` are the request's header fields in wire order; `body` its body.
    fn before_request(
        &self,
        code: i32,
        fields: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)>;
}

/// The hooks of one producer.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub send: Vec<Arc<dyn SendHook>>,
    pub check_forbidden: Vec<Arc<dyn CheckForbiddenHook>>,
    pub request: Vec<Arc<dyn RequestHook>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("send", &self.send.len())
            .field("check_forbidden", &self.check_forbidden.len())
            .field("request", &self.request.len())
            .finish()
    }
}

impl Hooks {
    /// Whether any send or forbidden-check hook is set (request hooks are the connection's).
    pub(crate) fn any_attempt_hook(&self) -> bool {
        !self.send.is_empty() || !self.check_forbidden.is_empty()
    }

    /// Runs the forbidden checks, then the before hooks.
    pub(crate) fn before(&self, context: &AttemptContext<'_>) -> Result<(), Error> {
        for hook in &self.check_forbidden {
            let verdict = call_hook("check_forbidden", || hook.check_forbidden(context))
                .unwrap_or_else(|panic| Err(format!("the forbidden-check hook panicked: {panic}")));
            verdict.map_err(|reason| Error::Forbidden {
                returned: crate::error::Returned::NOTHING,
                reason,
            })?;
        }
        for hook in &self.send {
            let _ = call_hook("before_attempt", || hook.before_attempt(context));
        }
        Ok(())
    }

    /// Runs the after hooks.
    pub(crate) fn after(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<Option<&SendResult>, &Error>,
    ) {
        for hook in &self.send {
            let _ = call_hook("after_attempt", || hook.after_attempt(context, outcome));
        }
    }

    pub(crate) fn after_batch(
        &self,
        context: &AttemptContext<'_>,
        outcome: Result<&[SendResult], &Error>,
    ) {
        for hook in &self.send {
            let _ = call_hook("after_batch_attempt", || {
                hook.after_batch_attempt(context, outcome)
            });
        }
    }
}

/// Runs one hook call; a panic in it is logged and comes back as its text.
fn call_hook<T>(hook: &'static str, call: impl FnOnce() -> T) -> Result<T, String> {
    crate::engine::guarded::call_guarded(call).map_err(|text| {
        tracing::error!(hook, panic = %text, "a hook panicked");
        text
    })
}

/// Collects a header's fields as pairs, for request hooks.
struct CollectFields(Vec<(String, String)>);

impl crate::protocol::ext_fields::ExtFieldWriter for CollectFields {
    fn put_str(&mut self, key: &str, value: &str) {
        self.0.push((key.to_owned(), value.to_owned()));
    }

    fn put_encoded(&mut self, _: &crate::protocol::ext_fields::EncodedFields) {
        // Sends skip their pre-encoded constants when request hooks are set (see send.rs), so
        // every field reaches the hooks as a pair.
        tracing::error!("pre-encoded header fields reached a request hook; they are not signed");
    }
}

impl Hooks {
    /// The header of a request of `code` with the request hooks' fields appended, or `None`
    /// when no request hook is set; a request hook that panics fails the request.
    pub(crate) fn hooked_header(
        &self,
        code: i32,
        header: &dyn crate::protocol::ext_fields::CustomHeader,
        body: &[u8],
    ) -> Result<Option<Vec<(String, String)>>, Error> {
        if self.request.is_empty() {
            return Ok(None);
        }
        let mut fields = CollectFields(Vec::new());
        header.write_fields(&mut fields);
        let mut fields = fields.0;
        for hook in &self.request {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let extra = call_hook("before_request", || hook.before_request(code, &pairs, body))
                .map_err(|panic| Error::InvalidConfig {
                    reason: format!("a request hook panicked: {panic}"),
                })?;
            fields.extend(extra);
        }
        Ok(Some(fields))
    }
}
