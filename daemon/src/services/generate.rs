//! `layerlens.v1.Generate`: activation maximisation, counterfactuals and latent
//! traversals. The two long jobs stream progress through a `ProgressRelay`: the worker
//! thread hands over plain numbers without waiting, the relay renders and sends the
//! events, and the job stops within one step once the response stream is closed (the
//! client cancelled or went away).

use super::{finish_stream, in_model, EventStream, ProgressRelay, SharedState, EVENT_BUFFER};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use layerlens_engine::generation::{CounterfactualProgress, Norm, VisualizeProgress};
use layerlens_engine::HostTensor;
use layerlens_proto as proto;
use proto::generate_server::Generate;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct GenerateService {
    pub state: SharedState,
}

/// Rows of a counterfactual figure at most.
const FIGURE_ROWS: usize = 8;

/// A contact sheet of images in [0, 1], (N, C, H, W), one caption per image; None when
/// they are not 1- or 3-channel images (a generator of other data has no picture).
fn contact_sheet(title: &str, images: &HostTensor, captions: &[String], format: layerlens_render::Format) -> ApiResult<Option<proto::Figure>> {
    let Ok([count, channels, height, width]) = <[i64; 4]>::try_from(images.shape.as_slice()) else { return Ok(None) };
    if channels != 1 && channels != 3 {
        return Ok(None);
    }
    let size = (channels * height * width) as usize;
    let tiles: Vec<layerlens_render::ImageTile<'_>> = (0..count as usize)
        .map(|index| layerlens_render::ImageTile {
            channels: channels as usize,
            height: height as usize,
            width: width as usize,
            values: &images.values[index * size..(index + 1) * size],
            caption: captions.get(index).cloned().unwrap_or_default(),
        })
        .collect();
    Ok(Some(convert::figure(layerlens_render::image_grid(title, &tiles, 0, format)?)))
}

#[tonic::async_trait]
impl Generate for GenerateService {
    type VisualizeStream = EventStream<proto::VisualizeEvent>;
    type CounterfactualStream = EventStream<proto::CounterfactualEvent>;

