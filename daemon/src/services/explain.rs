//! `layerlens.v1.Explain`: the module summary and attributions of a stored model.
//!
//! Attributions can take minutes (occlusion of a large image, integrated gradients
//! with many steps). AttributeStream gives its attribution request a progress handle
//! that the engine asks after each pass whether to go on: it sends the updates to the
//! client and says stop once the client went away. (Unary calls need no handle of
//! their own: the worker stops a job whose caller stopped waiting, worker.rs.)

use super::figures;
use super::{finish_stream, in_model, EventStream, SharedState, EVENT_BUFFER};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::request_context;
use layerlens_engine::attribution::{Progress, ProgressUpdate};
use layerlens_engine::trace::Phase;
use layerlens_proto as proto;
use proto::explain_server::Explain;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct ExplainService {
    pub state: SharedState,
}

/// Progress events are sent at most this often, plus the last of each phase: an
/// attribution on a small model runs hundreds of passes a second.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// An Attribute request, checked and converted.
struct AttributeJob {
    request: proto::AttributeRequest,
    engine_request: layerlens_engine::AttributionRequest,
    figure_options: layerlens_render::FigureOptions,
}

impl ExplainService {
    /// Checks and converts an Attribute request (errors here fail the call before
    /// any work starts).
    async fn attribute_job(&self, request: proto::AttributeRequest) -> ApiResult<AttributeJob> {
        if request.method.is_empty() {
            return Err(ApiError::bad_input(format!(
                "no attribution method given; available: {}",
                layerlens_engine::METHODS.iter().map(|method| method.name).collect::<Vec<_>>().join(", ")
            )));
        }
        let engine_request = request_context::time(Phase::Decode, || convert::attribution_request(&request))?;
        let figure_options = convert::figure_options(request.figure_options.as_ref())?;
        Ok(AttributeJob { request, engine_request, figure_options })
    }
}

/// The answer to an Attribute request, shared by Attribute and AttributeStream, through
/// the one cached model-bound path (sampling without a seed is never cached).
async fn run_attribute(state: &SharedState, job: AttributeJob) -> ApiResult<proto::AttributeResponse> {
    let AttributeJob { mut request, engine_request, figure_options } = job;
    let cacheable = engine_request.is_deterministic();
    let format = convert::figure_format(request.figure_format);
    state
        .cached_model_call(
            "Explain.Attribute",
            &mut request,
            |request| &mut request.model,
            cacheable,
            |record, worker| async move {
                let first_input = engine_request.inputs[0].clone();
                let attribution = worker.attribute(engine_request).await.map_err(in_model(&record))?;
                let figure = match format {
                    None => None,
                    Some(format) => {
                        Some(request_context::time_async(Phase::Render, render_attribution(first_input, &attribution, format, figure_options)).await?)
                    }
                };
                Ok(request_context::time(Phase::Encode, || convert::attribute_response(record.id, attribution, figure)))
            },
        )
        .await
}

/// A progress handle that sends AttributeStream progress events (at most one per
/// PROGRESS_INTERVAL, plus the last of each phase) and says stop once the client
/// went away (the stream's receiver was dropped).
fn stream_progress(sender: mpsc::Sender<Result<proto::AttributeEvent, Status>>, started: Instant) -> Progress {
    let last_sent: Mutex<Option<Instant>> = Mutex::new(None);
    Progress::new(move |update: &ProgressUpdate| {
        if sender.is_closed() {
            return false;
        }
        let now = Instant::now();
        let phase_done = update.rows_done == update.rows_total;
        let mut last_sent = last_sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !phase_done && last_sent.is_some_and(|sent| now - sent < PROGRESS_INTERVAL) {
            return true;
        }
        *last_sent = Some(now);
        let event = proto::AttributeEvent {
            event: Some(proto::attribute_event::Event::Progress(proto::AttributeProgress {
                passes_done: update.passes_done,
                passes_total: update.passes_total.unwrap_or_default(),
                rows_done: update.rows_done,
                rows_total: update.rows_total,
                phase: update.phase.clone(),
                elapsed_seconds: started.elapsed().as_secs_f64(),
            })),
        };
        // A full buffer (a slow client) drops this event; only a closed stream stops.
        !matches!(sender.try_send(Ok(event)), Err(mpsc::error::TrySendError::Closed(_)))
    })
}

