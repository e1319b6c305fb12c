//! `layerlens.v1.Daemon`: the daemon's own state for `layerlens status` and
//! dashboards — version, uptime, device, resident models with their size and queue,
//! and the result cache.

use super::SharedState;
use layerlens_proto as proto;
use proto::daemon_server::Daemon;
use tonic::{Request, Response, Status};

pub struct DaemonService {
    pub state: SharedState,
}

#[tonic::async_trait]
impl Daemon for DaemonService {
    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::StatusResponse>, Status> {
        let (residents, memory) = self.state.registry.residents().await?;
        let records = self.state.with_store(|store| store.list()).await?;
        let models: Vec<proto::ResidentModel> = residents
            .iter()
            .map(|resident| {
                let worker = &resident.worker;
                let record = records.iter().find(|record| record.id == worker.model_id);
                proto::ResidentModel {
                    id: worker.model_id.clone(),
                    names: record.map(|record| record.names.clone()).unwrap_or_default(),
                    kind: record.map(|record| record.format.clone()).unwrap_or_default(),
                    resident_bytes: worker.resident_bytes(),
                    in_flight: worker.in_flight(),
                    queued: worker.queued(),
                    pinned: resident.pinned,
                    ready: worker.is_ready(),
                    idle_seconds: resident.idle_seconds,
                }
            })
            .collect();
        let queue = self.state.queue;
        let cache = self.state.cache.stats();
        Ok(Response::new(proto::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.state.started.elapsed().as_secs_f64(),
            device: self.state.device.to_string(),
            resident_bytes: models.iter().map(|model| model.resident_bytes).sum(),
            models,
            cache: Some(proto::CacheStatus {
                capacity_bytes: cache.capacity_bytes,
                size_bytes: cache.size_bytes,
                entries: cache.entries,
                hits: cache.hits,
                misses: cache.misses,
            }),
            memory: Some(proto::MemoryStatus {
                budget_bytes: memory.budget_bytes.unwrap_or(0),
                used_bytes: memory.used_bytes,
                evictions: memory.evictions,
            }),
            queue: Some(proto::QueueStatus {
                max_queue: queue.max_queue as u64,
                max_batch_size: queue.max_batch_size as u64,
                max_batch_delay_ms: queue.max_batch_delay.as_secs_f64() * 1000.0,
            }),
        }))
    }
}
