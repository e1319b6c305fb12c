//! The CLI's commands: each builds a request, calls the daemon through
//! `layerlens-client`, and prints plain text or, with `--json`, the JSON of CONTRACT.md.
//!
//! Every numeric flag accepts a leading minus, so that `--target -1` or `--steps -4`
//! reaches the daemon, which names what is wrong with the value, instead of clap
//! refusing it as an unknown flag with a usage dump. Integer flags carry
//! `allow_negative_numbers`. Float flags and comma-separated lists (`Shape`,
//! `value_delimiter` flags) carry `allow_hyphen_values`, because clap's negative-number
//! test takes neither a negative exponent (`-1e-3`) nor a list (`-1,3`) and would read
//! them as flags. The tests at the end of this file hold every numeric flag to this.

use crate::output::outln;
use crate::shape::Shape;
use anyhow::Context;
use clap::{Parser, Subcommand};
use layerlens_client::{Client, FigureFormat};
use layerlens_proto as proto;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "layerlens",
    version,
    about = "Explain PyTorch models served by layerlensd",
    after_help = "Examples:\n  layerlens models add model.pt --name mine --input-shape 1,3,224,224\n  layerlens summary mine\n  layerlens attribute mine --input x.npy --method integrated_gradients --figure ig.png\n  layerlens open ig.png\n  layerlens completions bash > ~/.local/share/bash-completion/completions/layerlens\n\nEvery command takes --json; MODEL is a name, a full id or an id prefix of 8+ hex characters."
)]
pub struct Cli {
    // The global flags come last in every command's help (display_order), after the
    // command's own; the address's value stays out of --help like the token's, so that
    // help text does not depend on the environment.
    /// Daemon address.
    #[arg(long, global = true, env = "LAYERLENS_ADDR", hide_env_values = true, default_value = layerlens_client::DEFAULT_ADDR, display_order = 100)]
    addr: String,
    /// Access token, sent as `authorization: Bearer <token>`.
    #[arg(long, global = true, env = "LAYERLENS_TOKEN", hide_env_values = true, display_order = 101)]
    token: Option<String>,
    /// PEM file of the CA that signed an https:// daemon's certificate (default: the
    /// system's root certificates).
    #[arg(long, global = true, env = "LAYERLENS_TLS_CA", hide_env_values = true, display_order = 101)]
    tls_ca: Option<PathBuf>,
    /// Queue priority of this command's requests: batch requests wait behind
    /// interactive ones (use it for sweeps and CI jobs).
    #[arg(long, global = true, env = "LAYERLENS_PRIORITY", hide_env_values = true, value_parser = ["interactive", "batch"], display_order = 101)]
    priority: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true, display_order = 102)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store, list and delete models.
    #[command(
        subcommand,
        after_help = "Examples:\n  layerlens models add model.pt --name mine --input-shape 1,3,224,224\n  layerlens models list\n  layerlens models rm mine"
    )]
    Models(ModelsCommand),
    /// The module tree with parameter counts.
    #[command(
        after_help = "Examples:\n  layerlens summary digits\n  layerlens summary resnet --input-shape 1,3,224,224 --depth 2\n  layerlens summary two-input --input-shape 1,1,6,6 --input-shape 1,3 --figure summary.svg\n  layerlens --json summary digits --input-shape 1,1,8,8"
    )]
    Summary {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
        /// Shape of an input, e.g. 1,3,224,224; repeat it for a model with several
        /// inputs, in forward's order.
        #[arg(long, allow_hyphen_values = true)]
        input_shape: Vec<Shape>,
        /// Show rows down to this depth only (torchinfo's `depth`).
        #[arg(long, allow_negative_numbers = true)]
        depth: Option<u32>,
        /// Element type of the sample inputs: float32 (default) or int64 (token ids);
        /// once for every input, or once per --input-shape.
        #[arg(long)]
        input_dtype: Vec<String>,
        /// Write the summary figure (SVG).
        #[arg(long)]
        figure: Option<PathBuf>,
    },
    /// Statistics and histograms of every parameter tensor.
    Params(crate::inspect::ParamsArgs),
    /// Load generator: concurrent clients, throughput, latency and the daemon's time per phase.
    Bench(crate::bench::BenchArgs),
    /// Per-layer activation statistics for an input, and an anomaly report.
    Activations(crate::inspect::ActivationsArgs),
    /// The model's output with the top-k classes and probabilities.
    Predict(crate::inspect::PredictArgs),
    /// The forward pass as boxes and arrows with tensor shapes (SVG or PNG).
    #[command(
        after_help = "Examples:\n  layerlens graph digits --input-shape 1,1,8,8 --figure graph.svg\n  layerlens graph resnet --input-shape 1,3,224,224 --depth 1 --collapse-repeats --figure graph.png"
    )]
    Graph {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
        /// Shape of an input, e.g. 1,3,224,224; repeat it for a model with several
        /// inputs, in forward's order. Default: the shape stored with the model.
        #[arg(long, allow_hyphen_values = true)]
        input_shape: Vec<Shape>,
        /// float32 (default) or int64 (token ids); once for every input, or once per
        /// --input-shape.
        #[arg(long)]
        input_dtype: Vec<String>,
        /// Fold module calls deeper than this into one box (default: every op).
        #[arg(long, allow_negative_numbers = true)]
        depth: Option<u32>,
        /// Fold runs of identical blocks into one box marked ×N.
        #[arg(long)]
        collapse_repeats: bool,
        /// Show this module call open, as a frame around its contents, and fold every
        /// call not named into one box; repeat it to open several (e.g. --open layer1
        /// --open layer1.0).
        #[arg(long, value_name = "PATH")]
        open: Vec<String>,
        /// Where to write the figure; .svg or .png.
        #[arg(long)]
        figure: PathBuf,
    },
    /// Attribution of one output to the input.
    Attribute(crate::attribution::AttributeArgs),
    /// Several attribution methods on one input, side by side.
    Compare(crate::attribution::CompareArgs),
    /// Faithfulness of an attribution: infidelity, sensitivity_max.
    Evaluate(crate::attribution::EvaluateArgs),
    /// Model-parameter randomisation test of an attribution method (Adebayo et al. 2018).
    SanityCheck(crate::attribution::SanityCheckArgs),
    /// Synthesize inputs that maximise a class, channel or neuron (feature visualisation).
    Generate(crate::generate::GenerateArgs),
    /// The smallest change to an input that makes the model predict a chosen class.
    Counterfactual(crate::generate::CounterfactualArgs),
    /// Vary latent dimensions of a generator model (or interpolate) and render the grid.
    Traverse(crate::generate::TraverseArgs),
    /// A causal language model's continuation of a prompt, printed as it is generated.
    GenerateText(crate::text::GenerateTextArgs),
    /// Which prompt tokens (or template values) drove a language model's continuation
    /// or a classifier's class (Captum's LLMAttribution).
    AttributeText(crate::text::AttributeTextArgs),
    /// Store and list training checkpoints of a model.
    #[command(subcommand, after_help = "Examples:\n  layerlens checkpoints add digits ckpt.pt\n  layerlens checkpoints list digits")]
    Checkpoints(crate::training::CheckpointsCommand),
    /// What the optimiser does to each parameter, from a checkpoint's state: the last
    /// update, update:weight ratios, effective learning rates, and an anomaly report.
    Optimizer(crate::training::OptimizerArgs),
    /// The loss around a checkpoint along filter-normalised random directions (1-D or
    /// 2-D), or the plane of a training trajectory's top-2 PCA directions.
    Landscape(crate::training::LandscapeArgs),
    /// How far each layer's weights moved between two checkpoints.
    WeightChange(crate::training::WeightChangeArgs),
    /// Training runs sent by `layerlens.watch` in Python.
    #[command(
        subcommand,
        after_help = "Examples:\n  layerlens runs list\n  layerlens runs show exp1\n  layerlens runs figure exp1 --figure ratios.png"
    )]
    Runs(crate::training::RunsCommand),
    /// The daemon's version, uptime, device, resident models (memory, queued
    /// requests) and result cache.
    #[command(after_help = "Examples:\n  layerlens status\n  layerlens --json status")]
    Status,
    /// The attribution methods the daemon serves, with their options.
    #[command(after_help = "Examples:\n  layerlens methods\n  layerlens --json methods")]
    Methods,
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Examples:\n  layerlens completions bash > ~/.local/share/bash-completion/completions/layerlens\n  layerlens completions zsh > ~/.zfunc/_layerlens     # with fpath+=(~/.zfunc) in ~/.zshrc\n  layerlens completions fish > ~/.config/fish/completions/layerlens.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Open a figure with xdg-open (open on macOS) and print its absolute path; on a
    /// machine without a display, print the path only.
    #[command(
        after_help = "Examples:\n  layerlens attribute digits --input x.npy --method saliency --figure saliency.png\n  layerlens open saliency.png"
    )]
    Open {
        /// The file to open.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Store a TorchScript file.
    #[command(
        after_help = "Examples:\n  layerlens models add model.pt --name mine --input-shape 1,3,224,224\n  layerlens --json models add model.pt"
    )]
    Add {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Shape of one example input, e.g. 1,1,8,8; lets the daemon check inputs.
        #[arg(long, allow_hyphen_values = true)]
        input_shape: Option<Shape>,
        /// The model's tokenizer (a Hugging Face tokenizer.json), for the text commands.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    /// List stored models.
    #[command(after_help = "Examples:\n  layerlens models list\n  layerlens --json models list")]
    List,
    /// Delete a model.
    #[command(after_help = "Examples:\n  layerlens models rm mine\n  layerlens models rm 3f2a9c1e")]
    Rm {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
    },
    /// Keep a model resident: it loads now and is never evicted to make room for
    /// another under the daemon's memory budget (admin only; survives restarts).
    #[command(after_help = "Examples:\n  layerlens models pin digits")]
    Pin {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
    },
    /// Let a pinned model be evicted again (admin only).
    #[command(after_help = "Examples:\n  layerlens models unpin digits")]
    Unpin {
        /// Id, id prefix (8+ hex characters) or name.
        model: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that need no daemon run without connecting, so they work offline.
    let command = match cli.command {
        Command::Completions { shell } => return completions(shell),
        Command::Open { file } => return crate::open::open(&file, cli.json),
        // The load generator opens one connection per client.
        Command::Bench(args) => {
            let (addr, token, tls_ca, priority) = (cli.addr.clone(), cli.token.clone(), cli.tls_ca.clone(), cli.priority.clone());
            let connect = move || -> crate::bench::ConnectFuture {
                let (addr, token, tls_ca, priority) = (addr.clone(), token.clone(), tls_ca.clone(), priority.clone());
                Box::pin(async move { Ok(Client::connect_with_priority(&addr, token.as_deref(), tls_ca.as_deref(), priority.as_deref()).await?) })
            };
            return crate::bench::bench(&cli.addr, connect, args, cli.json).await;
        }
        command => command,
    };
    let client = Client::connect_with_priority(&cli.addr, cli.token.as_deref(), cli.tls_ca.as_deref(), cli.priority.as_deref()).await?;
    match command {
        Command::Completions { .. } | Command::Open { .. } | Command::Bench(_) => Ok(()),
        Command::Models(command) => models(&client, command, cli.json).await,
        Command::Summary { model, input_shape, depth, input_dtype, figure } => {
            let inputs = sample_inputs(input_shape, &input_dtype)?;
            summary(&client, &model, inputs, depth, figure.as_deref(), cli.json).await
        }
        Command::Graph { model, input_shape, input_dtype, depth, collapse_repeats, open, figure } => {
            let inputs = sample_inputs(input_shape, &input_dtype)?;
            let view = (!open.is_empty()).then(|| proto::GraphView { open, unfold_repeats: Vec::new() });
            graph(&client, &model, inputs, GraphFolding { depth, collapse_repeats, view }, &figure, cli.json).await
        }
        Command::Params(args) => crate::inspect::params(&client, args, cli.json).await,
        Command::Activations(args) => crate::inspect::activations(&client, args, cli.json).await,
        Command::Predict(args) => crate::inspect::predict(&client, args, cli.json).await,
        Command::Attribute(args) => crate::attribution::attribute(&client, args, cli.json).await,
        Command::Compare(args) => crate::attribution::compare(&client, args, cli.json).await,
        Command::Evaluate(args) => crate::attribution::evaluate(&client, args, cli.json).await,
        Command::SanityCheck(args) => crate::attribution::sanity_check(&client, args, cli.json).await,
        Command::Generate(args) => crate::generate::generate(&client, args, cli.json).await,
        Command::Counterfactual(args) => crate::generate::counterfactual(&client, args, cli.json).await,
        Command::Traverse(args) => crate::generate::traverse(&client, args, cli.json).await,
        Command::GenerateText(args) => crate::text::generate_text(&client, args, cli.json).await,
        Command::AttributeText(args) => crate::text::attribute_text(&client, args, cli.json).await,
        Command::Checkpoints(command) => crate::training::checkpoints(&client, command, cli.json).await,
        Command::Optimizer(args) => crate::training::optimizer(&client, args, cli.json).await,
        Command::Landscape(args) => crate::training::landscape(&client, args, cli.json).await,
        Command::WeightChange(args) => crate::training::weight_change(&client, args, cli.json).await,
        Command::Runs(command) => crate::training::runs(&client, command, cli.json).await,
        Command::Status => status(&client, cli.json).await,
        Command::Methods => methods(&client, cli.json).await,
    }
}

/// The daemon's method table: name, kind (layer or input), sampling, options.
async fn methods(client: &Client, as_json: bool) -> anyhow::Result<()> {
    let answer = client.methods().await.context("listing the attribution methods")?;
    if as_json {
        let rows: Vec<Value> = answer
            .methods
            .iter()
            .map(|method| {
                json!({"name": method.name, "summary": method.summary, "options": method.options, "layer": method.layer,
                       "sampling": method.sampling, "batchable": method.batchable})
            })
            .collect();
        outln!("{}", Value::Array(rows))?;
        return Ok(());
    }
    for method in &answer.methods {
        let kind = if method.layer { "layer" } else { "input" };
        let sampling = if method.sampling { ", samples (pass --param seed=N to repeat)" } else { "" };
        outln!("{:<28} {kind}{sampling}: {}", method.name, method.summary)?;
        if !method.options.is_empty() {
            outln!("{:<28} options: {}", "", method.options.join(", "))?;
        }
    }
    Ok(())
}

/// `layerlens status`: one line about the daemon, one about its cache, then a table
/// of resident models.
async fn status(client: &Client, as_json: bool) -> anyhow::Result<()> {
    let status = client.status().await?;
    let cache = status.cache.unwrap_or_default();
    if as_json {
        let models: Vec<Value> = status
            .models
            .iter()
            .map(|model| {
                json!({"id": model.id, "names": model.names, "resident_bytes": model.resident_bytes, "in_flight": model.in_flight,
                       "queued": model.queued, "pinned": model.pinned, "ready": model.ready, "idle_seconds": model.idle_seconds,
                       "kind": model.kind})
            })
            .collect();
        let memory = status.memory.unwrap_or_default();
        let queue = status.queue.unwrap_or_default();
        outln!(
            "{}",
            json!({
                "version": status.version, "uptime_seconds": status.uptime_seconds, "device": status.device,
                "resident_bytes": status.resident_bytes, "models": models,
                "cache": {"capacity_bytes": cache.capacity_bytes, "size_bytes": cache.size_bytes, "entries": cache.entries,
                          "hits": cache.hits, "misses": cache.misses},
                "memory": {"budget_bytes": memory.budget_bytes, "used_bytes": memory.used_bytes, "evictions": memory.evictions},
                "queue": {"max_queue": queue.max_queue, "max_batch_size": queue.max_batch_size, "max_batch_delay_ms": queue.max_batch_delay_ms},
            })
        )?;
        return Ok(());
    }
    outln!("layerlensd {} on {}, up {}", status.version, status.device, human_duration(status.uptime_seconds))?;
    if cache.capacity_bytes == 0 {
        outln!("result cache: off")?;
    } else {
        outln!(
            "result cache: {} answers, {} of {}; {} hits, {} misses",
            cache.entries,
            human_bytes(cache.size_bytes),
            human_bytes(cache.capacity_bytes),
            cache.hits,
            cache.misses
        )?;
    }
    let memory = status.memory.unwrap_or_default();
    let budget = if memory.budget_bytes == 0 { "no budget".to_string() } else { format!("budget {}", human_bytes(memory.budget_bytes)) };
    outln!("resident models: {} ({}; {budget}; {} evictions)", status.models.len(), human_bytes(status.resident_bytes), memory.evictions)?;
    if let Some(queue) = &status.queue {
        outln!("queues: {} per model; batches of up to {} within {} ms", queue.max_queue, queue.max_batch_size, queue.max_batch_delay_ms)?;
    }
    if !status.models.is_empty() {
        outln!("{:<14} {:<20} {:>12}  {:>9}  {:>6}  state", "id", "names", "resident", "in flight", "queued")?;
        for model in &status.models {
            let state = match (model.ready, model.pinned) {
                (false, _) => "loading",
                (true, true) => "ready, pinned",
                (true, false) => "ready",
            };
            outln!(
                "{:<14} {:<20} {:>12}  {:>9}  {:>6}  {state} ({})",
                &model.id[..12.min(model.id.len())],
                model.names.join(","),
                human_bytes(model.resident_bytes),
                model.in_flight,
                model.queued,
                model.kind
            )?;
        }
    }
    Ok(())
}

/// 1536 → `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 3725.2 → `1h 2m 5s`.
fn human_duration(seconds: f64) -> String {
    let total = seconds as u64;
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m {seconds}s"),
        _ => format!("{hours}h {minutes}m {seconds}s"),
    }
}

