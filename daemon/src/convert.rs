//! Conversions between wire types (`proto::…`) and engine/store types, by hand, at
//! the edge (like rust-analyzer's to_proto/from_proto). The proto crate cannot hold
//! them: it must not depend on the engine, which links libtorch.

use crate::error::{ApiError, ApiResult};
use crate::store::ModelRecord;
use layerlens_engine::generation::{CounterfactualRequest, Norm, Objective, Parameterization, Term, Transforms, TraverseRequest, VisualizeRequest};
use layerlens_engine::{Attribution, AttributionRequest, HostTensor, Targets};
use layerlens_proto as proto;

pub fn model_info(record: &ModelRecord, resident: bool, pinned: bool) -> proto::ModelInfo {
    proto::ModelInfo {
        id: record.id.clone(),
        names: record.names.clone(),
        size_bytes: record.size_bytes,
        resident,
        format: record.format.clone(),
        input_shape: record.input_shape.clone(),
        created_unix: record.created_unix,
        pinned,
        has_tokenizer: record.has_tokenizer,
    }
}

/// A float32 (or, for token ids, int64) wire tensor as a host tensor; `what` names it
/// in errors.
pub fn host_tensor(tensor: &proto::Tensor, what: &str) -> ApiResult<HostTensor> {
    if tensor.dtype() == proto::Dtype::Int64 {
        let values = tensor.to_i64().map_err(|error| ApiError::bad_input(format!("{what}: {error}")))?;
        if let Some(bad) = values.iter().find(|value| value.unsigned_abs() >= 1 << 24) {
            return Err(ApiError::bad_input(format!("{what}: integer value {bad} is too large; ids must be below 2^24")));
        }
        return Ok(HostTensor { shape: tensor.shape.clone(), values: values.iter().map(|&value| value as f32).collect(), integer: true });
    }
    let values = tensor.to_f32().map_err(|error| ApiError::bad_input(format!("{what}: {error}")))?;
    Ok(HostTensor { shape: tensor.shape.clone(), values, integer: false })
}

/// The request's input tensors: the first and any extra ones.
pub fn inputs(first: Option<&proto::Tensor>, extra: &[proto::Tensor]) -> ApiResult<Vec<HostTensor>> {
    let first = first.ok_or_else(|| ApiError::bad_input("the request has no input tensor"))?;
    let mut inputs = vec![host_tensor(first, "input")?];
    for (index, tensor) in extra.iter().enumerate() {
        inputs.push(host_tensor(tensor, &format!("input {}", index + 1))?);
    }
    Ok(inputs)
}

pub fn attribution_request(request: &proto::AttributeRequest) -> ApiResult<AttributionRequest> {
    let first = request.input.as_ref().ok_or_else(|| ApiError::bad_input("the request has no input tensor"))?;
    let mut inputs = vec![host_tensor(first, "input")?];
    for (index, extra) in request.extra_inputs.iter().enumerate() {
        inputs.push(host_tensor(extra, &format!("input {}", index + 1))?);
    }
    let tensor_params = request.tensor_params.iter().map(|(key, tensor)| Ok((key.clone(), host_tensor(tensor, key)?))).collect::<ApiResult<_>>()?;
    let targets = if !request.targets.is_empty() {
        Targets::PerRow(request.targets.clone())
    } else if let Some(target) = request.target {
        Targets::All(target)
    } else {
        Targets::Predicted
    };
    Ok(AttributionRequest {
        method: request.method.clone(),
        inputs,
        targets,
        params: request.params.iter().map(|(key, value)| (key.clone(), value.clone())).collect(),
        tensor_params,
        layer: (!request.layer.is_empty()).then(|| request.layer.clone()),
        progress: None,
        draw_groups: Vec::new(),
    })
}

