//! `layerlens.v1.Training`: checkpoints of stored models, the optimiser explained from
//! a checkpoint's state, weight change between checkpoints, the loss landscape (on the
//! model's worker), and training runs reported by `layerlens.watch` (runs.rs).

use super::{in_model, SharedState};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::runs::{CheckpointRecord, RunReport};
use crate::store::{ModelRecord, StagedModel};
use layerlens_checkpoint::Dtype;
use layerlens_engine::training::{self, BoundCheckpoint, ModelParameters};
use layerlens_engine::HostTensor;
use layerlens_proto as proto;
use proto::checkpoint_upload_request::Part;
use proto::training_server::Training;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status, Streaming};

pub struct TrainingService {
    pub state: SharedState,
}

/// A checkpoint read from the store and tied to its model.
struct LoadedCheckpoint {
    record: CheckpointRecord,
    bound: BoundCheckpoint,
    model: ModelParameters,
}

/// Reads a checkpoint file as data and binds it to the model file's parameters.
fn read_and_bind(bytes: &[u8], model_path: &std::path::Path) -> ApiResult<(BoundCheckpoint, ModelParameters)> {
    let checkpoint = layerlens_checkpoint::read_checkpoint(bytes).map_err(|error| ApiError::bad_input(error.to_string()))?;
    let tree = layerlens_engine::model::module_tree(model_path)?;
    let model = training::model_parameters(&tree);
    let bound = training::bind(checkpoint, &model)?;
    Ok((bound, model))
}

fn format_name(format: layerlens_checkpoint::Format) -> &'static str {
    match format {
        layerlens_checkpoint::Format::TorchSave => "torch.save",
        layerlens_checkpoint::Format::Safetensors => "safetensors",
    }
}

fn optimizer_name(bound: &BoundCheckpoint) -> String {
    bound.checkpoint.optimizer.as_ref().map(|optimizer| optimizer.kind.name().unwrap_or("unknown").to_string()).unwrap_or_default()
}

impl TrainingService {
    /// Reads, checks and commits a staged checkpoint for `model`.
    async fn validate_and_commit(&self, staged: StagedModel, header: proto::CheckpointHeader) -> ApiResult<proto::CheckpointInfo> {
        let model = self.state.resolve(&header.model).await?;
        let db = self.state.training.clone();
        let record = self
            .state
            .with_store(move |store| {
                let bytes = std::fs::read(staged.path())?;
                let (bound, _) = read_and_bind(&bytes, &store.model_path(&model.id))?;
                let step = header.step.or(bound.checkpoint.step).or_else(|| training::optimizer::optimizer_step(&bound));
                let record = CheckpointRecord {
                    id: staged.id.clone(),
                    model_id: model.id.clone(),
                    step,
                    optimizer: optimizer_name(&bound),
                    format: format_name(bound.checkpoint.format).to_string(),
                    size_bytes: staged.size_bytes,
                    parameters: bound.weights.len() as u32,
                    has_scheduler: bound.checkpoint.scheduler.is_some(),
                    created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
                };
                // The file first: a row never names a missing file.
                store.commit_checkpoint(staged)?;
                db.add_checkpoint(&record)?;
                Ok(record)
            })
            .await?;
        tracing::info!(checkpoint = %record.id, model_id = %record.model_id, "checkpoint stored");
        Ok(checkpoint_info(&record))
    }

    /// A stored checkpoint of a model, read and bound.
    async fn load_checkpoint(&self, model: &ModelRecord, reference: &str) -> ApiResult<LoadedCheckpoint> {
        let (model_id, reference) = (model.id.clone(), reference.to_string());
        let db = self.state.training.clone();
        self.state
            .with_store(move |store| {
                let record = db.resolve_checkpoint(&model_id, &reference)?;
                let bytes = std::fs::read(store.checkpoint_path(&record.id))?;
                let (bound, model) = read_and_bind(&bytes, &store.model_path(&model_id))?;
                Ok(LoadedCheckpoint { record, bound, model })
            })
            .await
    }
}

fn checkpoint_info(record: &CheckpointRecord) -> proto::CheckpointInfo {
    proto::CheckpointInfo {
        id: record.id.clone(),
        model: record.model_id.clone(),
        step: record.step,
        optimizer: record.optimizer.clone(),
        format: record.format.clone(),
        size_bytes: record.size_bytes,
        created_unix: record.created_unix,
        parameters: record.parameters,
        has_scheduler: record.has_scheduler,
    }
}