/// The completion script for `shell` on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "layerlens", &mut script);
    crate::output::write_stdout(&script).context("cannot write the completion script")
}

async fn models(client: &Client, command: ModelsCommand, as_json: bool) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Add { file, name, input_shape, tokenizer } => {
            // The tokenizer is read first, so a wrong path fails before the upload.
            let tokenizer = match &tokenizer {
                Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?),
                None => None,
            };
            let info = client
                .upload_file(&file, name.as_deref(), &input_shape.map(|shape| shape.0).unwrap_or_default())
                .await
                .with_context(|| format!("adding {}", file.display()))?;
            if let Some(tokenizer) = tokenizer {
                client.set_tokenizer(&info.id, tokenizer).await.context("storing the tokenizer")?;
            }
            if as_json {
                outln!("{}", json!({"id": info.id, "name": name, "kind": info.format, "input_shape": info.input_shape}))?;
            } else {
                outln!("{}", info.id)?;
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
                               "pinned": model.pinned, "input_shape": model.input_shape, "kind": model.format})
                    })
                    .collect();
                outln!("{}", Value::Array(rows))?;
            } else {
                outln!("{:<14} {:<20} {:<12} {:>12}  resident", "id", "name", "kind", "bytes")?;
                for model in models {
                    outln!(
                        "{:<14} {:<20} {:<12} {:>12}  {}{}",
                        &model.id[..12],
                        model.names.join(","),
                        model.format,
                        model.size_bytes,
                        if model.resident { "yes" } else { "no" },
                        if model.pinned { ", pinned" } else { "" }
                    )?;
                }
            }
        }
        ModelsCommand::Rm { model } => {
            let id = client.delete_model(&model).await.with_context(|| format!("deleting {model}"))?;
            if as_json {
                outln!("{}", json!({"id": id}))?;
            } else {
                outln!("{id}")?;
            }
        }
        ModelsCommand::Pin { model } => {
            let info = client.pin_model(&model).await.with_context(|| format!("pinning {model}"))?;
            print_pin(&info, as_json)?;
        }
        ModelsCommand::Unpin { model } => {
            let info = client.unpin_model(&model).await.with_context(|| format!("unpinning {model}"))?;
            print_pin(&info, as_json)?;
        }
    }
    Ok(())
}