    async fn visualize(&self, request: Request<proto::VisualizeRequest>) -> Result<Response<Self::VisualizeStream>, Status> {
        let request = request.into_inner();
        let job = convert::visualize_request(&request)?;
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let format = convert::figure_format(request.figure_format);
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        // Contact sheets of intermediate images are drawn by the relay, off the worker.
        let (relay, report) = ProgressRelay::start(sender.clone(), move |progress: VisualizeProgress| {
            // A preview that cannot be drawn is left out of its progress event (and
            // logged): previews never fail the job; the final figure follows the one
            // policy for figures (error.rs) and does.
            let figure = progress.images.as_ref().and_then(|images| {
                let captions: Vec<String> = progress.objective.iter().map(|value| format!("{value:.3}")).collect();
                let title = format!("step {} of {}", progress.step, progress.steps);
                contact_sheet(&title, images, &captions, format.unwrap_or(layerlens_render::Format::Png))
                    .inspect_err(|error| tracing::warn!(message = %error.message, "progress preview not drawn"))
                    .ok()
                    .flatten()
            });
            proto::VisualizeEvent {
                event: Some(proto::visualize_event::Event::Progress(proto::VisualizeProgress {
                    step: progress.step,
                    steps: progress.steps,
                    objective: progress.objective,
                    figure,
                })),
            }
        });
        let report = Box::new(report);
        finish_stream(sender, async move {
            let model_id = record.id.clone();
            let visualization = worker.visualize(job, report).await;
            relay.finish().await;
            let visualization = visualization.map_err(in_model(&record))?;
            let figure = match format {
                None => None,
                Some(format) => {
                    let visualization = visualization.clone();
                    tokio::task::spawn_blocking(move || {
                        let captions: Vec<String> = visualization
                            .labels
                            .iter()
                            .enumerate()
                            .map(|(index, label)| match visualization.predictions.get(index) {
                                Some((class, probability)) => format!("{label} → {class} ({probability:.2})"),
                                None => format!("{label} · {:.3}", visualization.objective.get(index).copied().unwrap_or(f32::NAN)),
                            })
                            .collect();
                        contact_sheet("activation maximisation", &visualization.images, &captions, format)
                    })
                    .await??
                }
            };
            Ok(proto::VisualizeEvent {
                event: Some(proto::visualize_event::Event::Result(proto::VisualizeResult {
                    model_id,
                    images: Some(convert::tensor(&visualization.inputs)),
                    objective: visualization.objective,
                    steps: visualization.steps,
                    predicted_class: visualization.predictions.iter().map(|(class, _)| *class).collect(),
                    predicted_probability: visualization.predictions.iter().map(|(_, probability)| *probability).collect(),
                    figure,
                    labels: visualization.labels,
                })),
            })
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn counterfactual(&self, request: Request<proto::CounterfactualRequest>) -> Result<Response<Self::CounterfactualStream>, Status> {
        let request = request.into_inner();
        let job = convert::counterfactual_request(&request)?;
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let format = convert::figure_format(request.figure_format);
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        let (relay, report) = ProgressRelay::start(sender.clone(), |progress: CounterfactualProgress| proto::CounterfactualEvent {
            event: Some(proto::counterfactual_event::Event::Progress(proto::CounterfactualProgress {
                step: progress.step,
                steps: progress.steps,
                flipped: progress.flipped,
            })),
        });
        let report = Box::new(report);
        let (low, high, norm) = (job.low, job.high, job.norm);
        let original = job.input.clone();
        finish_stream(sender, async move {
            let model_id = record.id.clone();
            let answer = worker.counterfactual(job, report).await;
            relay.finish().await;
            let answer = answer.map_err(in_model(&record))?;
            let figure = match format {
                None => None,
                Some(format) => {
                    let answer = answer.clone();
                    tokio::task::spawn_blocking(move || {
                        let row_shape = &original.shape[1..];
                        let size: usize = row_shape.iter().product::<i64>() as usize;
                        let panels: Vec<layerlens_render::CounterfactualPanel<'_>> = answer
                            .rows
                            .iter()
                            .take(FIGURE_ROWS)
                            .enumerate()
                            .map(|(index, row)| layerlens_render::CounterfactualPanel {
                                shape: row_shape,
                                original: &original.values[index * size..(index + 1) * size],
                                counterfactual: &answer.counterfactual.values[index * size..(index + 1) * size],
                                low,
                                high,
                                caption: format!(
                                    "{} → {}{} · {} {:.3}",
                                    row.original_class,
                                    row.final_class,
                                    if row.flipped { "" } else { " (not flipped)" },
                                    if norm == Norm::L2 { "L2" } else { "L∞" },
                                    row.distance
                                ),
                            })
                            .collect();
                        ApiResult::Ok(Some(convert::figure(layerlens_render::counterfactual_figure("counterfactuals", &panels, format)?)))
                    })
                    .await??
                }
            };
            Ok(proto::CounterfactualEvent {
                event: Some(proto::counterfactual_event::Event::Result(proto::CounterfactualResult {
                    model_id,
                    counterfactual: Some(convert::tensor(&answer.counterfactual)),
                    rows: answer
                        .rows
                        .iter()
                        .map(|row| proto::CounterfactualRow {
                            flipped: row.flipped,
                            distance: row.distance,
                            l2_distance: row.l2_distance,
                            steps: row.steps,
                            original_class: row.original_class,
                            final_class: row.final_class,
                            classes: row.probability_path.first().map_or(0, |first| first.len() as u32),
                            probability_path: row.probability_path.concat(),
                        })
                        .collect(),
                    figure,
                })),
            })
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn traverse(&self, request: Request<proto::TraverseRequest>) -> Result<Response<proto::TraverseResponse>, Status> {
        let request = request.into_inner();
        let job = convert::traverse_request(&request)?;
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let traversal = worker.traverse(job.clone()).await.map_err(in_model(&record))?;
        let figure = match convert::figure_format(request.figure_format) {
            None => None,
            Some(format) => {
                let traversal = traversal.clone();
                tokio::task::spawn_blocking(move || {
                    // A generator's output range is its own: stretch the batch's min..max to [0, 1].
                    let (low, high) = traversal
                        .images
                        .values
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(low, high), value| (low.min(*value), high.max(*value)));
                    let span = if high > low { high - low } else { 1.0 };
                    let scaled =
                        HostTensor { values: traversal.images.values.iter().map(|value| (value - low) / span).collect(), ..traversal.images.clone() };
                    let columns = traversal.columns as usize;
                    let captions: Vec<String> = (0..traversal.rows as usize * columns)
                        .map(|index| match job.z_end {
                            Some(_) => format!("t={:.2}", (index % columns) as f64 / (columns - 1) as f64),
                            None => {
                                let dim = job.dims[index / columns];
                                let offset = -job.range + 2.0 * job.range * (index % columns) as f64 / (columns - 1) as f64;
                                format!("z[{dim}] {offset:+.2}")
                            }
                        })
                        .collect();
                    contact_sheet("latent traversal", &scaled, &captions, format)
                })
                .await
                .map_err(ApiError::from)??
            }
        };
        Ok(Response::new(proto::TraverseResponse {
            model_id: record.id,
            images: Some(convert::tensor(&traversal.images)),
            latents: Some(convert::tensor(&traversal.latents)),
            rows: traversal.rows,
            columns: traversal.columns,
            figure,
        }))
    }
}
