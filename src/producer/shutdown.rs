//! Shutdown: stop accepting, wait for outcomes up to a deadline, fail what is left, unregister
//! and join the cores ([`Producer::shutdown`], and the same on the last handle's drop).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, Producer};
use crate::engine::core::current_core;
use crate::engine::deadline::deadline_after;
use crate::engine::inbox::Job;
use crate::error::{Error, Outcome};

/// What [`Producer::shutdown`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sends still running at the deadline; each was failed with [`Error::ShutDown`].
    pub cut_at_deadline: u64,
    /// Queued messages that could not start before the deadline; each was failed with
    /// [`Error::ShutDown`] (definitely not stored).
    pub refused_at_deadline: u64,
    /// Messages found queued after the cores stopped; each was failed with [`Error::ShutDown`].
    pub refused_after_stop: u64,
    /// Whether the cores were joined (false when called from a producer core, which must not block).
    pub joined: bool,
}

impl Producer {
    /// Stops accepting messages, waits up to `timeout` for every accepted message to get its
    /// outcome, fails whatever is left with [`Error::ShutDown`], unregisters from the brokers and
    /// stops the cores. Later calls return the first call's report.
    ///
    /// Called on a producer core's own thread it only signals the cores (it must not block the
    /// core it runs on) and reports `joined: false`.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.inner.shutdown(timeout)
    }
}

impl Inner {
    pub(super) fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut done = self.shutdown_done.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(report) = done.as_ref() {
            return report.clone();
        }
        for reporter in self
            .reporters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            reporter.stop();
        }
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        // Submitters that passed the closing check before we set it finish their push first.
        for slot in &self.cores {
            while slot.inbox.submitters() > 0 {
                std::thread::yield_now();
            }
        }
        *shared
            .shutdown_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline_after(Instant::now(), timeout));
        for slot in &self.cores {
            slot.inbox.request_stop();
        }
        let mut report = ShutdownReport::default();
        if current_core().is_some() {
            tracing::warn!(
                "Producer::shutdown called on a producer core; not waiting for the cores"
            );
            *done = Some(report.clone());
            return report;
        }
        for slot in &self.cores {
            let join = slot.join.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(join) = join {
                match join.join() {
                    Ok(core_report) => {
                        report.cut_at_deadline += core_report.cut_at_deadline;
                        report.refused_at_deadline += core_report.refused_at_shutdown;
                    }
                    Err(e) => tracing::error!(error = %e, "a producer core ended abnormally"),
                }
            }
        }
        for slot in &self.cores {
            while let Some(job) = slot.inbox.try_pop() {
                report.refused_after_stop += 1;
                let Job::Send { message, reply, .. } = job;
                let error = Error::ShutDown {
                    returned: message.into_returned(),
                    outcome: Outcome::NotStored,
                };
                slot.inbox.fail(reply, error);
            }
        }
        report.joined = true;
        tracing::info!(client_id = %shared.client_id, ?report, "producer shut down");
        *done = Some(report.clone());
        report
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown(self.shared.config.send_timeout);
    }
}
