//! Progress reports and cancellation for long attribution requests.
//!
//! Every attribution pass (a forward, or a forward and backward, over one chunk of
//! rows) goes through `gradients::in_chunks`; after each pass it tells the request's
//! `Progress` handle how far it got. The handle answers whether to go on: `false`
//! stops the request within one pass with an error of kind `Cancelled`. The daemon
//! builds the handle from the response stream (a client that went away answers
//! `false`); a scheduler can add its own cancel flag with `Progress::and`, so the
//! engine never needs to know where a cancellation came from.

use crate::error::{Error, ErrorKind, Result};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How far a request got, after one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// Passes (forward or forward+backward calls) run so far by the whole request.
    pub passes_done: u64,
    /// `passes_done` plus the passes the current phase still needs; the request's
    /// total when the current phase is its last (it is for every method's main phase).
    pub passes_total: Option<u64>,
    /// Rows of the current phase evaluated so far, and how many it has.
    pub rows_done: u64,
    pub rows_total: u64,
    /// What the current phase computes, e.g. `gradient passes`, or
    /// `randomised fc2: forward passes` in a sanity check.
    pub phase: String,
}

/// The callback's type: called after each pass, answers whether to go on.
type Report = dyn Fn(&ProgressUpdate) -> bool + Send + Sync;

/// A request's progress and cancellation handle; cheap to clone (shared).
#[derive(Clone)]
pub struct Progress {
    report: Arc<Report>,
}

impl Progress {
    /// A handle that calls `report` after every pass; `report` answers `false` to stop
    /// the request. It runs on the model's worker thread between passes, so it must be
    /// quick (no waiting on a slow client).
    pub fn new(report: impl Fn(&ProgressUpdate) -> bool + Send + Sync + 'static) -> Progress {
        Progress { report: Arc::new(report) }
    }

    /// A handle that reports nothing and stops the request once `flag` is set.
    pub fn cancelled_when(flag: Arc<AtomicBool>) -> Progress {
        Progress::new(move |_| !flag.load(Ordering::Relaxed))
    }

    /// Both handles see every update; the request stops when either says stop.
    pub fn and(self, other: Progress) -> Progress {
        Progress::new(move |update| {
            // Both are asked even when the first says stop, so each sees the same updates.
            let first = (self.report)(update);
            let second = (other.report)(update);
            first && second
        })
    }

    /// One handle for work shared by several callers (a joined batch): every handle
    /// sees every update, and the work goes on while any of them says go on.
    pub fn any(handles: Vec<Progress>) -> Progress {
        Progress::new(move |update| {
            // Every handle is asked (no short-cut at the first yes), so each sees every
            // update.
            let answers: Vec<bool> = handles.iter().map(|handle| (handle.report)(update)).collect();
            answers.contains(&true)
        })
    }

    /// Reports `update`; `Err(Cancelled)` when the handle says stop.
    pub fn check(&self, update: &ProgressUpdate) -> Result<()> {
        if (self.report)(update) {
            Ok(())
        } else {
            Err(cancelled(update))
        }
    }
}

/// The error a stopped request ends with; it names how far the request got.
pub fn cancelled(update: &ProgressUpdate) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!(
            "the request was cancelled after {} passes ({}, {} of {} rows)",
            update.passes_done, update.phase, update.rows_done, update.rows_total
        ),
    )
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The callback itself has nothing printable; say that one is attached.
        f.write_str("Progress(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn update(passes_done: u64) -> ProgressUpdate {
        ProgressUpdate { passes_done, passes_total: Some(4), rows_done: passes_done, rows_total: 4, phase: "gradient passes".into() }
    }

    #[test]
    fn combined_handles_both_see_updates_and_either_stops() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let flag = Arc::new(AtomicBool::new(false));
        let recorder = {
            let seen = seen.clone();
            Progress::new(move |update| {
                seen.lock().unwrap().push(update.passes_done);
                true
            })
        };
        let combined = recorder.and(Progress::cancelled_when(flag.clone()));
        assert!(combined.check(&update(1)).is_ok());
        flag.store(true, Ordering::Relaxed);
        let error = combined.check(&update(2)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Cancelled);
        assert!(error.message.contains("after 2 passes"), "{}", error.message);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        assert_eq!(format!("{combined:?}"), "Progress(..)");
    }
}
