//! `layerlens.v1.Explain`: the module summary and attributions of a stored model.

use super::SharedState;
use crate::convert;
use crate::error::ApiError;
use layerlens_engine::AttributionRequest;
use layerlens_proto as proto;
use proto::explain_server::Explain;
use tonic::{Request, Response, Status};

pub struct ExplainService {
    pub state: SharedState,
}

#[tonic::async_trait]
impl Explain for ExplainService {
    async fn summary(&self, request: Request<proto::SummaryRequest>) -> Result<Response<proto::SummaryResponse>, Status> {
        let request = request.into_inner();
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let tree = worker.module_tree().await.map_err(ApiError::from)?;
        let depth = (request.depth > 0).then_some(request.depth);
        let summary = layerlens_engine::structure::summarize(&tree, depth);
        let figure = convert::figure_format(request.figure_format).map(|_| {
            let rows: Vec<layerlens_render::TableRow> = summary
                .rows
                .iter()
                .map(|row| layerlens_render::TableRow { path: &row.path, type_name: &row.type_name, depth: row.depth, num_params: row.num_params })
                .collect();
            let title = format!("model {}", record.names.first().cloned().unwrap_or_else(|| record.id[..12].to_string()));
            convert::figure(layerlens_render::summary_table_svg(&title, &rows, summary.total_params, summary.trainable_params))
        });
        let rows = summary
            .rows
            .iter()
            .map(|row| proto::SummaryRow {
                path: row.path.clone(),
                type_name: row.type_name.clone(),
                depth: row.depth,
                num_params: row.num_params,
                trainable_params: row.trainable_params,
                own_params: row.own_params,
                output_shapes: Vec::new(),
                mult_adds: 0,
            })
            .collect();
        Ok(Response::new(proto::SummaryResponse {
            model_id: record.id,
            rows,
            total_params: summary.total_params,
            trainable_params: summary.trainable_params,
            total_mult_adds: 0,
            figure,
        }))
    }

    async fn attribute(&self, request: Request<proto::AttributeRequest>) -> Result<Response<proto::AttributeResponse>, Status> {
        let request = request.into_inner();
        let input = convert::input_tensor(request.input.as_ref())?;
        if request.method.is_empty() {
            return Err(ApiError::bad_input(format!(
                "no attribution method given; available: {}",
                layerlens_engine::METHODS.join(", ")
            ))
            .into());
        }
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let attribution = worker
            .attribute(AttributionRequest {
                method: request.method.clone(),
                input: input.clone(),
                target: request.target,
                params: request.params.into_iter().collect(),
            })
            .await
            .map_err(|error| ApiError::from(error.context(format!("model {}", &record.id[..12]))))?;
        let figure = match convert::figure_format(request.figure_format) {
            None => None,
            Some(format) => {
                let title = format!("{}, target {}", attribution.method, targets_text(&attribution.targets));
                let values = attribution.values.clone();
                let rendered = tokio::task::spawn_blocking(move || {
                    layerlens_render::attribution_figure(
                        &layerlens_render::AttributionFigure {
                            input_shape: &input.shape,
                            input: &input.values,
                            attribution_shape: &values.shape,
                            attribution: &values.values,
                            title: &title,
                        },
                        format,
                    )
                })
                .await
                .map_err(ApiError::from)?
                .map_err(|error| ApiError::internal(error.to_string()))?;
                Some(convert::figure(rendered))
            }
        };
        Ok(Response::new(proto::AttributeResponse {
            model_id: record.id,
            method: attribution.method,
            targets: attribution.targets,
            attribution: Some(convert::tensor(&attribution.values)),
            convergence_delta: attribution.convergence_delta,
            figure,
            output: Some(convert::tensor(&attribution.output)),
        }))
    }
}

fn targets_text(targets: &[i64]) -> String {
    match targets {
        [first, rest @ ..] if rest.iter().all(|target| target == first) => first.to_string(),
        _ => format!("{targets:?}"),
    }
}
