//! The attribution commands: `attribute`, `compare`, `evaluate`, `sanity-check`.
//! They share the arguments that describe one attribution (`ExplainArgs`).

use crate::output::outln;
use crate::shape::Shape;
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use layerlens_client::{npy, Client};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to explain: model, inputs, targets and the method's options.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Id, id prefix (8+ hex characters) or name.
    model: String,
    /// Input tensor (.npy, float32), shaped as the model takes it; repeat for a model
    /// with several inputs.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Output index to explain; default: the predicted class.
    #[arg(long, allow_negative_numbers = true)]
    target: Option<i64>,
    /// One target per batch row, comma-separated (overrides --target).
    #[arg(long, allow_hyphen_values = true)]
    targets: Option<Shape>,
    /// Baseline tensor (.npy) for the first input (Captum's `baselines`).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Integration steps (Captum's `n_steps`); `auto` adapts them.
    #[arg(long, allow_negative_numbers = true)]
    steps: Option<String>,
    /// Module path, for layer methods (the ones `layerlens methods` marks "layer").
    #[arg(long)]
    layer: Option<String>,
    /// Further options under Captum's names, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Tensor options from .npy files, KEY=FILE (repeatable): feature_mask, baselines.1, noise, ...
    #[arg(long = "tensor-param", value_name = "KEY=FILE")]
    tensor_params: Vec<String>,
    /// Write the figure; .png or .svg.
    #[arg(long)]
    figure: Option<PathBuf>,
    /// How to draw: heat_map, blended_heat_map, masked_image, alpha_scaling, original_image.
    #[arg(long)]
    figure_method: Option<String>,
    /// Which attributions to draw: absolute_value, positive, negative, all.
    #[arg(long)]
    figure_sign: Option<String>,
}

/// `--method` values: the method table shared with the engine (crate
/// layerlens-methods), each with its one-line summary, so help texts and shell
/// completions list exactly what the daemon serves.
fn method_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        layerlens_methods::METHODS.iter().map(|method| clap::builder::PossibleValue::new(method.name).help(method.summary)),
    )
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens attribute digits --input x.npy --method saliency --out saliency.npy --figure saliency.png\n  layerlens attribute digits --input x.npy --method integrated_gradients --target 3 --steps auto\n  layerlens attribute digits --input x.npy --method occlusion --param sliding_window_shapes=1,3,3 --param strides=1,2,2\n  layerlens attribute digits --input x.npy --method grad_cam --layer features.2 --figure cam.png --figure-method blended_heat_map"
)]
pub struct AttributeArgs {
    #[command(flatten)]
    explain: ExplainArgs,
    /// The attribution method (`layerlens methods` lists them with their options).
    #[arg(long, value_parser = method_values())]
    method: String,
    /// Write the attribution as float32 .npy; repeat once per input.
    #[arg(long)]
    out: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens compare digits --input x.npy --methods saliency,integrated_gradients,occlusion --figure grid.png\n  layerlens compare digits --input x.npy --methods saliency,grad_cam --layer features.2 --param occlusion.sliding_window_shapes=1,2,2"
)]
pub struct CompareArgs {
    #[command(flatten)]
    explain: ExplainArgs,
    /// Methods to compare, comma-separated. Options for one method only are written
    /// METHOD.KEY=VALUE, e.g. --param occlusion.sliding_window_shapes=1,3,3.
    #[arg(long, value_delimiter = ',', required = true, value_parser = method_values())]
    methods: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens evaluate digits --input x.npy --method saliency --metric infidelity --metric sensitivity_max\n  layerlens --json evaluate digits --input x.npy --method integrated_gradients --metric infidelity --metric-param n_perturb_samples=20"
)]
pub struct EvaluateArgs {
    #[command(flatten)]
    explain: ExplainArgs,
    /// The attribution method to evaluate (`layerlens methods` lists them).
    #[arg(long, value_parser = method_values())]
    method: String,
    /// infidelity or sensitivity_max (repeatable).
    #[arg(long = "metric", required = true)]
    metrics: Vec<String>,
    /// Metric options, KEY=VALUE: n_perturb_samples, noise_std, normalize, perturb_radius, seed.
    #[arg(long = "metric-param", value_name = "KEY=VALUE")]
    metric_params: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens sanity-check digits --input x.npy --method saliency --figure sanity.png\n  layerlens --json sanity-check digits --input x.npy --method integrated_gradients --seed 1"
)]
pub struct SanityCheckArgs {
    #[command(flatten)]
    explain: ExplainArgs,
    /// The attribution method to check (`layerlens methods` lists them).
    #[arg(long, value_parser = method_values())]
    method: String,
    /// Seed of the re-initialisation.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: i64,
    /// Rank signed attributions instead of their absolute values.
    #[arg(long)]
    signed: bool,
}

