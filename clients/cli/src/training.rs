//! The training commands: `checkpoints add|list`, `optimizer` (what the optimiser does
//! to each parameter, from a checkpoint), `landscape` (the loss around a checkpoint),
//! `weight-change` (between two checkpoints) and `runs list|show|figure` (runs sent by
//! `layerlens.watch`).

use crate::figure::{format_of, format_of_all};
use crate::inspect::write_figure;
use crate::output::outln;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use layerlens_client::{npy, Client, FigureFormat};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// Store a training checkpoint of a stored model: a `torch.save`d dict with the
    /// model's and optimiser's state dicts, a bare state dict, or safetensors. It is
    /// read as data (never run) and checked against the model's parameters.
    #[command(after_help = "Examples:\n  layerlens checkpoints add digits ckpt.pt\n  layerlens --json checkpoints add digits ckpt.pt --step 300")]
    Add {
        /// Id, id prefix (8+ hex characters) or name of the model.
        model: String,
        /// The checkpoint file (.pt, .pth, .safetensors).
        file: PathBuf,
        /// The training step (default: the one the checkpoint records).
        #[arg(long, allow_negative_numbers = true)]
        step: Option<i64>,
    },
    /// List a model's checkpoints by step.
    #[command(after_help = "Examples:\n  layerlens checkpoints list digits")]
    List {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the training runs.
    #[command(after_help = "Examples:\n  layerlens runs list")]
    List,
    /// Every record of a run: per step and layer, gradient, weight and update norms.
    #[command(after_help = "Examples:\n  layerlens runs show exp1\n  layerlens --json runs show exp1")]
    Show {
        /// The run's name, as given to layerlens.watch.
        run: String,
    },
    /// Draw a run (or compare several).
    #[command(
        after_help = "Examples:\n  layerlens runs figure exp1 --figure ratios.png\n  layerlens runs figure exp1 --kind gradient-flow --figure flow.svg\n  layerlens runs figure adam sgd --kind compare --figure compare.png"
    )]
    Figure {
        /// The run (several for --kind compare).
        #[arg(required = true)]
        runs: Vec<String>,
        /// What to draw.
        #[arg(long, value_enum, default_value_t = RunFigure::Ratios)]
        kind: RunFigure,
        /// Where to write the figure (.png or .svg).
        #[arg(long)]
        figure: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RunFigure {
    /// Layers × steps heat map of the update:weight ratio.
    Ratios,
    /// Per-layer gradient norm, several steps overlaid.
    GradientFlow,
    /// The learning rate of each param group over the steps.
    LearningRate,
    /// The loss logged with run.log(loss=...).
    Loss,
    /// Loss curves (or median update:weight ratios) of several runs.
    Compare,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens optimizer digits --checkpoint 3f2a9c1e\n  layerlens optimizer digits --checkpoint 3f2a9c1e --figure ratios.png --histograms steps.png\n  layerlens --json optimizer digits --checkpoint 3f2a9c1e"
)]
pub struct OptimizerArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// Checkpoint id or prefix (8+ hex characters), as `checkpoints list` shows.
    #[arg(long)]
    checkpoint: String,
    /// Write the update:weight ratio per layer (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Write histograms of the last update per coordinate (.png or .svg).
    #[arg(long)]
    histograms: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Loss {
    /// Mean cross entropy of the logits against class indices `y`.
    #[value(name = "cross_entropy", alias = "cross-entropy")]
    CrossEntropy,
    /// Mean squared error against `y` of the output's shape.
    Mse,
    /// The mean of the model's output (a model that returns its own loss).
    Output,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens landscape digits --checkpoint 3f2a9c1e --data batch.npz --loss cross_entropy --figure 1d.png\n  layerlens landscape digits --checkpoint 3f2a9c1e --data batch.npz --dims 2 --steps 25 --out grid.npy --figure 2d.svg\n  layerlens landscape digits --checkpoint LAST --trajectory A --trajectory B --trajectory LAST --data batch.npz --figure path.png"
)]
pub struct LandscapeArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// The centre; without it, the stored model's own weights.
    #[arg(long)]
    checkpoint: Option<String>,
    /// A .npz with arrays `x` (the inputs; `x0`, `x1`, ... for several) and `y` (the targets).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Loss::CrossEntropy)]
    loss: Loss,
    /// 1 (the loss along one direction) or 2 (a plane).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    dims: u32,
    /// Grid points per direction.
    #[arg(long, allow_negative_numbers = true, default_value_t = 21)]
    steps: u32,
    /// Coordinates run from -range to range (default 1; fitted to the trajectory when one is given).
    #[arg(long, allow_negative_numbers = true)]
    range: Option<f64>,
    /// Seed of the random directions (the same seed gives the same directions on every device).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Checkpoints of a training run, in order: their top-2 PCA directions replace the
    /// random ones and their path is drawn over the contours.
    #[arg(long)]
    trajectory: Vec<String>,
    /// Write the grid of losses (.npy, float32).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the figure (.png or .svg): a line for 1-D, contours for 2-D.
    #[arg(long)]
    figure: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  layerlens weight-change digits --from 3f2a9c1e --to 9b1c22d0 --figure change.png")]
