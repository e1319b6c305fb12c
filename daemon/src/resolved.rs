//! Model references resolved a moment ago, so that serving a request does not read the
//! store's directories again. Resolving a name reads its file, the model's record and
//! every name (for the model's label), on a blocking thread: two thread hand-offs and a
//! dozen file-system calls per request, which on a small model cost a third of the
//! daemon's time per request (BENCHMARKS.md, "The request path without the store").
//!
//! Every change this daemon makes to its store forgets all answers at once, so a
//! client that moves a name or deletes a model is answered from the new state by its
//! next call. A change made by another daemon on the same store directory is seen once
//! the answer is [`KEPT_FOR`] old. Failures are never kept: a model added elsewhere is
//! found at once.

use crate::store::ModelRecord;
use std::sync::Mutex;
use std::time::Duration;

/// How long an answer is kept: the longest a change made by another daemon sharing the
/// store goes unseen here.
pub const KEPT_FOR: Duration = Duration::from_secs(1);

/// References (as the client gave them) with the records they resolved to.
const MOST_REFERENCES: u64 = 1024;

pub struct Resolved {
    answers: moka::sync::Cache<String, ModelRecord>,
    /// Counts this store's changes. A lookup remembers its answer only if no change
    /// came between its start and its end; the lock orders remembering against
    /// forgetting, so an answer read before a change is never kept after it.
    changes: Mutex<u64>,
}

/// The change count when a lookup started, to hand back to [`Resolved::remember`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes(u64);

impl Resolved {
    pub fn new(kept_for: Duration) -> Resolved {
        Resolved { answers: moka::sync::Cache::builder().max_capacity(MOST_REFERENCES).time_to_live(kept_for).build(), changes: Mutex::new(0) }
    }

    /// The record `reference` resolved to less than the keeping time ago, if no change
    /// was made here since.
    pub fn get(&self, reference: &str) -> Option<ModelRecord> {
        self.answers.get(reference)
    }

    /// Taken before reading the store for a lookup.
    pub fn changes(&self) -> Changes {
        Changes(*self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Keeps the record a lookup found, unless the store changed after `before`.
    pub fn remember(&self, reference: &str, record: &ModelRecord, before: Changes) {
        let changes = self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *changes == before.0 {
            self.answers.insert(reference.to_string(), record.clone());
        }
    }

    /// Forgets every answer: called after each change to the store's models, names,
    /// records or tokenizers.
    pub fn changed(&self) {
        let mut changes = self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *changes += 1;
        self.answers.invalidate_all();
    }
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved").field("answers", &self.answers.entry_count()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ModelRecord {
        ModelRecord {
            id: id.to_string(),
            size_bytes: 1,
            created_unix: 0,
            format: "torchscript".to_string(),
            input_shape: Vec::new(),
            names: Vec::new(),
            has_tokenizer: false,
        }
    }

    #[test]
    fn an_answer_is_kept_until_the_store_changes() {
        let resolved = Resolved::new(Duration::from_secs(3600));
        resolved.remember("digits", &record("a"), resolved.changes());
        assert_eq!(resolved.get("digits").map(|record| record.id), Some("a".to_string()));
        assert_eq!(resolved.get("other"), None);
        resolved.changed();
        assert_eq!(resolved.get("digits"), None);
    }

    #[test]
    fn a_lookup_that_a_change_overtook_is_not_kept() {
        let resolved = Resolved::new(Duration::from_secs(3600));
        let before = resolved.changes();
        resolved.changed();
        resolved.remember("digits", &record("old"), before);
        assert_eq!(resolved.get("digits"), None);
        resolved.remember("digits", &record("new"), resolved.changes());
        assert_eq!(resolved.get("digits").map(|record| record.id), Some("new".to_string()));
    }

    #[test]
    fn an_answer_expires_after_the_keeping_time() {
        let resolved = Resolved::new(Duration::from_millis(50));
        let started = std::time::Instant::now();
        resolved.remember("digits", &record("a"), resolved.changes());
        while resolved.get("digits").is_some() {
            assert!(started.elapsed() < Duration::from_secs(10), "an answer kept for 50 ms was still there after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(started.elapsed() >= Duration::from_millis(25), "expired after {:?}", started.elapsed());
    }
}
