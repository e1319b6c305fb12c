//! The inspection commands: `params` (statistics of every parameter tensor),
//! `activations` (per-layer statistics for an input and the anomaly report) and
//! `predict` (outputs with top-k probabilities).

use crate::npy;
use anyhow::Context;
use clap::Args;
use layerlens_client::{Client, FigureFormat};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ParamsArgs {
    model: String,
    /// Histogram bins per tensor.
    #[arg(long, default_value_t = 30)]
    bins: u32,
    /// Write the parameter histograms (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Write the first convolution's filters as an image grid (.png or .svg).
    #[arg(long)]
    filters: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ActivationsArgs {
    model: String,
    /// Input tensor (.npy); repeat for a model with several inputs.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    #[arg(long, default_value_t = 30)]
    bins: u32,
    /// Write the per-layer statistics chart (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Write the per-layer histograms (.png or .svg).
    #[arg(long)]
    histograms: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    model: String,
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Classes to show per row.
    #[arg(long, default_value_t = 5)]
    top_k: u32,
}

pub(crate) fn figure_format(paths: &[Option<&PathBuf>]) -> anyhow::Result<FigureFormat> {
    let mut format = FigureFormat::None;
    for path in paths.iter().flatten() {
        format = match path.extension().and_then(|ext| ext.to_str()) {
            Some("png") => FigureFormat::Png,
            Some("svg") => FigureFormat::Svg,
            _ => anyhow::bail!("{}: a figure's file name must end in .png or .svg", path.display()),
        };
    }
    Ok(format)
}

pub(crate) fn write_figure(path: Option<&PathBuf>, figure: Option<&proto::Figure>) -> anyhow::Result<()> {
    if let (Some(path), Some(figure)) = (path, figure) {
        std::fs::write(path, &figure.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<(proto::Tensor, Vec<proto::Tensor>)> {
    let mut tensors = paths.iter().map(|path| npy::read_input(path)).collect::<anyhow::Result<Vec<_>>>()?;
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
    let format = figure_format(&[args.figure.as_ref(), args.filters.as_ref()])?;
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
        println!("{}", json!({"parameters": rows}));
    } else {
        println!("{:<36} {:<18} {:>10} {:>10} {:>10} {:>10} {:>7}", "parameter", "shape", "mean", "std", "min", "max", "zeros");
        for parameter in &answer.parameters {
            let stats = parameter.stats.clone().unwrap_or_default();
            println!(
                "{:<36} {:<18} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>6.1}%{}",
                parameter.name,
                format!("{:?}", parameter.shape),
                stats.mean,
                stats.std,
                stats.min,
                stats.max,
                stats.zero_fraction * 100.0,
                if stats.nan_count + stats.inf_count > 0 { format!("  {} NaN, {} inf", stats.nan_count, stats.inf_count) } else { String::new() }
            );
        }
    }
    Ok(())
}

pub async fn activations(client: &Client, args: ActivationsArgs, as_json: bool) -> anyhow::Result<()> {
    let format = figure_format(&[args.figure.as_ref(), args.histograms.as_ref()])?;
    let (input, extra_inputs) = read_inputs(&args.input)?;
    let answer = client
        .activations(proto::ActivationsRequest { model: args.model.clone(), input: Some(input), extra_inputs, bins: args.bins, figure_format: format as i32 })
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
            .map(|layer| json!({"path": layer.path, "type": layer.type_name, "call_index": layer.call_index, "call_site": layer.call_site,
                                "shape": layer.shape, "stats": stats_json(layer.stats.as_ref()),
                                "nonpositive_fraction": layer.nonpositive_fraction, "saturated_fraction": layer.saturated_fraction,
                                "dead_channels": layer.dead_channels, "channels": layer.channels}))
            .collect();
        let anomalies: Vec<Value> = answer
            .anomalies
            .iter()
            .map(|anomaly| json!({"severity": severity(anomaly), "kind": anomaly.kind, "path": anomaly.path, "call_site": anomaly.call_site, "message": anomaly.message}))
            .collect();
        println!("{}", json!({"layers": layers, "anomalies": anomalies}));
    } else {
        println!("{:<36} {:<20} {:>10} {:>10} {:>8}", "layer", "shape", "mean", "std", "<= 0");
        for layer in &answer.layers {
            let stats = layer.stats.clone().unwrap_or_default();
            let share = layer.nonpositive_fraction.map(|share| format!("{:.0}%", share * 100.0)).unwrap_or_default();
            println!("{:<36} {:<20} {:>10.3e} {:>10.3e} {share:>8}", layer.path, format!("{:?}", layer.shape), stats.mean, stats.std);
        }
        if answer.anomalies.is_empty() {
            println!("no anomalies");
        }
        for anomaly in &answer.anomalies {
            let site = anomaly.call_site.rsplit('/').next().unwrap_or(&anomaly.call_site);
            println!("{}: {} [{}]", severity(anomaly), anomaly.message, site);
        }
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
            .map(|row| Value::Array(row.top.iter().map(|top| json!({"class": top.class_index, "logit": top.logit, "probability": top.probability})).collect()))
            .collect();
        let output = answer.output.as_ref().map(|tensor| json!({"shape": tensor.shape, "values": tensor.to_f32().unwrap_or_default()}));
        println!("{}", json!({"output": output, "top_k": rows}));
    } else {
        for (index, row) in answer.rows.iter().enumerate() {
            let text: Vec<String> = row.top.iter().map(|top| format!("{} ({:.1}%)", top.class_index, top.probability * 100.0)).collect();
            println!("row {index}: {}", text.join(", "));
        }
        if answer.rows.is_empty() {
            if let Some(output) = &answer.output {
                println!("output of shape {:?}", output.shape);
            }
        }
    }
    Ok(())
}