pub fn attribute_response(model_id: String, attribution: Attribution, figure: Option<proto::Figure>) -> proto::AttributeResponse {
    // The largest |delta| over the batch rows; per-row signed deltas travel alongside.
    let largest_delta = attribution.convergence_deltas.iter().map(|delta| delta.abs()).max_by(f64::total_cmp);
    let mut values = attribution.values.iter();
    let first = values.next().map(tensor);
    proto::AttributeResponse {
        model_id,
        method: attribution.method,
        targets: attribution.targets,
        attribution: first,
        convergence_delta: largest_delta,
        figure,
        output: Some(tensor(&attribution.output)),
        extra_attributions: values.map(tensor).collect(),
        n_steps: attribution.n_steps.unwrap_or(0),
        convergence_deltas: attribution.convergence_deltas,
        rows_evaluated: attribution.rows_evaluated as u32,
        passes: attribution.passes as u32,
        cached: false,
    }
}

pub fn tensor(host: &HostTensor) -> proto::Tensor {
    proto::Tensor::from_f32(&host.shape, &host.values)
}

pub fn figure(figure: layerlens_render::Figure) -> proto::Figure {
    proto::Figure { mime: figure.mime, data: figure.data, alt_text: figure.alt_text }
}

/// PNG unless the client asked for SVG; `None` when it asked for no figure.
pub fn figure_format(format: i32) -> Option<layerlens_render::Format> {
    match proto::FigureFormat::try_from(format).unwrap_or(proto::FigureFormat::Unspecified) {
        proto::FigureFormat::None => None,
        proto::FigureFormat::Svg => Some(layerlens_render::Format::Svg),
        proto::FigureFormat::Png | proto::FigureFormat::Unspecified => Some(layerlens_render::Format::Png),
    }
}

/// The request's figure options; empty fields keep the defaults.
pub fn figure_options(options: Option<&proto::FigureOptions>) -> ApiResult<layerlens_render::FigureOptions> {
    let mut parsed = layerlens_render::FigureOptions::default();
    let Some(options) = options else { return Ok(parsed) };
    if !options.method.is_empty() {
        parsed.method = options.method.parse().map_err(|error: layerlens_render::RenderError| ApiError::bad_input(error.to_string()))?;
    }
    if !options.sign.is_empty() {
        parsed.sign = options.sign.parse().map_err(|error: layerlens_render::RenderError| ApiError::bad_input(error.to_string()))?;
    }
    if let Some(percent) = options.outlier_percent {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ApiError::bad_input(format!("outlier_percent must be between 0 and 100, got {percent}")));
        }
        parsed.outlier_percent = percent as f32;
    }
    Ok(parsed)
}

fn shapes(shapes: &[Vec<i64>]) -> Vec<proto::Shape> {
    shapes.iter().map(|dims| proto::Shape { dims: dims.clone() }).collect()
}

/// The torchinfo-style summary of one run.
pub fn call_summary(summary: &layerlens_engine::summary::CallSummary) -> proto::SummaryResponse {
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
            output_shapes: shapes(&row.output_shapes),
            mult_adds: row.mult_adds,
            input_shapes: shapes(&row.input_shapes),
            kernel_size: row.kernel_size.clone(),
            call_index: row.call_index,
            call_site: row.call_site.clone(),
            is_leaf: row.is_leaf,
            params_percent: row.params_percent,
            attributes: row.attributes.iter().cloned().collect(),
            num_buffers: row.num_buffers,
            own_buffers: row.own_buffers,
        })
        .collect();
    proto::SummaryResponse {
        model_id: String::new(),
        rows,
        total_params: summary.total_params,
        trainable_params: summary.trainable_params,
        total_mult_adds: summary.total_mult_adds,
        figure: None,
        input_bytes: summary.input_bytes,
        forward_backward_bytes: summary.forward_backward_bytes,
        params_bytes: summary.params_bytes,
        total_bytes: summary.total_bytes,
        notes: summary.notes.clone(),
        cached: false,
    }
}

/// The engine's op graph as the renderer's model graph.
pub fn model_graph(graph: &layerlens_engine::op_graph::OpGraph, title: String) -> layerlens_render::ModelGraph {
    layerlens_render::ModelGraph {
        title,
        nodes: graph
            .nodes
            .iter()
            .map(|node| layerlens_render::GraphNode { id: node.id, label: node.label.clone(), detail: String::new(), scopes: node.scopes.clone() })
            .collect(),
        edges: graph.edges.iter().map(|edge| layerlens_render::GraphEdge { from: edge.from, to: edge.to, shape: edge.shape.clone() }).collect(),
        inputs: graph.inputs.clone(),
        outputs: graph.outputs.clone(),
    }
}

