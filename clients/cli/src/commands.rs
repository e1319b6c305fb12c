//! The CLI's commands: each builds a request, calls the daemon through
//! `layerlens-client`, and prints plain text or, with `--json`, the JSON of CONTRACT.md.

use crate::npy;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use layerlens_client::{Client, FigureFormat};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(name = "layerlens", version, about = "Explain PyTorch models served by layerlensd")]
pub struct Cli {
    /// Daemon address.
    #[arg(long, global = true, env = "LAYERLENS_ADDR", default_value = layerlens_client::DEFAULT_ADDR)]
    addr: String,
    /// Access token, sent as `authorization: Bearer <token>`.
    #[arg(long, global = true, env = "LAYERLENS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store, list and delete models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The module tree with parameter counts.
    Summary {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
        /// Shape of one input, e.g. 1,3,224,224.
        #[arg(long)]
        input_shape: Option<Shape>,
        /// Show rows down to this depth only.
        #[arg(long)]
        depth: Option<u32>,
        /// Write the summary figure (SVG).
        #[arg(long)]
        figure: Option<PathBuf>,
    },
    /// Attribution of one output to the input.
    Attribute {
        model: String,
        /// Input tensor (.npy, float32), shaped as the model takes it; repeat for a
        /// model with several inputs.
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// Method name: saliency, input_x_gradient, integrated_gradients, smoothgrad,
        /// smoothgrad_sq, vargrad, gradient_shap, occlusion, feature_ablation.
        #[arg(long)]
        method: String,
        /// Output index to explain; default: the predicted class.
        #[arg(long)]
        target: Option<i64>,
        /// One target per batch row, comma-separated (overrides --target).
        #[arg(long)]
        targets: Option<Shape>,
        /// Baseline tensor (.npy) for the first input (Captum's `baselines`).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Integration steps (Captum's `n_steps`); `auto` adapts them.
        #[arg(long)]
        steps: Option<String>,
        /// Module path for layer methods.
        #[arg(long)]
        layer: Option<String>,
        /// Further options under Captum's names, KEY=VALUE (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Tensor options from .npy files, KEY=FILE (repeatable): feature_mask,
        /// baselines.1, noise, ...
        #[arg(long = "tensor-param", value_name = "KEY=FILE")]
        tensor_params: Vec<String>,
        /// Write the attribution as float32 .npy; repeat once per input.
        #[arg(long)]
        out: Vec<PathBuf>,
        /// Write the figure; .png or .svg.
        #[arg(long)]
        figure: Option<PathBuf>,
        /// How to draw: heat_map, blended_heat_map, masked_image, alpha_scaling, original_image.
        #[arg(long)]
        figure_method: Option<String>,
        /// Which attributions to draw: absolute_value, positive, negative, all.
        #[arg(long)]
        figure_sign: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Store a TorchScript file.
    Add {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Shape of one example input, e.g. 1,1,8,8; lets the daemon check inputs.
        #[arg(long)]
        input_shape: Option<Shape>,
    },
    /// List stored models.
    List,
    /// Delete a model.
    Rm { model: String },
}

/// A tensor shape written as comma-separated integers: `1,3,224,224`.
#[derive(Debug, Clone)]
struct Shape(Vec<i64>);

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Shape, String> {
        text.split(',')
            .map(|dim| dim.trim().parse::<i64>().map_err(|_| format!("'{text}' is not a comma-separated list of integers")))
            .collect::<Result<_, _>>()
            .map(Shape)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::connect(&cli.addr, cli.token.as_deref()).await?;
    match cli.command {
        Command::Models(command) => models(&client, command, cli.json).await,
        Command::Summary { model, input_shape, depth, figure } => {
            summary(&client, &model, input_shape.map(|shape| shape.0).unwrap_or_default(), depth, figure.as_deref(), cli.json).await
        }
        Command::Attribute {
            model, input, method, target, targets, baseline, steps, layer, params, tensor_params, out, figure, figure_method, figure_sign,
        } => {
            let options = AttributeOptions {
                model, inputs: input, method, target, targets: targets.map(|shape| shape.0), baseline, steps, layer,
                params, tensor_params, out, figure, figure_method, figure_sign,
            };
            attribute(&client, options, cli.json).await
        }
    }
}

async fn models(client: &Client, command: ModelsCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Add { file, name, input_shape } => {
            let info = client
                .upload_file(&file, name.as_deref(), &input_shape.map(|shape| shape.0).unwrap_or_default())
                .await
                .with_context(|| format!("adding {}", file.display()))?;
            if as_json {
                println!("{}", json!({"id": info.id, "name": name}));
            } else {
                println!("{}", info.id);
            }
        }
        ModelsCommand::List => {
            let models = client.list_models().await?;
            if as_json {
                let rows: Vec<Value> = models
                    .iter()
                    .map(|model| {
                        json!({"id": model.id, "name": model.names.first(), "names": model.names,
                               "size_bytes": model.size_bytes, "resident": model.resident,
                               "input_shape": model.input_shape})
                    })
                    .collect();
                println!("{}", Value::Array(rows));
            } else {
                println!("{:<14} {:<20} {:>12}  resident", "id", "name", "bytes");
                for model in models {
                    println!(
                        "{:<14} {:<20} {:>12}  {}",
                        &model.id[..12],
                        model.names.join(","),
                        model.size_bytes,
                        if model.resident { "yes" } else { "no" }
                    );
                }
            }
        }
        ModelsCommand::Rm { model } => {
            let id = client.delete_model(&model).await.with_context(|| format!("deleting {model}"))?;
            if as_json {
                println!("{}", json!({"id": id}));
            } else {
                println!("{id}");
            }
        }
    }
    Ok(())
}

