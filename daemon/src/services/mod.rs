//! gRPC service implementations. Each handler validates its input, hands the work to
//! the store (on the blocking pool) or a model worker, and converts the answer.

pub mod explain;
mod figures;
pub mod generate;
pub mod models;

use crate::error::ApiResult;
use crate::model_roots::ModelRoots;
use crate::registry::Registry;
use crate::store::{ModelRecord, Store};
use layerlens_engine::{ModelSpec, WorkerHandle};
use std::sync::Arc;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    pub registry: Registry,
    pub max_model_bytes: u64,
    /// Where AddFromPath may read files.
    pub model_roots: ModelRoots,
}

impl State {
    /// Runs blocking store work off the async threads.
    pub async fn with_store<T: Send + 'static>(&self, work: impl FnOnce(&Store) -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store)).await?
    }

    /// Resolves a model reference and returns its record and resident worker.
    pub async fn worker_for(&self, reference: &str) -> ApiResult<(ModelRecord, WorkerHandle)> {
        let reference = reference.to_string();
        let record = self.with_store(move |store| store.resolve(&reference)).await?;
        let spec = ModelSpec {
            model_id: record.id.clone(),
            path: self.store.model_path(&record.id),
            input_shape: (!record.input_shape.is_empty()).then(|| record.input_shape.clone()),
        };
        let worker = self.registry.acquire(spec).await?;
        Ok((record, worker))
    }
}

pub type SharedState = Arc<State>;