pub struct WeightChangeArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// The earlier checkpoint (id or prefix).
    #[arg(long)]
    from: String,
    /// The later checkpoint (id or prefix).
    #[arg(long)]
    to: String,
    /// Write the relative change per layer as a bar chart (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
}

/// A number for JSON: null when not finite (JSON has no NaN).
fn number(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

fn scientific(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3e}")
    } else {
        "--".to_string()
    }
}

fn checkpoint_json(info: &proto::CheckpointInfo) -> Value {
    json!({"id": info.id, "model": info.model, "step": info.step, "optimizer": (!info.optimizer.is_empty()).then_some(&info.optimizer),
           "format": info.format, "parameters": info.parameters, "has_scheduler": info.has_scheduler, "size_bytes": info.size_bytes})
}

pub async fn checkpoints(client: &Client, command: CheckpointsCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        CheckpointsCommand::Add { model, file, step } => {
            let bytes = tokio::fs::read(&file).await.with_context(|| format!("cannot read {}", file.display()))?;
            let info = client.upload_checkpoint(bytes, &model, step).await.with_context(|| format!("adding checkpoint {}", file.display()))?;
            if as_json {
                outln!("{}", checkpoint_json(&info))?;
            } else {
                outln!("{}", info.id)?;
            }
        }
        CheckpointsCommand::List { model } => {
            let checkpoints = client.list_checkpoints(&model).await.with_context(|| format!("checkpoints of {model}"))?;
            if as_json {
                outln!("{}", Value::Array(checkpoints.iter().map(checkpoint_json).collect()))?;
            } else {
                outln!("{:<14} {:>8}  {:<10} {:<12} {:>12}", "id", "step", "optimizer", "format", "bytes")?;
                for checkpoint in checkpoints {
                    let step = checkpoint.step.map(|step| step.to_string()).unwrap_or_else(|| "--".to_string());
                    let optimizer = if checkpoint.optimizer.is_empty() { "--" } else { &checkpoint.optimizer };
                    outln!("{:<14} {:>8}  {:<10} {:<12} {:>12}", &checkpoint.id[..12], step, optimizer, checkpoint.format, checkpoint.size_bytes)?;
                }
            }
        }
    }
    Ok(())
}

