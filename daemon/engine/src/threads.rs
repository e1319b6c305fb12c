//! Which threads run libtorch's CPU kernels, and for how long.
//!
//! libtorch parallelises a CPU op over an OpenMP team (libgomp). The team belongs to
//! the thread that runs the op: its first parallel op starts a pool of helper threads
//! that lives as long as that thread. Between two ops the helpers spin a few
//! milliseconds for the next one, so a pass of hundreds of small ops never puts them
//! to sleep, but only while libgomp manages no more threads than the process may run
//! on CPUs. Past that (a second pool anywhere in the process, even an idle one) they
//! spin 100 rounds and sleep on a futex, and every op pays a wake-up. resnet18's
//! saliency pass slept about 250 times per request that way on two cores and took
//! 15-20% longer than the same pass in a Python process (BENCHMARKS.md, "Where a
//! saliency request's time goes").
//!
//! So no thread that outlives its libtorch work may keep a pool: work done outside a
//! worker (validating a new model, reading a module tree) runs `apart`, on a thread
//! that ends with it; a worker on the CPU runs its model on a compute thread that ends
//! once its queue has been idle for `COMPUTE_IDLE` (worker.rs), so idle models hold no
//! pool and the busy one spins as a Python process does.

use crate::error::{Error, Result};
use std::time::Duration;

/// How long a CPU worker's compute thread waits for the next job before it ends and
/// frees its OpenMP pool. A job after that starts a new thread and pool, which costs
/// well under a millisecond (BENCHMARKS.md measures it); a burst of requests keeps one.
pub const COMPUTE_IDLE: Duration = Duration::from_millis(250);

/// Runs `work` on a new thread named `name` and waits for it; the thread, and the
/// OpenMP pool its libtorch ops started, are gone when this returns. A panic in
/// `work` continues in the caller.
pub fn apart<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, work)
            .map_err(|error| Error::internal(format!("starting a thread for libtorch work: {error}")))?;
        thread.join().map_err(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// How many threads of this process carry `name` (a new thread takes its
    /// creator's name, so an OpenMP helper is named after the thread that started it).
    pub(crate) fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks.filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok()).filter(|comm| comm.trim_end() == name).count()
            })
            .unwrap_or(0)
    }

    /// Waits (at most 10 s) until no thread carries `name`; whether none does.
    pub(crate) fn no_thread_named(name: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads_named(name) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn parallel_sum() -> f64 {
        // A reduction over more elements than one task's grain runs on the team.
        tch::Tensor::ones([1 << 22], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Double).double_value(&[])
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn work_apart_leaves_no_thread_behind() {
        // On a thread of its own that asks libtorch for two threads, so the op starts
        // a helper whatever the machine; the thread waits after the work, like a
        // tokio thread would.
        std::thread::Builder::new()
            .name("apart-owner".into())
            .spawn(|| {
                tch::set_num_threads(2);
                assert_eq!(apart("apart-work", parallel_sum).unwrap(), f64::from(1 << 22));
                assert!(no_thread_named("apart-work"), "a helper of the work outlived it");
                // The same op on the waiting thread itself keeps its helper: what `apart`
                // is for (and proof that the op above started one).
                parallel_sum();
                assert!(threads_named("apart-owner") >= 2, "the op started no helper thread");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_panic_apart_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| apart("apart-panic", || panic!("inside")));
        assert!(caught.is_err());
    }
}
