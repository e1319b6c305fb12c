//! `layerlens.v1.Explain`: the module summary and attributions of a stored model.

use super::SharedState;
use crate::convert;
use crate::error::ApiError;
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
        if request.method.is_empty() {
            return Err(ApiError::bad_input(format!(
                "no attribution method given; available: {}",
                layerlens_engine::METHODS.join(", ")
            ))
            .into());
        }
        let engine_request = convert::attribution_request(&request)?;
        let figure_options = convert::figure_options(request.figure_options.as_ref())?;
        let first_input = engine_request.inputs[0].clone();
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let attribution = worker
            .attribute(engine_request)
            .await
            .map_err(|error| ApiError::from(error.context(format!("model {}", &record.id[..12]))))?;
        let figure = match convert::figure_format(request.figure_format) {
            None => None,
            Some(format) => Some(render_attribution(first_input, &attribution, format, figure_options).await?),
        };
        Ok(Response::new(convert::attribute_response(record.id, attribution, figure)))
    }
}

/// Draws the first input's attribution off the async threads.
async fn render_attribution(
    input: layerlens_engine::HostTensor,
    attribution: &layerlens_engine::Attribution,
    format: layerlens_render::Format,
    options: layerlens_render::FigureOptions,
) -> Result<proto::Figure, ApiError> {
    let title = format!("{}, target {}", attribution.method, targets_text(&attribution.targets));
    let values = attribution.values[0].clone();
    let rendered = tokio::task::spawn_blocking(move || {
        layerlens_render::attribution_figure(
            &layerlens_render::AttributionFigure {
                input_shape: &input.shape,
                input: &input.values,
                attribution_shape: &values.shape,
                attribution: &values.values,
                title: &title,
                options,
            },
            format,
        )
    })
    .await?
    .map_err(|error| match error {
        // Options that do not fit the data (masked_image with sign all) are the caller's.
        layerlens_render::RenderError::BadOptions(message) => ApiError::bad_input(message),
        other => ApiError::internal(other.to_string()),
    })?;
    Ok(convert::figure(rendered))
}

fn targets_text(targets: &[i64]) -> String {
    match targets {
        [first, rest @ ..] if rest.iter().all(|target| target == first) => first.to_string(),
        _ => format!("{targets:?}"),
    }
}
