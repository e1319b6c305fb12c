//! One worker thread per resident model and device. The thread owns the loaded model
//! (libtorch work never runs on tokio's threads, and grad mode is thread-local) and
//! takes commands from a closed enum over a channel; answers go back on oneshot
//! channels so async callers can await them.

use crate::attribution::{self, Attribution, AttributionRequest, Chunking, Evaluation, EvaluationRequest, SanityCheck};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::generation::{
    self, Counterfactual, CounterfactualProgress, CounterfactualRequest, Traversal, TraverseRequest, Visualization, VisualizeProgress,
    VisualizeRequest,
};
use crate::model::{self, LoadedModel, SampleInput};
use crate::host_tensor::HostTensor;
use crate::inspection::{self, ActivationReport, ParameterReport, Prediction};
use crate::op_graph::{self, OpGraph};
use crate::structure::{self, ModuleInfo};
use crate::summary::{self, CallSummary};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

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
    Attribute { request: AttributionRequest, reply: oneshot::Sender<Result<Attribution>> },
    ModuleTree { reply: oneshot::Sender<Result<Arc<Vec<ModuleInfo>>>> },
    Evaluate { request: EvaluationRequest, reply: oneshot::Sender<Result<Evaluation>> },
    Parameters { bins: usize, reply: oneshot::Sender<Result<ParameterReport>> },
    Activations { inputs: Vec<HostTensor>, bins: usize, reply: oneshot::Sender<Result<ActivationReport>> },
    Predict { inputs: Vec<HostTensor>, top_k: usize, reply: oneshot::Sender<Result<Prediction>> },
    OpGraph { inputs: Vec<SampleInput>, reply: oneshot::Sender<Result<OpGraph>> },
    CallSummary { inputs: Vec<SampleInput>, max_depth: Option<u32>, reply: oneshot::Sender<Result<CallSummary>> },
    SanityCheck { request: AttributionRequest, seed: i64, signed: bool, reply: oneshot::Sender<Result<SanityCheck>> },
    Visualize { request: VisualizeRequest, report: Reporter<VisualizeProgress>, reply: oneshot::Sender<Result<Visualization>> },
    Counterfactual { request: CounterfactualRequest, report: Reporter<CounterfactualProgress>, reply: oneshot::Sender<Result<Counterfactual>> },
    Traverse { request: TraverseRequest, reply: oneshot::Sender<Result<Traversal>> },
}

/// A generation job's progress callback (see `generation::Report`), moved to the worker.
pub type Reporter<P> = Box<dyn FnMut(Option<P>) -> bool + Send>;

/// Settings every worker of a daemon shares.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Working memory one forward/backward pass may use, in bytes.
    pub pass_budget_bytes: u64,
    /// Optimisation steps one generation job may ask for.
    pub max_generation_steps: u32,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings { pass_budget_bytes: 1 << 30, max_generation_steps: 10_000 }
    }
}

/// Handle to a model's worker thread. Cloning is cheap; the thread stops when the
/// last handle is dropped, after finishing the commands already queued.
#[derive(Clone)]
pub struct WorkerHandle {
    sender: mpsc::Sender<Command>,
    pub model_id: String,
    pub device: Device,
    gauges: Arc<WorkerGauges>,
}

/// What the daemon's metrics and `Status` read about a worker without asking its
/// thread (which may be busy for seconds): plain atomics the thread keeps current.
#[derive(Debug, Default)]
struct WorkerGauges {
    /// Commands sent to the worker and not yet answered: its queue depth, the one
    /// running included.
    in_flight: AtomicU64,
    /// Bytes of the model's parameters and buffers once it is loaded, else 0.
    resident_bytes: AtomicU64,
}

impl WorkerHandle {
    /// Starts the worker thread; it loads the model before taking its first command.
    pub fn spawn(spec: ModelSpec, device: Device, settings: WorkerSettings) -> Result<WorkerHandle> {
        let (sender, receiver) = mpsc::channel();
        let model_id = spec.model_id.clone();
        let gauges = Arc::new(WorkerGauges::default());
        let worker_gauges = gauges.clone();
        std::thread::Builder::new()
            .name(format!("model-{}", &spec.model_id[..spec.model_id.len().min(12)]))
            .spawn(move || run_worker(spec, device, settings, receiver, &worker_gauges))
            .map_err(|error| Error::internal(format!("starting a worker thread: {error}")))?;
        Ok(WorkerHandle { sender, model_id, device, gauges })
    }

    /// Commands sent to this worker and not yet answered (queued or running).
    pub fn in_flight(&self) -> u64 {
        self.gauges.in_flight.load(Ordering::Relaxed)
    }

    /// Bytes of the model's parameters and buffers (tied tensors once); 0 until the
    /// model has loaded.
    pub fn resident_bytes(&self) -> u64 {
        self.gauges.resident_bytes.load(Ordering::Relaxed)
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

    pub async fn traverse(&self, request: TraverseRequest) -> Result<Traversal> {
        self.call(|reply| Command::Traverse { request, reply }).await
    }

    /// The model's module tree; read once per worker and shared afterwards.
    pub async fn module_tree(&self) -> Result<Arc<Vec<ModuleInfo>>> {
        self.call(|reply| Command::ModuleTree { reply }).await
    }

    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending so the worker never decrements below zero; the worker
        // thread decrements once it has answered (or dropped) the command.
        self.gauges.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(command(reply)).is_err() {
            self.gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::internal(format!("the worker of model {} has stopped", self.model_id)));
        }
        answer
            .await
            .map_err(|_| Error::internal(format!("the worker of model {} dropped a request", self.model_id)))?
    }
}

