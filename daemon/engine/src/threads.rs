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
//! So a thread that waits after its libtorch work must not keep a pool while another
//! computes: work done outside a worker (validating a new model, reading a module
//! tree) runs `apart`, on a thread that ends with it; a worker on the CPU runs its
//! model on a compute thread of its own (worker.rs), which serves its model's requests
//! one after another and ends, with its pool, once another model has started
//! computing and its own queue has been idle for `RELEASE_AFTER_IDLE` (`PoolSlot`).
//! A model used alone keeps its pool between requests, and models that all take
//! requests keep theirs: several pools then share the CPUs through libgomp's throttled
//! spinning. The idle time is short: a model used right after another (a notebook
//! switching models, one job after another's) would otherwise run its first half
//! second beside the other's idle pool, as slowly as the paragraph above says, and a
//! new pool costs only its threads' start. (It was half a second while small models
//! kept pools too: a mixed load of them, switching model at every request, lost a
//! quarter of its throughput to pools started at each switch. They compute without a
//! team now and start no pool.)
//!
//! A model whose pass takes well under a millisecond gains nothing from a team: each
//! op's fork and join cost what the split saves, and the helpers spin through the
//! gaps between requests on a core the daemon's network threads need. So the worker
//! times its model's warm-up pass (`small_pass`), and the compute thread of a model
//! whose pass is small runs each op on itself alone (`run_serially`); it polls its
//! queue for `SPIN_BEFORE_SLEEP` before it sleeps, as the helpers' spinning had kept a
//! core awake for a client's next request (one thread in the process at a time). On
//! two cores the digits CNN then answered 1.5x the predictions a second from 32
//! clients at half the CPU per request (BENCHMARKS.md, "Small models run serially").

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How long a compute thread another model asked to release waits for a job of its
/// own before it ends: longer than a closed-loop client's round trip, so a model in
/// steady use keeps its pool, and short beside a pass that another model's idle pool
/// would slow down.
pub const RELEASE_AFTER_IDLE: Duration = Duration::from_millis(20);

/// A pass shorter than this on one thread runs serially (`small_pass`).
pub const SMALL_PASS: Duration = Duration::from_millis(1);

/// How long the compute thread of a model that runs serially polls its queue before
/// it sleeps (`JobQueue::pop_spinning`): longer than a loopback round trip (0.2-0.3 ms
/// here), so a client that sends its next request on the answer finds the thread
/// awake, as libgomp's spinning helpers had kept a core awake for it.
pub const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(500);

/// libgomp's `omp_set_num_threads`, which sets the team size of the calling thread's
/// later parallel regions only (ATen's `at::set_num_threads` would also change the
/// default of every thread yet to start, MKL's and oneDNN's caches).
type SetNumThreads = unsafe extern "C" fn(std::os::raw::c_int);

fn omp_set_num_threads() -> Option<SetNumThreads> {
    static FOUND: OnceLock<Option<(libloading::os::unix::Library, SetNumThreads)>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        // libtorch_cpu loaded the OpenMP runtime with the process; ask the process.
        let process = libloading::os::unix::Library::this();
        // SAFETY: the symbol is libgomp's (or another OpenMP runtime's) C function of
        // this signature; the library handle is kept with the pointer.
        let function = unsafe { process.get::<SetNumThreads>(b"omp_set_num_threads\0") }.ok().map(|symbol| *symbol)?;
        Some((process, function))
    });
    found.as_ref().map(|(_, function)| *function)
}

/// From now on, libtorch ops on this thread run on it alone, without an OpenMP team.
/// Whether it could (an OpenMP runtime without `omp_set_num_threads` keeps the team).
pub fn run_serially() -> bool {
    set_team_size(1)
}

/// Sets this thread's team size for its later ops; whether the runtime allowed it.
fn set_team_size(threads: i32) -> bool {
    let Some(set) = omp_set_num_threads() else { return false };
    // ATen sets a thread's team size when the thread first asks for it: ask first, or
    // that first use would undo this.
    tch::get_num_threads();
    // SAFETY: a plain C call that changes the calling thread's OpenMP settings.
    unsafe { set(threads.max(1)) };
    true
}