pub async fn optimizer(client: &Client, args: OptimizerArgs, as_json: bool) -> anyhow::Result<()> {
    let format = format_of_all(&[("--figure", args.figure.as_deref()), ("--histograms", args.histograms.as_deref())])?;
    let request = |figure: proto::OptimizerFigure, format: FigureFormat| proto::ExplainOptimizerRequest {
        model: args.model.clone(),
        checkpoint: args.checkpoint.clone(),
        figure_format: format as i32,
        figure: figure as i32,
        bins: 0,
    };
    let first_format = if args.figure.is_some() { format } else { FigureFormat::None };
    let report = client
        .explain_optimizer(request(proto::OptimizerFigure::Ratios, first_format))
        .await
        .with_context(|| format!("the optimiser of {} at checkpoint {}", args.model, args.checkpoint))?;
    write_figure(args.figure.as_ref(), report.figure.as_ref())?;
    if args.histograms.is_some() {
        let histograms = client.explain_optimizer(request(proto::OptimizerFigure::StepHistograms, format)).await?;
        write_figure(args.histograms.as_ref(), histograms.figure.as_ref())?;
    }
    if as_json {
        let rows: Vec<Value> = report
            .rows
            .iter()
            .map(|row| {
                let effective = row.effective_lr.unwrap_or_default();
                let step = row.step_size.unwrap_or_default();
                json!({"parameter": row.parameter, "layer": row.layer, "shape": row.shape, "group": row.group, "learning_rate": number(row.learning_rate),
                       "weight_norm": number(row.weight_norm), "update_norm": number(row.update_norm),
                       "update_weight_ratio": number(row.update_weight_ratio),
                       "effective_lr": {"p50": number(effective.p50), "p99": number(effective.p99), "max": number(effective.max)},
                       "step_size": {"p50": number(step.p50), "p99": number(step.p99), "max": number(step.max)},
                       "momentum_norm": number(row.momentum_norm), "zero_second_moment_fraction": number(row.zero_second_moment_fraction),
                       "weight_decay_share": number(row.weight_decay_share), "has_state": row.has_state})
            })
            .collect();
        let layers: Vec<Value> = report
            .layers
            .iter()
            .map(|layer| json!({"layer": layer.layer, "weight_norm": number(layer.weight_norm), "update_norm": number(layer.update_norm), "update_weight_ratio": number(layer.update_weight_ratio)}))
            .collect();
        let findings: Vec<Value> = report
            .findings
            .iter()
            .map(|finding| json!({"severity": finding.severity, "layer": finding.layer, "parameter": finding.parameter, "kind": finding.kind, "message": finding.message, "value": number(finding.value)}))
            .collect();
        let groups: Vec<Value> = report
            .param_groups
            .iter()
            .map(|group| json!({"index": group.index, "lr": number(group.learning_rate), "options": group.options}))
            .collect();
        let schedule = report
            .schedule
            .as_ref()
            .map(|schedule| json!({"last_epoch": schedule.last_epoch, "last_lr": schedule.last_lr, "base_lr": schedule.base_lr}));
        outln!(
            "{}",
            json!({"optimizer": report.optimizer, "step": report.step, "checkpoint": report.checkpoint, "rows": rows, "layers": layers,
                   "findings": findings, "param_groups": groups, "schedule": schedule, "notes": report.notes,
                   "figure": args.figure.as_ref().map(|path| crate::open::absolute(path))})
        )?;
        return Ok(());
    }
    let step = report.step.map(|step| step.to_string()).unwrap_or_else(|| "?".to_string());
    outln!("{} at step {step}", if report.optimizer.is_empty() { "no optimiser" } else { &report.optimizer })?;
    outln!("{:<32} {:>12} {:>12} {:>12} {:>12}", "parameter", "‖w‖", "‖update‖", "ratio", "eff. lr p50")?;
    for row in &report.rows {
        let effective = row.effective_lr.unwrap_or_default();
        outln!(
            "{:<32} {:>12} {:>12} {:>12} {:>12}",
            row.parameter,
            scientific(row.weight_norm),
            scientific(row.update_norm),
            scientific(row.update_weight_ratio),
            scientific(effective.p50)
        )?;
    }
    for note in &report.notes {
        outln!("note: {note}")?;
    }
    if report.findings.is_empty() {
        outln!("no findings: every update:weight ratio is in the healthy 1e-4..1e-2")?;
    }
    for finding in &report.findings {
        outln!("{}: {}", finding.severity, finding.message)?;
    }
    Ok(())
}

/// The inputs (`x`, or `x0`, `x1`, ...) and targets (`y`) of a .npz data file.
fn read_data(path: &PathBuf, loss: Loss) -> anyhow::Result<(Vec<proto::Tensor>, Option<proto::Tensor>)> {
    let arrays = npy::read_npz(path)?;
    let mut inputs: Vec<(String, proto::Tensor)> = Vec::new();
    let mut targets = None;
    for (name, array) in arrays {
        if name == "y" {
            targets = Some(array.into_tensor());
        } else if name == "x" || (name.starts_with('x') && name[1..].parse::<u32>().is_ok()) {
            inputs.push((name, array.into_tensor()));
        }
    }
    inputs.sort_by_key(|(name, _)| name[1..].parse::<u32>().unwrap_or(0));
    if inputs.is_empty() {
        anyhow::bail!("{}: no array named x (the inputs); save the batch with numpy.savez(path, x=inputs, y=targets)", path.display());
    }
    if targets.is_none() && !matches!(loss, Loss::Output) {
        anyhow::bail!("{}: no array named y (the targets the loss needs)", path.display());
    }
    Ok((inputs.into_iter().map(|(_, tensor)| tensor).collect(), targets))
}