fn key_values(pairs: &[String], flag: &str) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok((key.to_string(), value.to_string())),
            None => bail!("{flag} {pair}: expected KEY=VALUE"),
        })
        .collect()
}

fn read_tensor(path: &Path) -> anyhow::Result<proto::Tensor> {
    let (shape, values) = npy::read_f32(path)?;
    Ok(proto::Tensor::from_f32(&shape, &values))
}

impl ExplainArgs {
    /// The wire request for `method`; `params` are the options that apply to it.
    fn request(&self, method: &str, params: HashMap<String, String>) -> anyhow::Result<proto::AttributeRequest> {
        let mut inputs = self.input.iter().map(|path| npy::read(path).map(npy::Array::into_tensor)).collect::<Result<Vec<_>, _>>()?;
        let mut params = params;
        if let Some(steps) = &self.steps {
            params.insert("n_steps".to_string(), steps.clone());
        }
        let mut tensor_params = HashMap::new();
        for (key, path) in key_values(&self.tensor_params, "--tensor-param")? {
            tensor_params.insert(key, read_tensor(Path::new(&path))?);
        }
        if let Some(path) = &self.baseline {
            tensor_params.insert("baselines".to_string(), read_tensor(path)?);
        }
        let figure_format = crate::figure::format_of_all(&[("--figure", self.figure.as_deref())])?;
        let first_input = inputs.remove(0);
        Ok(proto::AttributeRequest {
            model: self.model.clone(),
            input: Some(first_input),
            method: method.to_string(),
            target: self.target,
            params,
            figure_format: figure_format as i32,
            extra_inputs: inputs,
            tensor_params,
            targets: self.targets.as_ref().map(|shape| shape.0.clone()).unwrap_or_default(),
            layer: self.layer.clone().unwrap_or_default(),
            figure_options: Some(proto::FigureOptions {
                method: self.figure_method.clone().unwrap_or_default(),
                sign: self.figure_sign.clone().unwrap_or_default(),
                outlier_percent: None,
            }),
        })
    }

