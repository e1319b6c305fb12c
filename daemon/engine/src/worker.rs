//! One worker thread per resident model and device. The thread owns the loaded model
//! (libtorch work never runs on tokio's threads, and grad mode is thread-local; on the
//! CPU the model loads and computes on threads the worker starts, threads.rs) and
//! takes commands from a closed enum through its job queue (scheduler.rs: bounded,
//! priorities, fair across users, deadlines, cancellation); answers go back on
//! oneshot channels so async callers can await them. Compatible queued requests are
//! run as one pass (batching.rs). A request that runs out of memory is retried in
//! smaller chunks (attributions: `in_chunks`; predictions: halves here) before it
//! fails alone.

use crate::attribution::Progress;
use crate::attribution::{self, Attribution, AttributionRequest, Chunking, Evaluation, EvaluationRequest, SanityCheck};
use crate::batching::{self, BatchKey};
use crate::device::{Device, PassBudget};
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::generation::{
    self, Counterfactual, CounterfactualProgress, CounterfactualRequest, Traversal, TraverseRequest, Visualization, VisualizeProgress,
    VisualizeRequest,
};
use crate::host_tensor::HostTensor;
use crate::inspection::{self, ActivationReport, ParameterReport, Prediction};
use crate::model::{self, LoadedModel, SampleInput};
use crate::op_graph::{self, OpGraph};
use crate::scheduler::{Job, JobQueue, QueueFull, QueueSettings, Ticket};
use crate::structure::{self, ModuleInfo};
use crate::summary::{self, CallSummary};
use crate::text::{self, GeneratedToken, GenerationOptions, TextAttribution, TextAttributionRequest};
use crate::threads;
use crate::trace::{self, Phase, RequestTrace};
use crate::training::{self, Landscape, LandscapeRequest};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a summary was computed for: the sample inputs and the depth limit.
type SummaryKey = (Vec<SampleInput>, Option<u32>);

/// What a worker needs to load its model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// sha256 of the file, used in thread names and error context.
    pub model_id: String,
    pub path: PathBuf,
    /// Shape of one example input, when known.
    pub input_shape: Option<Vec<i64>>,
}

enum Command {
    Attribute {
        request: AttributionRequest,
        reply: oneshot::Sender<Result<Attribution>>,
    },
    ModuleTree {
        reply: oneshot::Sender<Result<Arc<Vec<ModuleInfo>>>>,
    },
    Evaluate {
        request: EvaluationRequest,
        reply: oneshot::Sender<Result<Evaluation>>,
    },
    Parameters {
        bins: usize,
        reply: oneshot::Sender<Result<ParameterReport>>,
    },
    Activations {
        inputs: Vec<HostTensor>,
        bins: usize,
        reply: oneshot::Sender<Result<ActivationReport>>,
    },
    Predict {
        inputs: Vec<HostTensor>,
        top_k: usize,
        reply: oneshot::Sender<Result<Prediction>>,
    },
    OpGraph {
        inputs: Vec<SampleInput>,
        reply: oneshot::Sender<Result<OpGraph>>,
    },
    CallSummary {
        inputs: Vec<SampleInput>,
        max_depth: Option<u32>,
        reply: oneshot::Sender<Result<CallSummary>>,
    },
    SanityCheck {
        request: AttributionRequest,
        seed: i64,
        signed: bool,
        reply: oneshot::Sender<Result<SanityCheck>>,
    },
    Visualize {
        request: VisualizeRequest,
        report: Reporter<VisualizeProgress>,
        reply: oneshot::Sender<Result<Visualization>>,
    },
    Counterfactual {
        request: CounterfactualRequest,
        report: Reporter<CounterfactualProgress>,
        reply: oneshot::Sender<Result<Counterfactual>>,
    },
    Traverse {
        request: TraverseRequest,
        reply: oneshot::Sender<Result<Traversal>>,
    },
    Landscape {
        request: Box<LandscapeRequest>,
        reply: oneshot::Sender<Result<Landscape>>,
    },
    AttributeText {
        request: Box<TextAttributionRequest>,
        reply: oneshot::Sender<Result<TextAttribution>>,
    },
    GenerateText {
        prompt: Vec<i64>,
        options: GenerationOptions,
        report: Reporter<GeneratedToken>,
        reply: oneshot::Sender<Result<Vec<GeneratedToken>>>,
    },
}

impl Command {
    /// The command's name in metrics and logs.
    fn name(&self) -> &'static str {
        match self {
            Command::Attribute { .. } => "attribute",
            Command::ModuleTree { .. } => "module_tree",
            Command::Evaluate { .. } => "evaluate",
            Command::Parameters { .. } => "parameters",
            Command::Activations { .. } => "activations",
            Command::Predict { .. } => "predict",
            Command::OpGraph { .. } => "op_graph",
            Command::CallSummary { .. } => "summary",
            Command::SanityCheck { .. } => "sanity_check",
            Command::Visualize { .. } => "visualize",
            Command::Counterfactual { .. } => "counterfactual",
            Command::Traverse { .. } => "traverse",
            Command::Landscape { .. } => "landscape",
            Command::AttributeText { .. } => "attribute_text",
            Command::GenerateText { .. } => "generate_text",
        }
    }

    /// What the command must share with others to run in one pass with them.
    fn batch_key(&self) -> Option<BatchKey> {
        match self {
            Command::Attribute { request, .. } => batching::attribute_key(request),
            Command::Predict { inputs, top_k, .. } => batching::predict_key(inputs, *top_k),
            _ => None,
        }
    }
}

/// A generation job's progress callback (see `generation::Report`), moved to the worker.
pub type Reporter<P> = Box<dyn FnMut(Option<P>) -> bool + Send>;

