//! The queue in front of each model's worker: bounded, two priorities, weighted fair
//! across users, with deadlines and cancellation.
//!
//! **Fairness** is start-time fair queuing (Goyal, Vin and Cheng, 1996): every user
//! has a lane (a FIFO) per priority; a job's start tag is the later of the queue's
//! virtual time and the finish tag of the user's previous job, its finish tag the
//! start plus `1 / weight`. The worker always takes the job with the smallest start
//! tag, and the virtual time becomes that tag. A user who queues 100 jobs gets tags
//! 0, 1, 2, ...; another user's single job arrives tagged with the current virtual
//! time, so it runs after at most the job being served and one more of the flooder's.
//! A user who was idle gets no credit for it (the tag never starts below the virtual
//! time). Every job costs 1: the queue cannot know a job's run time in advance, and
//! requests that carry more work (integrated gradients with many steps) are already
//! split into passes by the engine.
//!
//! **Priorities**: interactive jobs (the default) always go before batch jobs (CI runs,
//! sweeps: `x-layerlens-priority: batch`); each class has its own lanes and clock.
//!
//! **Deadlines and cancellation** are the caller's side (`WorkerHandle::call`): a
//! caller that stops waiting (deadline passed, client gone) raises the job's
//! `cancelled` flag, and the worker drops flagged jobs instead of running them; long
//! jobs also poll the flag between passes.
//!
//! **Batching**: after taking a job the worker takes the queued jobs that can share
//! its pass (`take_matching`); when it found some, or recent passes served several
//! callers in step, it waits up to the batch delay for more (batching.rs,
//! `Traffic::wait_for`), with callers in step only while they keep arriving.
//!
//! The queue is a mutex and a condition variable: the worker is an OS thread (libtorch
//! work never runs on tokio's threads) and callers only push, which never blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Interactive work (a notebook cell, an editor hover) goes before batch work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

impl Priority {
    /// `interactive` or `batch` (the value of the `x-layerlens-priority` header).
    pub fn parse(text: &str) -> Option<Priority> {
        match text.trim().to_ascii_lowercase().as_str() {
            "interactive" => Some(Priority::Interactive),
            "batch" => Some(Priority::Batch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }

    fn index(self) -> usize {
        match self {
            Priority::Interactive => 0,
            Priority::Batch => 1,
        }
    }
}

/// Who asks, how urgently, and until when: what the queue orders jobs by.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The caller's user name (the tokens file's), or `local` without authentication.
    pub user: Arc<str>,
    /// The user's share: a user of weight 2 gets twice the turns of a user of weight 1
    /// while both have work queued.
    pub weight: u32,
    pub priority: Priority,
    /// When the caller stops waiting (the gRPC deadline); work not started by then is
    /// dropped, not run.
    pub deadline: Option<Instant>,
    /// Where the request's time goes (trace.rs); the worker records its phases here.
    pub trace: Option<Arc<crate::trace::RequestTrace>>,
}

impl Default for Ticket {
    fn default() -> Ticket {
        Ticket { user: Arc::from("local"), weight: 1, priority: Priority::Interactive, deadline: None, trace: None }
    }
}

tokio::task_local! {
    /// The ticket of the request the current task serves; the daemon sets it around
    /// each call (auth.rs), and `WorkerHandle` reads it when it queues work, so no
    /// handler has to pass it along.
    pub static TICKET: Ticket;
}

impl Ticket {
    /// The current request's ticket, or the default outside a request.
    pub fn current() -> Ticket {
        TICKET.try_with(Ticket::clone).unwrap_or_default()
    }
}

/// Queue limits, shared by the workers of a daemon.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Jobs waiting per model (the running one not counted); one more is refused.
    pub max_queue: usize,
    /// Most requests run as one pass; 1 turns batching off.
    pub max_batch_size: usize,
    /// How long a batchable job waits for companions before it runs.
    pub max_batch_delay: Duration,
}

impl Default for QueueSettings {
    fn default() -> QueueSettings {
        QueueSettings { max_queue: 256, max_batch_size: 8, max_batch_delay: Duration::from_millis(2) }
    }
}

/// A queued command with what the queue knows of it.
pub struct Job<C> {
    pub command: C,
    pub ticket: Ticket,
    pub enqueued: Instant,
    /// Raised by the caller when it stops waiting.
    pub cancelled: Arc<AtomicBool>,
    start_tag: f64,
    sequence: u64,
}