pub fn graph_response(
    model_id: String,
    graph: &layerlens_engine::op_graph::OpGraph,
    figure: Option<proto::Figure>,
    layout: Option<proto::GraphLayout>,
) -> proto::GraphResponse {
    proto::GraphResponse {
        model_id,
        nodes: graph
            .nodes
            .iter()
            .map(|node| proto::GraphNode {
                id: node.id as u32,
                op: node.label.clone(),
                module_path: node.scopes.last().map(|scope| scope.0.clone()).unwrap_or_default(),
                source: node.source.clone(),
            })
            .collect(),
        edges: graph
            .edges
            .iter()
            .map(|edge| proto::GraphEdge { from: edge.from as u32, to: edge.to as u32, shape: edge.shape.clone().unwrap_or_default() })
            .collect(),
        figure,
        cached: false,
        layout,
    }
}

pub fn graph_layout(layout: &layerlens_render::GraphLayout) -> proto::GraphLayout {
    use layerlens_render::BoxRole;
    proto::GraphLayout {
        width: layout.width,
        height: layout.height,
        boxes: layout
            .boxes
            .iter()
            .map(|laid| proto::GraphBox {
                role: match laid.role {
                    BoxRole::Module => "module",
                    BoxRole::Op => "op",
                    BoxRole::Folded => "folded",
                    BoxRole::Input => "input",
                    BoxRole::Output => "output",
                }
                .to_string(),
                title: laid.title.clone(),
                lines: laid.lines.clone(),
                path: laid.path.clone(),
                node_ids: laid.node_ids.iter().map(|&id| id as u32).collect(),
                repeats: laid.repeats,
                x: laid.x,
                y: laid.y,
                width: laid.width,
                height: laid.height,
            })
            .collect(),
        frames: layout
            .frames
            .iter()
            .map(|frame| proto::GraphFrame {
                path: frame.path.clone(),
                label: frame.label.clone(),
                depth: frame.depth,
                repeats: frame.repeats,
                x: frame.x,
                y: frame.y,
                width: frame.width,
                height: frame.height,
                label_x: frame.label_x,
            })
            .collect(),
        arrows: layout
            .edges
            .iter()
            .map(|edge| proto::GraphArrow {
                from: edge.from as u32,
                to: edge.to as u32,
                points: edge.points.iter().flat_map(|&(x, y)| [x, y]).collect(),
                shape: edge.shape.clone().unwrap_or_default(),
            })
            .collect(),
        alt_text: layout.alt_text.clone(),
    }
}

pub fn tensor_stats(stats: &layerlens_engine::inspection::TensorStats) -> proto::TensorStats {
    proto::TensorStats {
        count: stats.count,
        mean: stats.mean,
        std: stats.std,
        min: stats.min,
        max: stats.max,
        l2_norm: stats.l2_norm,
        zero_fraction: stats.zero_fraction,
        nan_count: stats.nan_count,
        inf_count: stats.inf_count,
        histogram_edges: stats.histogram.edges.clone(),
        histogram_counts: stats.histogram.counts.clone(),
    }
}

pub fn parameter_stats(parameter: &layerlens_engine::inspection::ParameterStats) -> proto::ParameterStats {
    proto::ParameterStats {
        name: parameter.name.clone(),
        module_path: parameter.module_path.clone(),
        shape: parameter.shape.clone(),
        dtype: parameter.dtype.clone(),
        requires_grad: parameter.requires_grad,
        stats: Some(tensor_stats(&parameter.stats)),
    }
}

