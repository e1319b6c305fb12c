//! The inspection commands: `params` (statistics of every parameter tensor),
//! `activations` (per-layer statistics for an input and the anomaly report) and
//! `predict` (outputs with top-k probabilities).

use crate::figure::format_of_all;
use crate::output::outln;
use anyhow::Context;
use clap::Args;
use layerlens_client::{npy, Client};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens params digits\n  layerlens params digits --figure params.png --filters filters.png\n  layerlens --json params digits --bins 50"
)]
pub struct ParamsArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// Histogram bins per tensor.
    #[arg(long, allow_negative_numbers = true, default_value_t = 30)]
    bins: u32,
    /// Write the parameter histograms (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Write the first convolution's filters as an image grid (.png or .svg).
    #[arg(long)]
    filters: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens activations digits --input x.npy\n  layerlens activations digits --input x.npy --figure activations.png --histograms hist.svg\n  layerlens --json activations two-input --input a.npy --input b.npy"
)]
pub struct ActivationsArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// Input tensor (.npy); repeat for a model with several inputs.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Histogram bins per layer.
    #[arg(long, allow_negative_numbers = true, default_value_t = 30)]
    bins: u32,
    /// Write the per-layer statistics chart (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Write the per-layer histograms (.png or .svg).
    #[arg(long)]
    histograms: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  layerlens predict digits --input x.npy\n  layerlens --json predict digits --input batch.npy --top-k 3")]
pub struct PredictArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// Input tensor (.npy); repeat for a model with several inputs.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Classes to show per row.
    #[arg(long, allow_negative_numbers = true, default_value_t = 5)]
    top_k: u32,
}