impl<C> Job<C> {
    /// Whether the caller stopped waiting, or is about to: its deadline has passed
    /// (its own timer may not have fired yet, but it will not take the answer).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.ticket.deadline.is_some_and(|deadline| deadline <= Instant::now())
    }

    /// A job outside any queue, for tests of what runs jobs (the worker's joined runs).
    #[cfg(test)]
    pub(crate) fn detached(command: C) -> Job<C> {
        Job { command, ticket: Ticket::default(), enqueued: Instant::now(), cancelled: Arc::new(AtomicBool::new(false)), start_tag: 0.0, sequence: 0 }
    }
}

/// Why a job was refused: the queue is full.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull {
    pub queued: usize,
}

struct Lane<C> {
    jobs: VecDeque<Job<C>>,
    last_finish: f64,
}

struct Class<C> {
    lanes: HashMap<Arc<str>, Lane<C>>,
    virtual_time: f64,
}

impl<C> Class<C> {
    fn new() -> Class<C> {
        Class { lanes: HashMap::new(), virtual_time: 0.0 }
    }

    /// The user whose first job has the smallest start tag (ties: the earlier job).
    fn next_user(&self) -> Option<Arc<str>> {
        self.lanes
            .iter()
            .filter_map(|(user, lane)| lane.jobs.front().map(|job| (user, job.start_tag, job.sequence)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)))
            .map(|(user, _, _)| user.clone())
    }

    fn pop(&mut self) -> Option<Job<C>> {
        let user = self.next_user()?;
        let lane = self.lanes.get_mut(&user)?;
        let job = lane.jobs.pop_front()?;
        if lane.jobs.is_empty() {
            // An idle user keeps no credit: its next job starts at the virtual time.
            self.lanes.remove(&user);
        }
        self.virtual_time = self.virtual_time.max(job.start_tag);
        Some(job)
    }
}

struct State<C> {
    classes: [Class<C>; 2],
    queued: usize,
    closed: bool,
    /// Another model's compute thread asks this one's to end once idle (threads.rs).
    release: bool,
    sequence: u64,
}

impl<C> State<C> {
    /// The next job to run (jobs whose callers stopped waiting are dropped first).
    fn pop(&mut self) -> Option<Job<C>> {
        self.sweep_cancelled();
        let job = self.classes.iter_mut().find_map(Class::pop)?;
        self.queued -= 1;
        Some(job)
    }

    /// Removes jobs whose callers stopped waiting; returns how many.
    fn sweep_cancelled(&mut self) -> usize {
        let mut removed = 0;
        for class in &mut self.classes {
            class.lanes.retain(|_, lane| {
                let before = lane.jobs.len();
                lane.jobs.retain(|job| !job.is_cancelled());
                removed += before - lane.jobs.len();
                !lane.jobs.is_empty()
            });
        }
        self.queued -= removed;
        removed
    }
}

pub struct JobQueue<C> {
    state: Mutex<State<C>>,
    wake: Condvar,
    pub settings: QueueSettings,
}

impl<C> JobQueue<C> {
    pub fn new(settings: QueueSettings) -> JobQueue<C> {
        JobQueue {
            state: Mutex::new(State { classes: [Class::new(), Class::new()], queued: 0, closed: false, release: false, sequence: 0 }),
            wake: Condvar::new(),
            settings,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // A panic while holding the lock cannot leave the queue half-updated in a way
        // that matters more than stopping every request of the model would.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a command; refuses at once when the queue is full (the caller answers
    /// RESOURCE_EXHAUSTED) or closed.
    pub fn push(&self, command: C, ticket: Ticket, cancelled: Arc<AtomicBool>) -> Result<(), (C, QueueFull)> {
        let mut state = self.lock();
        if state.queued >= self.settings.max_queue {
            // Callers that gave up still count until swept; sweep before refusing.
            state.sweep_cancelled();
            if state.queued >= self.settings.max_queue || state.closed {
                let queued = state.queued;
                return Err((command, QueueFull { queued }));
            }
        }
        state.sequence += 1;
        let sequence = state.sequence;
        let class = &mut state.classes[ticket.priority.index()];
        let virtual_time = class.virtual_time;
        let lane = class.lanes.entry(ticket.user.clone()).or_insert(Lane { jobs: VecDeque::new(), last_finish: 0.0 });
        let start_tag = virtual_time.max(lane.last_finish);
        lane.last_finish = start_tag + 1.0 / f64::from(ticket.weight.max(1));
        lane.jobs.push_back(Job { command, ticket, enqueued: Instant::now(), cancelled, start_tag, sequence });
        state.queued += 1;
        drop(state);
        self.wake.notify_all();
        Ok(())
    }

    /// The next job to run, waiting for one; `None` once the queue is closed and
    /// empty. Jobs whose callers stopped waiting are dropped on the way.
    pub fn pop(&self) -> Option<Job<C>> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.pop() {
                state.release = false;
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self.wake.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The next job, waiting for one; `None` once the queue is closed, or once asked
    /// to `release` when no job has come for `idle` since `since` (the end of the
    /// caller's last job). A compute thread serves its jobs with this, the worker
    /// thread with `pop`, which forgets a request to release that came meanwhile.
    pub fn pop_unless_released(&self, since: Instant, idle: Duration) -> Option<Job<C>> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.pop() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = if state.release {
                let now = Instant::now();
                if now >= since + idle {
                    state.release = false;
                    return None;
                }
                self.wake.wait_timeout(state, since + idle - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0
            } else {
                self.wake.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner())
            };
        }
    }

    /// `pop_unless_released`, but first polls the queue for up to `spin` without
    /// sleeping: a thread that slept pays a wake-up when the next job comes, and a
    /// closed-loop client's next request comes about one loopback round trip after its
    /// answer. libgomp's helpers spin between a team's ops the same way; a model that
    /// computes without a team spins here instead (worker.rs).
    pub fn pop_spinning(&self, spin: Duration, since: Instant, idle: Duration) -> Option<Job<C>> {
        /// One thread of the process spins at a time: several would take the cores
        /// that the jobs they wait for, and the network threads, need.
        static SPINNING: AtomicBool = AtomicBool::new(false);
        if SPINNING.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return self.pop_unless_released(since, idle);
        }
        let spun = self.spin_for_job(spin);
        SPINNING.store(false, Ordering::Release);
        match spun {
            Some(job) => Some(job),
            None => self.pop_unless_released(since, idle),
        }
    }