async fn summary(
    client: &Client,
    model: &str,
    input_shape: Vec<i64>,
    depth: Option<u32>,
    figure: Option<&Path>,
    as_json: bool,
) -> anyhow::Result<()> {
    let request = proto::SummaryRequest {
        model: model.to_string(),
        input_shape,
        depth: depth.unwrap_or(0),
        figure_format: if figure.is_some() { FigureFormat::Svg } else { FigureFormat::None } as i32,
    };
    let answer = client.summary(request).await.with_context(|| format!("summary of {model}"))?;
    if let (Some(path), Some(rendered)) = (figure, &answer.figure) {
        std::fs::write(path, &rendered.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if as_json {
        let rows: Vec<Value> = answer
            .rows
            .iter()
            .map(|row| {
                // Output shapes come with the structure work; until then they are null.
                let output_shape = match row.output_shapes.as_slice() {
                    [] => Value::Null,
                    [one] => json!(one.dims),
                    many => json!(many.iter().map(|shape| shape.dims.clone()).collect::<Vec<_>>()),
                };
                json!({"path": row.path, "type": row.type_name, "depth": row.depth,
                       "output_shape": output_shape, "num_params": row.num_params,
                       "trainable_params": row.trainable_params, "mult_adds": row.mult_adds})
            })
            .collect();
        println!(
            "{}",
            json!({"rows": rows, "total_params": answer.total_params,
                   "trainable_params": answer.trainable_params, "total_mult_adds": answer.total_mult_adds})
        );
    } else {
        println!("{:<48} {:>12}", "Layer (type)", "Param #");
        for row in &answer.rows {
            let name = if row.path.is_empty() { "(root)" } else { row.path.rsplit('.').next().unwrap_or(&row.path) };
            let label = format!("{}{} ({})", "  ".repeat(row.depth as usize), name, row.type_name);
            println!("{label:<48} {:>12}", row.num_params);
        }
        println!("Total params: {}", answer.total_params);
        println!("Trainable params: {}", answer.trainable_params);
        println!("Non-trainable params: {}", answer.total_params - answer.trainable_params);
    }
    Ok(())
}

struct AttributeOptions {
    model: String,
    inputs: Vec<PathBuf>,
    method: String,
    target: Option<i64>,
    targets: Option<Vec<i64>>,
    baseline: Option<PathBuf>,
    steps: Option<String>,
    layer: Option<String>,
    params: Vec<String>,
    tensor_params: Vec<String>,
    out: Vec<PathBuf>,
    figure: Option<PathBuf>,
    figure_method: Option<String>,
    figure_sign: Option<String>,
}

fn read_tensor(path: &Path) -> anyhow::Result<proto::Tensor> {
    let (shape, values) = npy::read_f32(path)?;
    Ok(proto::Tensor::from_f32(&shape, &values))
}

async fn attribute(client: &Client, options: AttributeOptions, as_json: bool) -> anyhow::Result<()> {
    let mut inputs = options.inputs.iter().map(|path| read_tensor(path)).collect::<anyhow::Result<Vec<_>>>()?;
    if !options.out.is_empty() && options.out.len() != inputs.len() {
        bail!("--out was given {} times for {} inputs; give one per input", options.out.len(), inputs.len());
    }
    let mut params = std::collections::HashMap::new();
    for param in &options.params {
        let Some((key, value)) = param.split_once('=') else {
            bail!("--param {param}: expected KEY=VALUE");
        };
        params.insert(key.to_string(), value.to_string());
    }
    if let Some(steps) = &options.steps {
        params.insert("n_steps".to_string(), steps.clone());
    }
    let mut tensor_params = std::collections::HashMap::new();
    for param in &options.tensor_params {
        let Some((key, path)) = param.split_once('=') else {
            bail!("--tensor-param {param}: expected KEY=FILE.npy");
        };
        tensor_params.insert(key.to_string(), read_tensor(Path::new(path))?);
    }
    if let Some(path) = &options.baseline {
        tensor_params.insert("baselines".to_string(), read_tensor(path)?);
    }
    let figure_format = match &options.figure {
        None => FigureFormat::None,
        Some(path) => match path.extension().and_then(|ext| ext.to_str()) {
            Some("png") => FigureFormat::Png,
            Some("svg") => FigureFormat::Svg,
            _ => bail!("--figure {}: the file name must end in .png or .svg", path.display()),
        },
    };
    let first_input = inputs.remove(0);
    let request = proto::AttributeRequest {
        model: options.model.clone(),
        input: Some(first_input),
        method: options.method.clone(),
        target: options.target,
        params,
        figure_format: figure_format as i32,
        extra_inputs: inputs,
        tensor_params,
        targets: options.targets.clone().unwrap_or_default(),
        layer: options.layer.clone().unwrap_or_default(),
        figure_options: Some(proto::FigureOptions {
            method: options.figure_method.clone().unwrap_or_default(),
            sign: options.figure_sign.clone().unwrap_or_default(),
            outlier_percent: None,
        }),
    };
    let input_label = options.inputs[0].display();
    let answer = client
        .attribute(request)
        .await
        .with_context(|| format!("{} of {} on {input_label}", options.method, options.model))?;
    let attribution = answer.attribution.clone().context("the daemon answered without an attribution")?;
    let all_attributions: Vec<&proto::Tensor> = std::iter::once(&attribution).chain(answer.extra_attributions.iter()).collect();
    for (path, tensor) in options.out.iter().zip(&all_attributions) {
        let values = tensor.to_f32().context("the daemon's attribution")?;
        npy::write_f32(path, &tensor.shape, &values)?;
    }
    if let Some(path) = &options.figure {
        let rendered = answer.figure.as_ref().context("the daemon answered without a figure")?;
        std::fs::write(path, &rendered.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let target = match answer.targets.as_slice() {
        [first, rest @ ..] if rest.iter().all(|target| target == first) => json!(first),
        many => json!(many),
    };
    if as_json {
        let mut output = json!({"method": answer.method, "target": target, "shape": attribution.shape});
        if let Some(delta) = answer.convergence_delta {
            output["convergence_delta"] = json!(delta);
            output["convergence_deltas"] = json!(answer.convergence_deltas);
        }
        if answer.n_steps > 0 {
            output["n_steps"] = json!(answer.n_steps);
        }
        output["n_passes"] = json!(answer.n_passes);
        if !answer.extra_attributions.is_empty() {
            output["shapes"] = json!(all_attributions.iter().map(|tensor| tensor.shape.clone()).collect::<Vec<_>>());
        }
        match options.out.len() {
            0 => {}
            1 => output["out"] = json!(options.out[0].display().to_string()),
            _ => output["out"] = json!(options.out.iter().map(|path| path.display().to_string()).collect::<Vec<_>>()),
        }
        if let Some(path) = &options.figure {
            output["figure"] = json!(path.display().to_string());
        }
        println!("{output}");
    } else {
        println!("{} for target {} of model {}: shape {:?}", answer.method, target, &answer.model_id[..12], attribution.shape);
        if let Some(delta) = answer.convergence_delta {
            println!("convergence delta (largest over the batch): {delta:.3e}");
        }
        for path in &options.out {
            println!("attribution written to {}", path.display());
        }
        if let Some(path) = &options.figure {
            println!("figure written to {}", path.display());
        }
    }
    Ok(())
}