/// What the daemon learns from its workers as they go (metrics, health): called on
/// the worker thread, so implementations must be quick.
pub trait WorkerObserver: Send + Sync {
    /// The model loaded and its warm-up pass ran (`Ok`), or it failed to load.
    fn model_ready(&self, model_id: &str, outcome: &Result<()>);
    /// A job ran: time it waited in the queue, time it ran, and how many requests
    /// shared its pass (1 when it ran alone).
    fn job_finished(&self, model_id: &str, command: &'static str, waited: Duration, ran: Duration, batch_size: usize);
    /// The worker stopped and freed the model.
    fn model_unloaded(&self, model_id: &str);
}

/// Settings every worker of a daemon shares.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Working memory one forward/backward pass may use.
    pub pass_budget: PassBudget,
    /// Optimisation steps one generation job may ask for.
    pub max_generation_steps: u32,
    pub queue: QueueSettings,
    pub observer: Option<Arc<dyn WorkerObserver>>,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings { pass_budget: PassBudget::FromDevice, max_generation_steps: 10_000, queue: QueueSettings::default(), observer: None }
    }
}

impl std::fmt::Debug for WorkerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("pass_budget", &self.pass_budget)
            .field("max_generation_steps", &self.max_generation_steps)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Handle to a model's worker thread. Cloning is cheap; the thread stops when the
/// last handle is dropped, after finishing the commands already queued.
#[derive(Clone)]
pub struct WorkerHandle {
    queue: Arc<JobQueue<Command>>,
    pub model_id: String,
    pub device: Device,
    gauges: Arc<WorkerGauges>,
    /// Closes the queue when the last handle goes.
    _open: Arc<QueueOpen>,
}

struct QueueOpen(Arc<JobQueue<Command>>);

impl Drop for QueueOpen {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the daemon's metrics and `Status` read about a worker without asking its
/// thread (which may be busy for seconds): plain atomics the thread keeps current.
#[derive(Debug, Default)]
struct WorkerGauges {
    /// 1 while a job runs.
    running: AtomicU64,
    /// Bytes of the model's parameters and buffers once it is loaded, else 0.
    resident_bytes: AtomicU64,
    /// The model loaded and its warm-up pass ran.
    ready: AtomicBool,
    /// Moving average of a job's run time, in microseconds (for retry hints).
    mean_run_micros: AtomicU64,
}

/// Raises a queued job's cancelled flag when its caller stops waiting (the request
/// future is dropped, or its deadline passed), so the worker skips it.
struct CallerGone<'a> {
    cancelled: Arc<AtomicBool>,
    queue: &'a JobQueue<Command>,
    answered: bool,
}

impl Drop for CallerGone<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.cancelled.store(true, Ordering::Relaxed);
            self.queue.forget_cancelled();
        }
    }
}

