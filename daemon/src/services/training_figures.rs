//! Figures of the training answers, drawn on the blocking pool: the update:weight
//! ratio per layer (or step histograms) of an optimiser report, the loss landscape
//! (a line, or contours with the trajectory), weight change per layer, and the run
//! figures (ratio heat map, gradient flow, learning rate, loss, run comparison).

use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::runs::RunData;
use layerlens_engine::training::{optimizer::HEALTHY_RATIO, Landscape, OptimizerReport, WeightChangeReport};
use layerlens_proto as proto;
use layerlens_render::{AxisScale, ColourScale, Format};

/// Histogram panels drawn at most.
const MAX_PANELS: usize = 48;
/// Steps overlaid at most in a gradient-flow chart.
const FLOW_STEPS: usize = 6;

fn drawn(figure: Result<layerlens_render::Figure, layerlens_render::RenderError>) -> ApiResult<proto::Figure> {
    Ok(convert::figure(figure.map_err(ApiError::from)?))
}

/// The update:weight ratio per layer (log axis), or the last step's histograms.
pub fn optimizer_figure(report: &OptimizerReport, kind: proto::OptimizerFigure, format: Format) -> ApiResult<Option<proto::Figure>> {
    let title = format!("{} at step {}", report.optimizer, report.step.map(|step| step.to_string()).unwrap_or_else(|| "?".to_string()));
    match kind {
        proto::OptimizerFigure::StepHistograms => {
            let rows: Vec<_> = report.rows.iter().filter(|row| !row.step_histogram.1.is_empty()).take(MAX_PANELS).collect();
            if rows.is_empty() {
                return Ok(None);
            }
            let panels: Vec<(String, Vec<f32>, String)> = rows
                .iter()
                .map(|row| {
                    let subtitle = format!("|step| p50 {:.2e}, max {:.2e}", row.step_size.p50, row.step_size.max);
                    (row.parameter.clone(), row.step_histogram.0.iter().map(|&edge| edge as f32).collect(), subtitle)
                })
                .collect();
            let drawn_panels: Vec<layerlens_render::HistogramPanel> = panels
                .iter()
                .zip(&rows)
                .map(|((name, edges, subtitle), row)| layerlens_render::HistogramPanel {
                    title: name,
                    edges,
                    counts: &row.step_histogram.1,
                    subtitle,
                })
                .collect();
            Ok(Some(drawn(layerlens_render::histogram_grid(&format!("last update per coordinate, {title}"), &drawn_panels, true, format))?))
        }
        _ => {
            let layers: Vec<_> =
                report.layers.iter().filter(|layer| layer.update_weight_ratio.is_finite() && layer.update_weight_ratio > 0.0).collect();
            if layers.is_empty() {
                return Ok(None);
            }
            let labels: Vec<String> =
                layers.iter().map(|layer| if layer.layer.is_empty() { "(root)".to_string() } else { layer.layer.clone() }).collect();
            let values: Vec<f64> = layers.iter().map(|layer| layer.update_weight_ratio).collect();
            Ok(Some(drawn(layerlens_render::bar_chart(
                &format!("update:weight ratio per layer, {title} (healthy {:.0e}..{:.0e})", HEALTHY_RATIO.0, HEALTHY_RATIO.1),
                &labels,
                &values,
                "‖update‖ / ‖weight‖",
                AxisScale::Log10,
                format,
            ))?))
        }
    }
}

/// A 1-D landscape as a line, a 2-D one as contours (with the trajectory, if any).
pub fn landscape_figure(landscape: &Landscape, title: &str, format: Format) -> ApiResult<proto::Figure> {
    if landscape.dims == 1 {
        let series = [layerlens_render::LineSeries { name: "loss", xs: &landscape.coordinates, ys: &landscape.losses }];
        return drawn(layerlens_render::line_chart(title, &series, "α (filter-normalised direction)", "loss", AxisScale::Linear, format));
    }
    let points: Vec<(f64, f64)> = landscape.trajectory.iter().map(|point| (point.x, point.y)).collect();
    let labels: Vec<String> = landscape.trajectory.iter().map(|point| point.label.clone()).collect();
    let paths =
        if points.is_empty() { Vec::new() } else { vec![layerlens_render::PlotPath { name: "trajectory", points: &points, point_labels: &labels }] };
    let (x_label, y_label) = match landscape.explained_variance.as_slice() {
        [first, second, ..] => (format!("PC 1 ({:.0}% of variance)", first * 100.0), format!("PC 2 ({:.0}% of variance)", second * 100.0)),
        _ => ("α (direction 1)".to_string(), "β (direction 2)".to_string()),
    };
    drawn(layerlens_render::contour_plot(
        title,
        &landscape.coordinates,
        &landscape.coordinates,
        &landscape.losses,
        &paths,
        &x_label,
        &y_label,
        format,
    ))
}