fn print_pin(info: &layerlens_client::ModelInfo, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        outln!("{}", json!({"id": info.id, "pinned": info.pinned, "resident": info.resident}))
    } else {
        outln!("{} {}", info.id, if info.pinned { "pinned" } else { "unpinned" })
    }
}

/// `--input-shape` (repeated) and `--input-dtype` (once for all, or once per shape).
fn sample_inputs(shapes: Vec<Shape>, dtypes: &[String]) -> anyhow::Result<Vec<proto::SampleInput>> {
    if dtypes.len() > 1 && dtypes.len() != shapes.len() {
        anyhow::bail!("{} --input-dtype values for {} --input-shape values: give one for every input, or one per shape", dtypes.len(), shapes.len());
    }
    shapes
        .into_iter()
        .enumerate()
        .map(|(index, shape)| {
            let dtype = dtypes.get(index).or(dtypes.first()).map(|text| parse_dtype(text)).transpose()?.unwrap_or(proto::Dtype::Float32);
            Ok(proto::SampleInput { shape: shape.0, dtype: dtype as i32 })
        })
        .collect()
}

/// The first sample input goes in the request's own fields, the rest in `extra_inputs`.
fn split_inputs(mut inputs: Vec<proto::SampleInput>) -> (Vec<i64>, i32, Vec<proto::SampleInput>) {
    if inputs.is_empty() {
        return (Vec::new(), proto::Dtype::Float32 as i32, Vec::new());
    }
    let first = inputs.remove(0);
    (first.shape, first.dtype, inputs)
}