impl WorkerHandle {
    /// Starts the worker thread; it loads the model and runs a warm-up pass before
    /// taking its first command (commands sent meanwhile wait in the queue).
    pub fn spawn(spec: ModelSpec, device: Device, settings: WorkerSettings) -> Result<WorkerHandle> {
        let queue = Arc::new(JobQueue::new(settings.queue));
        let model_id = spec.model_id.clone();
        let gauges = Arc::new(WorkerGauges::default());
        let worker_gauges = gauges.clone();
        let worker_queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("model-{}", &spec.model_id[..spec.model_id.len().min(12)]))
            .spawn(move || run_worker(spec, device, settings, &worker_queue, &worker_gauges))
            .map_err(|error| Error::internal(format!("starting a worker thread: {error}")))?;
        Ok(WorkerHandle { _open: Arc::new(QueueOpen(queue.clone())), queue, model_id, device, gauges })
    }

    /// Commands sent to this worker and not yet answered (queued or running).
    pub fn in_flight(&self) -> u64 {
        self.queue.depth() as u64 + self.gauges.running.load(Ordering::Relaxed)
    }

    /// Commands waiting in the queue (the running one not counted).
    pub fn queued(&self) -> u64 {
        self.queue.depth() as u64
    }

    /// Bytes of the model's parameters and buffers (tied tensors once); 0 until the
    /// model has loaded.
    pub fn resident_bytes(&self) -> u64 {
        self.gauges.resident_bytes.load(Ordering::Relaxed)
    }

    /// Whether the model has loaded and run its warm-up pass.
    pub fn is_ready(&self) -> bool {
        self.gauges.ready.load(Ordering::Relaxed)
    }

    pub async fn attribute(&self, request: AttributionRequest) -> Result<Attribution> {
        self.call(|reply| Command::Attribute { request, reply }).await
    }

    /// The torchinfo-style summary for zero inputs, rows down to `max_depth`.
    pub async fn call_summary(&self, inputs: Vec<SampleInput>, max_depth: Option<u32>) -> Result<CallSummary> {
        self.call(|reply| Command::CallSummary { inputs, max_depth, reply }).await
    }

    /// The op graph of one run on zero inputs.
    pub async fn op_graph(&self, inputs: Vec<SampleInput>) -> Result<OpGraph> {
        self.call(|reply| Command::OpGraph { inputs, reply }).await
    }

    pub async fn parameters(&self, bins: usize) -> Result<ParameterReport> {
        self.call(|reply| Command::Parameters { bins, reply }).await
    }

    pub async fn activations(&self, inputs: Vec<HostTensor>, bins: usize) -> Result<ActivationReport> {
        self.call(|reply| Command::Activations { inputs, bins, reply }).await
    }

    pub async fn predict(&self, inputs: Vec<HostTensor>, top_k: usize) -> Result<Prediction> {
        self.call(|reply| Command::Predict { inputs, top_k, reply }).await
    }

    pub async fn evaluate(&self, request: EvaluationRequest) -> Result<Evaluation> {
        self.call(|reply| Command::Evaluate { request, reply }).await
    }

    pub async fn sanity_check(&self, request: AttributionRequest, seed: i64, signed: bool) -> Result<SanityCheck> {
        self.call(|reply| Command::SanityCheck { request, seed, signed, reply }).await
    }

    /// Activation maximisation; `report` gets progress on the worker thread and stops
    /// the job by returning false.
    pub async fn visualize(&self, request: VisualizeRequest, report: Reporter<VisualizeProgress>) -> Result<Visualization> {
        self.call(|reply| Command::Visualize { request, report, reply }).await
    }

    pub async fn counterfactual(&self, request: CounterfactualRequest, report: Reporter<CounterfactualProgress>) -> Result<Counterfactual> {
        self.call(|reply| Command::Counterfactual { request, report, reply }).await
    }

    /// The loss surface around a checkpoint, on a fresh copy of the model.
    pub async fn landscape(&self, request: LandscapeRequest) -> Result<Landscape> {
        let request = Box::new(request);
        self.call(|reply| Command::Landscape { request, reply }).await
    }

    /// Perturbation attribution over text features (text.rs).
    pub async fn attribute_text(&self, request: TextAttributionRequest) -> Result<TextAttribution> {
        let request = Box::new(request);
        self.call(|reply| Command::AttributeText { request, reply }).await
    }

    /// A causal LM's continuation; `report` hears of each token on the worker thread
    /// and stops the generation by returning false.
    pub async fn generate_text(&self, prompt: Vec<i64>, options: GenerationOptions, report: Reporter<GeneratedToken>) -> Result<Vec<GeneratedToken>> {
        self.call(|reply| Command::GenerateText { prompt, options, report, reply }).await
    }

    pub async fn traverse(&self, request: TraverseRequest) -> Result<Traversal> {
        self.call(|reply| Command::Traverse { request, reply }).await
    }

    /// The model's module tree; read once per worker and shared afterwards.
    pub async fn module_tree(&self) -> Result<Arc<Vec<ModuleInfo>>> {
        self.call(|reply| Command::ModuleTree { reply }).await
    }

    /// Queues a command under the current request's ticket and waits for its answer,
    /// at most until the ticket's deadline.
    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let ticket = Ticket::current();
        let deadline = ticket.deadline;
        let trace = ticket.trace.clone();
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return Err(deadline_passed("before it was queued"));
        }
        let (reply, answer) = oneshot::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        if let Err((_, full)) = self.queue.push(command(reply), ticket, cancelled.clone()) {
            return Err(self.busy(full));
        }
        let mut gone = CallerGone { cancelled, queue: &self.queue, answered: false };
        let answer = match deadline {
            None => answer.await,
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), answer).await {
                Ok(answer) => answer,
                // `gone` raises the cancelled flag: a queued job is dropped, a running
                // attribution stops at its next pass.
                Err(_) => return Err(deadline_passed("while it was queued or running")),
            },
        };
        gone.answered = true;
        if let Some(trace) = &trace {
            trace.finish_run();
        }
        answer.map_err(|_| match deadline {
            // The worker drops a job whose deadline passed, maybe just before this
            // caller's own timer fires.
            Some(deadline) if deadline <= Instant::now() => deadline_passed("while it was queued"),
            _ => Error::internal(format!("the worker of model {} dropped a request", self.model_id)),
        })?
    }

    fn busy(&self, full: QueueFull) -> Error {
        let mean = Duration::from_micros(self.gauges.mean_run_micros.load(Ordering::Relaxed).max(1_000));
        // Half the queue should have drained by then; never advise less than 50 ms.
        let retry_after = (mean * (full.queued as u32 / 2).max(1)).max(Duration::from_millis(50));
        let retry_after_ms = retry_after.as_millis().min(u128::from(u64::MAX)) as u64;
        Error::new(
            ErrorKind::Busy { retry_after_ms },
            format!(
                "model {} is busy: {} requests are queued, the most it holds (--max-queue {}); retry in about {retry_after_ms} ms",
                &self.model_id[..self.model_id.len().min(12)],
                full.queued,
                self.queue.settings.max_queue
            ),
        )
    }
}

fn deadline_passed(when: &str) -> Error {
    Error::new(ErrorKind::DeadlineExceeded, format!("the request's deadline passed {when}; work not yet started was dropped"))
}

/// The loaded model and what the worker keeps between commands.
struct Worker {
    spec: ModelSpec,
    settings: WorkerSettings,
    loaded: Result<LoadedModel>,
    module_tree: Option<Arc<Vec<ModuleInfo>>>,
    /// Summaries answered lately, by sample inputs and depth.
    summaries: Recent<SummaryKey, CallSummary>,
    /// Op graphs answered lately, by sample inputs: a viewer that opens and closes
    /// frames asks for one graph many times.
    op_graphs: Recent<Vec<SampleInput>, OpGraph>,
    /// The model's warm-up pass was small: its compute thread runs each op alone
    /// (threads.rs, `small_pass`).
    serial: bool,
}

/// The last few answers of a structure run (summary, op graph), which depend only on
/// the sample inputs' shapes: a second request for one is answered without a run.
struct Recent<K, V> {
    entries: Vec<(K, V)>,
}

impl<K: PartialEq, V: Clone> Recent<K, V> {
    const KEPT: usize = 16;

    fn new() -> Recent<K, V> {
        Recent { entries: Vec::new() }
    }

    /// The kept answer for `key`, else `compute`'s, kept when it succeeds.
    fn get_or_try(&mut self, key: K, compute: impl FnOnce() -> Result<V>) -> Result<V> {
        if let Some((_, value)) = self.entries.iter().find(|(kept, _)| *kept == key) {
            return Ok(value.clone());
        }
        let value = compute()?;
        if self.entries.len() >= Self::KEPT {
            self.entries.remove(0);
        }
        self.entries.push((key, value.clone()));
        Ok(value)
    }
}

