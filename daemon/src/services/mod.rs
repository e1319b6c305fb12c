//! gRPC service implementations. Each handler validates its input, hands the work to
//! the store (on the blocking pool) or a model worker, and converts the answer.

pub mod daemon;
pub mod explain;
mod figures;
pub mod generate;
pub mod models;

use crate::cache::{CacheKey, CanonicalBytes, ResultCache};
use crate::error::ApiResult;
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
    /// the model in the request's metrics.
    pub async fn resolve(&self, reference: &str) -> ApiResult<ModelRecord> {
        let reference = reference.to_string();
        let record = self.with_store(move |store| store.resolve(&reference)).await?;
        crate::metrics::note_model(&model_label(&record));
        Ok(record)
    }

    /// The result-cache key of an explanation request: resolves its model reference
    /// and writes the resolved id in its place (so a name and an id prefix of the
    /// same model share entries, and a name moved to another model does not), then
    /// digests it. `None` when the cache is off.
    pub async fn cache_key<R: CanonicalBytes>(
        &self,
        method: &'static str,
        request: &mut R,
        model: impl Fn(&mut R) -> &mut String,
    ) -> ApiResult<Option<CacheKey>> {
        let reference = model(request).clone();
        let record = self.resolve(&reference).await?;
        *model(request) = record.id.clone();
        Ok(self.cache.key(method, &record.id, request))
    }

    /// Resolves a model reference and returns its record and resident worker. A model
    /// that had to be loaded says so in the response's `x-layerlens-model-load` header
    /// (`loaded`, or `reloaded` after an eviction).
    pub async fn worker_for(&self, reference: &str) -> ApiResult<(ModelRecord, WorkerHandle)> {
        let record = self.resolve(reference).await?;
        let (worker, load) = self.registry.acquire(self.spec_for(&record), record.size_bytes).await?;
        if load != Load::Resident {
            crate::metrics::note_header("x-layerlens-model-load", load.as_str());
        }
        Ok((record, worker))
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

/// How metrics name a model: its first name, else the first 12 hex digits of its id.
pub fn model_label(record: &ModelRecord) -> String {
    record.names.first().cloned().unwrap_or_else(|| record.id[..12.min(record.id.len())].to_string())
}