    fn write_figure(&self, figure: Option<&proto::Figure>) -> anyhow::Result<()> {
        if let Some(path) = &self.figure {
            let rendered = figure.context("the daemon answered without a figure")?;
            std::fs::write(path, &rendered.data).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// "figure written to /absolute/path" when --figure was given.
    fn print_figure_path(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.figure {
            outln!("figure written to {}", crate::open::absolute(path))?;
        }
        Ok(())
    }

    fn label(&self, method: &str) -> String {
        format!("{method} of {} on {}", self.model, self.input[0].display())
    }
}

fn target_json(targets: &[i64]) -> Value {
    match targets {
        [first, rest @ ..] if rest.iter().all(|target| target == first) => json!(first),
        many => json!(many),
    }
}

/// Runs one attribution over AttributeStream with a progress bar on stderr (shown only
/// when `show` and stderr is a terminal; indicatif hides it otherwise). Ctrl-C drops
/// the stream, which tells the daemon to stop the work, and ends with an error
/// (`interrupt`).
async fn attribute_with_progress(client: &Client, request: proto::AttributeRequest, show: bool) -> anyhow::Result<proto::AttributeResponse> {
    let bar = if show { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} rows · {msg}").expect("a valid template").progress_chars("=> "));
    bar.set_prefix(request.method.clone());
    let job = client.attribute_stream(request, |progress| {
        bar.set_length(progress.rows_total);
        bar.set_position(progress.rows_done);
        bar.set_message(format!("{} · pass {}/{} · {:.1} s", progress.phase, progress.passes_done, progress.passes_total, progress.elapsed_seconds));
    });
    // `job` sends nothing until it is polled, and `cancel_on_ctrl_c` listens for
    // Ctrl-C before it polls it.
    let outcome = crate::interrupt::cancel_on_ctrl_c(job).await;
    bar.finish_and_clear();
    outcome
}

pub async fn attribute(client: &Client, args: AttributeArgs, as_json: bool) -> anyhow::Result<()> {
    let explain = &args.explain;
    if !args.out.is_empty() && args.out.len() != explain.input.len() {
        bail!("--out was given {} times for {} inputs; give one per input", args.out.len(), explain.input.len());
    }
    let request = explain.request(&args.method, key_values(&explain.params, "--param")?)?;
    let answer = attribute_with_progress(client, request, !as_json).await.with_context(|| explain.label(&args.method))?;
    let attribution = answer.attribution.clone().context("the daemon answered without an attribution")?;
    let all_attributions: Vec<&proto::Tensor> = std::iter::once(&attribution).chain(answer.extra_attributions.iter()).collect();
    for (path, tensor) in args.out.iter().zip(&all_attributions) {
        let values = tensor.to_f32().context("the daemon's attribution")?;
        npy::write_f32(path, &tensor.shape, &values)?;
    }
    explain.write_figure(answer.figure.as_ref())?;
    let target = target_json(&answer.targets);
    if as_json {
        let mut output = json!({"method": answer.method, "target": target, "shape": attribution.shape});
        if let Some(delta) = answer.convergence_delta {
            output["convergence_delta"] = json!(delta);
            output["convergence_deltas"] = json!(answer.convergence_deltas);
        }
        if answer.n_steps > 0 {
            output["n_steps"] = json!(answer.n_steps);
        }
        output["rows_evaluated"] = json!(answer.rows_evaluated);
        output["passes"] = json!(answer.passes);
        if !answer.extra_attributions.is_empty() {
            output["shapes"] = json!(all_attributions.iter().map(|tensor| tensor.shape.clone()).collect::<Vec<_>>());
        }
        match args.out.len() {
            0 => {}
            1 => output["out"] = json!(args.out[0].display().to_string()),
            _ => output["out"] = json!(args.out.iter().map(|path| path.display().to_string()).collect::<Vec<_>>()),
        }
        if let Some(path) = &explain.figure {
            output["figure"] = json!(path.display().to_string());
        }
        outln!("{output}")?;
    } else {
        outln!("{} for target {} of model {}: shape {:?}", answer.method, target, &answer.model_id[..12], attribution.shape)?;
        if let Some(delta) = answer.convergence_delta {
            outln!("convergence delta (largest over the batch): {delta:.3e}")?;
        }
        if answer.n_steps > 0 {
            outln!("steps: {}", answer.n_steps)?;
        }
        for path in &args.out {
            outln!("attribution written to {}", crate::open::absolute(path))?;
        }
        explain.print_figure_path()?;
    }
    Ok(())
}

pub async fn compare(client: &Client, args: CompareArgs, as_json: bool) -> anyhow::Result<()> {
    let explain = &args.explain;
    let all_params = key_values(&explain.params, "--param")?;
    let mut base = explain.request("", HashMap::new())?;
    base.params.clear();
    let mut methods = Vec::new();
    for method in &args.methods {
        // Options without a method prefix go to every method; METHOD.KEY options go
        // to that method alone.
        let mut params = HashMap::new();
        for (key, value) in &all_params {
            match key.split_once('.') {
                Some((prefix, rest)) if args.methods.iter().any(|name| name == prefix) => {
                    if prefix == method {
                        params.insert(rest.to_string(), value.clone());
                    }
                }
                _ => {
                    params.insert(key.clone(), value.clone());
                }
            }
        }
        // The layer travels once, in the base: the daemon's method table decides which
        // methods use it.
        methods.push(proto::MethodSpec { method: method.clone(), params, tensor_params: Default::default(), layer: String::new() });
    }
    let answer = client.compare(proto::CompareRequest { base: Some(base), methods }).await.with_context(|| explain.label(&args.methods.join(",")))?;
    explain.write_figure(answer.figure.as_ref())?;
    if as_json {
        let rows: Vec<Value> = answer
            .attributions
            .iter()
            .map(|attribution| {
                json!({"method": attribution.method, "target": target_json(&attribution.targets),
                       "shape": attribution.attribution.as_ref().map(|tensor| tensor.shape.clone())})
            })
            .collect();
        let mut output = json!({"methods": rows});
        if let Some(path) = &explain.figure {
            output["figure"] = json!(path.display().to_string());
        }
        outln!("{output}")?;
    } else {
        for attribution in &answer.attributions {
            outln!("{}: target {}", attribution.method, target_json(&attribution.targets))?;
        }
        explain.print_figure_path()?;
    }
    Ok(())
}

pub async fn evaluate(client: &Client, args: EvaluateArgs, as_json: bool) -> anyhow::Result<()> {
    let explain = &args.explain;
    let attribution = explain.request(&args.method, key_values(&explain.params, "--param")?)?;
    let answer = client
        .evaluate(proto::EvaluateRequest {
            attribution: Some(attribution),
            metrics: args.metrics.clone(),
            params: key_values(&args.metric_params, "--metric-param")?,
        })
        .await
        .with_context(|| explain.label(&args.method))?;
    if as_json {
        let mut output = json!({"method": args.method});
        if !answer.infidelity.is_empty() {
            output["infidelity"] = json!(answer.infidelity);
        }
        if !answer.sensitivity_max.is_empty() {
            output["sensitivity_max"] = json!(answer.sensitivity_max);
        }
        outln!("{output}")?;
    } else {
        if !answer.infidelity.is_empty() {
            outln!("infidelity per row: {:?}", answer.infidelity)?;
        }
        if !answer.sensitivity_max.is_empty() {
            outln!("sensitivity_max per row: {:?}", answer.sensitivity_max)?;
        }
    }
    Ok(())
}

pub async fn sanity_check(client: &Client, args: SanityCheckArgs, as_json: bool) -> anyhow::Result<()> {
    let explain = &args.explain;
    let attribution = explain.request(&args.method, key_values(&explain.params, "--param")?)?;
    let answer = client
        .sanity_check(proto::SanityCheckRequest { attribution: Some(attribution), seed: args.seed, signed: args.signed })
        .await
        .with_context(|| explain.label(&args.method))?;
    explain.write_figure(answer.figure.as_ref())?;
    if as_json {
        let steps: Vec<Value> = answer
            .steps
            .iter()
            .map(|step| json!({"layer": step.layer, "spearman": step.spearman, "spearman_per_row": step.spearman_per_row}))
            .collect();
        let mut output = json!({"method": args.method, "steps": steps});
        if let Some(path) = &explain.figure {
            output["figure"] = json!(path.display().to_string());
        }
        outln!("{output}")?;
    } else {
        outln!("{:<32} {:>10}", "randomised down to", "spearman")?;
        for step in &answer.steps {
            outln!("{:<32} {:>10.3}", step.layer, step.spearman)?;
        }
        explain.print_figure_path()?;
    }
    Ok(())
}