pub(crate) fn write_figure(path: Option<&PathBuf>, figure: Option<&proto::Figure>) -> anyhow::Result<()> {
    if let (Some(path), Some(figure)) = (path, figure) {
        std::fs::write(path, &figure.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// "figure written to /absolute/path" for each figure that was asked for.
fn print_written(paths: &[Option<&PathBuf>]) -> anyhow::Result<()> {
    for path in paths.iter().flatten() {
        outln!("figure written to {}", crate::open::absolute(path))?;
    }
    Ok(())
}

/// Rows of cells printed with every column as wide as its widest cell; the first
/// `left_columns` columns are left-aligned (names), the rest right-aligned (numbers).
fn print_table(header: &[&str], rows: &[Vec<String>], left_columns: usize) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(index, (cell, &width))| if index < left_columns { format!("{cell:<width$}") } else { format!("{cell:>width$}") })
            .collect();
        outln!("{}", text.join("  ").trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// A statistic in a table cell: 4 significant digits, scientific only when the value
/// is very small or large.
fn number_cell(value: f64) -> String {
    if value == 0.0 || !value.is_finite() || (1e-3..1e5).contains(&value.abs()) {
        let text = format!("{value:.4}");
        if text.contains('.') && value.is_finite() {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{value:.3e}")
    }
}

fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<(proto::Tensor, Vec<proto::Tensor>)> {
    let mut tensors = paths.iter().map(|path| npy::read(path).map(npy::Array::into_tensor)).collect::<Result<Vec<_>, _>>()?;
    let first = tensors.remove(0);
    Ok((first, tensors))
}

fn stats_json(stats: Option<&proto::TensorStats>) -> Value {
    match stats {
        None => Value::Null,
        Some(stats) => json!({"count": stats.count, "mean": stats.mean, "std": stats.std, "min": stats.min, "max": stats.max,
                              "l2_norm": stats.l2_norm, "zero_fraction": stats.zero_fraction, "nan_count": stats.nan_count,
                              "inf_count": stats.inf_count, "histogram": {"edges": stats.histogram_edges, "counts": stats.histogram_counts}}),
    }
}

pub async fn params(client: &Client, args: ParamsArgs, as_json: bool) -> anyhow::Result<()> {
    let format = format_of_all(&[("--figure", args.figure.as_deref()), ("--filters", args.filters.as_deref())])?;
    let answer = client
        .parameters(proto::ParametersRequest { model: args.model.clone(), bins: args.bins, figure_format: format as i32 })
        .await
        .with_context(|| format!("parameters of {}", args.model))?;
    write_figure(args.figure.as_ref(), answer.histograms.as_ref())?;
    write_figure(args.filters.as_ref(), answer.filters.as_ref())?;
    if as_json {
        let rows: Vec<Value> = answer
            .parameters
            .iter()
            .map(|parameter| json!({"name": parameter.name, "module_path": parameter.module_path, "shape": parameter.shape,
                                    "dtype": parameter.dtype, "requires_grad": parameter.requires_grad, "stats": stats_json(parameter.stats.as_ref())}))
            .collect();
        outln!("{}", json!({"parameters": rows}))?;
    } else {
        let rows: Vec<Vec<String>> = answer
            .parameters
            .iter()
            .map(|parameter| {
                let stats = parameter.stats.clone().unwrap_or_default();
                let shape: Vec<String> = parameter.shape.iter().map(|dim| dim.to_string()).collect();
                vec![
                    parameter.name.clone(),
                    format!("({})", shape.join(", ")),
                    stats.count.to_string(),
                    number_cell(stats.mean),
                    number_cell(stats.std),
                    number_cell(stats.min),
                    number_cell(stats.max),
                    format!("{:.1}%", stats.zero_fraction * 100.0),
                    format!("{}/{}", stats.nan_count, stats.inf_count),
                ]
            })
            .collect();
        print_table(&["parameter", "shape", "count", "mean", "std", "min", "max", "zero%", "NaN/Inf"], &rows, 2)?;
        let total: u64 = answer.parameters.iter().map(|parameter| parameter.stats.as_ref().map_or(0, |stats| stats.count)).sum();
        outln!("{} tensors, {total} values", answer.parameters.len())?;
        print_written(&[args.figure.as_ref(), args.filters.as_ref()])?;
    }
    Ok(())
}

pub async fn activations(client: &Client, args: ActivationsArgs, as_json: bool) -> anyhow::Result<()> {
    let format = format_of_all(&[("--figure", args.figure.as_deref()), ("--histograms", args.histograms.as_deref())])?;
    let (input, extra_inputs) = read_inputs(&args.input)?;
    let answer = client
        .activations(proto::ActivationsRequest {
            model: args.model.clone(),
            input: Some(input),
            extra_inputs,
            bins: args.bins,
            figure_format: format as i32,
        })
        .await
        .with_context(|| format!("activations of {} on {}", args.model, args.input[0].display()))?;
    write_figure(args.figure.as_ref(), answer.chart.as_ref())?;
    write_figure(args.histograms.as_ref(), answer.histograms.as_ref())?;
    let severity = |anomaly: &proto::Anomaly| match anomaly.severity() {
        proto::anomaly::Severity::Error => "error",
        proto::anomaly::Severity::Warning => "warning",
        _ => "info",
    };
    if as_json {
        let layers: Vec<Value> = answer
            .layers
            .iter()
            .map(|layer| {
                json!({"path": layer.path, "type": layer.type_name, "call_index": layer.call_index, "call_site": layer.call_site,
                                "shape": layer.shape, "stats": stats_json(layer.stats.as_ref()),
                                "nonpositive_fraction": layer.nonpositive_fraction, "saturated_fraction": layer.saturated_fraction,
                                "dead_channels": layer.dead_channels, "channels": layer.channels})
            })
            .collect();
        let anomalies: Vec<Value> = answer
            .anomalies
            .iter()
            .map(|anomaly| json!({"severity": severity(anomaly), "kind": anomaly.kind, "path": anomaly.path, "call_site": anomaly.call_site, "message": anomaly.message}))
            .collect();
        outln!("{}", json!({"layers": layers, "anomalies": anomalies}))?;
    } else {
        outln!("{:<36} {:<20} {:>10} {:>10} {:>8}", "layer", "shape", "mean", "std", "<= 0")?;
        for layer in &answer.layers {
            let stats = layer.stats.clone().unwrap_or_default();
            let share = layer.nonpositive_fraction.map(|share| format!("{:.0}%", share * 100.0)).unwrap_or_default();
            outln!("{:<36} {:<20} {:>10.3e} {:>10.3e} {share:>8}", layer.path, format!("{:?}", layer.shape), stats.mean, stats.std)?;
        }
        if answer.anomalies.is_empty() {
            outln!("no anomalies")?;
        }
        for anomaly in &answer.anomalies {
            let site = anomaly.call_site.rsplit('/').next().unwrap_or(&anomaly.call_site);
            outln!("{}: {} [{}]", severity(anomaly), anomaly.message, site)?;
        }
        print_written(&[args.figure.as_ref(), args.histograms.as_ref()])?;
    }
    Ok(())
}

pub async fn predict(client: &Client, args: PredictArgs, as_json: bool) -> anyhow::Result<()> {
    let (input, extra_inputs) = read_inputs(&args.input)?;
    let answer = client
        .predict(proto::PredictRequest { model: args.model.clone(), input: Some(input), extra_inputs, top_k: args.top_k })
        .await
        .with_context(|| format!("prediction of {} on {}", args.model, args.input[0].display()))?;
    if as_json {
        let rows: Vec<Value> = answer
            .rows
            .iter()
            .map(|row| {
                Value::Array(
                    row.top.iter().map(|top| json!({"class": top.class_index, "logit": top.logit, "probability": top.probability})).collect(),
                )
            })
            .collect();
        let output = answer.output.as_ref().map(|tensor| json!({"shape": tensor.shape, "values": tensor.to_f32().unwrap_or_default()}));
        outln!("{}", json!({"output": output, "top_k": rows}))?;
    } else {
        for (index, row) in answer.rows.iter().enumerate() {
            let text: Vec<String> = row.top.iter().map(|top| format!("{} ({:.1}%)", top.class_index, top.probability * 100.0)).collect();
            outln!("row {index}: {}", text.join(", "))?;
        }
        if answer.rows.is_empty() {
            if let Some(output) = &answer.output {
                outln!("output of shape {:?}", output.shape)?;
            }
        }
    }
    Ok(())
}