fn run_worker(spec: ModelSpec, device: Device, settings: WorkerSettings, queue: &Arc<JobQueue<Command>>, gauges: &WorkerGauges) {
    let model_id = spec.model_id.clone();
    let thread_name = std::thread::current().name().unwrap_or("model").to_string();
    // On the CPU the model loads apart and runs on a compute thread that ends once
    // another model computes and this one is idle (threads.rs): the worker thread
    // itself never runs a libtorch op, so it holds no OpenMP pool.
    let apart = device == Device::Cpu;
    let start = || {
        let loaded = model::load(&spec.path, device, spec.input_shape.clone()).map_err(|error| error.context(format!("loading model {model_id}")));
        let mut worker = Worker {
            spec: spec.clone(),
            settings: settings.clone(),
            loaded,
            module_tree: None,
            summaries: Recent::new(),
            op_graphs: Recent::new(),
            serial: false,
        };
        let ready = worker.warm_up();
        (worker, ready)
    };
    let (mut worker, ready) = if apart {
        match threads::apart(&thread_name, start) {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%model_id, %error, "loading the model on this worker thread");
                start()
            }
        }
    } else {
        start()
    };
    match &ready {
        Ok(resident_bytes) => {
            gauges.resident_bytes.store(*resident_bytes, Ordering::Relaxed);
            gauges.ready.store(true, Ordering::Relaxed);
            tracing::info!(%model_id, %device, resident_bytes, "model resident");
        }
        Err(error) => tracing::warn!(%model_id, %device, %error, "model failed to load"),
    }
    let observer = worker.settings.observer.clone();
    if let Some(observer) = &observer {
        observer.model_ready(&model_id, &ready.map(|_| ()));
    }
    let mut traffic = batching::Traffic::default();
    let slot = apart.then(|| {
        let queue = Arc::downgrade(queue);
        threads::PoolSlot::new(move || {
            if let Some(queue) = queue.upgrade() {
                queue.release();
            }
        })
    });
    // A model with small passes computes without a team (threads.rs, `small_pass`):
    // it starts no pool, so it asks no other model to end theirs.
    let serial = apart && worker.serial;
    while let Some(first) = queue.pop() {
        // Serves jobs until another model has claimed the CPU and none came for a
        // while (apart), or until the queue closes (on this thread).
        let mut burst = |first: Job<Command>| {
            if serial {
                threads::run_serially();
            }
            let mut job = first;
            loop {
                serve(&mut worker, &mut traffic, job, queue, gauges);
                let next = if serial {
                    queue.pop_spinning(threads::SPIN_BEFORE_SLEEP, Instant::now(), threads::RELEASE_AFTER_IDLE)
                } else if apart {
                    queue.pop_unless_released(Instant::now(), threads::RELEASE_AFTER_IDLE)
                } else {
                    queue.pop()
                };
                match next {
                    Some(next) => job = next,
                    None => break,
                }
            }
        };
        let Some(slot) = &slot else {
            burst(first);
            continue;
        };
        if !serial {
            slot.claim();
        }
        if let Err(error) = threads::apart(&thread_name, || burst(first)) {
            // No compute thread started: the first job went with the closure (its
            // caller hears that the worker dropped it); what is queued is served here.
            tracing::warn!(%model_id, %error, "serving on the worker thread");
            if let Some(job) = queue.pop_unless_released(Instant::now(), threads::RELEASE_AFTER_IDLE) {
                burst(job);
            }
        }
    }
    drop(worker);
    if let Some(observer) = &observer {
        observer.model_unloaded(&model_id);
    }
    tracing::info!(%model_id, "worker stopped");
}

/// Runs one job (and the queued jobs that can share its pass) and keeps the gauges,
/// traces and observer current.
fn serve(worker: &mut Worker, traffic: &mut batching::Traffic, job: Job<Command>, queue: &JobQueue<Command>, gauges: &WorkerGauges) {
    gauges.running.store(1, Ordering::Relaxed);
    let waited = job.enqueued.elapsed();
    if let Some(trace) = &job.ticket.trace {
        trace.record(Phase::Queue, waited);
    }
    let name = job.command.name();
    let started = Instant::now();
    let mut batchable = false;
    let companions = match job.command.batch_key() {
        Some(key) if queue.settings.max_batch_size > 1 => {
            let matches = |command: &Command| command.batch_key().as_ref() == Some(&key);
            let room = queue.settings.max_batch_size - 1;
            // Companions already queued are taken at once. The job waits for more
            // only when recent passes served several callers in step, or some were
            // queued (a burst is arriving), as long as the traffic says they take to
            // come (batching::Traffic::wait_for, at most the batch delay): a lone
            // caller's request never pays the delay.
            let mut companions = queue.take_matching(matches, room, Instant::now(), None);
            traffic.arrived(job.enqueued);
            for companion in &companions {
                traffic.arrived(companion.enqueued);
            }
            let wait = traffic.wait_for(queue.settings.max_batch_delay, companions.len(), room - companions.len());
            if !wait.window.is_zero() {
                companions.extend(queue.take_matching(matches, wait.more, Instant::now() + wait.window, wait.quiet));
            }
            batchable = true;
            companions
        }
        _ => Vec::new(),
    };
    let batch_size = 1 + companions.len();
    let gathered = started.elapsed();
    let traces: Vec<Arc<RequestTrace>> = std::iter::once(&job).chain(&companions).filter_map(|job| job.ticket.trace.clone()).collect();
    // The first job waited in the queue, then for companions; a companion waited
    // in the queue until now.
    if let Some(trace) = &job.ticket.trace {
        trace.record(Phase::Batch, gathered);
    }
    for companion in &companions {
        if let Some(trace) = &companion.ticket.trace {
            trace.record(Phase::Queue, companion.enqueued.elapsed());
        }
    }
    for trace in &traces {
        trace.start_run(batch_size);
    }
    trace::running(traces, || {
        if companions.is_empty() {
            worker.run(job.command, &job.cancelled);
        } else {
            worker.run_batch(job, companions);
        }
    });
    let ran = started.elapsed();
    if batchable {
        traffic.ran(ran.saturating_sub(gathered), batch_size);
    }
    let previous = gauges.mean_run_micros.load(Ordering::Relaxed);
    let micros = ran.as_micros().min(u128::from(u64::MAX)) as u64;
    gauges.mean_run_micros.store(if previous == 0 { micros } else { (previous * 7 + micros) / 8 }, Ordering::Relaxed);
    // Reported before the job stops counting as running, so whoever sees the model
    // idle also sees the job in the metrics.
    if let Some(observer) = &worker.settings.observer {
        observer.job_finished(&worker.spec.model_id, name, waited, ran, batch_size);
    }
    gauges.running.store(0, Ordering::Relaxed);
}

