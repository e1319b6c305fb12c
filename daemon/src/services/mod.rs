//! gRPC service implementations. Each handler validates its input, hands the work to
//! the store (on the blocking pool) or a model worker, and converts the answer.

pub mod daemon;
pub mod explain;
mod figures;
pub mod generate;
pub mod models;
pub mod text;
pub mod training;
mod training_figures;

use crate::cache::{CacheKey, CanonicalBytes, ResultCache};
use crate::error::{ApiError, ApiResult};
use crate::model_roots::ModelRoots;
use crate::registry::{Load, Registry};
use crate::store::{ModelRecord, Store};
use layerlens_engine::{Device, ModelSpec, WorkerHandle};
use std::sync::Arc;
use std::time::Instant;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    /// Checkpoint records and training runs (runs.rs).
    pub training: crate::runs::TrainingDb,
    pub registry: Registry,
    pub max_model_bytes: u64,
    /// Where AddFromPath may read files.
    pub model_roots: ModelRoots,
    /// Answers of deterministic explanation requests (cache.rs).
    pub cache: Arc<ResultCache>,
    pub device: Device,
    pub started: Instant,
    /// The queue settings every worker uses (for Status).
    pub queue: layerlens_engine::QueueSettings,
}

impl State {
    /// Runs blocking store work off the async threads.
    pub async fn with_store<T: Send + 'static>(&self, work: impl FnOnce(&Store) -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store)).await?
    }

    /// Resolves a model reference (name, id or id prefix) to its record, and names
    /// the model in the request's metrics. A reference resolved a moment ago is
    /// answered without reading the store (resolved.rs).
    pub async fn resolve(&self, reference: &str) -> ApiResult<ModelRecord> {
        let record = match self.store.kept(reference) {
            Some(record) => record,
            None => {
                let reference = reference.to_string();
                self.with_store(move |store| store.resolve_kept(&reference)).await?
            }
        };
        crate::request_context::note_model(&model_label(&record));
        Ok(record)
    }

    /// The result-cache key of an explanation request: resolves its model reference
    /// and writes the resolved id in its place (so a name and an id prefix of the
    /// same model share entries, and a name moved to another model does not), then
    /// digests it. Returns the model's record with the key, which is `None` when the
    /// cache is off.
    pub async fn cache_key<R: CanonicalBytes>(
        &self,
        method: &'static str,
        request: &mut R,
        model: impl Fn(&mut R) -> &mut String,
    ) -> ApiResult<(ModelRecord, Option<CacheKey>)> {
        let reference = model(request).clone();
        let record = self.resolve(&reference).await?;
        *model(request) = record.id.clone();
        let key = self.cache.key(method, &record.id, request);
        Ok((record, key))
    }

    /// Resolves a model reference and returns its record and resident worker.
    pub async fn worker_for(&self, reference: &str) -> ApiResult<(ModelRecord, WorkerHandle)> {
        let record = self.resolve(reference).await?;
        let worker = self.worker_of(&record).await?;
        Ok((record, worker))
    }

    /// The resident worker of a resolved model, loading it if need be. A model that
    /// had to be loaded says so in the response's `x-layerlens-model-load` header
    /// (`loaded`, or `reloaded` after an eviction).
    pub async fn worker_of(&self, record: &ModelRecord) -> ApiResult<WorkerHandle> {
        let (worker, load) = self.registry.acquire(self.spec_for(record), record.size_bytes).await?;
        if load != Load::Resident {
            crate::request_context::note_header("x-layerlens-model-load", load.as_str());
        }
        Ok(worker)
    }

    /// The wire description of a stored model, with whether it is resident and pinned.
    pub async fn model_info(&self, record: &ModelRecord) -> ApiResult<layerlens_proto::ModelInfo> {
        let (resident, pinned) = self.registry.ids().await?;
        Ok(crate::convert::model_info(record, resident.contains(&record.id), pinned.contains(&record.id)))
    }

    /// What a worker needs to load the stored model.
    pub fn spec_for(&self, record: &ModelRecord) -> ModelSpec {
        ModelSpec {
            model_id: record.id.clone(),
            path: self.store.model_path(&record.id),
            input_shape: (!record.input_shape.is_empty()).then(|| record.input_shape.clone()),
        }
    }
}

pub type SharedState = Arc<State>;

/// Events a streaming response holds for a slow client at most.
pub const EVENT_BUFFER: usize = 8;

/// The response stream of the progress-then-result calls (Visualize, Counterfactual,
/// AttributeStream).
pub type EventStream<T> = tokio_stream::wrappers::ReceiverStream<Result<T, tonic::Status>>;

/// Spawns the rest of a streaming request's work (the response stream is returned at
/// once): runs `job` and sends its last event (the result, or the error as the
/// stream's status) after the progress events sent through `sender`. The task keeps
/// the request's ticket (user, priority, deadline), which the worker queues order by.
pub fn finish_stream<T: Send + 'static>(
    sender: tokio::sync::mpsc::Sender<Result<T, tonic::Status>>,
    job: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) {
    let ticket = layerlens_engine::Ticket::current();
    tokio::spawn(layerlens_engine::scheduler::TICKET.scope(ticket, async move {
        let last = job.await.map_err(tonic::Status::from);
        // The result waits for room like any event; a client that left gets nothing.
        let _ = sender.send(last).await;
    }));
}