pub fn layer_stats(layer: &layerlens_engine::inspection::LayerStats) -> proto::LayerStats {
    proto::LayerStats {
        path: layer.path.clone(),
        type_name: layer.type_name.clone(),
        call_index: layer.call_index,
        call_site: layer.call_site.clone(),
        shape: layer.shape.clone(),
        stats: Some(tensor_stats(&layer.stats)),
        nonpositive_fraction: layer.nonpositive_fraction,
        saturated_fraction: layer.saturated_fraction,
        dead_channels: layer.dead_channels.map(|(dead, _)| dead),
        channels: layer.dead_channels.map(|(_, channels)| channels),
    }
}

pub fn anomaly(anomaly: &layerlens_engine::inspection::Anomaly) -> proto::Anomaly {
    use layerlens_engine::inspection::Severity;
    let severity = match anomaly.severity {
        Severity::Info => proto::anomaly::Severity::Info,
        Severity::Warning => proto::anomaly::Severity::Warning,
        Severity::Error => proto::anomaly::Severity::Error,
    };
    proto::Anomaly {
        severity: severity as i32,
        kind: anomaly.kind.clone(),
        path: anomaly.path.clone(),
        call_site: anomaly.call_site.clone(),
        message: anomaly.message.clone(),
    }
}

/// The sample inputs of a structure request: the first from `input_shape` and
/// `input_dtype`, the rest from `extra_inputs`.
pub fn sample_inputs(
    input_shape: &[i64],
    input_dtype: proto::Dtype,
    extra_inputs: &[proto::SampleInput],
) -> Result<Vec<layerlens_engine::model::SampleInput>, ApiError> {
    let integer = |dtype: proto::Dtype, what: &str| match dtype {
        proto::Dtype::Float32 | proto::Dtype::Unspecified => Ok(false),
        proto::Dtype::Int64 => Ok(true),
        other => Err(ApiError::bad_input(format!(
            "{what}: dtype {} is not supported for a sample input; use float32 or int64 (token ids)",
            other.as_str_name()
        ))),
    };
    let mut inputs = vec![layerlens_engine::model::SampleInput { shape: input_shape.to_vec(), integer: integer(input_dtype, "input 0")? }];
    for (index, extra) in extra_inputs.iter().enumerate() {
        inputs.push(layerlens_engine::model::SampleInput {
            shape: extra.shape.clone(),
            integer: integer(extra.dtype(), &format!("input {}", index + 1))?,
        });
    }
    Ok(inputs)
}

/// One entry of the engine's method table on the wire.
pub fn attribution_method(method: &layerlens_engine::MethodInfo) -> proto::AttributionMethod {
    proto::AttributionMethod {
        name: method.name.to_string(),
        summary: method.summary.to_string(),
        options: method.options.iter().map(|option| option.to_string()).collect(),
        layer: method.layer,
        sampling: method.sampling != layerlens_engine::Sampling::Never,
        batchable: method.batchable,
    }
}

/// A prediction on the wire: the output and, per row, the top classes.
pub fn predict_response(model_id: String, prediction: &layerlens_engine::inspection::Prediction) -> proto::PredictResponse {
    proto::PredictResponse {
        model_id,
        output: Some(tensor(&prediction.output)),
        rows: prediction
            .top_k
            .iter()
            .map(|row| proto::RowPrediction {
                top: row.iter().map(|&(class_index, logit, probability)| proto::TopClass { class_index, logit, probability }).collect(),
            })
            .collect(),
        cached: false,
    }
}

// --- generation requests -----------------------------------------------------------------

pub fn objectives(request: &proto::VisualizeRequest) -> ApiResult<Vec<Objective>> {
    request
        .objectives
        .iter()
        .map(|objective| {
            if objective.terms.is_empty() {
                return Err(ApiError::bad_input("an objective has no terms"));
            }
            let terms =
                objective.terms.iter().map(|term| Term::parse(&term.term, f64::from(term.weight), &term.direction)).collect::<Result<Vec<_>, _>>()?;
            Ok(Objective { terms })
        })
        .collect()
}