/// Whether `pass` is small enough to run serially: after `pass` has run once with
/// the team (the warm-up, which took `warm_up`), its best of [`TRIES`] runs alone takes
/// under [`SMALL_PASS`] of this thread's CPU time. CPU time alone, not the wall clock
/// nor a run with the team (whose waits for a preempted helper spin on the CPU): a model
/// loaded while the machine is busy is judged by its own work. A model whose warm-up
/// took [`LARGE_WARM_UP`] is not timed alone, nor timed again once a run alone takes
/// ten times the limit (a large model costs one serial pass at load). The thread's
/// team size is as before afterwards.
pub fn small_pass<E>(warm_up: Duration, mut pass: impl FnMut() -> std::result::Result<(), E>) -> std::result::Result<bool, E> {
    if warm_up >= LARGE_WARM_UP {
        return Ok(false);
    }
    let team = tch::get_num_threads();
    if !run_serially() {
        return Ok(false);
    }
    let alone = best_cpu_time(&mut pass);
    set_team_size(team);
    Ok(alone? < SMALL_PASS)
}

/// The least CPU time of up to [`TRIES`] runs of `pass`, stopping at a run under
/// [`SMALL_PASS`] or at ten times it.
fn best_cpu_time<E>(pass: &mut impl FnMut() -> std::result::Result<(), E>) -> std::result::Result<Duration, E> {
    let mut best = Duration::MAX;
    for _ in 0..TRIES {
        best = best.min(cpu_time_of(pass)?);
        if best < SMALL_PASS || best >= SMALL_PASS * 10 {
            break;
        }
    }
    Ok(best)
}

/// Runs of `pass` alone that `small_pass` times at most.
const TRIES: usize = 3;

/// A warm-up pass at least this long marks a model `small_pass` does not time alone.
const LARGE_WARM_UP: Duration = Duration::from_secs(1);

/// The CPU time this thread spent in one run of `pass`.
fn cpu_time_of<E>(pass: &mut impl FnMut() -> std::result::Result<(), E>) -> std::result::Result<Duration, E> {
    let started = thread_cpu_time();
    pass()?;
    Ok(thread_cpu_time().saturating_sub(started))
}

/// The CPU time this thread has used so far (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec.max(0) as u64, now.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// How a worker's compute thread is asked to end once idle.
type Release = Box<dyn Fn() + Send + Sync>;

/// The CPU workers, each with its `Release`.
static SLOTS: Mutex<Vec<(u64, Release)>> = Mutex::new(Vec::new());
static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

/// A CPU worker's place among the threads that may hold an OpenMP pool.
pub struct PoolSlot {
    id: u64,
}

impl PoolSlot {
    /// `release` asks this worker's compute thread to end once its queue is empty.
    pub fn new(release: impl Fn() + Send + Sync + 'static) -> PoolSlot {
        let id = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        slots().push((id, Box::new(release)));
        PoolSlot { id }
    }

    /// This worker is about to compute: every other worker's compute thread ends once
    /// its queue has been idle for `RELEASE_AFTER_IDLE`, so this one's pool is soon
    /// the only one.
    pub fn claim(&self) {
        for (id, release) in slots().iter() {
            if *id != self.id {
                release();
            }
        }
    }
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        slots().retain(|(id, _)| *id != self.id);
    }
}