fn parse_dtype(text: &str) -> anyhow::Result<proto::Dtype> {
    match text {
        "float32" => Ok(proto::Dtype::Float32),
        "int64" => Ok(proto::Dtype::Int64),
        other => anyhow::bail!("--input-dtype {other}: expected float32 or int64"),
    }
}

/// What `graph` folds: calls below a depth, runs of repeats, calls not held open.
struct GraphFolding {
    depth: Option<u32>,
    collapse_repeats: bool,
    view: Option<proto::GraphView>,
}

async fn graph(
    client: &Client,
    model: &str,
    inputs: Vec<proto::SampleInput>,
    folding: GraphFolding,
    figure: &Path,
    as_json: bool,
) -> anyhow::Result<()> {
    let GraphFolding { depth, collapse_repeats, view } = folding;
    let format = crate::figure::format_of("--figure", figure)?;
    let (input_shape, input_dtype, extra_inputs) = split_inputs(inputs);
    let request = proto::GraphRequest {
        model: model.to_string(),
        input_shape,
        input_dtype,
        extra_inputs,
        depth: depth.unwrap_or(0),
        collapse_repeats,
        figure_format: format as i32,
        view,
    };
    let answer = client.graph(request).await.with_context(|| format!("graph of {model}"))?;
    let rendered = answer.figure.as_ref().context("the daemon answered without a figure")?;
    std::fs::write(figure, &rendered.data).with_context(|| format!("cannot write {}", figure.display()))?;
    if as_json {
        outln!(
            "{}",
            json!({"nodes": answer.nodes.len(), "edges": answer.edges.len(), "figure": figure.display().to_string(), "alt_text": rendered.alt_text})
        )?;
    } else {
        outln!("{}", rendered.alt_text)?;
        outln!("figure written to {}", crate::open::absolute(figure))?;
    }
    Ok(())
}