pub fn weight_change_figure(report: &WeightChangeReport, format: Format) -> ApiResult<proto::Figure> {
    let layers: Vec<_> = report.layers.iter().filter(|layer| layer.relative_change.is_finite()).collect();
    let labels: Vec<String> = layers.iter().map(|layer| if layer.name.is_empty() { "(root)".to_string() } else { layer.name.clone() }).collect();
    let values: Vec<f64> = layers.iter().map(|layer| layer.relative_change).collect();
    drawn(layerlens_render::bar_chart("relative weight change per layer", &labels, &values, "‖Δw‖ / ‖w‖", AxisScale::Linear, format))
}

/// A run's records of one metric as a layers × steps matrix (NaN where missing).
fn layer_step_matrix(run: &RunData, metric: impl Fn(&crate::runs::RunRecord) -> f64) -> (Vec<String>, Vec<i64>, Vec<f64>) {
    let layers = run.summary.layers.clone();
    let mut steps: Vec<i64> = run.records.iter().map(|record| record.step).collect();
    steps.dedup();
    let mut values = vec![f64::NAN; layers.len() * steps.len()];
    for record in &run.records {
        if let (Some(row), Ok(column)) = (layers.iter().position(|layer| *layer == record.layer), steps.binary_search(&record.step)) {
            values[row * steps.len() + column] = metric(record);
        }
    }
    (layers, steps, values)
}

fn empty_run(run: &RunData) -> ApiError {
    ApiError::bad_input(format!("run {:?} has no records yet: there is nothing to draw", run.summary.name))
}

pub fn run_figure(runs: &[RunData], kind: proto::RunFigureKind, format: Format) -> ApiResult<proto::Figure> {
    let run = &runs[0];
    let name = &run.summary.name;
    match kind {
        proto::RunFigureKind::GradientFlow => {
            let (layers, steps, values) = layer_step_matrix(run, |record| record.grad_norm);
            if steps.is_empty() {
                return Err(empty_run(run));
            }
            // A few steps spread over the run, the last one included.
            let chosen: Vec<usize> = if steps.len() <= FLOW_STEPS {
                (0..steps.len()).collect()
            } else {
                let mut chosen: Vec<usize> = (0..FLOW_STEPS).map(|index| index * (steps.len() - 1) / (FLOW_STEPS - 1)).collect();
                chosen.dedup();
                chosen
            };
            let names: Vec<String> = chosen.iter().map(|&column| format!("step {}", steps[column])).collect();
            let columns: Vec<Vec<f32>> =
                chosen.iter().map(|&column| (0..layers.len()).map(|row| values[row * steps.len() + column] as f32).collect()).collect();
            let series: Vec<layerlens_render::ChartSeries> =
                names.iter().zip(&columns).map(|(name, values)| layerlens_render::ChartSeries { name, values }).collect();
            drawn(layerlens_render::step_chart_scaled(
                &format!("gradient flow, run {name}"),
                &layers,
                &series,
                "‖gradient‖",
                None,
                AxisScale::Log10,
                format,
            ))
        }
        proto::RunFigureKind::LearningRate => {
            let steps: Vec<f64> = run.steps.iter().map(|step| step.step as f64).collect();
            let groups = run.steps.iter().map(|step| step.learning_rates.len()).max().unwrap_or(0);
            if steps.is_empty() || groups == 0 {
                return Err(ApiError::bad_input(format!("run {name:?} recorded no learning rates")));
            }
            let rates: Vec<Vec<f64>> =
                (0..groups).map(|group| run.steps.iter().map(|step| step.learning_rates.get(group).copied().unwrap_or(f64::NAN)).collect()).collect();
            let names: Vec<String> = (0..groups).map(|group| format!("param group {group}")).collect();
            let series: Vec<layerlens_render::LineSeries> =
                names.iter().zip(&rates).map(|(name, ys)| layerlens_render::LineSeries { name, xs: &steps, ys }).collect();
            drawn(layerlens_render::line_chart(&format!("learning rate, run {name}"), &series, "step", "learning rate", AxisScale::Log10, format))
        }
        proto::RunFigureKind::Loss | proto::RunFigureKind::Compare => {
            let curves: Vec<(String, Vec<f64>, Vec<f64>)> = runs
                .iter()
                .map(|run| {
                    let steps = run.steps.iter().filter(|step| step.loss.is_some());
                    (
                        run.summary.name.clone(),
                        steps.clone().map(|step| step.step as f64).collect(),
                        steps.map(|step| step.loss.unwrap_or(f64::NAN)).collect(),
                    )
                })
                .filter(|(_, steps, _): &(String, Vec<f64>, Vec<f64>)| !steps.is_empty())
                .collect();
            if kind == proto::RunFigureKind::Compare {
                return compare_figure(runs, &curves, format);
            }
            if curves.is_empty() {
                return Err(ApiError::bad_input(format!("run {name:?} recorded no loss; pass it with run.log(loss=...)")));
            }
            let series: Vec<layerlens_render::LineSeries> =
                curves.iter().map(|(name, xs, ys)| layerlens_render::LineSeries { name, xs, ys }).collect();
            drawn(layerlens_render::line_chart(&format!("loss, run {name}"), &series, "step", "loss", AxisScale::Linear, format))
        }
        proto::RunFigureKind::Unspecified | proto::RunFigureKind::RatioHeatmap => {
            let (layers, steps, values) = layer_step_matrix(run, |record| record.update_weight_ratio);
            if steps.is_empty() {
                return Err(empty_run(run));
            }
            let columns: Vec<String> = steps.iter().map(i64::to_string).collect();
            let values: Vec<f32> = values.iter().map(|&value| value as f32).collect();
            drawn(layerlens_render::matrix_heat_map(
                &format!("update:weight ratio, run {name}"),
                &layers,
                &columns,
                &values,
                ColourScale::Log10,
                "‖update‖ / ‖weight‖",
                Some((HEALTHY_RATIO.0 as f32, HEALTHY_RATIO.1 as f32)),
                format,
            ))
        }
    }
}