pub fn visualize_request(request: &proto::VisualizeRequest) -> ApiResult<VisualizeRequest> {
    let parameterization = match request.parameterization.as_str() {
        "" | "fft" => Parameterization::Fft,
        "pixel" => Parameterization::Pixel,
        other => return Err(ApiError::bad_input(format!("parameterization '{other}' is unknown; use 'fft' or 'pixel'"))),
    };
    let finite = |value: f32, what: &str| {
        if value.is_finite() && value >= 0.0 {
            Ok(f64::from(value))
        } else {
            Err(ApiError::bad_input(format!("{what} must be a finite, non-negative weight")))
        }
    };
    Ok(VisualizeRequest {
        objectives: objectives(request)?,
        images_per_objective: i64::from(request.images_per_objective.max(1)),
        input_shape: (!request.input_shape.is_empty()).then(|| request.input_shape.clone()),
        parameterization,
        decorrelate: request.decorrelate,
        steps: request.steps,
        learning_rate: if request.learning_rate == 0.0 { 0.05 } else { f64::from(request.learning_rate) },
        seed: request.seed,
        transforms: Transforms::parse(&request.transforms)?,
        l2: finite(request.l2, "l2")?,
        total_variation: finite(request.total_variation, "total_variation")?,
        blur: finite(request.blur, "blur")?,
        diversity: finite(request.diversity, "diversity")?,
        diversity_layer: (!request.diversity_layer.is_empty()).then(|| request.diversity_layer.clone()),
        mean: request.mean.clone(),
        std: request.std.clone(),
        low: request.low.unwrap_or(0.0),
        high: request.high.unwrap_or(1.0),
        progress_every: request.progress_every,
        image_every: request.image_every,
    })
}

pub fn counterfactual_request(request: &proto::CounterfactualRequest) -> ApiResult<CounterfactualRequest> {
    let input = host_tensor(request.input.as_ref().ok_or_else(|| ApiError::bad_input("the request has no input tensor"))?, "input")?;
    Ok(CounterfactualRequest {
        input,
        targets: request.target.clone(),
        norm: Norm::parse(&request.norm).map_err(ApiError::from)?,
        steps: request.steps,
        step_size: (request.step_size != 0.0).then_some(f64::from(request.step_size)),
        low: request.low.unwrap_or(0.0),
        high: request.high.unwrap_or(1.0),
    })
}

pub fn traverse_request(request: &proto::TraverseRequest) -> ApiResult<TraverseRequest> {
    let z = host_tensor(request.z.as_ref().ok_or_else(|| ApiError::bad_input("the request has no latent z"))?, "z")?;
    let z_end = request.z_end.as_ref().map(|tensor| host_tensor(tensor, "z_end")).transpose()?;
    Ok(TraverseRequest { z, dims: request.dims.clone(), range: f64::from(request.range), steps: request.steps, z_end })
}

// ---- training (services/training.rs) ----

fn quantiles(quantiles: &layerlens_engine::training::Quantiles) -> proto::Quantiles {
    proto::Quantiles { p50: quantiles.p50, p99: quantiles.p99, max: quantiles.max }
}