/// An answer the result cache may hold: it says whether it came from the cache.
pub trait CachedAnswer: prost::Message + Default {
    fn mark_cached(self) -> Self;
}

macro_rules! cached_answers {
    ($($answer:ty),*) => {
        $(impl CachedAnswer for $answer {
            fn mark_cached(self) -> Self {
                Self { cached: true, ..self }
            }
        })*
    };
}

cached_answers!(
    layerlens_proto::SummaryResponse,
    layerlens_proto::ParametersResponse,
    layerlens_proto::ActivationsResponse,
    layerlens_proto::PredictResponse,
    layerlens_proto::GraphResponse,
    layerlens_proto::AttributeResponse
);

/// The engine's error for a model's request, with the model named (first 12 hex digits
/// of its id), as every answer about a model says which one it was.
pub fn in_model(record: &ModelRecord) -> impl Fn(layerlens_engine::Error) -> ApiError + '_ {
    move |error| ApiError::from(error.context(format!("model {}", &record.id[..12.min(record.id.len())])))
}

impl State {
    /// The one path of a cached, model-bound request: the cache key (with the model
    /// reference resolved to its id), the cached answer when there is one, else `work`
    /// on the model's record and resident worker, whose answer is then kept. Each
    /// handler states only what is particular to it: the conversion, the worker call,
    /// the figure. `cacheable` false (sampling without a seed) skips the cache both ways.
    pub async fn cached_model_call<R, A, Work, Answer>(
        &self,
        method: &'static str,
        request: &mut R,
        model: impl Fn(&mut R) -> &mut String,
        cacheable: bool,
        work: Work,
    ) -> ApiResult<A>
    where
        R: crate::cache::CanonicalBytes,
        A: CachedAnswer,
        Work: FnOnce(ModelRecord, WorkerHandle) -> Answer,
        Answer: std::future::Future<Output = ApiResult<A>>,
    {
        let (record, key) = self.cache_key(method, request, &model).await?;
        let key = key.filter(|_| cacheable);
        if let Some(answer) = self.cache.get::<A>(key.as_ref()) {
            return Ok(answer.mark_cached());
        }
        let worker = self.worker_of(&record).await?;
        let answer = work(record, worker).await?;
        self.cache.put(key, &answer);
        Ok(answer)
    }
}

/// Carries progress from a model's worker thread to a response stream without ever
/// blocking the worker. The worker's callback hands the raw progress (plain numbers)
/// to a small bounded channel with `try_send`: when the relay is behind (a slow
/// client), that update is dropped and a later one supersedes it. A task turns each
/// update into an event — `render` runs on the blocking pool, since drawing a contact
/// sheet takes milliseconds — and waits for room in the response stream. The worker
/// thread itself never renders and never waits for a client.
pub struct ProgressRelay {
    finished: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How many raw updates wait for the relay before new ones are dropped.
const RELAY_BUFFER: usize = 2;

impl ProgressRelay {
    /// The relay and the callback to give the worker: `Some(progress)` is relayed,
    /// `None` only asks whether anyone still listens; the answer is false once the
    /// response stream is gone, which stops the job.
    pub fn start<P, T>(
        sender: tokio::sync::mpsc::Sender<Result<T, tonic::Status>>,
        render: impl Fn(P) -> T + Send + Sync + 'static,
    ) -> (ProgressRelay, impl FnMut(Option<P>) -> bool + Send + 'static)
    where
        P: Send + 'static,
        T: Send + 'static,
    {
        let (raw_sender, mut raw_receiver) = tokio::sync::mpsc::channel::<P>(RELAY_BUFFER);
        let (finished, mut finish) = tokio::sync::oneshot::channel::<()>();
        let render = std::sync::Arc::new(render);
        let stream = sender.clone();
        let task = tokio::spawn(async move {
            let send = |progress: P| {
                let render = render.clone();
                let sender = sender.clone();
                async move {
                    let Ok(event) = tokio::task::spawn_blocking(move || render(progress)).await else { return true };
                    sender.send(Ok(event)).await.is_ok()
                }
            };
            loop {
                tokio::select! {
                    biased;
                    Some(progress) = raw_receiver.recv() => {
                        if !send(progress).await {
                            return;
                        }
                    }
                    _ = &mut finish => {
                        // The job is done: what is already queued goes out, then the
                        // caller sends the result after it.
                        while let Ok(progress) = raw_receiver.try_recv() {
                            if !send(progress).await {
                                return;
                            }
                        }
                        return;
                    }
                }
            }
        });
        let report = move |progress: Option<P>| {
            if stream.is_closed() {
                return false;
            }
            match progress {
                None => true,
                Some(progress) => !matches!(raw_sender.try_send(progress), Err(tokio::sync::mpsc::error::TrySendError::Closed(_))),
            }
        };
        (ProgressRelay { finished, task }, report)
    }

    /// Waits until every update relayed so far is sent, so the result that follows
    /// is the stream's last event.
    pub async fn finish(self) {
        let _ = self.finished.send(());
        let _ = self.task.await;
    }
}

/// How metrics name a model: its first name, else the first 12 hex digits of its id.
pub fn model_label(record: &ModelRecord) -> String {
    record.names.first().cloned().unwrap_or_else(|| record.id[..12.min(record.id.len())].to_string())
}
