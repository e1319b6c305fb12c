//! The generation commands: `generate` (activation maximisation), `counterfactual`
//! (the smallest change that flips a prediction) and `traverse` (latent traversals of
//! generator models). Long jobs show a progress bar on stderr fed by the daemon's
//! progress events; Ctrl-C drops the stream, which cancels the job on the daemon, and
//! ends the command with an error (`interrupt`).

use crate::figure::format_of_all;
use crate::inspect::write_figure;
use crate::output::outln;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use layerlens_client::{npy, Client};
use layerlens_proto as proto;
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens generate digits --objective class_vs_rest:3 --out three.npy --figure three.png\n  layerlens generate resnet --objective channel:layer3.1:7 --input-shape 1,3,224,224 --steps 256 --figure ch7.png\n  layerlens generate digits --objective class:0 --objective class:1 --figure sheet.png"
)]
pub struct GenerateArgs {
    model: String,
    /// What to maximise: class:N, class_vs_rest:N, channel:LAYER:C, neuron:LAYER:C[:Y:X],
    /// layer:LAYER; a weighted sum as "class:3+0.5*channel:conv1:2"; channel:LAYER:* for
    /// every channel of a layer. Repeat for one image per objective.
    #[arg(long, required = true)]
    objective: Vec<String>,
    /// Write the synthesized inputs, exactly as fed to the model (float32 .npy).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the contact sheet (.png or .svg).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Optimisation steps [default: 256].
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    steps: u32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// fft (Lucent's default) or pixel.
    #[arg(long, default_value = "fft")]
    parameterization: String,
    /// standard (Lucent's standard_transforms) or none.
    #[arg(long, default_value = "standard")]
    transforms: String,
    /// Shape of one model input, e.g. 1,3,224,224 [default: the shape stored with the model].
    #[arg(long, allow_hyphen_values = true)]
    input_shape: Option<crate::shape::Shape>,
    /// Adam's learning rate [default: 0.05].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    learning_rate: f32,
    /// Regularisers (weights): mean square distance from grey, total variation, blur.
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    l2: f32,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    total_variation: f32,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    blur: f32,
    /// The model's input normalisation, one value or one per channel: 0.485,0.456,0.406.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',')]
    mean: Vec<f32>,
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',')]
    std: Vec<f32>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  layerlens counterfactual digits --input seven.npy --target 1 --out as_one.npy --figure cf.png")]
pub struct CounterfactualArgs {
    model: String,
    /// The original inputs (.npy), (N, ...).
    #[arg(long)]
    input: PathBuf,
    /// Target class, for every row or one per row: 3 or 3,1,4.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', required = true)]
    target: Vec<i64>,
    /// l2 or linf.
    #[arg(long, default_value = "l2")]
    norm: String,
    /// Gradient steps at most [default: 100].
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    steps: u32,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    figure: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  layerlens traverse decoder --z z.npy --dims 0,3 --range 2 --steps 9 --figure traversal.png")]
pub struct TraverseArgs {
    model: String,
    /// The latent to start from (.npy), (D) or (1, D).
    #[arg(long)]
    z: PathBuf,
    /// Latent dimensions to vary.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',')]
    dims: Vec<u32>,
    #[arg(long, allow_hyphen_values = true, default_value_t = 3.0)]
    range: f32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 7)]
    steps: u32,
    /// Interpolate from z to this latent instead (.npy).
    #[arg(long)]
    z_end: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    figure: Option<PathBuf>,
}

