//! Where one request's time goes, phase by phase: the daemon opens a [`RequestTrace`]
//! per call (it travels to the model's worker in the request's `Ticket`), the service
//! records decoding, encoding and rendering, the worker records the time queued, the
//! wait for batch companions, the run, and inside the run the copies to and from the
//! device. The daemon returns the trace in the `x-layerlens-phases` response header, so
//! a load generator can tell the client's cost from the daemon's.
//!
//! On the worker thread the traces of the job being run (several when requests share a
//! pass) are kept in a thread-local, so engine code records with [`time`] without
//! passing anything along.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A phase of a request, in the order a request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request's tensors decoded from the message into host tensors.
    Decode,
    /// Waiting in the model's queue for the worker.
    Queue,
    /// The worker waiting for batch companions before the pass.
    Batch,
    /// The worker running the job; `ToDevice` and `ToHost` happen inside it. On CUDA
    /// the copies are timed once the device has done the work queued before them, so
    /// the device's time for the pass is in `Run` less the copies.
    Run,
    /// Host tensors copied into device tensors (part of `Run`).
    ToDevice,
    /// Result tensors copied back to host tensors (part of `Run`).
    ToHost,
    /// The figure drawn.
    Render,
    /// The answer encoded into the response message.
    Encode,
    /// The whole call in the daemon, from the request's arrival to its response message
    /// (the request message's decoding included).
    Handler,
}

impl Phase {
    pub const ALL: [Phase; 9] =
        [Phase::Decode, Phase::Queue, Phase::Batch, Phase::Run, Phase::ToDevice, Phase::ToHost, Phase::Render, Phase::Encode, Phase::Handler];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Decode => "decode",
            Phase::Queue => "queue",
            Phase::Batch => "batch_wait",
            Phase::Run => "run",
            Phase::ToDevice => "to_device",
            Phase::ToHost => "to_host",
            Phase::Render => "render",
            Phase::Encode => "encode",
            Phase::Handler => "handler",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One request's time per phase (summed when a phase happens more than once), and the
/// number of requests that shared its pass.
#[derive(Debug, Default)]
pub struct RequestTrace {
    nanos: [AtomicU64; Phase::ALL.len()],
    batch_size: AtomicU64,
    /// When the worker started the job: the run ends when the caller has its answer
    /// (the worker replies before it could record anything after).
    run_started: Mutex<Option<Instant>>,
}

impl RequestTrace {
    pub fn record(&self, phase: Phase, duration: Duration) {
        let nanos = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos[phase.index()].fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn get(&self, phase: Phase) -> Duration {
        Duration::from_nanos(self.nanos[phase.index()].load(Ordering::Relaxed))
    }

    /// The worker starts running the request.
    pub fn start_run(&self, size: usize) {
        self.set_batch_size(size);
        *self.run_started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }

    /// The caller has the worker's answer: the run is over.
    pub fn finish_run(&self) {
        if let Some(started) = self.run_started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            self.record(Phase::Run, started.elapsed());
        }
    }

    pub fn set_batch_size(&self, size: usize) {
        self.batch_size.store(size as u64, Ordering::Relaxed);
    }

    pub fn batch_size(&self) -> u64 {
        self.batch_size.load(Ordering::Relaxed)
    }

    /// Whether anything was recorded (requests that never reach a handler record nothing).
    pub fn is_empty(&self) -> bool {
        self.nanos.iter().all(|nanos| nanos.load(Ordering::Relaxed) == 0)
    }

    /// `decode=0.012,queue=0.003,...,batch=1`: milliseconds per phase that happened,
    /// and the batch size when the request reached a worker.
    pub fn header_value(&self) -> String {
        let mut parts: Vec<String> = Phase::ALL
            .iter()
            .filter(|&&phase| !self.get(phase).is_zero())
            .map(|&phase| format!("{}={:.3}", phase.name(), self.get(phase).as_secs_f64() * 1e3))
            .collect();
        if self.batch_size() > 0 {
            parts.push(format!("batch={}", self.batch_size()));
        }
        parts.join(",")
    }
}

thread_local! {
    static RUNNING: RefCell<Vec<Arc<RequestTrace>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` with `traces` as the current job's traces on this thread.
pub fn running<T>(traces: Vec<Arc<RequestTrace>>, work: impl FnOnce() -> T) -> T {
    let previous = RUNNING.with(|running| std::mem::replace(&mut *running.borrow_mut(), traces));
    let result = work();
    RUNNING.with(|running| *running.borrow_mut() = previous);
    result
}

/// Times `work` and records it under `phase` in the current job's traces (none outside
/// a job: then it only runs `work`).
pub fn time<T>(phase: Phase, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    let elapsed = started.elapsed();
    RUNNING.with(|running| {
        for trace in running.borrow().iter() {
            trace.record(phase, elapsed);
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_travel_as_a_header() {
        let trace = Arc::new(RequestTrace::default());
        assert!(trace.is_empty());
        trace.record(Phase::Queue, Duration::from_micros(1500));
        trace.record(Phase::Queue, Duration::from_micros(500));
        trace.set_batch_size(3);
        running(vec![trace.clone()], || time(Phase::ToDevice, || std::thread::sleep(Duration::from_millis(2))));
        time(Phase::ToHost, || ()); // outside a job: recorded nowhere
        assert_eq!(trace.get(Phase::Queue), Duration::from_millis(2));
        assert!(trace.get(Phase::ToDevice) >= Duration::from_millis(2));
        assert!(trace.get(Phase::ToHost).is_zero());
        let header = trace.header_value();
        assert!(header.starts_with("queue=2.000,to_device="), "{header}");
        assert!(header.ends_with(",batch=3"), "{header}");
    }
}