impl Worker {
    /// Reads the module tree (it gives the resident bytes the daemon reports, and
    /// most first requests want it anyway) and runs one forward pass on zeros when
    /// the model's input shape is known, so the first real request does not pay for
    /// TorchScript's first-run optimisation. Returns the resident bytes.
    fn warm_up(&mut self) -> Result<u64> {
        let loaded = match &self.loaded {
            Ok(model) => model,
            Err(error) => return Err(error.clone()),
        };
        let resident_bytes = match guard(|| cached_tree(&mut self.module_tree, &self.spec)) {
            Ok(tree) => structure::resident_bytes(&tree),
            Err(error) => {
                tracing::warn!(model_id = %self.spec.model_id, %error, "reading the module tree for the resident size failed");
                0
            }
        };
        if let Some(shape) = &self.spec.input_shape {
            let zeros = HostTensor { shape: shape.clone(), values: vec![0.0; shape.iter().product::<i64>().max(0) as usize], integer: false };
            let started = Instant::now();
            let pass = || guard(|| inspection::predict(loaded, std::slice::from_ref(&zeros), 0)).map(|_| ());
            let warm = match pass() {
                Ok(()) => {
                    tracing::info!(model_id = %self.spec.model_id, seconds = started.elapsed().as_secs_f64(), "warm-up pass done");
                    Some(started.elapsed())
                }
                // A model whose recorded shape is not what it takes still serves
                // requests with the right shape.
                Err(error) => {
                    tracing::warn!(model_id = %self.spec.model_id, %error, "warm-up pass failed");
                    None
                }
            };
            if let (Some(warm_up), Device::Cpu) = (warm, loaded.device) {
                self.serial = threads::small_pass(warm_up, pass).unwrap_or(false);
                if self.serial {
                    tracing::info!(model_id = %self.spec.model_id, "small passes: the model runs on one thread");
                }
            }
        }
        Ok(resident_bytes)
    }

    /// A pass budget for a request, with the caller-gone flag as its progress handle
    /// (joined with the request's own in `prepare`), so a running attribution stops
    /// when nobody waits for it. Out of memory in a pass is handled where the passes
    /// run: `in_chunks` halves the chunk and retries.
    fn chunking(&self, model: &LoadedModel, inputs: &[HostTensor], cancel: Progress) -> Result<Chunking> {
        // The inputs are checked before anything measures them: a 0-d or empty tensor
        // must be a named bad input, never a panic in the row-size estimate.
        model.check_inputs(inputs)?;
        let mut chunking = Chunking::new(self.settings.pass_budget.bytes_on(model.device), model.estimate_bytes_per_row(inputs));
        chunking.progress = Some(cancel);
        Ok(chunking)
    }

    fn run(&mut self, command: Command, cancelled: &Arc<AtomicBool>) {
        match command {
            Command::Attribute { request, reply } => {
                let _ = reply.send(self.attribute(&request, Progress::cancelled_when(cancelled.clone())));
            }
            Command::CallSummary { inputs, max_depth, reply } => {
                // Cached per input shape and depth: the second request for the same
                // view (an editor hover) is answered without a run.
                let (spec, tree_cache, loaded) = (&self.spec, &mut self.module_tree, &self.loaded);
                let answer = self.summaries.get_or_try((inputs.clone(), max_depth), || {
                    with_model(loaded, |model| {
                        let tree = cached_tree(tree_cache, spec)?;
                        summary::run_call_summary(model, &tree, &inputs, max_depth)
                    })
                });
                let _ = reply.send(answer);
            }
            Command::OpGraph { inputs, reply } => {
                let loaded = &self.loaded;
                let answer = self.op_graphs.get_or_try(inputs.clone(), || with_model(loaded, |model| op_graph::op_graph(model, &inputs)));
                let _ = reply.send(answer);
            }
            Command::Parameters { bins, reply } => {
                let (spec, tree_cache) = (&self.spec, &mut self.module_tree);
                let answer = with_model(&self.loaded, |model| {
                    let tree = cached_tree(tree_cache, spec)?;
                    inspection::parameter_report(model, bins, &tree)
                });
                let _ = reply.send(answer);
            }
            Command::Activations { inputs, bins, reply } => {
                let _ = reply.send(with_model(&self.loaded, |model| inspection::activation_report(model, &inputs, bins)));
            }
            Command::Predict { inputs, top_k, reply } => {
                let _ = reply.send(self.predict(&inputs, top_k));
            }
            Command::Evaluate { request, reply } => {
                let answer = with_model(&self.loaded, |model| {
                    attribution::evaluate(
                        model,
                        &request,
                        self.chunking(model, &request.attribution.inputs, Progress::cancelled_when(cancelled.clone()))?,
                    )
                });
                let _ = reply.send(answer);
            }
            Command::SanityCheck { request, seed, signed, reply } => {
                let answer = with_model(&self.loaded, |model| {
                    attribution::sanity_check(
                        model,
                        &request,
                        self.chunking(model, &request.inputs, Progress::cancelled_when(cancelled.clone()))?,
                        seed,
                        signed,
                    )
                });
                let _ = reply.send(answer);
            }
            Command::Visualize { request, mut report, reply } => {
                let steps = self.settings.max_generation_steps;
                let answer = with_model(&self.loaded, |model| generation::visualize(model, &request, steps, &mut *report));
                let _ = reply.send(answer);
            }
            Command::Counterfactual { request, mut report, reply } => {
                let steps = self.settings.max_generation_steps;
                let answer = with_model(&self.loaded, |model| generation::counterfactual(model, &request, steps, &mut *report));
                let _ = reply.send(answer);
            }
            Command::Traverse { request, reply } => {
                let _ = reply.send(with_model(&self.loaded, |model| generation::traverse(model, &request)));
            }
            Command::Landscape { request, reply } => {
                let answer = with_model(&self.loaded, |model| {
                    training::landscape(model, &request, self.chunking(model, &request.inputs, Progress::cancelled_when(cancelled.clone()))?)
                });
                let _ = reply.send(answer);
            }
            Command::AttributeText { request, reply } => {
                let answer = with_model(&self.loaded, |model| {
                    text::check_context(model, &request)?;
                    // The chunk size is measured on the full prompt and target as one row.
                    let row = text::measuring_row(&request);
                    text::attribute_text(model, &request, self.chunking(model, &[row], Progress::cancelled_when(cancelled.clone()))?)
                });
                let _ = reply.send(answer);
            }
            Command::GenerateText { prompt, options, mut report, reply } => {
                let answer = with_model(&self.loaded, |model| text::generate_text(model, &prompt, &options, &mut |token| report(Some(token))));
                let _ = reply.send(answer);
            }
            Command::ModuleTree { reply } => {
                let answer = guard(|| cached_tree(&mut self.module_tree, &self.spec));
                let _ = reply.send(answer);
            }
        }
    }