    /// Polls for a job for up to `spin`; `None` when none came, or the queue was closed
    /// or asked to release.
    fn spin_for_job(&self, spin: Duration) -> Option<Job<C>> {
        let spin_until = Instant::now() + spin;
        loop {
            {
                let mut state = self.lock();
                if let Some(job) = state.pop() {
                    return Some(job);
                }
                if state.closed || state.release {
                    return None;
                }
            }
            if Instant::now() >= spin_until {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// Asks the thread in `pop_unless_released` to come back empty-handed once its
    /// queue has been idle long enough.
    pub fn release(&self) {
        self.lock().release = true;
        self.wake.notify_all();
    }

    /// Takes up to `max` queued jobs whose commands `matches` accepts (interactive
    /// first, then by start tag), waiting until `until` for more to arrive unless
    /// `max` are found sooner or, with `quiet`, none has come for that long (the
    /// arrivals of a burst have paused). They leave their lanes as if served.
    pub fn take_matching(&self, matches: impl Fn(&C) -> bool, max: usize, until: Instant, quiet: Option<Duration>) -> Vec<Job<C>> {
        let mut taken: Vec<Job<C>> = Vec::new();
        if max == 0 {
            return taken;
        }
        let mut last_arrival = Instant::now();
        let mut state = self.lock();
        loop {
            state.sweep_cancelled();
            let mut found = 0;
            for class in &mut state.classes {
                let mut candidates: Vec<(f64, u64, Arc<str>)> = class
                    .lanes
                    .iter()
                    .flat_map(|(user, lane)| {
                        lane.jobs.iter().filter(|job| matches(&job.command)).map(move |job| (job.start_tag, job.sequence, user.clone()))
                    })
                    .collect();
                candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (_, sequence, user) in candidates.into_iter().take(max - taken.len()) {
                    let lane = class.lanes.get_mut(&user).expect("the lane of a candidate");
                    let position = lane.jobs.iter().position(|job| job.sequence == sequence).expect("a candidate job");
                    let job = lane.jobs.remove(position).expect("a candidate job");
                    if lane.jobs.is_empty() {
                        class.lanes.remove(&user);
                    }
                    taken.push(job);
                    found += 1;
                }
            }
            state.queued -= found;
            let now = Instant::now();
            if found > 0 {
                last_arrival = now;
            }
            let deadline = quiet.map_or(until, |quiet| until.min(last_arrival + quiet));
            if taken.len() >= max || now >= deadline || state.closed {
                return taken;
            }
            state = self.wake.wait_timeout(state, deadline - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
    }

    /// Wakes the worker so it drops jobs whose callers gave up (their count must not
    /// linger in the queue depth).
    pub fn forget_cancelled(&self) {
        let removed = self.lock().sweep_cancelled();
        if removed > 0 {
            self.wake.notify_all();
        }
    }

    /// Jobs waiting (not the running one).
    pub fn depth(&self) -> usize {
        self.lock().queued
    }

    /// No more jobs will come: the worker finishes what is queued, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(user: &str, priority: Priority) -> Ticket {
        Ticket { user: Arc::from(user), weight: 1, priority, deadline: None, trace: None }
    }

    fn push(queue: &JobQueue<String>, user: &str, priority: Priority, name: &str) -> Arc<AtomicBool> {
        let cancelled = Arc::new(AtomicBool::new(false));
        queue.push(name.to_string(), ticket(user, priority), cancelled.clone()).map_err(|(_, full)| full).unwrap();
        cancelled
    }

    fn order(queue: &JobQueue<String>, count: usize) -> Vec<String> {
        (0..count).map(|_| queue.pop().unwrap().command).collect()
    }

    #[test]
    fn a_flood_delays_another_user_by_at_most_one_job() {
        let queue = JobQueue::new(QueueSettings::default());
        for index in 0..100 {
            push(&queue, "flood", Priority::Interactive, &format!("flood-{index}"));
        }
        // The worker is busy with the flooder's first job when the other user arrives.
        assert_eq!(queue.pop().unwrap().command, "flood-0");
        push(&queue, "alice", Priority::Interactive, "alice-0");
        let next = order(&queue, 2);
        assert!(next.contains(&"alice-0".to_string()), "alice waited longer than one job: {next:?}");
    }

    #[test]
    fn users_alternate_by_weight() {
        let queue = JobQueue::new(QueueSettings::default());
        let heavy = Ticket { user: Arc::from("heavy"), weight: 2, priority: Priority::Interactive, deadline: None, trace: None };
        for index in 0..6 {
            queue.push(format!("heavy-{index}"), heavy.clone(), Arc::default()).map_err(|_| ()).unwrap();
            push(&queue, "light", Priority::Interactive, &format!("light-{index}"));
        }
        let first_six = order(&queue, 6);
        let heavy_turns = first_six.iter().filter(|name| name.starts_with("heavy")).count();
        assert_eq!(heavy_turns, 4, "weight 2 should get two turns per turn of weight 1: {first_six:?}");
    }

    #[test]
    fn interactive_goes_before_batch() {
        let queue = JobQueue::new(QueueSettings::default());
        for index in 0..5 {
            push(&queue, "ci", Priority::Batch, &format!("batch-{index}"));
        }
        push(&queue, "ci", Priority::Interactive, "hover");
        assert_eq!(queue.pop().unwrap().command, "hover");
    }

    #[test]
    fn cancelled_jobs_are_dropped_and_not_counted() {
        let queue = JobQueue::new(QueueSettings::default());
        let gone = push(&queue, "bob", Priority::Interactive, "gone");
        push(&queue, "bob", Priority::Interactive, "kept");
        gone.store(true, Ordering::Relaxed);
        queue.forget_cancelled();
        assert_eq!(queue.depth(), 1);
        assert_eq!(queue.pop().unwrap().command, "kept");
    }

    #[test]
    fn a_job_whose_deadline_passed_never_starts() {
        // Its caller's timer may not have fired yet (a busy runtime), but the caller
        // will not take the answer: the worker must not spend a pass on it.
        let queue = JobQueue::new(QueueSettings::default());
        let soon = Ticket { deadline: Some(Instant::now() + Duration::from_millis(20)), ..ticket("bob", Priority::Interactive) };
        queue.push("expired".to_string(), soon, Arc::default()).map_err(|_| ()).unwrap();
        push(&queue, "bob", Priority::Interactive, "kept");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(queue.pop().unwrap().command, "kept");
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let queue = JobQueue::new(QueueSettings { max_queue: 2, ..QueueSettings::default() });
        push(&queue, "bob", Priority::Interactive, "one");
        push(&queue, "bob", Priority::Interactive, "two");
        let refused = queue.push("three".to_string(), ticket("bob", Priority::Interactive), Arc::default());
        assert!(matches!(refused, Err((command, QueueFull { queued: 2 })) if command == "three"));
    }

    #[test]
    fn take_matching_collects_companions_and_waits_no_longer_than_asked() {
        let queue = Arc::new(JobQueue::new(QueueSettings::default()));
        push(&queue, "a", Priority::Interactive, "saliency-1");
        push(&queue, "b", Priority::Interactive, "predict-1");
        push(&queue, "c", Priority::Batch, "saliency-2");
        let started = Instant::now();
        let taken = queue.take_matching(|command: &String| command.starts_with("saliency"), 4, started + Duration::from_millis(50), None);
        let waited = started.elapsed();
        let names: Vec<String> = taken.into_iter().map(|job| job.command).collect();
        assert_eq!(names, ["saliency-1", "saliency-2"]);
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2), "waited {waited:?}");
        assert_eq!(queue.depth(), 1);

        // A companion that arrives while it waits is taken at once.
        let pusher = queue.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            push(&pusher, "d", Priority::Interactive, "saliency-3");
        });
        let started = Instant::now();
        let taken = queue.take_matching(|command: &String| command.starts_with("saliency"), 1, started + Duration::from_secs(5), None);
        thread.join().unwrap();
        assert_eq!(taken.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));

