//! `layerlens.v1.Models`: upload, add from a path, list, get and delete stored models.

use super::SharedState;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::store::StagedModel;
use layerlens_proto as proto;
use proto::models_server::Models;
use proto::upload_request::Part;
use tonic::{Request, Response, Status, Streaming};

pub struct ModelsService {
    pub state: SharedState,
}

impl ModelsService {
    /// Loads the staged file with libtorch (so only loadable TorchScript is ever
    /// stored), then commits it under its sha256.
    async fn validate_and_commit(&self, staged: StagedModel, name: String, input_shape: Vec<i64>) -> ApiResult<proto::ModelInfo> {
        let state = self.state.clone();
        let record = self
            .state
            .with_store(move |store| {
                if let Some(&bad) = input_shape.iter().find(|&&dim| dim <= 0) {
                    return Err(ApiError::bad_input(format!("input shape {input_shape:?} has a non-positive dimension {bad}")));
                }
                let example = layerlens_engine::model::validate(staged.path())?;
                // An exported program knows its example input: stored as the default
                // input shape when the caller gives none.
                let input_shape = if input_shape.is_empty() { example.unwrap_or_default() } else { input_shape };
                store.commit(staged, (!name.is_empty()).then_some(name.as_str()), &input_shape)
            })
            .await?;
        state.model_info(&record).await
    }

    async fn set_pinned(&self, reference: String, pinned: bool) -> ApiResult<proto::ModelInfo> {
        let record = self.state.with_store(move |store| store.resolve(&reference)).await?;
        self.state.registry.set_pinned(self.state.spec_for(&record), record.size_bytes, pinned).await?;
        tracing::info!(model_id = %record.id, pinned, "pin changed");
        self.state.model_info(&record).await
    }
}

#[tonic::async_trait]
impl Models for ModelsService {
    async fn upload(&self, request: Request<Streaming<proto::UploadRequest>>) -> Result<Response<proto::ModelInfo>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(proto::UploadRequest { part: Some(Part::Header(header)) }) => header,
            _ => return Err(ApiError::bad_input("an upload must start with a header message (name, input shape)").into()),
        };
        let mut writer = self.state.with_store(|store| store.staging_writer()).await?;
        while let Some(message) = stream.message().await? {
            let Some(Part::Chunk(chunk)) = message.part else {
                return Err(ApiError::bad_input("an upload carries one header, then only chunks").into());
            };
            if writer.size_bytes() + chunk.len() as u64 > self.state.max_model_bytes {
                return Err(ApiError::too_large(format!("upload exceeds the model size limit of {} bytes", self.state.max_model_bytes)).into());
            }
            tokio::task::block_in_place(|| writer.write(&chunk))?;
        }
        if writer.size_bytes() == 0 {
            return Err(ApiError::bad_input("the upload is empty: no model bytes were sent").into());
        }
        let staged = tokio::task::block_in_place(|| writer.finish())?;
        Ok(Response::new(self.validate_and_commit(staged, header.name, header.input_shape).await?))
    }

    async fn add_from_path(&self, request: Request<proto::AddFromPathRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        let request = request.into_inner();
        let roots = self.state.model_roots.clone();
        let requested = request.path.clone();
        // Only files under the model roots, by their canonical path (model_roots.rs).
        let path = tokio::task::spawn_blocking(move || roots.resolve(&requested)).await.map_err(ApiError::from)??;
        let max_bytes = self.state.max_model_bytes;
        let staged = self.state.with_store(move |store| store.stage_file(&path, max_bytes)).await?;
        Ok(Response::new(self.validate_and_commit(staged, request.name, request.input_shape).await?))
    }

    async fn list(&self, _request: Request<proto::ListModelsRequest>) -> Result<Response<proto::ListModelsResponse>, Status> {
        let records = self.state.with_store(|store| store.list()).await?;
        let (resident, pinned) = self.state.registry.ids().await?;
        let models = records.iter().map(|record| convert::model_info(record, resident.contains(&record.id), pinned.contains(&record.id))).collect();
        Ok(Response::new(proto::ListModelsResponse { models }))
    }

    async fn get(&self, request: Request<proto::GetModelRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        let reference = request.into_inner().model;
        let record = self.state.with_store(move |store| store.resolve(&reference)).await?;
        Ok(Response::new(self.state.model_info(&record).await?))
    }

    async fn delete(&self, request: Request<proto::DeleteModelRequest>) -> Result<Response<proto::DeleteModelResponse>, Status> {
        let reference = request.into_inner().model;
        let record = self.state.with_store(move |store| store.resolve(&reference)).await?;
        self.state.registry.remove(&record.id).await?;
        self.state.cache.forget_model(&record.id);
        let id = record.id.clone();
        let training = self.state.training.clone();
        self.state
            .with_store(move |store| {
                store.delete(&id)?;
                // Its checkpoints go with it (their files, unless another model has the same bytes).
                for orphan in training.forget_model(&id)? {
                    store.delete_checkpoint(&orphan)?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(model_id = %record.id, "model deleted");
        Ok(Response::new(proto::DeleteModelResponse { id: record.id }))
    }

    async fn pin(&self, request: Request<proto::PinModelRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        Ok(Response::new(self.set_pinned(request.into_inner().model, true).await?))
    }

    async fn unpin(&self, request: Request<proto::PinModelRequest>) -> Result<Response<proto::ModelInfo>, Status> {
        Ok(Response::new(self.set_pinned(request.into_inner().model, false).await?))
    }
}