pub fn optimizer_report(
    report: &layerlens_engine::training::OptimizerReport,
    checkpoint: &str,
    figure: Option<proto::Figure>,
) -> proto::OptimizerReport {
    proto::OptimizerReport {
        optimizer: report.optimizer.clone(),
        step: report.step,
        rows: report
            .rows
            .iter()
            .map(|row| proto::ParameterUpdate {
                parameter: row.parameter.clone(),
                layer: row.layer.clone(),
                shape: row.shape.clone(),
                group: row.group as u32,
                learning_rate: row.learning_rate,
                weight_norm: row.weight_norm,
                update_norm: row.update_norm,
                update_weight_ratio: row.update_weight_ratio,
                effective_lr: Some(quantiles(&row.effective_lr)),
                step_size: Some(quantiles(&row.step_size)),
                momentum_norm: row.momentum_norm,
                zero_second_moment_fraction: row.zero_second_moment_fraction,
                weight_decay_share: row.weight_decay_share,
                step_histogram: Some(proto::Histogram { edges: row.step_histogram.0.clone(), counts: row.step_histogram.1.clone() }),
                moments: row
                    .moments
                    .iter()
                    .map(|moment| proto::MomentStat {
                        name: moment.name.clone(),
                        norm: moment.norm,
                        max_abs: moment.max_abs,
                        nonfinite: moment.nonfinite,
                    })
                    .collect(),
                has_state: row.has_state,
            })
            .collect(),
        layers: report
            .layers
            .iter()
            .map(|layer| proto::LayerUpdate {
                layer: layer.layer.clone(),
                weight_norm: layer.weight_norm,
                update_norm: layer.update_norm,
                update_weight_ratio: layer.update_weight_ratio,
                numel: layer.numel,
            })
            .collect(),
        findings: report
            .findings
            .iter()
            .map(|finding| proto::OptimizerFinding {
                severity: finding.severity.to_string(),
                layer: finding.layer.clone(),
                parameter: finding.parameter.clone(),
                kind: finding.kind.to_string(),
                message: finding.message.clone(),
                value: finding.value,
            })
            .collect(),
        param_groups: report
            .param_groups
            .iter()
            .map(|group| proto::ParamGroupInfo {
                index: group.index as u32,
                learning_rate: group.learning_rate,
                options: group.options.iter().cloned().collect(),
                parameters: group.parameters as u32,
            })
            .collect(),
        schedule: report.schedule.as_ref().map(|schedule| proto::LearningRateSchedule {
            state: schedule.state.iter().cloned().collect(),
            last_epoch: schedule.last_epoch,
            last_lr: schedule.last_lr.clone(),
            base_lr: schedule.base_lr.clone(),
        }),
        notes: report.notes.clone(),
        figure,
        checkpoint: checkpoint.to_string(),
    }
}

pub fn landscape_request(
    request: &proto::LandscapeRequest,
    centre: Option<Vec<(String, HostTensor)>>,
    trajectory: Vec<layerlens_engine::training::TrajectoryCheckpoint>,
) -> ApiResult<layerlens_engine::training::LandscapeRequest> {
    use layerlens_engine::training::LossKind;
    let loss = match proto::LossKind::try_from(request.loss).unwrap_or_default() {
        proto::LossKind::Unspecified | proto::LossKind::CrossEntropy => LossKind::CrossEntropy,
        proto::LossKind::Mse => LossKind::Mse,
        proto::LossKind::Output => LossKind::Output,
    };
    let inputs =
        request.inputs.iter().enumerate().map(|(index, tensor)| host_tensor(tensor, &format!("input {index}"))).collect::<ApiResult<Vec<_>>>()?;
    let targets = request.targets.as_ref().map(|tensor| host_tensor(tensor, "the targets")).transpose()?;
    Ok(layerlens_engine::training::LandscapeRequest {
        centre,
        inputs,
        targets,
        loss,
        dims: if request.dims == 0 { 1 } else { request.dims as usize },
        steps: if request.steps == 0 { 21 } else { request.steps as usize },
        range: if request.range == 0.0 && request.trajectory.is_empty() { 1.0 } else { request.range },
        seed: request.seed,
        trajectory,
        return_directions: request.return_directions,
    })
}

pub fn landscape_response(landscape: &layerlens_engine::training::Landscape, figure: Option<proto::Figure>) -> proto::LandscapeResponse {
    let directions = landscape
        .directions
        .iter()
        .flat_map(|directions| {
            directions.values.iter().enumerate().flat_map(move |(direction, values)| {
                directions.names.iter().zip(values).map(move |(name, values)| proto::DirectionTensor {
                    parameter: name.clone(),
                    direction: direction as u32,
                    values: Some(tensor(values)),
                })
            })
        })
        .collect();
    proto::LandscapeResponse {
        dims: landscape.dims as u32,
        steps: landscape.steps as u32,
        range: landscape.range,
        center_loss: landscape.centre_loss,
        coordinates: landscape.coordinates.clone(),
        losses: landscape.losses.clone(),
        directions,
        trajectory: landscape
            .trajectory
            .iter()
            .map(|point| proto::TrajectoryPoint { checkpoint: point.label.clone(), step: point.step, x: point.x, y: point.y })
            .collect(),
        explained_variance: landscape.explained_variance.clone(),
        figure,
        passes: landscape.passes,
        notes: landscape.notes.clone(),
    }
}

