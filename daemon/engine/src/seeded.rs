//! libtorch's CPU generator is one per process, shared by every model's worker thread:
//! a seed one request sets and the draws after it must not interleave with another
//! request's, or "the same seed gives the same samples" fails under load. [`with_seed`]
//! holds a process-wide lock while it seeds the generator and makes its draws (sampling
//! masks, permutations and noise-tunnel noise drawn up front, as Captum draws them);
//! work that draws between passes over a long time (sampled generation) uses a
//! generator of its own instead.

use std::sync::Mutex;

static GENERATOR: Mutex<()> = Mutex::new(());

/// Runs `draws` right after `torch.manual_seed(seed)`, with no other seeded draw in between.
pub fn with_seed<T>(seed: u64, draws: impl FnOnce() -> T) -> T {
    let _held = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed as i64);
    draws()
}

/// Runs `draws` from the generator as it stands, with no seeded draw in between.
pub fn unseeded<T>(draws: impl FnOnce() -> T) -> T {
    let _held = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    draws()
}