/// The checkpoint's parameters (and, with `buffers`, its buffers) by name, as host tensors.
fn state_tensors(loaded: &LoadedCheckpoint, buffers: bool) -> Vec<(String, HostTensor)> {
    let host = |tensor: &layerlens_checkpoint::TensorData| HostTensor {
        shape: tensor.shape.iter().map(|&size| size as i64).collect(),
        values: tensor.to_f32(),
        integer: false,
    };
    let mut state: Vec<(String, HostTensor)> =
        loaded.model.parameters.iter().zip(&loaded.bound.weights).map(|(spec, tensor)| (spec.name.clone(), host(tensor))).collect();
    if buffers {
        // Integer buffers (num_batches_tracked) do not affect an eval-mode pass.
        state.extend(
            loaded
                .bound
                .buffers
                .iter()
                .filter(|(_, tensor)| matches!(tensor.dtype, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16))
                .map(|(name, tensor)| (name.clone(), host(tensor))),
        );
    }
    state
}

#[tonic::async_trait]
impl Training for TrainingService {
    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<proto::CheckpointUploadRequest>>,
    ) -> Result<Response<proto::CheckpointInfo>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(proto::CheckpointUploadRequest { part: Some(Part::Header(header)) }) => header,
            _ => return Err(ApiError::bad_input("a checkpoint upload must start with a header message (model, step)").into()),
        };
        // The model first, so a typo is reported before the bytes are sent.
        self.state.resolve(&header.model).await?;
        let mut writer = self.state.with_store(|store| store.staging_writer()).await?;
        while let Some(message) = stream.message().await? {
            let Some(Part::Chunk(chunk)) = message.part else {
                return Err(ApiError::bad_input("a checkpoint upload carries one header, then only chunks").into());
            };
            if writer.size_bytes() + chunk.len() as u64 > self.state.max_model_bytes {
                return Err(ApiError::too_large(format!("upload exceeds the size limit of {} bytes", self.state.max_model_bytes)).into());
            }
            tokio::task::block_in_place(|| writer.write(&chunk))?;
        }
        if writer.size_bytes() == 0 {
            return Err(ApiError::bad_input("the upload is empty: no checkpoint bytes were sent").into());
        }
        let staged = tokio::task::block_in_place(|| writer.finish())?;
        Ok(Response::new(self.validate_and_commit(staged, header).await?))
    }

    async fn add_checkpoint_from_path(
        &self,
        request: Request<proto::AddCheckpointFromPathRequest>,
    ) -> Result<Response<proto::CheckpointInfo>, Status> {
        let request = request.into_inner();
        let header = request.header.unwrap_or_default();
        self.state.resolve(&header.model).await?;
        let roots = self.state.model_roots.clone();
        let requested = request.path.clone();
        let path = tokio::task::spawn_blocking(move || roots.resolve(&requested)).await.map_err(ApiError::from)??;
        let max_bytes = self.state.max_model_bytes;
        let staged = self.state.with_store(move |store| store.stage_file(&path, max_bytes)).await?;
        Ok(Response::new(self.validate_and_commit(staged, header).await?))
    }

    async fn list_checkpoints(&self, request: Request<proto::ListCheckpointsRequest>) -> Result<Response<proto::ListCheckpointsResponse>, Status> {
        let model = self.state.resolve(&request.into_inner().model).await?;
        let db = self.state.training.clone();
        let records = tokio::task::spawn_blocking(move || db.checkpoints(&model.id)).await.map_err(ApiError::from)??;
        Ok(Response::new(proto::ListCheckpointsResponse { checkpoints: records.iter().map(checkpoint_info).collect() }))
    }

    async fn explain_optimizer(&self, request: Request<proto::ExplainOptimizerRequest>) -> Result<Response<proto::OptimizerReport>, Status> {
        let request = request.into_inner();
        let model = self.state.resolve(&request.model).await?;
        let loaded = self.load_checkpoint(&model, &request.checkpoint).await?;
        let bins = if request.bins == 0 { 40 } else { request.bins.min(1000) as usize };
        let format = convert::figure_format(request.figure_format);
        let kind = proto::OptimizerFigure::try_from(request.figure).unwrap_or_default();
        let answer = tokio::task::spawn_blocking(move || -> ApiResult<proto::OptimizerReport> {
            let report = training::explain_optimizer(&loaded.bound, &loaded.model.parameters, bins)?;
            let figure = match format {
                Some(format) => super::training_figures::optimizer_figure(&report, kind, format)?,
                None => None,
            };
            Ok(convert::optimizer_report(&report, &loaded.record.id, figure))
        })
        .await
        .map_err(ApiError::from)??;
        Ok(Response::new(answer))
    }

    async fn landscape(&self, request: Request<proto::LandscapeRequest>) -> Result<Response<proto::LandscapeResponse>, Status> {
        let request = request.into_inner();
        let (model, worker) = self.state.worker_for(&request.model).await?;
        let centre = if request.checkpoint.is_empty() { None } else { Some(self.load_checkpoint(&model, &request.checkpoint).await?) };
        let mut trajectory = Vec::new();
        for reference in &request.trajectory {
            let loaded = self.load_checkpoint(&model, reference).await?;
            let label = match loaded.record.step {
                Some(step) => format!("step {step}"),
                None => loaded.record.id[..8].to_string(),
            };
            trajectory.push(training::TrajectoryCheckpoint { label, step: loaded.record.step, parameters: state_tensors(&loaded, false) });
        }
        let engine_request = convert::landscape_request(&request, centre.as_ref().map(|loaded| state_tensors(loaded, true)), trajectory)?;
        let landscape = worker.landscape(engine_request).await.map_err(in_model(&model))?;
        let format = convert::figure_format(request.figure_format);
        let title = match &centre {
            Some(loaded) => format!(
                "loss around checkpoint {}",
                loaded.record.step.map(|step| format!("at step {step}")).unwrap_or_else(|| loaded.record.id[..8].to_string())
            ),
            None => "loss around the stored weights".to_string(),
        };
        let answer = tokio::task::spawn_blocking(move || -> ApiResult<proto::LandscapeResponse> {
            let figure = match format {
                Some(format) => Some(super::training_figures::landscape_figure(&landscape, &title, format)?),
                None => None,
            };
            Ok(convert::landscape_response(&landscape, figure))
        })
        .await
        .map_err(ApiError::from)??;
        Ok(Response::new(answer))
    }

    async fn weight_change(&self, request: Request<proto::WeightChangeRequest>) -> Result<Response<proto::WeightChangeResponse>, Status> {
        let request = request.into_inner();
        let model = self.state.resolve(&request.model).await?;
        let from = self.load_checkpoint(&model, &request.from_checkpoint).await?;
        let to = self.load_checkpoint(&model, &request.to_checkpoint).await?;
        let format = convert::figure_format(request.figure_format);
        let answer = tokio::task::spawn_blocking(move || -> ApiResult<proto::WeightChangeResponse> {
            let report = training::weight_change(&from.bound, &to.bound, &from.model.parameters);
            let figure = match format {
                Some(format) => Some(super::training_figures::weight_change_figure(&report, format)?),
                None => None,
            };
            Ok(convert::weight_change_response(&report, figure))
        })
        .await
        .map_err(ApiError::from)??;
        Ok(Response::new(answer))
    }

    async fn report_run(&self, request: Request<proto::ReportRunRequest>) -> Result<Response<proto::ReportRunResponse>, Status> {
        let report: RunReport = convert::run_report(request.into_inner());
        let db = self.state.training.clone();
        let records = tokio::task::spawn_blocking(move || db.append_run(&report)).await.map_err(ApiError::from)??;
        Ok(Response::new(proto::ReportRunResponse { records }))
    }

    async fn list_runs(&self, _request: Request<proto::ListRunsRequest>) -> Result<Response<proto::ListRunsResponse>, Status> {
        let db = self.state.training.clone();
        let runs = tokio::task::spawn_blocking(move || db.runs()).await.map_err(ApiError::from)??;
        Ok(Response::new(proto::ListRunsResponse { runs: runs.iter().map(convert::run_info).collect() }))
    }

    async fn get_run(&self, request: Request<proto::GetRunRequest>) -> Result<Response<proto::Run>, Status> {
        let name = request.into_inner().run;
        let db = self.state.training.clone();
        let run = tokio::task::spawn_blocking(move || db.run(&name)).await.map_err(ApiError::from)??;
        Ok(Response::new(convert::run(&run)))
    }

    async fn run_figure(&self, request: Request<proto::RunFigureRequest>) -> Result<Response<proto::Figure>, Status> {
        let request = request.into_inner();
        if request.runs.is_empty() {
            return Err(ApiError::bad_input("name at least one run").into());
        }
        let kind = proto::RunFigureKind::try_from(request.kind).unwrap_or_default();
        let format = convert::figure_format(request.figure_format).unwrap_or(layerlens_render::Format::Png);
        let db = self.state.training.clone();
        let figure = tokio::task::spawn_blocking(move || -> ApiResult<proto::Figure> {
            let runs = request.runs.iter().map(|name| db.run(name)).collect::<ApiResult<Vec<_>>>()?;
            super::training_figures::run_figure(&runs, kind, format)
        })
        .await
        .map_err(ApiError::from)??;
        Ok(Response::new(figure))
    }
}