/// Several runs side by side: their loss curves when they have them, else their
/// median update:weight ratio over the layers per step.
fn compare_figure(runs: &[RunData], losses: &[(String, Vec<f64>, Vec<f64>)], format: Format) -> ApiResult<proto::Figure> {
    let names: Vec<&str> = runs.iter().map(|run| run.summary.name.as_str()).collect();
    if losses.len() == runs.len() {
        let series: Vec<layerlens_render::LineSeries> = losses.iter().map(|(name, xs, ys)| layerlens_render::LineSeries { name, xs, ys }).collect();
        return drawn(layerlens_render::line_chart(
            &format!("loss of runs {}", names.join(", ")),
            &series,
            "step",
            "loss",
            AxisScale::Linear,
            format,
        ));
    }
    let medians: Vec<(String, Vec<f64>, Vec<f64>)> = runs
        .iter()
        .map(|run| {
            let (_, steps, values) = layer_step_matrix(run, |record| record.update_weight_ratio);
            let layers = run.summary.layers.len();
            let medians = (0..steps.len())
                .map(|column| {
                    let mut column_values: Vec<f64> =
                        (0..layers).map(|row| values[row * steps.len() + column]).filter(|value| value.is_finite()).collect();
                    column_values.sort_by(f64::total_cmp);
                    column_values.get(column_values.len() / 2).copied().unwrap_or(f64::NAN)
                })
                .collect();
            (run.summary.name.clone(), steps.iter().map(|&step| step as f64).collect(), medians)
        })
        .collect();
    if medians.iter().all(|(_, steps, _)| steps.is_empty()) {
        return Err(ApiError::bad_input("the runs have no records yet: there is nothing to compare"));
    }
    let series: Vec<layerlens_render::LineSeries> = medians.iter().map(|(name, xs, ys)| layerlens_render::LineSeries { name, xs, ys }).collect();
    drawn(layerlens_render::line_chart(
        &format!("median update:weight ratio of runs {}", names.join(", ")),
        &series,
        "step",
        "median ‖update‖ / ‖weight‖ over layers",
        AxisScale::Log10,
        format,
    ))
}