    /// An attribution; `cancel` stops it between passes (the caller's flag, or for a
    /// joined batch: every caller gone).
    fn attribute(&self, request: &AttributionRequest, cancel: Progress) -> Result<Attribution> {
        with_model(&self.loaded, |model| attribution::attribute(model, request, self.chunking(model, &request.inputs, cancel)?))
    }

    /// A prediction; a batch that does not fit in memory is predicted in halves
    /// (predictions run one forward pass, not `in_chunks`).
    fn predict(&self, inputs: &[HostTensor], top_k: usize) -> Result<Prediction> {
        let answer = with_model(&self.loaded, |model| inspection::predict(model, inputs, top_k));
        let rows = inputs.first().map_or(0, HostTensor::rows);
        match answer {
            Err(error) if error.kind == ErrorKind::OutOfMemory && rows > 1 => {
                tracing::warn!(model_id = %self.spec.model_id, rows, %error, "out of memory; predicting in halves");
                let halves = [rows / 2, rows - rows / 2];
                let parts: Vec<Vec<HostTensor>> = {
                    let split: Vec<Vec<HostTensor>> = inputs.iter().map(|input| input.split_rows(&halves)).collect();
                    (0..2).map(|half| split.iter().map(|pieces| pieces[half].clone()).collect()).collect()
                };
                let first = self.predict(&parts[0], top_k)?;
                let second = self.predict(&parts[1], top_k)?;
                Ok(Prediction {
                    output: HostTensor::concat_rows(&[&first.output, &second.output]),
                    top_k: first.top_k.into_iter().chain(second.top_k).collect(),
                })
            }
            answer => answer,
        }
    }

    /// Runs `first` and `companions` (which share its batch key) as one request: see
    /// `run_joined`.
    fn run_batch(&mut self, first: Job<Command>, companions: Vec<Job<Command>>) {
        let jobs: Vec<Job<Command>> = std::iter::once(first).chain(companions).collect();
        if matches!(jobs[0].command, Command::Attribute { .. } | Command::Predict { .. }) {
            run_joined(self, jobs);
        } else {
            // Only attributions and predictions have batch keys.
            for job in jobs {
                self.run(job.command, &job.cancelled);
            }
        }
    }
}

/// What a joined run needs from the model. The worker runs it on its loaded model;
/// the tests below on a fake, so the join, split, fallback and cancellation logic is
/// tested without a model file.
trait JoinedRuns {
    fn model_id(&self) -> &str;
    fn attribute(&self, request: &AttributionRequest, cancel: Progress) -> Result<Attribution>;
    fn predict(&self, inputs: &[HostTensor], top_k: usize) -> Result<Prediction>;
}

impl JoinedRuns for Worker {
    fn model_id(&self) -> &str {
        &self.spec.model_id
    }

    fn attribute(&self, request: &AttributionRequest, cancel: Progress) -> Result<Attribution> {
        Worker::attribute(self, request, cancel)
    }

    fn predict(&self, inputs: &[HostTensor], top_k: usize) -> Result<Prediction> {
        Worker::predict(self, inputs, top_k)
    }
}

/// Runs jobs that share a batch key (all attributions or all predictions) as one
/// request and answers each with its rows. The joined run goes on while any caller
/// waits (its cancel flag unset and, for a streaming caller, its progress handle
/// saying go on) and stops when all have gone. Joining and splitting run under the
/// panic guard like the work itself. If the joined run fails, each job that still has
/// a caller runs alone, so each gets the answer (or the error) its own request
/// deserves.
fn run_joined(runs: &impl JoinedRuns, jobs: Vec<Job<Command>>) {
    let mut attributions = Vec::new();
    let mut predictions = Vec::new();
    let mut top_k = 0;
    for job in jobs {
        match job.command {
            Command::Attribute { request, reply } => attributions.push((request, reply, job.cancelled)),
            Command::Predict { inputs, top_k: own_top_k, reply } => {
                top_k = own_top_k;
                predictions.push((inputs, reply, job.cancelled));
            }
            // The caller groups by batch key; anything else would be a bug there.
            _ => tracing::error!("a job without a batch key reached a joined run"),
        }
    }
    if !attributions.is_empty() {
        let alive: Vec<Progress> = attributions
            .iter()
            .map(|(request, _, cancelled)| {
                let flag = Progress::cancelled_when(cancelled.clone());
                match &request.progress {
                    Some(own) => flag.and(own.clone()),
                    None => flag,
                }
            })
            .collect();
        let rows: Vec<usize> = attributions.iter().map(|(request, _, _)| request.inputs[0].rows()).collect();
        let joined = guard(|| {
            let joined = batching::join_attribution(&attributions.iter().map(|(request, _, _)| request).collect::<Vec<_>>());
            let answer = runs.attribute(&joined, Progress::any(alive))?;
            Ok(batching::split_attribution(answer, &rows))
        });
        match joined {
            Ok(parts) => {
                for ((_, reply, _), part) in attributions.into_iter().zip(parts) {
                    let _ = reply.send(Ok(part));
                }
            }
            Err(error) => {
                tracing::info!(model_id = %runs.model_id(), %error, "a joined request failed; running its parts alone");
                for (request, reply, cancelled) in attributions {
                    if !cancelled.load(Ordering::Relaxed) {
                        let _ = reply.send(runs.attribute(&request, Progress::cancelled_when(cancelled.clone())));
                    }
                }
            }
        }
    }
    if !predictions.is_empty() {
        let rows: Vec<usize> = predictions.iter().map(|(inputs, _, _)| inputs[0].rows()).collect();
        let joined = guard(|| {
            let joined = batching::join_inputs(&predictions.iter().map(|(inputs, _, _)| inputs.as_slice()).collect::<Vec<_>>());
            Ok(batching::split_prediction(runs.predict(&joined, top_k)?, &rows))
        });
        match joined {
            Ok(parts) => {
                for ((_, reply, _), part) in predictions.into_iter().zip(parts) {
                    let _ = reply.send(Ok(part));
                }
            }
            Err(_) => {
                for (inputs, reply, cancelled) in predictions {
                    // A caller that has gone is not answered (nobody reads it) nor run for.
                    if !cancelled.load(Ordering::Relaxed) {
                        let _ = reply.send(runs.predict(&inputs, top_k));
                    }
                }
            }
        }
    }
}