pub async fn landscape(client: &Client, args: LandscapeArgs, as_json: bool) -> anyhow::Result<()> {
    let format = match &args.figure {
        Some(path) => format_of("--figure", path)?,
        None => FigureFormat::None,
    };
    let (inputs, targets) = read_data(&args.data, args.loss)?;
    let loss = match args.loss {
        Loss::CrossEntropy => proto::LossKind::CrossEntropy,
        Loss::Mse => proto::LossKind::Mse,
        Loss::Output => proto::LossKind::Output,
    };
    let request = proto::LandscapeRequest {
        model: args.model.clone(),
        checkpoint: args.checkpoint.clone().unwrap_or_default(),
        inputs,
        targets,
        loss: loss as i32,
        dims: args.dims,
        steps: args.steps,
        range: args.range.unwrap_or(if args.trajectory.is_empty() { 1.0 } else { 0.0 }),
        seed: args.seed,
        trajectory: args.trajectory.clone(),
        return_directions: false,
        figure_format: format as i32,
    };
    let answer = client.landscape(request).await.with_context(|| format!("the loss landscape of {}", args.model))?;
    write_figure(args.figure.as_ref(), answer.figure.as_ref())?;
    if let Some(path) = &args.out {
        let shape: Vec<i64> = if answer.dims == 2 { vec![answer.steps as i64, answer.steps as i64] } else { vec![answer.steps as i64] };
        let values: Vec<f32> = answer.losses.iter().map(|&loss| loss as f32).collect();
        npy::write_f32(path, &shape, &values)?;
    }
    if as_json {
        let trajectory: Vec<Value> =
            answer.trajectory.iter().map(|point| json!({"checkpoint": point.checkpoint, "step": point.step, "x": point.x, "y": point.y})).collect();
        outln!(
            "{}",
            json!({"dims": answer.dims, "steps": answer.steps, "range": answer.range, "center_loss": number(answer.center_loss),
                   "coordinates": answer.coordinates, "passes": answer.passes, "trajectory": trajectory, "explained_variance": answer.explained_variance,
                   "out": args.out.as_ref().map(|path| crate::open::absolute(path)), "figure": args.figure.as_ref().map(|path| crate::open::absolute(path))})
        )?;
    } else {
        let (low, high) = answer
            .losses
            .iter()
            .filter(|loss| loss.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &loss| (low.min(loss), high.max(loss)));
        outln!(
            "loss at the centre {:.6}; over the {}-D grid of {} points ±{}: {low:.6} .. {high:.6}",
            answer.center_loss,
            answer.dims,
            answer.losses.len(),
            answer.range
        )?;
        for point in &answer.trajectory {
            outln!("{} at ({:.4}, {:.4})", point.checkpoint, point.x, point.y)?;
        }
    }
    Ok(())
}

pub async fn weight_change(client: &Client, args: WeightChangeArgs, as_json: bool) -> anyhow::Result<()> {
    let format = match &args.figure {
        Some(path) => format_of("--figure", path)?,
        None => FigureFormat::None,
    };
    let request = proto::WeightChangeRequest {
        model: args.model.clone(),
        from_checkpoint: args.from.clone(),
        to_checkpoint: args.to.clone(),
        figure_format: format as i32,
    };
    let answer = client.weight_change(request).await.with_context(|| format!("weight change of {} from {} to {}", args.model, args.from, args.to))?;
    write_figure(args.figure.as_ref(), answer.figure.as_ref())?;
    let row = |change: &proto::WeightChange| {
        json!({"name": change.name, "from_norm": number(change.from_norm), "change_norm": number(change.change_norm),
               "relative_change": number(change.relative_change), "cosine": number(change.cosine)})
    };
    if as_json {
        outln!(
            "{}",
            json!({"parameters": answer.parameters.iter().map(row).collect::<Vec<_>>(), "layers": answer.layers.iter().map(row).collect::<Vec<_>>()})
        )?;
    } else {
        outln!("{:<32} {:>12} {:>12} {:>10}", "layer", "‖Δw‖", "‖Δw‖/‖w‖", "cosine")?;
        for layer in &answer.layers {
            outln!("{:<32} {:>12} {:>12} {:>10.6}", layer.name, scientific(layer.change_norm), scientific(layer.relative_change), layer.cosine)?;
        }
    }
    Ok(())
}