        // With a quiet time it stops once no companion has come for that long, long
        // before the deadline.
        push(&queue, "e", Priority::Interactive, "saliency-4");
        push(&queue, "f", Priority::Interactive, "saliency-5");
        let started = Instant::now();
        let quiet = Duration::from_millis(50);
        let taken = queue.take_matching(|command: &String| command.starts_with("saliency"), 7, started + Duration::from_secs(30), Some(quiet));
        let waited = started.elapsed();
        assert_eq!(taken.len(), 2);
        assert!(waited >= quiet && waited < Duration::from_secs(10), "waited {waited:?}");
    }

    #[test]
    fn a_released_burst_ends_once_the_queue_has_been_idle_long_enough() {
        let queue = Arc::new(JobQueue::new(QueueSettings::default()));
        let idle = Duration::from_millis(50);
        push(&queue, "bob", Priority::Interactive, "queued");
        queue.release();
        // A queued job is still served; then the burst ends, but not before `idle`
        // has passed since its last job.
        assert_eq!(queue.pop_unless_released(Instant::now(), idle).unwrap().command, "queued");
        let finished = Instant::now();
        assert!(queue.pop_unless_released(finished, idle).is_none());
        assert!(finished.elapsed() >= idle);
        // A job that comes within `idle` is served, and the request to release stands.
        queue.release();
        let pusher = queue.clone();
        let thread = std::thread::spawn(move || push(&pusher, "bob", Priority::Interactive, "soon"));
        assert_eq!(queue.pop_unless_released(Instant::now(), Duration::from_secs(30)).unwrap().command, "soon");
        thread.join().unwrap();
        assert!(queue.pop_unless_released(Instant::now() - idle, idle).is_none());
        // A waiting burst ends when asked.
        let releaser = queue.clone();
        let thread = std::thread::spawn(move || releaser.release());
        assert!(queue.pop_unless_released(Instant::now(), idle).is_none());
        thread.join().unwrap();
        // A request to release that came between bursts is forgotten by `pop`.
        queue.release();
        push(&queue, "bob", Priority::Interactive, "next");
        assert_eq!(queue.pop().unwrap().command, "next");
        let pusher = queue.clone();
        let thread = std::thread::spawn(move || push(&pusher, "bob", Priority::Interactive, "later"));
        assert_eq!(queue.pop_unless_released(Instant::now() - idle, idle).unwrap().command, "later");
        thread.join().unwrap();
    }

    #[test]
    fn a_spinning_pop_takes_jobs_during_and_after_its_spin() {
        let queue = Arc::new(JobQueue::new(QueueSettings::default()));
        let idle = Duration::from_millis(50);
        // A job that comes while the thread spins (a long spin, so it surely does).
        let pusher = queue.clone();
        let thread = std::thread::spawn(move || push(&pusher, "bob", Priority::Interactive, "during"));
        assert_eq!(queue.pop_spinning(Duration::from_secs(30), Instant::now(), Duration::from_secs(30)).unwrap().command, "during");
        thread.join().unwrap();
        // After a short spin it waits like `pop_unless_released`.
        let pusher = queue.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            push(&pusher, "bob", Priority::Interactive, "after")
        });
        assert_eq!(queue.pop_spinning(Duration::from_micros(10), Instant::now(), Duration::from_secs(30)).unwrap().command, "after");
        thread.join().unwrap();
        // Asked to release, it stops spinning and ends once idle long enough.
        queue.release();
        let started = Instant::now();
        assert!(queue.pop_spinning(Duration::from_secs(30), started, idle).is_none());
        assert!(started.elapsed() < Duration::from_secs(10), "spun on a queue asked to release");
        // Closed and empty: nothing, at once.
        queue.close();
        let started = Instant::now();
        assert!(queue.pop_spinning(Duration::from_secs(30), started, idle).is_none());
        assert!(started.elapsed() < Duration::from_secs(10), "spun on a closed queue");
    }

    #[test]
    fn closing_ends_pop_once_empty() {
        let queue = JobQueue::new(QueueSettings::default());
        push(&queue, "bob", Priority::Interactive, "last");
        queue.close();
        assert_eq!(queue.pop().unwrap().command, "last");
        assert!(queue.pop().is_none());
    }
}