async fn summary(
    client: &Client,
    model: &str,
    inputs: Vec<proto::SampleInput>,
    depth: Option<u32>,
    figure: Option<&Path>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (input_shape, input_dtype, extra_inputs) = split_inputs(inputs);
    let request = proto::SummaryRequest {
        model: model.to_string(),
        input_shape,
        depth: depth.unwrap_or(0),
        figure_format: if figure.is_some() { FigureFormat::Svg } else { FigureFormat::None } as i32,
        input_dtype,
        extra_inputs,
    };
    let answer = client.summary(request).await.with_context(|| format!("summary of {model}"))?;
    if let (Some(path), Some(rendered)) = (figure, &answer.figure) {
        std::fs::write(path, &rendered.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let shape_json = |shapes: &[proto::Shape]| match shapes {
        [] => Value::Null,
        [one] => json!(one.dims),
        many => json!(many.iter().map(|shape| shape.dims.clone()).collect::<Vec<_>>()),
    };
    if as_json {
        let rows: Vec<Value> = answer
            .rows
            .iter()
            .map(|row| {
                json!({"path": row.path, "type": row.type_name, "depth": row.depth,
                       "input_shape": shape_json(&row.input_shapes), "output_shape": shape_json(&row.output_shapes),
                       "num_params": row.num_params, "trainable_params": row.trainable_params,
                       "params_percent": row.params_percent, "kernel_size": row.kernel_size,
                       "mult_adds": row.mult_adds, "call_index": row.call_index, "call_site": row.call_site,
                       "is_leaf": row.is_leaf, "num_buffers": row.num_buffers,
                       "attributes": row.attributes.iter().map(|(name, value)| (name.clone(), serde_json::from_str::<Value>(value).unwrap_or(Value::Null))).collect::<serde_json::Map<_, _>>()})
            })
            .collect();
        outln!(
            "{}",
            json!({"rows": rows, "total_params": answer.total_params,
                   "trainable_params": answer.trainable_params, "total_mult_adds": answer.total_mult_adds,
                   "input_bytes": answer.input_bytes, "forward_backward_bytes": answer.forward_backward_bytes,
                   "params_bytes": answer.params_bytes, "total_bytes": answer.total_bytes, "notes": answer.notes})
        )?;
    } else {
        let shape_text = |shapes: &[proto::Shape]| match shapes.first() {
            Some(shape) => format!("{:?}", shape.dims),
            None => "--".to_string(),
        };
        outln!("{:<44} {:<22} {:>12} {:>16}", "Layer (type)", "Output Shape", "Param #", "Mult-Adds")?;
        for row in &answer.rows {
            let name = if row.path.is_empty() { "(root)" } else { row.path.rsplit('.').next().unwrap_or(&row.path) };
            let short_type = row.type_name.rsplit('.').next().unwrap_or(&row.type_name);
            let label = format!("{}{} ({})", "  ".repeat(row.depth as usize), name, short_type);
            let macs = if row.mult_adds > 0 { row.mult_adds.to_string() } else { "--".to_string() };
            outln!("{label:<44} {:<22} {:>12} {macs:>16}", shape_text(&row.output_shapes), row.num_params)?;
        }
        outln!("Total params: {}", answer.total_params)?;
        outln!("Trainable params: {}", answer.trainable_params)?;
        outln!("Non-trainable params: {}", answer.total_params - answer.trainable_params)?;
        if answer.total_mult_adds > 0 {
            outln!("Total mult-adds: {}", answer.total_mult_adds)?;
            let megabytes = |bytes: u64| bytes as f64 / 1e6;
            outln!("Input size (MB): {:.2}", megabytes(answer.input_bytes))?;
            outln!("Forward/backward pass size (MB): {:.2}", megabytes(answer.forward_backward_bytes))?;
            outln!("Params size (MB): {:.2}", megabytes(answer.params_bytes))?;
            outln!("Estimated Total Size (MB): {:.2}", megabytes(answer.total_bytes))?;
        }
        for note in &answer.notes {
            outln!("note: {note}")?;
        }
        if let (Some(path), Some(_)) = (figure, &answer.figure) {
            outln!("figure written to {}", crate::open::absolute(path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::any::TypeId;

    #[test]
    fn negative_numbers_parse_as_values() {
        let cli = Cli::try_parse_from([
            "layerlens",
            "attribute",
            "digits",
            "--input",
            "x.npy",
            "--method",
            "integrated_gradients",
            "--target",
            "-1",
            "--steps",
            "-4",
            "--targets",
            "-1,2",
        ])
        .expect("negative numbers are values");
        let Command::Attribute(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        let explain = format!("{args:?}");
        assert!(explain.contains("target: Some(-1)"), "{explain}");
        assert!(explain.contains("steps: Some(\"-4\")"), "{explain}");
        assert!(explain.contains("targets: Some(Shape([-1, 2]))"), "{explain}");
        let cli = Cli::try_parse_from([
            "layerlens",
            "generate",
            "digits",
            "--objective",
            "class:0",
            "--learning-rate",
            "-0.5",
            "--l2",
            "-1e-3",
            "--mean",
            "-0.5,0.25",
        ])
        .expect("negative numbers are values");
        let generate = format!("{:?}", cli.command);
        assert!(generate.contains("learning_rate: -0.5") && generate.contains("l2: -0.001") && generate.contains("mean: [-0.5, 0.25]"), "{generate}");
    }

    /// Every flag whose values are numbers (or lists of numbers) takes a leading minus,
    /// so a numeric flag added later cannot bring the usage dump back.
    #[test]
    fn every_numeric_flag_accepts_a_leading_minus() {
        let numeric = [TypeId::of::<i64>(), TypeId::of::<u64>(), TypeId::of::<u32>(), TypeId::of::<f32>(), TypeId::of::<Shape>()];
        let mut checked = 0;
        let mut pending = vec![Cli::command()];
        while let Some(mut command) = pending.pop() {
            command.build();
            for arg in command.get_arguments().filter(|arg| arg.get_long().is_some()) {
                let value_type = arg.get_value_parser().type_id();
                if !numeric.iter().any(|type_id| value_type == *type_id) {
                    continue;
                }
                let takes_any_hyphen =
                    value_type == TypeId::of::<Shape>() || value_type == TypeId::of::<f32>() || arg.get_value_delimiter().is_some();
                let accepts_minus = if takes_any_hyphen { arg.is_allow_hyphen_values_set() } else { arg.is_allow_negative_numbers_set() };
                assert!(
                    accepts_minus,
                    "layerlens {} --{} refuses a leading minus: add {}",
                    command.get_name(),
                    arg.get_long().unwrap_or_default(),
                    if takes_any_hyphen { "allow_hyphen_values = true" } else { "allow_negative_numbers = true" }
                );
                checked += 1;
            }
            pending.extend(command.get_subcommands().cloned());
        }
        assert!(checked > 20, "found only {checked} numeric flags; is the walk broken?");
    }
}