fn slots() -> MutexGuard<'static, Vec<(u64, Release)>> {
    SLOTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    use std::sync::Arc;
    use std::time::Instant;

    /// How many threads of this process carry `name` (a new thread takes its
    /// creator's name, so an OpenMP helper is named after the thread that started it).
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks.filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok()).filter(|comm| comm.trim_end() == name).count()
            })
            .unwrap_or(0)
    }

    /// Waits (at most 10 s) until no thread carries `name`; whether none does.
    fn no_thread_named(name: &str) -> bool {
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
    #[cfg(target_os = "linux")]
    fn a_thread_run_serially_starts_no_team_and_leaves_others_theirs() {
        // Threads start with a team of two whatever the machine (as in the test above).
        std::thread::spawn(|| tch::set_num_threads(2)).join().unwrap();
        std::thread::Builder::new()
            .name("serial-owner".into())
            .spawn(|| {
                assert!(run_serially(), "this libtorch's OpenMP runtime has no omp_set_num_threads");
                assert_eq!(tch::get_num_threads(), 1);
                assert_eq!(parallel_sum(), f64::from(1 << 22));
                assert_eq!(threads_named("serial-owner"), 1, "a serial thread's op started a helper");
                // The same op with a team of two starts one (so the op above would have).
                assert!(set_team_size(2));
                parallel_sum();
                assert!(threads_named("serial-owner") >= 2, "the op started no helper thread with a team of two");
            })
            .unwrap()
            .join()
            .unwrap();
        // Another thread keeps libtorch's default.
        assert_eq!(std::thread::spawn(tch::get_num_threads).join().unwrap(), 2, "making one thread serial changed the default");
    }

    /// Keeps this thread busy until it has used `cpu` more CPU time.
    fn burn(cpu: Duration) {
        let started = thread_cpu_time();
        while thread_cpu_time().saturating_sub(started) < cpu {
            std::hint::spin_loop();
        }
    }

    /// `small_pass` on a pass that sleeps `waits` and then works `works` of CPU time:
    /// its answer, and how many times it ran the pass.
    fn judged(warm_up: Duration, waits: Duration, works: Duration) -> (Result<bool, ()>, usize) {
        let mut runs = 0;
        let answer = small_pass(warm_up, || {
            runs += 1;
            std::thread::sleep(waits);
            burn(works);
            Ok(())
        });
        (answer, runs)
    }

    #[test]
    fn a_pass_is_small_when_it_takes_under_a_millisecond_of_cpu_alone() {
        std::thread::spawn(|| {
            let team = tch::get_num_threads();
            let warm_up = Duration::from_millis(5);
            let (answer, runs) = judged(warm_up, Duration::ZERO, Duration::ZERO);
            assert_eq!(answer, Ok(true));
            assert_eq!(runs, 1, "a small pass is timed once when it is under the limit");
            assert_eq!(tch::get_num_threads(), team, "the team size is restored");
            // Waiting is not work: a pass that sleeps (as if preempted) is still small.
            assert_eq!(judged(warm_up, SMALL_PASS * 3, Duration::ZERO).0, Ok(true));
            let (answer, runs) = judged(warm_up, Duration::ZERO, SMALL_PASS * 2);
            assert_eq!(answer, Ok(false));
            assert_eq!(runs, TRIES, "a pass a little over the limit is tried {TRIES} times");
            let (answer, runs) = judged(warm_up, Duration::ZERO, SMALL_PASS * 10);
            assert_eq!(answer, Ok(false));
            assert_eq!(runs, 1, "a large pass is timed once");
            let (answer, runs) = judged(LARGE_WARM_UP, Duration::ZERO, Duration::ZERO);
            assert_eq!(answer, Ok(false));
            assert_eq!(runs, 0, "a model with a long warm-up is not timed alone");
            assert_eq!(small_pass(warm_up, || Err::<(), _>("failed")), Err("failed"));
            assert_eq!(tch::get_num_threads(), team, "the team size is restored after a failure");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn claiming_asks_the_other_slots_to_release() {
        let asked = Arc::new(AtomicU64::new(0));
        let counter = |bit: u64| {
            let asked = asked.clone();
            move || {
                asked.fetch_or(bit, Ordering::Relaxed);
            }
        };
        let (first, second) = (PoolSlot::new(counter(1)), PoolSlot::new(counter(2)));
        first.claim();
        assert_eq!(asked.load(Ordering::Relaxed) & 3, 2, "only the other slot is asked");
        drop(second);
        asked.store(0, Ordering::Relaxed);
        first.claim();
        assert_eq!(asked.load(Ordering::Relaxed) & 3, 0, "a dropped slot is asked nothing");
    }

    #[test]
    fn a_panic_apart_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| apart("apart-panic", || panic!("inside")));
        assert!(caught.is_err());
    }
}