fn run_worker(spec: ModelSpec, device: Device, settings: WorkerSettings, commands: mpsc::Receiver<Command>, gauges: &WorkerGauges) {
    let loaded = model::load_torchscript(&spec.path, device, spec.input_shape.clone())
        .map_err(|error| error.context(format!("loading model {}", spec.model_id)));
    let mut module_tree: Option<Arc<Vec<ModuleInfo>>> = None;
    match &loaded {
        Ok(_) => {
            // The module tree is read now rather than on first need: it gives the
            // resident bytes the daemon reports, and most first requests want it anyway.
            let resident_bytes = match guard(|| cached_tree(&mut module_tree, &spec)) {
                Ok(tree) => structure::resident_bytes(&tree),
                Err(error) => {
                    tracing::warn!(model_id = %spec.model_id, %error, "reading the module tree for the resident size failed");
                    0
                }
            };
            gauges.resident_bytes.store(resident_bytes, Ordering::Relaxed);
            tracing::info!(model_id = %spec.model_id, %device, resident_bytes, "model resident");
        }
        Err(error) => tracing::warn!(model_id = %spec.model_id, %device, %error, "model failed to load"),
    }
    let mut summaries: Vec<((Vec<SampleInput>, Option<u32>), CallSummary)> = Vec::new();
    for command in commands {
        // Whatever the command's outcome, it is answered when this iteration ends.
        let _answered = InFlightDone(&gauges.in_flight);
        match command {
            Command::Attribute { request, reply } => {
                let answer = with_model(&loaded, |model| {
                    let chunking = Chunking::new(settings.pass_budget_bytes, model.estimate_bytes_per_row(&request.inputs));
                    attribution::attribute(model, &request, chunking)
                });
                let _ = reply.send(answer);
            }
            Command::CallSummary { inputs, max_depth, reply } => {
                // Summaries are cached per input shape and depth: the second request
                // for the same view (an editor hover) is answered without a run.
                let key = (inputs.clone(), max_depth);
                let answer = match summaries.iter().find(|(cached, _)| *cached == key) {
                    Some((_, summary)) => Ok(summary.clone()),
                    None => with_model(&loaded, |model| {
                        let tree = cached_tree(&mut module_tree, &spec)?;
                        summary::run_call_summary(model, &tree, &inputs, max_depth)
                    })
                    .inspect(|summary| {
                        if summaries.len() >= 16 {
                            summaries.remove(0);
                        }
                        summaries.push((key, summary.clone()));
                    }),
                };
                let _ = reply.send(answer);
            }
            Command::OpGraph { inputs, reply } => {
                let _ = reply.send(with_model(&loaded, |model| op_graph::op_graph(model, &inputs)));
            }
            Command::Parameters { bins, reply } => {
                let answer = with_model(&loaded, |model| {
                    let tree = cached_tree(&mut module_tree, &spec)?;
                    inspection::parameter_report(model, bins, &tree)
                });
                let _ = reply.send(answer);
            }
            Command::Activations { inputs, bins, reply } => {
                let _ = reply.send(with_model(&loaded, |model| inspection::activation_report(model, &inputs, bins)));
            }
            Command::Predict { inputs, top_k, reply } => {
                let _ = reply.send(with_model(&loaded, |model| inspection::predict(model, &inputs, top_k)));
            }
            Command::Evaluate { request, reply } => {
                let answer = with_model(&loaded, |model| {
                    let chunking = Chunking::new(settings.pass_budget_bytes, model.estimate_bytes_per_row(&request.attribution.inputs));
                    attribution::evaluate(model, &request, chunking)
                });
                let _ = reply.send(answer);
            }
            Command::SanityCheck { request, seed, signed, reply } => {
                let answer = with_model(&loaded, |model| {
                    let chunking = Chunking::new(settings.pass_budget_bytes, model.estimate_bytes_per_row(&request.inputs));
                    attribution::sanity_check(model, &request, chunking, seed, signed)
                });
                let _ = reply.send(answer);
            }
            Command::Visualize { request, mut report, reply } => {
                let answer = with_model(&loaded, |model| generation::visualize(model, &request, settings.max_generation_steps, &mut *report));
                let _ = reply.send(answer);
            }
            Command::Counterfactual { request, mut report, reply } => {
                let answer = with_model(&loaded, |model| generation::counterfactual(model, &request, settings.max_generation_steps, &mut *report));
                let _ = reply.send(answer);
            }
            Command::Traverse { request, reply } => {
                let _ = reply.send(with_model(&loaded, |model| generation::traverse(model, &request)));
            }
            Command::ModuleTree { reply } => {
                let answer = match &module_tree {
                    Some(tree) => Ok(tree.clone()),
                    None => guard(|| structure::module_tree(&spec.path)).map(|tree| {
                        let tree = Arc::new(tree);
                        module_tree = Some(tree.clone());
                        tree
                    }),
                };
                let _ = reply.send(answer);
            }
        }
    }
    tracing::info!(model_id = %spec.model_id, "worker stopped");
}

/// Decrements the worker's in-flight count when dropped: at the end of each command,
/// even one whose work panicked past `guard`.
struct InFlightDone<'a>(&'a AtomicU64);

impl Drop for InFlightDone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The module tree, read from the file once per worker.
fn cached_tree(cache: &mut Option<Arc<Vec<ModuleInfo>>>, spec: &ModelSpec) -> Result<Arc<Vec<ModuleInfo>>> {
    if let Some(tree) = cache {
        return Ok(tree.clone());
    }
    let tree = Arc::new(structure::module_tree(&spec.path)?);
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
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(Error::internal(format!("the engine panicked: {}", crate::error::torch_reason(message))))
    })
}