#[tonic::async_trait]
impl Explain for ExplainService {
    async fn summary(&self, request: Request<proto::SummaryRequest>) -> Result<Response<proto::SummaryResponse>, Status> {
        let mut request = request.into_inner();
        let stored_shape = request.input_shape.is_empty() && request.extra_inputs.is_empty();
        if stored_shape {
            request.input_shape = self.state.resolve(&request.model).await?.input_shape;
        }
        let shown = request.clone();
        let answer = self
            .state
            .cached_model_call(
                "Explain.Summary",
                &mut request,
                |request| &mut request.model,
                true,
                |record, worker| async move {
                    let request = shown;
                    let depth = (request.depth > 0).then_some(request.depth);
                    let tree_rows = |note: String| async {
                        let tree = worker.module_tree().await.map_err(in_model(&record))?;
                        ApiResult::Ok(convert::call_summary(&layerlens_engine::summary::from_module_tree(&tree, &[], note, depth)))
                    };
                    let mut answer = if request.input_shape.is_empty() {
                        tree_rows("no input shape was given, so rows carry no shapes or mult-adds".to_string()).await?
                    } else {
                        let inputs = convert::sample_inputs(&request.input_shape, request.input_dtype(), &request.extra_inputs)?;
                        match worker.call_summary(inputs, depth).await {
                            Ok(summary) => convert::call_summary(&summary),
                            // The shape stored with the model is a default, not the caller's
                            // request: when the model cannot run on it alone (a second input is
                            // missing), the rows still come from the module tree.
                            Err(error) if stored_shape && error.kind == layerlens_engine::ErrorKind::BadInput => {
                                tree_rows(format!(
                                    "the stored input shape {:?} did not run ({}), so rows carry no shapes or mult-adds",
                                    request.input_shape, error.message
                                ))
                                .await?
                            }
                            Err(error) => return Err(in_model(&record)(error)),
                        }
                    };
                    if convert::figure_format(request.figure_format).is_some() {
                        let rows: Vec<layerlens_render::TableRow> = answer
                            .rows
                            .iter()
                            .map(|row| layerlens_render::TableRow {
                                path: &row.path,
                                type_name: &row.type_name,
                                depth: row.depth,
                                num_params: row.num_params,
                            })
                            .collect();
                        let title = format!("model {}", super::model_label(&record));
                        answer.figure =
                            Some(convert::figure(layerlens_render::summary_table_svg(&title, &rows, answer.total_params, answer.trainable_params)));
                    }
                    answer.model_id = record.id;
                    Ok(answer)
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn attribute(&self, request: Request<proto::AttributeRequest>) -> Result<Response<proto::AttributeResponse>, Status> {
        // A dropped call stops the work through the worker's own cancel flag (worker.rs).
        let job = self.attribute_job(request.into_inner()).await?;
        Ok(Response::new(run_attribute(&self.state, job).await?))
    }

    type AttributeStreamStream = EventStream<proto::AttributeEvent>;

    async fn attribute_stream(&self, request: Request<proto::AttributeRequest>) -> Result<Response<Self::AttributeStreamStream>, Status> {
        let started = Instant::now();
        let mut job = self.attribute_job(request.into_inner()).await?;
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        job.engine_request.progress = Some(stream_progress(sender.clone(), started));
        let state = self.state.clone();
        // Progress events that find the buffer full are dropped (the worker never waits
        // for a client); the result waits for room.
        finish_stream(sender, async move {
            run_attribute(&state, job).await.map(|answer| proto::AttributeEvent { event: Some(proto::attribute_event::Event::Result(answer)) })
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn parameters(&self, request: Request<proto::ParametersRequest>) -> Result<Response<proto::ParametersResponse>, Status> {
        let mut request = request.into_inner();
        let bins = if request.bins == 0 { 30 } else { request.bins.min(1000) as usize };
        let format = convert::figure_format(request.figure_format);
        let answer = self
            .state
            .cached_model_call(
                "Explain.Parameters",
                &mut request,
                |request| &mut request.model,
                true,
                |record, worker| async move {
                    let report = worker.parameters(bins).await.map_err(in_model(&record))?;
                    let (histograms, filters) = match format {
                        None => (None, None),
                        Some(format) => figures::parameter_figures(&report, format).await?,
                    };
                    Ok(proto::ParametersResponse {
                        model_id: record.id,
                        parameters: report.parameters.iter().map(convert::parameter_stats).collect(),
                        histograms,
                        filters,
                        cached: false,
                    })
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn activations(&self, request: Request<proto::ActivationsRequest>) -> Result<Response<proto::ActivationsResponse>, Status> {
        let mut request = request.into_inner();
        let inputs = convert::inputs(request.input.as_ref(), &request.extra_inputs)?;
        let bins = if request.bins == 0 { 30 } else { request.bins.min(1000) as usize };
        let format = convert::figure_format(request.figure_format);
        let answer = self
            .state
            .cached_model_call(
                "Explain.Activations",
                &mut request,
                |request| &mut request.model,
                true,
                |record, worker| async move {
                    let report = worker.activations(inputs, bins).await.map_err(in_model(&record))?;
                    let (chart, histograms) = match format {
                        None => (None, None),
                        Some(format) => figures::activation_figures(&report, format).await?,
                    };
                    Ok(proto::ActivationsResponse {
                        model_id: record.id,
                        layers: report.layers.iter().map(convert::layer_stats).collect(),
                        anomalies: report.anomalies.iter().map(convert::anomaly).collect(),
                        chart,
                        histograms,
                        cached: false,
                    })
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn predict(&self, request: Request<proto::PredictRequest>) -> Result<Response<proto::PredictResponse>, Status> {
        let mut request = request.into_inner();
        let inputs = request_context::time(Phase::Decode, || convert::inputs(request.input.as_ref(), &request.extra_inputs))?;
        let top_k = if request.top_k == 0 { 5 } else { request.top_k as usize };
        let answer = self
            .state
            .cached_model_call(
                "Explain.Predict",
                &mut request,
                |request| &mut request.model,
                true,
                |record, worker| async move {
                    let prediction = worker.predict(inputs, top_k).await.map_err(in_model(&record))?;
                    Ok(request_context::time(Phase::Encode, || convert::predict_response(record.id, &prediction)))
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn graph(&self, request: Request<proto::GraphRequest>) -> Result<Response<proto::GraphResponse>, Status> {
        let mut request = request.into_inner();
        if request.input_shape.is_empty() && request.extra_inputs.is_empty() {
            request.input_shape = self.state.resolve(&request.model).await?.input_shape;
        }
        if request.input_shape.is_empty() {
            return Err(ApiError::bad_input("the graph needs an input shape, e.g. [1, 3, 224, 224] (none is stored with the model)").into());
        }
        let inputs = convert::sample_inputs(&request.input_shape, request.input_dtype(), &request.extra_inputs)?;
        // SVG unless PNG was asked for explicitly: a graph is text-heavy.
        let format = convert::figure_format(request.figure_format).map(|format| {
            if request.figure_format == proto::FigureFormat::Png as i32 {
                format
            } else {
                layerlens_render::Format::Svg
            }
        });
        let view = request.view.clone();
        let options = layerlens_render::GraphOptions {
            depth: (request.depth > 0).then_some(request.depth),
            collapse_repeats: request.collapse_repeats,
            open: view.as_ref().map(|view| view.open.iter().cloned().collect()),
            unfold_repeats: view.as_ref().map(|view| view.unfold_repeats.iter().cloned().collect()).unwrap_or_default(),
        };
        let answer = self
            .state
            .cached_model_call(
                "Explain.Graph",
                &mut request,
                |request| &mut request.model,
                true,
                |record, worker| async move {
                    let graph = worker.op_graph(inputs).await.map_err(in_model(&record))?;
                    if format.is_none() && view.is_none() {
                        return Ok(convert::graph_response(record.id, &graph, None, None));
                    }
                    // Drawing and laying out are CPU work for a blocking thread, not the runtime's.
                    let model_graph = convert::model_graph(&graph, super::model_label(&record));
                    let (figure, layout) = tokio::task::spawn_blocking(move || -> Result<_, layerlens_render::RenderError> {
                        Ok(match (format, view) {
                            (Some(format), Some(_)) => {
                                let (figure, layout) = layerlens_render::graph_figure_and_layout(&model_graph, &options, format)?;
                                (Some(figure), Some(layout))
                            }
                            (Some(format), None) => (Some(layerlens_render::graph_figure(&model_graph, &options, format)?), None),
                            (None, Some(_)) => (None, Some(layerlens_render::graph_layout(&model_graph, &options)?)),
                            (None, None) => (None, None),
                        })
                    })
                    .await
                    .map_err(ApiError::from)?
                    .map_err(ApiError::from)?;
                    Ok(convert::graph_response(record.id, &graph, figure.map(convert::figure), layout.as_ref().map(convert::graph_layout)))
                },
            )
            .await?;
        Ok(Response::new(answer))
    }

    async fn methods(&self, _request: Request<proto::MethodsRequest>) -> Result<Response<proto::MethodsResponse>, Status> {
        let methods = layerlens_engine::METHODS.iter().map(convert::attribution_method).collect();
        Ok(Response::new(proto::MethodsResponse { methods }))
    }

    async fn compare(&self, request: Request<proto::CompareRequest>) -> Result<Response<proto::CompareResponse>, Status> {
        let request = request.into_inner();
        let base = request.base.ok_or_else(|| ApiError::bad_input("the request has no base (model, input, target)"))?;
        if request.methods.is_empty() {
            return Err(ApiError::bad_input("no methods to compare").into());
        }
        let figure_options = convert::figure_options(base.figure_options.as_ref())?;
        let (record, worker) = self.state.worker_for(&base.model).await?;
        // The base is decoded once; each method gets a copy with its own options.
        let base_request = convert::attribution_request(&base)?;
        let mut attributions = Vec::new();
        for spec in &request.methods {
            let method = layerlens_engine::attribution::find_method(&spec.method).map_err(ApiError::from)?;
            let mut engine_request = base_request.clone();
            engine_request.method = spec.method.clone();
            engine_request.params = spec.params.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
            for (key, tensor) in &spec.tensor_params {
                engine_request.tensor_params.insert(key.clone(), convert::host_tensor(tensor, key)?);
            }
            // The method table says which methods take the layer: the spec's own, else
            // the base's.
            let layer = if spec.layer.is_empty() { &base.layer } else { &spec.layer };
            engine_request.layer = (method.layer && !layer.is_empty()).then(|| layer.clone());
            let attribution = worker.attribute(engine_request).await.map_err(|error| in_model(&record)(error.context(&spec.method)))?;
            attributions.push(attribution);
        }
        let figure = match convert::figure_format(base.figure_format) {
            None => None,
            Some(format) => {
                let input = base_request.inputs[0].clone();
                let drawn: Vec<(String, layerlens_engine::HostTensor)> = attributions
                    .iter()
                    .map(|attribution| {
                        let values = attribution.figure_values.clone().unwrap_or_else(|| attribution.values[0].clone());
                        (attribution.method.clone(), values)
                    })
                    .collect();
                let rendered = tokio::task::spawn_blocking(move || {
                    let panels: Vec<layerlens_render::GridPanel> = drawn
                        .iter()
                        .map(|(title, values)| layerlens_render::GridPanel { title, attribution_shape: &values.shape, attribution: &values.values })
                        .collect();
                    layerlens_render::method_grid(&input.shape, &input.values, &panels, &figure_options, format)
                })
                .await
                .map_err(ApiError::from)?
                .map_err(ApiError::from)?;
                Some(convert::figure(rendered))
            }
        };
        let attributions = attributions.into_iter().map(|attribution| convert::attribute_response(record.id.clone(), attribution, None)).collect();
        Ok(Response::new(proto::CompareResponse { attributions, figure }))
    }

    async fn evaluate(&self, request: Request<proto::EvaluateRequest>) -> Result<Response<proto::EvaluateResponse>, Status> {
        let request = request.into_inner();
        let attribution_request = request.attribution.ok_or_else(|| ApiError::bad_input("the request has no attribution to evaluate"))?;
        let engine_request = layerlens_engine::EvaluationRequest {
            attribution: convert::attribution_request(&attribution_request)?,
            metrics: request.metrics,
            params: request.params.into_iter().collect(),
        };
        let (record, worker) = self.state.worker_for(&attribution_request.model).await?;
        let evaluation = worker.evaluate(engine_request).await.map_err(in_model(&record))?;
        Ok(Response::new(proto::EvaluateResponse {
            attribution: Some(convert::attribute_response(record.id, evaluation.attribution, None)),
            infidelity: evaluation.infidelity.unwrap_or_default(),
            sensitivity_max: evaluation.sensitivity_max.unwrap_or_default(),
        }))
    }

    async fn sanity_check(&self, request: Request<proto::SanityCheckRequest>) -> Result<Response<proto::SanityCheckResponse>, Status> {
        let request = request.into_inner();
        let attribution_request = request.attribution.ok_or_else(|| ApiError::bad_input("the request has no attribution to check"))?;
        let engine_request = convert::attribution_request(&attribution_request)?;
        let (record, worker) = self.state.worker_for(&attribution_request.model).await?;
        let check = worker.sanity_check(engine_request, request.seed, request.signed).await.map_err(in_model(&record))?;
        let steps: Vec<proto::SanityCheckStep> = check
            .steps
            .iter()
            .map(|step| proto::SanityCheckStep {
                layer: step.layer.clone(),
                spearman: step.spearman,
                spearman_per_row: step.spearman_per_row.clone(),
            })
            .collect();
        let figure = match convert::figure_format(attribution_request.figure_format) {
            None => None,
            Some(format) => Some(convert::figure(sanity_figure(&check, format).await?)),
        };
        Ok(Response::new(proto::SanityCheckResponse {
            attribution: Some(convert::attribute_response(record.id, check.attribution, None)),
            steps,
            figure,
        }))
    }
}

/// The Spearman correlation after each randomisation step, as a chart over steps.
async fn sanity_figure(check: &layerlens_engine::SanityCheck, format: layerlens_render::Format) -> Result<layerlens_render::Figure, ApiError> {
    let values: Vec<f32> = check.steps.iter().map(|step| step.spearman as f32).collect();
    let labels: Vec<String> = check.steps.iter().map(|step| step.layer.clone()).collect();
    let title = format!("sanity check of {}: rank correlation with the original as layers are randomised from the output", check.attribution.method);
    let method = check.attribution.method.clone();
    tokio::task::spawn_blocking(move || {
        let series = [layerlens_render::ChartSeries { name: &method, values: &values }];
        layerlens_render::step_chart(&title, &labels, &series, "Spearman correlation", Some((-1.0, 1.0)), format)
    })
    .await?
    .map_err(ApiError::from)
}

/// Maps render errors: options that do not fit the data are the caller's mistake.
/// Draws the first input's attribution off the async threads.
async fn render_attribution(
    input: layerlens_engine::HostTensor,
    attribution: &layerlens_engine::Attribution,
    format: layerlens_render::Format,
    options: layerlens_render::FigureOptions,
) -> Result<proto::Figure, ApiError> {
    let title = format!("{}, target {}", attribution.method, targets_text(&attribution.targets));
    let values = attribution.figure_values.clone().unwrap_or_else(|| attribution.values[0].clone());
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
    .map_err(ApiError::from)?;
    Ok(convert::figure(rendered))
}

fn targets_text(targets: &[i64]) -> String {
    match targets {
        [first, rest @ ..] if rest.iter().all(|target| target == first) => first.to_string(),
        _ => format!("{targets:?}"),
    }
}