pub fn weight_change_response(report: &layerlens_engine::training::WeightChangeReport, figure: Option<proto::Figure>) -> proto::WeightChangeResponse {
    let row = |change: &layerlens_engine::training::WeightChange| proto::WeightChange {
        name: change.name.clone(),
        from_norm: change.from_norm,
        change_norm: change.change_norm,
        relative_change: change.relative_change,
        cosine: change.cosine,
    };
    proto::WeightChangeResponse { parameters: report.parameters.iter().map(row).collect(), layers: report.layers.iter().map(row).collect(), figure }
}

pub fn run_report(request: proto::ReportRunRequest) -> crate::runs::RunReport {
    let quantiles = |q: Option<proto::Quantiles>| q.map(|q| [q.p50, q.p99, q.max]).unwrap_or([f64::NAN; 3]);
    crate::runs::RunReport {
        run: request.run,
        model: request.model,
        optimizer: request.optimizer,
        steps: request
            .steps
            .into_iter()
            .map(|step| crate::runs::RunStep { step: step.step, loss: step.loss, learning_rates: step.learning_rates, unix_time: step.unix_time })
            .collect(),
        records: request
            .records
            .into_iter()
            .map(|record| crate::runs::RunRecord {
                step: record.step,
                layer: record.layer,
                grad_norm: record.grad_norm,
                weight_norm: record.weight_norm,
                update_norm: record.update_norm,
                update_weight_ratio: record.update_weight_ratio,
                step_size: quantiles(record.step_size),
            })
            .collect(),
    }
}

pub fn run_info(summary: &crate::runs::RunSummary) -> proto::RunInfo {
    proto::RunInfo {
        name: summary.name.clone(),
        model: summary.model.clone(),
        optimizer: summary.optimizer.clone(),
        steps: summary.steps,
        first_step: summary.first_step,
        last_step: summary.last_step,
        layers: summary.layers.clone(),
        created_unix: summary.created_unix,
        updated_unix: summary.updated_unix,
    }
}

pub fn run(run: &crate::runs::RunData) -> proto::Run {
    let loss_at: std::collections::HashMap<i64, f64> = run.steps.iter().filter_map(|step| step.loss.map(|loss| (step.step, loss))).collect();
    proto::Run {
        info: Some(run_info(&run.summary)),
        steps: run
            .steps
            .iter()
            .map(|step| proto::RunStep { step: step.step, loss: step.loss, learning_rates: step.learning_rates.clone(), unix_time: step.unix_time })
            .collect(),
        records: run
            .records
            .iter()
            .map(|record| proto::RunRecord {
                step: record.step,
                layer: record.layer.clone(),
                grad_norm: record.grad_norm,
                weight_norm: record.weight_norm,
                update_norm: record.update_norm,
                update_weight_ratio: record.update_weight_ratio,
                step_size: Some(proto::Quantiles { p50: record.step_size[0], p99: record.step_size[1], max: record.step_size[2] }),
                loss: loss_at.get(&record.step).copied(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod generation_request_tests {
    use super::*;

    #[test]
    fn bad_visualize_requests_name_the_problem() {
        let base = proto::VisualizeRequest {
            model: "m".into(),
            objectives: vec![proto::Objective { terms: vec![proto::ObjectiveTerm { term: "class:3".into(), weight: 0.0, direction: vec![] }] }],
            ..Default::default()
        };
        assert!(visualize_request(&base).is_ok());
        let unknown = proto::VisualizeRequest { parameterization: "wavelet".into(), ..base.clone() };
        assert!(visualize_request(&unknown).unwrap_err().message.contains("wavelet"));
        let negative = proto::VisualizeRequest { l2: -1.0, ..base.clone() };
        assert!(visualize_request(&negative).unwrap_err().message.contains("l2"));
        let empty = proto::VisualizeRequest { objectives: vec![proto::Objective { terms: vec![] }], ..base };
        assert!(visualize_request(&empty).unwrap_err().message.contains("no terms"));
    }
}