/// The module tree, read from the file once per worker.
fn cached_tree(cache: &mut Option<Arc<Vec<ModuleInfo>>>, spec: &ModelSpec) -> Result<Arc<Vec<ModuleInfo>>> {
    if let Some(tree) = cache {
        return Ok(tree.clone());
    }
    let tree = Arc::new(model::module_tree(&spec.path)?);
    *cache = Some(tree.clone());
    Ok(tree)
}

fn with_model<T>(loaded: &Result<LoadedModel>, work: impl FnOnce(&LoadedModel) -> Result<T>) -> Result<T> {
    match loaded {
        Ok(model) => guard(|| work(model)),
        Err(error) => Err(error.clone()),
    }
}

/// Runs one command, turning a panic (tch panics on some libtorch errors) into an
/// internal error so the worker keeps serving.
fn guard<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("unknown panic");
        // Some tch calls panic on a libtorch error; an allocator's failure keeps its kind,
        // so it is retried smaller or answered RESOURCE_EXHAUSTED, not INTERNAL.
        let reason = crate::error::torch_reason(message);
        let kind = if crate::error::is_out_of_memory(&reason) { ErrorKind::OutOfMemory } else { ErrorKind::Internal };
        tracing::error!(panic = %message, "the engine panicked");
        Err(Error::new(kind, format!("the engine panicked: {reason}")))
    })
}

#[cfg(test)]
mod tests {
    //! The joined-run logic on a fake model: no model file, no libtorch pass.
    use super::*;
    use crate::attribution::{ProgressUpdate, Targets};
    use std::sync::Mutex;

    /// Attributions are the inputs doubled (so each caller's rows are recognisable);
    /// runs over more than `max_rows` rows fail as if out of memory; every attribution
    /// reports `passes` passes to its cancel handle and stops when told to.
    struct Fake {
        max_rows: usize,
        passes: u64,
        /// Rows of every run, in order.
        runs: Mutex<Vec<usize>>,
        /// Called between passes, to raise flags while a run is under way.
        between_passes: Box<dyn Fn(u64) + Send + Sync>,
        /// Answers a run over several rows with one row too few (a bug in a method),
        /// so splitting the joined answer panics.
        short_joined_answers: bool,
    }

    impl Fake {
        fn new(max_rows: usize) -> Fake {
            Fake { max_rows, passes: 3, runs: Mutex::new(Vec::new()), between_passes: Box::new(|_| {}), short_joined_answers: false }
        }

        fn check_rows(&self, rows: usize) -> Result<()> {
            self.runs.lock().unwrap().push(rows);
            if rows > self.max_rows {
                return Err(Error::new(ErrorKind::OutOfMemory, format!("{rows} rows do not fit")));
            }
            Ok(())
        }
    }

    impl JoinedRuns for Fake {
        fn model_id(&self) -> &str {
            "fake"
        }

        fn attribute(&self, request: &AttributionRequest, cancel: Progress) -> Result<Attribution> {
            let input = &request.inputs[0];
            self.check_rows(input.rows())?;
            for pass in 1..=self.passes {
                (self.between_passes)(pass);
                let update =
                    ProgressUpdate { passes_done: pass, passes_total: Some(self.passes), rows_done: 0, rows_total: 0, phase: "fake passes".into() };
                cancel.check(&update)?;
            }
            let mut doubled = HostTensor { values: input.values.iter().map(|value| value * 2.0).collect(), ..input.clone() };
            if self.short_joined_answers && input.rows() > 1 {
                let row_len = doubled.values.len() / input.rows();
                doubled.values.truncate(doubled.values.len() - row_len);
                doubled.shape[0] -= 1;
            }
            Ok(Attribution {
                method: request.method.clone(),
                targets: vec![0; input.rows()],
                values: vec![doubled],
                output: input.clone(),
                convergence_deltas: Vec::new(),
                n_steps: None,
                rows_evaluated: input.rows() as u64,
                passes: self.passes,
                figure_values: None,
            })
        }

        fn predict(&self, inputs: &[HostTensor], _top_k: usize) -> Result<Prediction> {
            self.check_rows(inputs[0].rows())?;
            Ok(Prediction { output: inputs[0].clone(), top_k: vec![Vec::new(); inputs[0].rows()] })
        }
    }

    fn rows(count: i64, first: f32) -> HostTensor {
        HostTensor { shape: vec![count, 2], values: (0..count * 2).map(|index| first + index as f32).collect(), integer: false }
    }

    type Reply<T> = oneshot::Receiver<Result<T>>;

