//! Figures of the inspection answers, drawn off the async threads: parameter
//! histograms and the first convolution's filters; per-layer activation statistics
//! with anomalies marked, and per-layer histograms.

use crate::convert;
use crate::error::{ApiError, ApiResult};
use layerlens_engine::inspection::{ActivationReport, ParameterReport};
use layerlens_proto as proto;
use layerlens_render::Format;

/// Histograms of every parameter tensor (up to 48 panels), and the filter grid.
pub async fn parameter_figures(report: &ParameterReport, format: Format) -> ApiResult<(Option<proto::Figure>, Option<proto::Figure>)> {
    let panels: Vec<(String, String, Vec<f32>, Vec<u64>)> = report
        .parameters
        .iter()
        .take(48)
        .map(|parameter| {
            let stats = &parameter.stats;
            let subtitle = format!("{:?}, mean {:.3}, std {:.3}, {:.0}% zeros", parameter.shape, stats.mean, stats.std, stats.zero_fraction * 100.0);
            (parameter.name.clone(), subtitle, stats.histogram.edges.clone(), stats.histogram.counts.clone())
        })
        .collect();
    let left_out = report.parameters.len().saturating_sub(panels.len());
    let first_conv = report.first_conv.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<(Option<proto::Figure>, Option<proto::Figure>)> {
        let histograms = if panels.is_empty() {
            None
        } else {
            let title = if left_out > 0 {
                format!("parameter histograms (first {} tensors; {left_out} more not drawn)", panels.len())
            } else {
                "parameter histograms".to_string()
            };
            let drawn: Vec<layerlens_render::HistogramPanel> =
                panels.iter().map(|(title, subtitle, edges, counts)| layerlens_render::HistogramPanel { title, edges, counts, subtitle }).collect();
            Some(convert::figure(layerlens_render::histogram_grid(&title, &drawn, false, format).map_err(ApiError::from)?))
        };
        let filters = match first_conv {
            Some((path, weights)) => Some(convert::figure(
                layerlens_render::filter_grid(&format!("filters of {path}"), &weights.shape, &weights.values, format).map_err(ApiError::from)?,
            )),
            None => None,
        };
        Ok((histograms, filters))
    })
    .await?
}

/// Mean, std and shares per layer with anomalies flagged, and histograms of the
/// leaf layers' outputs (up to 48).
pub async fn activation_figures(report: &ActivationReport, format: Format) -> ApiResult<(Option<proto::Figure>, Option<proto::Figure>)> {
    if report.layers.is_empty() {
        return Ok((None, None));
    }
    let labels: Vec<String> = report
        .layers
        .iter()
        .map(|layer| if layer.call_index > 0 { format!("{} ({})", layer.path, layer.call_index + 1) } else { layer.path.clone() })
        .collect();
    let finite = |value: f64| if value.is_finite() { value as f32 } else { 0.0 };
    let means: Vec<f32> = report.layers.iter().map(|layer| finite(layer.stats.mean)).collect();
    let stds: Vec<f32> = report.layers.iter().map(|layer| finite(layer.stats.std)).collect();
    let nonpositive: Vec<f32> = report.layers.iter().map(|layer| layer.nonpositive_fraction.unwrap_or(0.0) as f32).collect();
    let flagged: Vec<usize> = report
        .layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| report.anomalies.iter().any(|anomaly| anomaly.path == layer.path))
        .map(|(index, _)| index)
        .collect();
    let panels: Vec<(String, String, Vec<f32>, Vec<u64>)> = report
        .layers
        .iter()
        .filter(|layer| !layer.stats.histogram.counts.is_empty())
        .take(48)
        .map(|layer| {
            let subtitle = format!("{:?}, mean {:.3}, std {:.3}", layer.shape, layer.stats.mean, layer.stats.std);
            (layer.path.clone(), subtitle, layer.stats.histogram.edges.clone(), layer.stats.histogram.counts.clone())
        })
        .collect();
    tokio::task::spawn_blocking(move || -> ApiResult<(Option<proto::Figure>, Option<proto::Figure>)> {
        let series = [
            layerlens_render::LayerStatSeries { name: "mean", values: &means, log_scale: false },
            layerlens_render::LayerStatSeries { name: "std", values: &stds, log_scale: false },
            layerlens_render::LayerStatSeries { name: "share <= 0", values: &nonpositive, log_scale: false },
        ];
        let chart = layerlens_render::layer_stat_chart("activations per layer", &labels, &series, &flagged, format).map_err(ApiError::from)?;
        let drawn: Vec<layerlens_render::HistogramPanel> =
            panels.iter().map(|(title, subtitle, edges, counts)| layerlens_render::HistogramPanel { title, edges, counts, subtitle }).collect();
        let histograms = if drawn.is_empty() {
            None
        } else {
            Some(convert::figure(layerlens_render::histogram_grid("activation histograms", &drawn, true, format).map_err(ApiError::from)?))
        };
        Ok((Some(convert::figure(chart)), histograms))
    })
    .await?
}
