//! The resident-model registry: one owner task holds the map from model id to its
//! worker, fed by a closed command enum over a channel (no locks shared between
//! requests). Models load lazily on their first request and stay resident.
//! Eviction under a memory budget comes with the scheduling work (issue 5).

use crate::error::{ApiError, ApiResult};
use layerlens_engine::{Device, ModelSpec, WorkerHandle, WorkerSettings};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

enum Command {
    /// The worker of a model, started if the model is not resident yet.
    Acquire { spec: ModelSpec, reply: oneshot::Sender<ApiResult<WorkerHandle>> },
    /// Drops the model's worker (it finishes queued work, then frees the model).
    Evict { model_id: String },
    /// Ids of the resident models.
    Resident { reply: oneshot::Sender<Vec<String>> },
    /// The workers of the resident models (for their queue depths and sizes).
    Workers { reply: oneshot::Sender<Vec<WorkerHandle>> },
}

#[derive(Clone)]
pub struct Registry {
    sender: mpsc::Sender<Command>,
}

impl Registry {
    pub fn start(device: Device, settings: WorkerSettings) -> Registry {
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(run(device, settings, receiver));
        Registry { sender }
    }

    pub async fn acquire(&self, spec: ModelSpec) -> ApiResult<WorkerHandle> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Acquire { spec, reply }).await?;
        answer.await.map_err(|_| ApiError::internal("the model registry stopped"))?
    }

    pub async fn evict(&self, model_id: &str) -> ApiResult<()> {
        self.send(Command::Evict { model_id: model_id.to_string() }).await
    }

    pub async fn resident(&self) -> ApiResult<Vec<String>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Resident { reply }).await?;
        answer.await.map_err(|_| ApiError::internal("the model registry stopped"))
    }

    /// The workers of the resident models, sorted by model id.
    pub async fn workers(&self) -> ApiResult<Vec<WorkerHandle>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Workers { reply }).await?;
        answer.await.map_err(|_| ApiError::internal("the model registry stopped"))
    }

    async fn send(&self, command: Command) -> ApiResult<()> {
        self.sender.send(command).await.map_err(|_| ApiError::internal("the model registry stopped"))
    }
}

async fn run(device: Device, settings: WorkerSettings, mut commands: mpsc::Receiver<Command>) {
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Acquire { spec, reply } => {
                let answer = match workers.get(&spec.model_id) {
                    Some(worker) => Ok(worker.clone()),
                    None => {
                        let model_id = spec.model_id.clone();
                        WorkerHandle::spawn(spec, device, settings).map_err(ApiError::from).inspect(|worker| {
                            workers.insert(model_id, worker.clone());
                        })
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Evict { model_id } => {
                workers.remove(&model_id);
            }
            Command::Resident { reply } => {
                let _ = reply.send(workers.keys().cloned().collect());
            }
            Command::Workers { reply } => {
                let mut handles: Vec<WorkerHandle> = workers.values().cloned().collect();
                handles.sort_by(|a, b| a.model_id.cmp(&b.model_id));
                let _ = reply.send(handles);
            }
        }
    }
}