    fn attribute_job(input: HostTensor) -> (Job<Command>, Reply<Attribution>) {
        let (reply, answer) = oneshot::channel();
        let request = AttributionRequest { method: "saliency".into(), inputs: vec![input], targets: Targets::All(0), ..Default::default() };
        (Job::detached(Command::Attribute { request, reply }), answer)
    }

    fn predict_job(input: HostTensor) -> (Job<Command>, Reply<Prediction>) {
        let (reply, answer) = oneshot::channel();
        (Job::detached(Command::Predict { inputs: vec![input], top_k: 1, reply }), answer)
    }

    fn answer<T>(mut receiver: Reply<T>) -> Option<Result<T>> {
        receiver.try_recv().ok()
    }

    #[test]
    fn a_joined_run_answers_each_caller_with_its_own_rows() {
        let fake = Fake::new(100);
        let (jobs, answers): (Vec<_>, Vec<_>) = [rows(1, 0.0), rows(2, 10.0), rows(1, 20.0)].into_iter().map(attribute_job).unzip();
        run_joined(&fake, jobs);
        assert_eq!(*fake.runs.lock().unwrap(), vec![4], "one pass over all four rows");
        let values: Vec<Vec<f32>> = answers.into_iter().map(|receiver| answer(receiver).unwrap().unwrap().values[0].values.clone()).collect();
        assert_eq!(values, vec![vec![0.0, 2.0], vec![20.0, 22.0, 24.0, 26.0], vec![40.0, 42.0]]);
    }

    #[test]
    fn a_failed_joined_run_reruns_each_caller_alone_except_the_ones_gone() {
        let fake = Fake::new(2);
        let (first, first_answer) = attribute_job(rows(2, 0.0));
        let (gone, gone_answer) = attribute_job(rows(1, 5.0));
        let (last, last_answer) = attribute_job(rows(1, 9.0));
        gone.cancelled.store(true, Ordering::Relaxed);
        run_joined(&fake, vec![first, gone, last]);
        assert_eq!(*fake.runs.lock().unwrap(), vec![4, 2, 1], "the joined run, then each caller still waiting");
        assert_eq!(answer(first_answer).unwrap().unwrap().values[0].values, vec![0.0, 2.0, 4.0, 6.0]);
        assert!(answer(gone_answer).is_none(), "a caller that left is neither run for nor answered");
        assert_eq!(answer(last_answer).unwrap().unwrap().values[0].values, vec![18.0, 20.0]);
    }

    #[test]
    fn unary_callers_cancel_a_joined_attribution_once_all_have_gone() {
        let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::new(Mutex::new(Vec::new()));
        let mut fake = Fake::new(100);
        let raised = flags.clone();
        // Every caller goes away after the first pass.
        fake.between_passes = Box::new(move |pass| {
            if pass == 2 {
                raised.lock().unwrap().iter().for_each(|flag| flag.store(true, Ordering::Relaxed));
            }
        });
        let (first, first_answer) = attribute_job(rows(1, 0.0));
        let (second, second_answer) = attribute_job(rows(1, 1.0));
        flags.lock().unwrap().extend([first.cancelled.clone(), second.cancelled.clone()]);
        run_joined(&fake, vec![first, second]);
        // The joined run stopped; nobody is left to rerun for.
        assert_eq!(*fake.runs.lock().unwrap(), vec![2]);
        assert!(answer(first_answer).is_none() && answer(second_answer).is_none());
    }

    #[test]
    fn a_joined_attribution_goes_on_while_one_caller_still_waits() {
        let mut fake = Fake::new(100);
        let stream_gone = Arc::new(AtomicBool::new(false));
        let leaving = stream_gone.clone();
        fake.between_passes = Box::new(move |pass| {
            if pass == 2 {
                leaving.store(true, Ordering::Relaxed);
            }
        });
        // A streaming caller whose stream closes mid-run, and a unary caller who waits.
        let (mut streaming, streaming_answer) = attribute_job(rows(1, 0.0));
        if let Command::Attribute { request, .. } = &mut streaming.command {
            let gone = stream_gone.clone();
            request.progress = Some(Progress::new(move |_| !gone.load(Ordering::Relaxed)));
        }
        let (unary, unary_answer) = attribute_job(rows(1, 3.0));
        run_joined(&fake, vec![streaming, unary]);
        assert_eq!(*fake.runs.lock().unwrap(), vec![2], "the joined run finished for the caller still waiting");
        assert_eq!(answer(unary_answer).unwrap().unwrap().values[0].values, vec![6.0, 8.0]);
        assert!(answer(streaming_answer).unwrap().is_ok());
    }

    #[test]
    fn a_failed_joined_prediction_skips_callers_that_have_gone() {
        let fake = Fake::new(1);
        let (first, first_answer) = predict_job(rows(1, 0.0));
        let (gone, gone_answer) = predict_job(rows(1, 1.0));
        gone.cancelled.store(true, Ordering::Relaxed);
        run_joined(&fake, vec![first, gone]);
        assert_eq!(*fake.runs.lock().unwrap(), vec![2, 1]);
        assert_eq!(answer(first_answer).unwrap().unwrap().output.values, vec![0.0, 1.0]);
        assert!(answer(gone_answer).is_none());
    }

    #[test]
    fn a_panic_while_splitting_falls_back_to_lone_runs() {
        // The joined answer is one row short: splitting it panics inside the guard, the
        // worker survives, and each caller is served alone.
        let mut fake = Fake::new(100);
        fake.short_joined_answers = true;
        let (first, first_answer) = attribute_job(rows(1, 0.0));
        let (second, second_answer) = attribute_job(rows(1, 1.0));
        run_joined(&fake, vec![first, second]);
        assert_eq!(*fake.runs.lock().unwrap(), vec![2, 1, 1]);
        assert_eq!(answer(first_answer).unwrap().unwrap().values[0].values, vec![0.0, 2.0]);
        assert_eq!(answer(second_answer).unwrap().unwrap().values[0].values, vec![2.0, 4.0]);
    }
}
