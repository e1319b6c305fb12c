//! The language-model commands: `generate-text` (a causal LM's continuation, printed
//! as it is generated) and `attribute-text` (which prompt tokens, or template values,
//! drove a continuation or a class), with the tokens coloured by attribution on a
//! terminal.

use crate::output::{outln, write_stdout};
use anyhow::Context;
use clap::Args;
use layerlens_client::{Client, FigureFormat};
use layerlens_proto as proto;
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens generate-text gpt2 --text \"The movie was\"\n  layerlens generate-text gpt2 --text \"Once upon\" --max-new-tokens 40 --sample --seed 3\n  layerlens --json generate-text gpt2 --text \"Hello\""
)]
pub struct GenerateTextArgs {
    /// Id, id prefix (8+ hex characters) or name of a causal LM stored with its tokenizer.
    model: String,
    /// The prompt.
    #[arg(long)]
    text: String,
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    max_new_tokens: u32,
    /// Sample from softmax(logits / temperature) instead of taking the most likely token.
    #[arg(long)]
    sample: bool,
    /// Seed of the sampling.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    temperature: f64,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    top_k: u32,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  layerlens attribute-text gpt2 --text \"Dave lives in Palm Coast, FL and is a lawyer.\" --target-text \" He plays golf\"\n  layerlens attribute-text gpt2 --template \"{} lives in {}\" --value Dave --value \"Palm Coast\" --target-text \" and\" --method shapley_value_sampling --param seed=0\n  layerlens attribute-text classifier --text \"a great movie\" --target 1 --figure tokens.html\n  layerlens --json attribute-text gpt2 --text \"The movie was\""
)]
pub struct AttributeTextArgs {
    /// Id, id prefix (8+ hex characters) or name of a model stored with its tokenizer.
    model: String,
    /// The prompt: each token is a feature.
    #[arg(long, conflicts_with = "template")]
    text: Option<String>,
    /// A prompt template with `{}` slots (Python str.format): each --value is a feature.
    #[arg(long, requires = "value")]
    template: Option<String>,
    /// A template slot's value, in order.
    #[arg(long)]
    value: Vec<String>,
    /// What a removed value becomes (one per --value; default the empty string).
    #[arg(long)]
    baseline: Vec<String>,
    /// The continuation to explain (causal LMs); without it the model's greedy continuation.
    #[arg(long)]
    target_text: Option<String>,
    /// A classifier's class to explain.
    #[arg(long, allow_negative_numbers = true)]
    target: Option<i64>,
    /// feature_ablation, shapley_value_sampling, lime, kernel_shap (whole sequence only), layer_integrated_gradients
    /// or layer_gradient_x_activation.
    #[arg(long, default_value = "feature_ablation")]
    method: String,
    /// The gradient methods' layer (default: the token embedding).
    #[arg(long)]
    layer: Option<String>,
    /// skip_tokens=ID,TOKEN,..., baselines=TOKEN, n_samples=N, seed=N, attr_target=log_prob|prob, max_new_tokens=N, n_steps=N.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Write the token heat map (.html, .svg or .png).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// What the .svg/.png figure shows: tokens (the prompt coloured by attribution),
    /// matrix (output token × input token) or bars (per input token).
    #[arg(long, default_value = "tokens", value_parser = ["tokens", "matrix", "bars"])]
    figure_kind: String,
}

pub async fn generate_text(client: &Client, args: GenerateTextArgs, as_json: bool) -> anyhow::Result<()> {
    let request = proto::GenerateTextRequest {
        model: args.model.clone(),
        text: args.text.clone(),
        max_new_tokens: args.max_new_tokens,
        sample: args.sample,
        seed: args.seed,
        temperature: args.temperature,
        top_k: args.top_k,
        eos_token_id: None,
    };
    let mut printed = 0;
    let stream_to_terminal = !as_json;
    if stream_to_terminal {
        write_stdout(args.text.as_bytes())?;
    }
    let result = client
        .generate_text(request, |token| {
            if stream_to_terminal {
                // Print the new part of the decoded text (a token may complete a character).
                let new = token.text.get(printed..).unwrap_or_default();
                if write_stdout(new.as_bytes()).is_ok() {
                    printed = token.text.len();
                }
            }
        })
        .await
        .with_context(|| format!("generating with {}", args.model))?;
    if as_json {
        outln!("{}", json!({"text": result.text, "tokens": result.tokens, "ids": result.ids}))?;
    } else {
        let rest = result.text.get(printed..).unwrap_or_default();
        outln!("{rest}")?;
    }
    Ok(())
}