/// "class:3+0.5*channel:conv1:2" as terms.
fn objective(text: &str) -> anyhow::Result<proto::Objective> {
    let terms = text
        .split('+')
        .map(|piece| {
            let piece = piece.trim();
            // A `*` is a weight's unless it is the wildcard ending `channel:LAYER:*`.
            let weighted = piece.strip_suffix(":*").unwrap_or(piece).contains('*');
            match piece.split_once('*').filter(|_| weighted) {
                Some((weight, term)) if weight.trim().parse::<f32>().is_ok() => {
                    Ok(proto::ObjectiveTerm { term: term.trim().to_string(), weight: weight.trim().parse().expect("checked"), direction: Vec::new() })
                }
                Some(_) => anyhow::bail!("--objective {text}: '{piece}' has a weight that is not a number"),
                None => Ok(proto::ObjectiveTerm { term: piece.to_string(), weight: 0.0, direction: Vec::new() }),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(proto::Objective { terms })
}

/// A bar on stderr, hidden when stderr is not a terminal (indicatif's default).
fn progress_bar(steps: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}").expect("a valid template").progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar
}

fn write_tensor(path: Option<&PathBuf>, tensor: Option<&proto::Tensor>) -> anyhow::Result<()> {
    if let (Some(path), Some(tensor)) = (path, tensor) {
        let values = tensor.to_f32().map_err(|error| anyhow::anyhow!("the daemon answered a bad tensor: {error}"))?;
        npy::write_f32(path, &tensor.shape, &values)?;
    }
    Ok(())
}

pub async fn generate(client: &Client, args: GenerateArgs, as_json: bool) -> anyhow::Result<()> {
    let objectives = args.objective.iter().map(|text| objective(text)).collect::<anyhow::Result<Vec<_>>>()?;
    let request = proto::VisualizeRequest {
        model: args.model.clone(),
        objectives,
        input_shape: args.input_shape.map(|shape| shape.0).unwrap_or_default(),
        parameterization: args.parameterization,
        steps: args.steps,
        learning_rate: args.learning_rate,
        seed: args.seed,
        transforms: args.transforms,
        l2: args.l2,
        total_variation: args.total_variation,
        blur: args.blur,
        mean: args.mean,
        std: args.std,
        figure_format: format_of_all(&[("--figure", args.figure.as_deref())])? as i32,
        ..Default::default()
    };
    let bar = progress_bar(0, "generate");
    let job = client.visualize(request, |progress| {
        bar.set_length(u64::from(progress.steps));
        bar.set_position(u64::from(progress.step));
        let mean = progress.objective.iter().sum::<f32>() / progress.objective.len().max(1) as f32;
        bar.set_message(format!("objective {mean:.3}"));
    });
    let outcome = crate::interrupt::cancel_on_ctrl_c(job).await;
    bar.finish_and_clear();
    let result = outcome.with_context(|| format!("generate for {}", args.model))?;
    write_tensor(args.out.as_ref(), result.images.as_ref())?;
    write_figure(args.figure.as_ref(), result.figure.as_ref())?;
    if as_json {
        let objective_json = if args.objective.len() == 1 { json!(args.objective[0]) } else { json!(args.objective) };
        let final_json = if result.objective.len() == 1 { json!(result.objective[0]) } else { json!(result.objective) };
        let mut answer = json!({"objective": objective_json, "steps": result.steps, "final_objective": final_json,
                                "predicted_class": result.predicted_class, "predicted_probability": result.predicted_probability});
        if let Some(out) = &args.out {
            answer["out"] = json!(out.display().to_string());
        }
        if let Some(figure) = &args.figure {
            answer["figure"] = json!(figure.display().to_string());
        }
        outln!("{answer}")?;
    } else {
        for (index, label) in result.labels.iter().enumerate() {
            let predicted = match (result.predicted_class.get(index), result.predicted_probability.get(index)) {
                (Some(class), Some(probability)) => format!("; predicted {class} (p={probability:.3})"),
                _ => String::new(),
            };
            outln!("{label}: objective {:.4} after {} steps{predicted}", result.objective.get(index).copied().unwrap_or(f32::NAN), result.steps)?;
        }
        for (flag, path) in [("inputs", &args.out), ("figure", &args.figure)] {
            if let Some(path) = path {
                outln!("{flag} written to {}", path.display())?;
            }
        }
    }
    Ok(())
}

pub async fn counterfactual(client: &Client, args: CounterfactualArgs, as_json: bool) -> anyhow::Result<()> {
    let request = proto::CounterfactualRequest {
        model: args.model.clone(),
        input: Some(npy::read(&args.input)?.into_tensor()),
        target: args.target,
        norm: args.norm,
        steps: args.steps,
        figure_format: format_of_all(&[("--figure", args.figure.as_deref())])? as i32,
        ..Default::default()
    };
    let bar = progress_bar(0, "counterfactual");
    let job = client.counterfactual(request, |progress| {
        bar.set_length(u64::from(progress.steps));
        bar.set_position(u64::from(progress.step));
        bar.set_message(format!("{} flipped", progress.flipped));
    });
    let outcome = crate::interrupt::cancel_on_ctrl_c(job).await;
    bar.finish_and_clear();
    let result = outcome.with_context(|| format!("counterfactual for {}", args.model))?;
    write_tensor(args.out.as_ref(), result.counterfactual.as_ref())?;
    write_figure(args.figure.as_ref(), result.figure.as_ref())?;
    let flipped = result.rows.iter().filter(|row| row.flipped).count();
    let mean_l2 = result.rows.iter().filter(|row| row.flipped).map(|row| row.l2_distance).sum::<f32>() / flipped.max(1) as f32;
    if as_json {
        let rows: Vec<_> = result
            .rows
            .iter()
            .map(|row| {
                json!({"flipped": row.flipped, "distance": row.distance, "l2_distance": row.l2_distance, "steps": row.steps,
                              "original_class": row.original_class, "final_class": row.final_class})
            })
            .collect();
        outln!(
            "{}",
            json!({"rows": rows, "flipped": flipped, "mean_l2_distance": mean_l2,
                               "out": args.out.map(|path| path.display().to_string()),
                               "figure": args.figure.map(|path| path.display().to_string())})
        )?;
    } else {
        for (index, row) in result.rows.iter().enumerate() {
            let outcome = if row.flipped { format!("flipped after {} steps", row.steps) } else { "not flipped within the budget".to_string() };
            outln!(
                "row {index}: {} -> {} ({outcome}), distance {:.4}, L2 {:.4}",
                row.original_class,
                row.final_class,
                row.distance,
                row.l2_distance
            )?;
        }
        outln!("{flipped} of {} rows flipped; mean L2 distance of those {mean_l2:.4}", result.rows.len())?;
    }
    Ok(())
}

pub async fn traverse(client: &Client, args: TraverseArgs, as_json: bool) -> anyhow::Result<()> {
    let request = proto::TraverseRequest {
        model: args.model.clone(),
        z: Some(npy::read(&args.z)?.into_tensor()),
        dims: args.dims,
        range: args.range,
        steps: args.steps,
        z_end: args.z_end.as_deref().map(npy::read).transpose()?.map(npy::Array::into_tensor),
        figure_format: format_of_all(&[("--figure", args.figure.as_deref())])? as i32,
    };
    let result = client.traverse(request).await.with_context(|| format!("traverse for {}", args.model))?;
    write_tensor(args.out.as_ref(), result.images.as_ref())?;
    write_figure(args.figure.as_ref(), result.figure.as_ref())?;
    let shape = result.images.as_ref().map(|images| images.shape.clone()).unwrap_or_default();
    if as_json {
        outln!(
            "{}",
            json!({"rows": result.rows, "columns": result.columns, "shape": shape,
                               "out": args.out.map(|path| path.display().to_string()),
                               "figure": args.figure.map(|path| path.display().to_string())})
        )?;
    } else {
        outln!("{} × {} outputs of shape {:?}", result.rows, result.columns, &shape[1.min(shape.len())..])?;
    }
    Ok(())
}