pub async fn runs(client: &Client, command: RunsCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        RunsCommand::List => {
            let runs = client.list_runs().await?;
            if as_json {
                let rows: Vec<Value> = runs
                    .iter()
                    .map(|run| {
                        json!({"name": run.name, "model": (!run.model.is_empty()).then_some(&run.model), "optimizer": run.optimizer,
                                      "steps": run.steps, "first_step": run.first_step, "last_step": run.last_step, "layers": run.layers.len()})
                    })
                    .collect();
                outln!("{}", Value::Array(rows))?;
            } else {
                outln!("{:<24} {:<16} {:<10} {:>8} {:>12}", "run", "model", "optimizer", "steps", "last step")?;
                for run in runs {
                    outln!("{:<24} {:<16} {:<10} {:>8} {:>12}", run.name, run.model, run.optimizer, run.steps, run.last_step)?;
                }
            }
        }
        RunsCommand::Show { run } => {
            let answer = client.get_run(&run).await.with_context(|| format!("run {run}"))?;
            if as_json {
                let records: Vec<Value> = answer
                    .records
                    .iter()
                    .map(|record| {
                        let step = record.step_size.unwrap_or_default();
                        json!({"step": record.step, "layer": record.layer, "grad_norm": number(record.grad_norm), "weight_norm": number(record.weight_norm),
                               "update_norm": number(record.update_norm), "update_weight_ratio": number(record.update_weight_ratio),
                               "step_size": {"p50": number(step.p50), "p99": number(step.p99), "max": number(step.max)},
                               "loss": record.loss.map(number)})
                    })
                    .collect();
                let steps: Vec<Value> = answer
                    .steps
                    .iter()
                    .map(|step| json!({"step": step.step, "loss": step.loss.map(number), "learning_rates": step.learning_rates}))
                    .collect();
                let info = answer.info.unwrap_or_default();
                outln!("{}", json!({"name": info.name, "model": info.model, "optimizer": info.optimizer, "steps": steps, "records": records}))?;
            } else {
                outln!("{:>8}  {:<32} {:>12} {:>12} {:>12} {:>12}", "step", "layer", "‖grad‖", "‖w‖", "‖update‖", "ratio")?;
                for record in &answer.records {
                    outln!(
                        "{:>8}  {:<32} {:>12} {:>12} {:>12} {:>12}",
                        record.step,
                        record.layer,
                        scientific(record.grad_norm),
                        scientific(record.weight_norm),
                        scientific(record.update_norm),
                        scientific(record.update_weight_ratio)
                    )?;
                }
            }
        }
        RunsCommand::Figure { runs, kind, figure } => {
            let format = format_of("--figure", &figure)?;
            let kind = match kind {
                RunFigure::Ratios => proto::RunFigureKind::RatioHeatmap,
                RunFigure::GradientFlow => proto::RunFigureKind::GradientFlow,
                RunFigure::LearningRate => proto::RunFigureKind::LearningRate,
                RunFigure::Loss => proto::RunFigureKind::Loss,
                RunFigure::Compare => proto::RunFigureKind::Compare,
            };
            let request = proto::RunFigureRequest { runs: runs.clone(), kind: kind as i32, figure_format: format as i32 };
            let drawn = client.run_figure(request).await.with_context(|| format!("figure of run {}", runs.join(", ")))?;
            write_figure(Some(&figure), Some(&drawn))?;
            if as_json {
                outln!("{}", json!({"figure": crate::open::absolute(&figure), "alt_text": drawn.alt_text}))?;
            } else {
                outln!("figure written to {}", crate::open::absolute(&figure))?;
            }
        }
    }
    Ok(())
}