/// One --param as (key, value).
fn param(text: &str) -> anyhow::Result<(&str, &str)> {
    text.split_once('=').ok_or_else(|| anyhow::anyhow!("--param {text}: expected KEY=VALUE"))
}

pub async fn attribute_text(client: &Client, args: AttributeTextArgs, as_json: bool) -> anyhow::Result<()> {
    let format = match args.figure.as_ref().and_then(|path| path.extension()).and_then(|extension| extension.to_str()) {
        None => FigureFormat::None,
        Some(extension) if extension.eq_ignore_ascii_case("html") => FigureFormat::None,
        Some(_) => crate::figure::format_of("--figure", args.figure.as_ref().expect("a figure path"))?,
    };
    let mut request = proto::AttributeTextRequest {
        model: args.model.clone(),
        method: args.method.clone(),
        target_text: args.target_text.clone().unwrap_or_default(),
        target_class: args.target,
        layer: args.layer.clone().unwrap_or_default(),
        figure_kind: args.figure_kind.clone(),
        figure_format: format as i32,
        ..Default::default()
    };
    request.prompt = match (&args.text, &args.template) {
        (Some(text), None) => Some(proto::attribute_text_request::Prompt::Text(text.clone())),
        (None, Some(template)) => Some(proto::attribute_text_request::Prompt::Template(proto::TextTemplate {
            template: template.clone(),
            values: args.value.clone(),
            names: Vec::new(),
            baselines: args.baseline.clone(),
        })),
        _ => anyhow::bail!("give the prompt with --text, or with --template and --value"),
    };
    for text in &args.params {
        let (key, value) = param(text)?;
        match key {
            "skip_tokens" => request.skip_tokens = value.split(',').map(str::to_string).collect(),
            "baselines" | "baseline" => request.baseline_token = value.to_string(),
            "n_samples" => request.n_samples = value.parse().with_context(|| format!("--param {text}: not a count"))?,
            "seed" => request.seed = value.parse().with_context(|| format!("--param {text}: not a seed"))?,
            "attr_target" => request.attr_target = value.to_string(),
            "max_new_tokens" => request.max_new_tokens = value.parse().with_context(|| format!("--param {text}: not a count"))?,
            other => anyhow::bail!(
                "--param {other}: not an option of attribute-text (skip_tokens, baselines, n_samples, seed, attr_target, max_new_tokens)"
            ),
        }
    }
    let answer = client.attribute_text(request).await.with_context(|| format!("text attribution of {}", args.model))?;
    if let Some(path) = &args.figure {
        let bytes = match &answer.figure {
            Some(figure) => figure.data.clone(),
            None => answer.html.clone().into_bytes(),
        };
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let features = answer.input_tokens.len();
    if as_json {
        let token_attr: Vec<&[f64]> = if answer.token_attr.is_empty() { Vec::new() } else { answer.token_attr.chunks(features).collect() };
        outln!(
            "{}",
            json!({"method": answer.method, "input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                   "seq_attr": answer.seq_attr, "token_attr": token_attr, "output_probs": answer.output_probs,
                   "passes": answer.passes, "sequences": answer.sequences,
                   "figure": args.figure.as_ref().map(|path| crate::open::absolute(path))})
        )?;
        return Ok(());
    }
    outln!("{} → {}", answer.method, answer.output_tokens.join(""))?;
    outln!("{}", coloured(&answer.input_tokens, &answer.seq_attr, std::io::stdout().is_terminal()))?;
    Ok(())
}

/// The tokens with their attributions: ANSI backgrounds (red positive, blue negative,
/// stronger for larger |attribution|) on a terminal, `token(value)` otherwise.
fn coloured(tokens: &[String], values: &[f64], terminal: bool) -> String {
    let largest = values.iter().fold(0.0f64, |largest, value| largest.max(value.abs()));
    tokens
        .iter()
        .zip(values)
        .map(|(token, &value)| {
            let shown = token.replace(['Ġ', '▁'], " ");
            if !terminal {
                return format!("{shown}({value:+.4})");
            }
            let strength = if largest > 0.0 { (value.abs() / largest).min(1.0) } else { 0.0 };
            let fade = (255.0 * (1.0 - strength)) as u8;
            let (red, green, blue) = if value >= 0.0 { (255, fade, fade) } else { (fade, fade, 255) };
            format!("\x1b[48;2;{red};{green};{blue}m\x1b[38;2;0;0;0m{shown}\x1b[0m")
        })
        .collect::<Vec<_>>()
        .join(if terminal { "" } else { " " })
}
