//! Language models over token ids: generation (greedy or sampled, one forward pass per
//! new token, streamed) and perturbation attribution over text features with Captum's
//! `LLMAttribution` semantics.
//!
//! A *feature* is a prompt token (Captum's `TextTokenInput`) or a template segment
//! (`TextTemplateInput`); which ids a set of present features gives is the caller's
//! business (`TextFeatures`, implemented by the daemon with the model's tokenizer), so
//! this module never sees text. The score of a prompt is, for a causal LM, the
//! log-probability of each target token given the prompt and the target tokens before
//! it (teacher forcing, all target tokens from one pass, like Captum's
//! `forward_in_tokens=False`; with causal attention it equals the token-by-token
//! forward up to float rounding), and their sum; for a classifier, the target class's
//! logit.
//!
//! - Feature ablation: attr[k][i] = score_k(all present) − score_k(all but i).
//! - Shapley value sampling: `n_samples` permutations drawn as Captum draws them
//!   (`torch.manual_seed(seed)`, then `torch.randperm(n)` per sample, on libtorch's
//!   CPU generator); each permutation adds the features one by one from all absent,
//!   crediting each with the change of the score; the sum is divided by `n_samples`.
//! - LIME: `n_samples` masks, each feature present with probability ½
//!   (`torch.bernoulli` on the same generator); each weighted by the exponential kernel
//!   of its cosine distance to the all-present mask; the attribution is the coefficients
//!   of the weighted Lasso (α = 0.01) from the masks to the scores (`surrogate::lasso`).
//! - Kernel SHAP: the all-present and all-absent masks, then masks of k features with
//!   k drawn from (M−1)/(k(M−k)) (`torch.multinomial`) and the k largest of
//!   `torch.randn(1, M)` present; the two end masks weigh 10⁶, the others 1; the
//!   attribution is the weighted least-squares coefficients
//!   (`surrogate::weighted_least_squares`). Both attribute the whole continuation only
//!   (as Captum: no per-token rows).
//!
//! Captum evaluates the perturbed prompts one at a time. Here every distinct prompt is
//! evaluated once (Shapley permutations share their first and last), and prompts of
//! equal length are stacked into passes sized to the memory budget: that is the speed.

use crate::attribution::gradients::{in_chunks, Chunking};
use crate::error::{Error, ErrorKind, Result};
use crate::model::LoadedModel;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Which ids the prompt is when only some features are present.
pub trait TextFeatures: Send {
    fn count(&self) -> usize;
    /// The model input (token ids) with the absent features replaced by their baselines.
    fn ids(&self, present: &[bool]) -> Result<Vec<i64>>;
    /// The position of each feature in the ids, when features are single tokens (the
    /// gradient methods attribute to positions); `None` for template segments.
    fn token_positions(&self) -> Option<Vec<usize>> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMethod {
    FeatureAblation,
    ShapleyValueSampling,
    /// Captum's Lime (Lasso surrogate, exponential cosine kernel), whole sequence only.
    Lime,
    /// Captum's KernelShap (least-squares surrogate, Shapley kernel sampling), whole sequence only.
    KernelShap,
    /// Captum's LayerIntegratedGradients on a layer (the token embedding), per output token.
    LayerIntegratedGradients,
    /// Captum's LayerGradientXActivation on a layer, per output token.
    LayerGradientXActivation,
}

/// What the score is taken of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextTarget {
    /// A causal LM's continuation (token ids).
    Continuation(Vec<i64>),
    /// A classifier's class (its logit).
    Class(i64),
}

pub struct TextAttributionRequest {
    pub features: Box<dyn TextFeatures>,
    pub target: TextTarget,
    pub method: TextMethod,
    /// Attribute probabilities instead of log-probabilities (causal LMs).
    pub probability: bool,
    pub n_samples: usize,
    pub seed: u64,
    /// The gradient methods' layer (module path; the token embedding).
    pub layer: String,
    /// Integration steps (Gauss–Legendre) of layer integrated gradients.
    pub n_steps: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TextAttribution {
    /// Per feature: attribution to the whole continuation (or the class).
    pub seq_attr: Vec<f64>,
    /// Per target token, per feature (empty for a class).
    pub token_attr: Vec<Vec<f64>>,
    /// Probability of each target token (or the class's softmax probability) for the full prompt.
    pub output_probs: Vec<f64>,
    pub passes: u64,
    pub sequences: u64,
}

fn torch_error(doing: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |error| Error::from_torch(error, ErrorKind::Internal, doing)
}

/// The model's output for a batch of token sequences of one length: (batch, length,
/// vocab) for a causal LM, (batch, classes) for a classifier.
fn forward_ids(model: &LoadedModel, rows: &[&Vec<i64>]) -> Result<Tensor> {
    let length = rows[0].len() as i64;
    let flat: Vec<i64> = rows.iter().flat_map(|row| row.iter().copied()).collect();
    let ids = Tensor::from_slice(&flat).reshape([rows.len() as i64, length]).to_device(model.device.to_tch());
    model.forward(&[ids])
}

/// Scores of many prompts (see the module docs), evaluated once each, equal lengths
/// stacked into passes: one vector per prompt, [total, per target token...] for a
/// continuation, [logit, probability] for a class.
fn score_prompts(model: &LoadedModel, prompts: &[Vec<i64>], target: &TextTarget, chunking: &mut Chunking) -> Result<Vec<Vec<f64>>> {
    let mut by_length: HashMap<usize, Vec<usize>> = HashMap::new();
    for (index, prompt) in prompts.iter().enumerate() {
        by_length.entry(prompt.len()).or_default().push(index);
    }
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); prompts.len()];
    let mut lengths: Vec<usize> = by_length.keys().copied().collect();
    lengths.sort_unstable();
    for length in lengths {
        let members = &by_length[&length];
        let sequences: Vec<Vec<i64>> = members
            .iter()
            .map(|&index| match target {
                TextTarget::Continuation(tokens) => prompts[index].iter().chain(tokens).copied().collect(),
                TextTarget::Class(_) => prompts[index].clone(),
            })
            .collect();
        let mut results: Vec<Vec<f64>> = Vec::with_capacity(members.len());
        in_chunks(
            chunking,
            members.len(),
            1,
            false,
            |start, end| {
                tch::no_grad(|| {
                    let rows: Vec<&Vec<i64>> = sequences[start..end].iter().collect();
                    let output = forward_ids(model, &rows)?.to_kind(Kind::Double);
                    score_output(&output, length, target)
                })
            },
            |_, chunk| {
                results.extend(chunk);
                Ok(())
            },
        )?;
        for (&index, result) in members.iter().zip(results) {
            scores[index] = result;
        }
    }
    Ok(scores)
}

fn score_output(output: &Tensor, prompt_length: usize, target: &TextTarget) -> Result<Vec<Vec<f64>>> {
    let rows = output.size()[0];
    match target {
        TextTarget::Continuation(tokens) => {
            if output.dim() != 3 {
                return Err(Error::bad_input(format!(
                    "a continuation needs a causal language model, whose output is (batch, sequence, vocabulary); this model's is {:?} \
                     (for a classifier give a target class)",
                    output.size()
                )));
            }
            let count = tokens.len() as i64;
            let positions = output.narrow(1, prompt_length as i64 - 1, count);
            let log_probs = positions.log_softmax(-1, Kind::Double);
            let index = Tensor::from_slice(tokens).to_device(output.device()).view([1, count, 1]).expand([rows, count, 1], false);
            let picked = log_probs.gather(2, &index, false).squeeze_dim(2);
            let picked: Vec<f64> = Vec::<f64>::try_from(picked.flatten(0, -1).to_device(tch::Device::Cpu)).map_err(torch_error("reading scores"))?;
            Ok(picked.chunks(count as usize).map(|row| std::iter::once(row.iter().sum::<f64>()).chain(row.iter().copied()).collect()).collect())
        }
        TextTarget::Class(class) => {
            if output.dim() != 2 {
                return Err(Error::bad_input(format!(
                    "a target class needs a classifier, whose output is (batch, classes); this model's is {:?} \
                     (for a language model give a target text)",
                    output.size()
                )));
            }
            let classes = output.size()[1];
            if *class < 0 || *class >= classes {
                return Err(Error::bad_input(format!("target class {class} is out of range for {classes} classes")));
            }
            let logits: Vec<f64> =
                Vec::<f64>::try_from(output.select(1, *class).to_device(tch::Device::Cpu)).map_err(torch_error("reading scores"))?;
            let probabilities: Vec<f64> = Vec::<f64>::try_from(output.softmax(-1, Kind::Double).select(1, *class).to_device(tch::Device::Cpu))
                .map_err(torch_error("reading scores"))?;
            Ok(logits.into_iter().zip(probabilities).map(|(logit, probability)| vec![logit, probability]).collect())
        }
    }
}

/// The masks a method evaluates: feature ablation's all-present and one-absent masks,
/// or Shapley sampling's all-absent mask and each permutation's growing prefixes.
fn masks(method: TextMethod, features: usize, n_samples: usize, seed: u64) -> Vec<Vec<bool>> {
    match method {
        TextMethod::FeatureAblation => {
            std::iter::once(vec![true; features]).chain((0..features).map(|absent| (0..features).map(|index| index != absent).collect())).collect()
        }
        // The gradient methods perturb nothing (gradient_attribution).
        TextMethod::LayerIntegratedGradients | TextMethod::LayerGradientXActivation => Vec::new(),
        TextMethod::ShapleyValueSampling => {
            let mut masks = vec![vec![false; features]];
            for permutation in permutations(features, n_samples, seed) {
                let mut present = vec![false; features];
                for feature in permutation {
                    present[feature] = true;
                    masks.push(present.clone());
                }
            }
            masks
        }
        TextMethod::Lime => crate::seeded::with_seed(seed, || {
            let probabilities = Tensor::ones([1, features as i64], (Kind::Float, tch::Device::Cpu)) * 0.5;
            (0..n_samples).map(|_| present_of(&probabilities.bernoulli())).collect()
        }),
        TextMethod::KernelShap => kernel_shap_masks(features, n_samples, seed),
    }
}

fn present_of(mask: &Tensor) -> Vec<bool> {
    Vec::<f64>::try_from(mask.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default().into_iter().map(|value| value != 0.0).collect()
}

/// Captum's Kernel SHAP sampling (`kernel_shap_perturb_generator`): all present, all
/// absent, then per sample k ~ Categorical((M−1)/(k(M−k)), k = 1..M−1) by
/// `torch.multinomial`, and the features whose `torch.randn(1, M)` value exceeds the
/// (M−k)-th smallest present. The probabilities are computed in float32 as Captum does,
/// so the draws are the same.
fn kernel_shap_masks(features: usize, n_samples: usize, seed: u64) -> Vec<Vec<bool>> {
    crate::seeded::with_seed(seed, || kernel_shap_draws(features, n_samples))
}

fn kernel_shap_draws(features: usize, n_samples: usize) -> Vec<Vec<bool>> {
    let count = features as i64;
    let mut masks = vec![vec![true; features], vec![false; features]];
    masks.truncate(n_samples);
    if features < 2 {
        return masks;
    }
    let ks = Tensor::arange(count, (Kind::Float, tch::Device::Cpu));
    let denominator = &ks * (count as f64 - &ks);
    let probabilities = Tensor::from(count - 1).true_divide(&denominator);
    let _ = probabilities.get(0).fill_(0.0);
    let probabilities = &probabilities / probabilities.sum_dim_intlist(-1, true, Kind::Float);
    let probabilities = probabilities.reshape([1, count]);
    while masks.len() < n_samples {
        let selected = probabilities.multinomial(1, true).int64_value(&[0, 0]);
        let values = Tensor::randn([1, count], (Kind::Float, tch::Device::Cpu));
        let (threshold, _) = values.kthvalue(count - selected, -1, false);
        let threshold = threshold.double_value(&[0]);
        masks.push(present_of(&values.gt(threshold)));
    }
    masks
}

/// Captum's LIME kernel: exp(−d²/2) with d the cosine distance between the all-present
/// mask and this one (1 for the all-absent mask).
fn lime_similarity(present: &[bool]) -> f64 {
    let count = present.iter().filter(|&&on| on).count() as f64;
    let cosine = if count == 0.0 { 0.0 } else { count / (count * present.len() as f64).sqrt() };
    let distance = 1.0 - cosine;
    (-distance * distance / 2.0).exp()
}

/// Captum's permutations: `torch.manual_seed(seed)`, then `torch.randperm(n)` per
/// sample on libtorch's CPU generator (held for the draws: `seeded`).
fn permutations(features: usize, n_samples: usize, seed: u64) -> Vec<Vec<usize>> {
    crate::seeded::with_seed(seed, || {
        (0..n_samples)
            .map(|_| {
                let permutation = Tensor::randperm(features as i64, (Kind::Int64, tch::Device::Cpu));
                Vec::<i64>::try_from(permutation).unwrap_or_default().into_iter().map(|index| index as usize).collect()
            })
            .collect()
    })
}

/// Refuses a prompt and target longer than the model's context, naming both lengths.
pub fn check_context(model: &LoadedModel, request: &TextAttributionRequest) -> Result<()> {
    let Some(context) = model.max_sequence_length() else { return Ok(()) };
    let prompt = request.features.ids(&vec![true; request.features.count()])?.len();
    let target = match &request.target {
        TextTarget::Continuation(tokens) => tokens.len(),
        TextTarget::Class(_) => 0,
    };
    if (prompt + target) as i64 > context {
        return Err(Error::bad_input(format!(
            "the prompt's {prompt} tokens and the target's {target} tokens make {}, more than the model's context of {context} tokens",
            prompt + target
        )));
    }
    Ok(())
}

/// One row of the request's longest sequence (the full prompt and the target), for
/// sizing passes: token ids as an integer host tensor.
pub fn measuring_row(request: &TextAttributionRequest) -> crate::HostTensor {
    let features = request.features.count();
    let mut ids = request.features.ids(&vec![true; features]).unwrap_or_else(|_| vec![0]);
    if let TextTarget::Continuation(tokens) = &request.target {
        ids.extend(tokens);
    }
    crate::HostTensor { shape: vec![1, ids.len().max(1) as i64], values: ids.iter().map(|&id| id as f32).collect(), integer: true }
}

/// Perturbation attribution of a text target to the features (see the module docs).
pub fn attribute_text(model: &LoadedModel, request: &TextAttributionRequest, mut chunking: Chunking) -> Result<TextAttribution> {
    if matches!(request.method, TextMethod::LayerIntegratedGradients | TextMethod::LayerGradientXActivation) {
        return gradient_attribution(model, request, chunking);
    }
    let features = request.features.count();
    if features == 0 {
        return Err(Error::bad_input("the prompt has no features to attribute to (every token is skipped, or the template has no values)"));
    }
    if let TextTarget::Continuation(tokens) = &request.target {
        if tokens.is_empty() {
            return Err(Error::bad_input("the target continuation has no tokens: it tokenizes to nothing"));
        }
    }
    let n_samples = request.n_samples.max(1);
    if request.method == TextMethod::KernelShap && features < 2 {
        return Err(Error::bad_input("kernel_shap needs at least two features to sample coalitions from; this prompt has one"));
    }
    let masks = masks(request.method, features, n_samples, request.seed);
    // Each distinct prompt once.
    let mut prompts: Vec<Vec<i64>> = Vec::new();
    let mut prompt_of: HashMap<Vec<i64>, usize> = HashMap::new();
    let mut mask_prompt = Vec::with_capacity(masks.len());
    for mask in &masks {
        let ids = request.features.ids(mask)?;
        if ids.is_empty() {
            return Err(Error::bad_input("a perturbed prompt has no tokens; give the removed features a baseline that is not empty"));
        }
        let next = prompts.len();
        let index = *prompt_of.entry(ids.clone()).or_insert_with(|| {
            prompts.push(ids);
            next
        });
        mask_prompt.push(index);
    }
    let full = request.features.ids(&vec![true; features])?;
    let full_index = *prompt_of.entry(full.clone()).or_insert_with(|| {
        prompts.push(full);
        prompts.len() - 1
    });
    let scores = score_prompts(model, &prompts, &request.target, &mut chunking)?;
    let (outputs, transform): (usize, fn(f64) -> f64) = match (&request.target, request.probability) {
        (TextTarget::Continuation(tokens), false) => (tokens.len() + 1, |value| value),
        (TextTarget::Continuation(tokens), true) => (tokens.len() + 1, f64::exp),
        (TextTarget::Class(_), _) => (1, |value| value),
    };
    // LIME and Kernel SHAP explain the whole sequence only.
    let outputs = if matches!(request.method, TextMethod::Lime | TextMethod::KernelShap) { 1 } else { outputs };
    let score = |index: usize| -> Vec<f64> { scores[index][..outputs].iter().map(|&value| transform(value)).collect() };
    let mut attribution = vec![vec![0.0f64; features]; outputs];
    match request.method {
        TextMethod::FeatureAblation => {
            let original = score(mask_prompt[0]);
            for feature in 0..features {
                let ablated = score(mask_prompt[1 + feature]);
                for output in 0..outputs {
                    attribution[output][feature] = original[output] - ablated[output];
                }
            }
        }
        TextMethod::LayerIntegratedGradients | TextMethod::LayerGradientXActivation => {
            return Err(Error::internal("a gradient method reached the perturbation path"));
        }
        TextMethod::ShapleyValueSampling => {
            let permutations = permutations(features, n_samples, request.seed);
            let mut position = 1;
            for permutation in &permutations {
                let mut previous = score(mask_prompt[0]);
                for &feature in permutation {
                    let current = score(mask_prompt[position]);
                    position += 1;
                    for output in 0..outputs {
                        attribution[output][feature] += current[output] - previous[output];
                    }
                    previous = current;
                }
            }
            for row in &mut attribution {
                for value in row.iter_mut() {
                    *value /= n_samples as f64;
                }
            }
        }
        TextMethod::Lime | TextMethod::KernelShap => {
            let x: Vec<f64> = masks.iter().flat_map(|mask| mask.iter().map(|&present| if present { 1.0 } else { 0.0 })).collect();
            let y: Vec<f64> = mask_prompt.iter().map(|&index| score(index)[0]).collect();
            let coefficients = if request.method == TextMethod::Lime {
                let weights: Vec<f64> = masks.iter().map(|mask| lime_similarity(mask)).collect();
                crate::surrogate::lasso(&x, &y, &weights, features, 0.01)?
            } else {
                let weights: Vec<f64> =
                    masks.iter().map(|mask| if mask.iter().all(|&on| on) || mask.iter().all(|&on| !on) { 1e6 } else { 1.0 }).collect();
                crate::surrogate::weighted_least_squares(&x, &y, &weights, features)?
            };
            attribution = vec![coefficients];
        }
    }
    let output_probs = match &request.target {
        TextTarget::Continuation(_) => scores[full_index][1..].iter().map(|log_prob| log_prob.exp()).collect(),
        TextTarget::Class(_) => vec![scores[full_index][1]],
    };
    let seq_attr = attribution.remove(0);
    Ok(TextAttribution { seq_attr, token_attr: attribution, output_probs, passes: chunking.passes, sequences: prompts.len() as u64 })
}

/// Captum's `LLMGradientAttribution` with `LayerIntegratedGradients` or
/// `LayerGradientXActivation` on a layer (the token embedding): for output token j the
/// input is the prompt followed by the target's first j tokens, the score the
/// log-probability of target token j at the last position (a classifier's class logit,
/// once); the layer's output is replaced by the baseline's plus α·(input's − baseline's)
/// at Gauss–Legendre nodes α (the baseline: the features replaced by the baseline
/// token), and the attribution is (input's − baseline's) × Σ weight·gradient, summed
/// over the layer's last dimension, at the features' positions. Gradient × activation
/// is the layer's output × its gradient. The interpolation steps of one output token
/// are batched into passes under the budget.
fn gradient_attribution(model: &LoadedModel, request: &TextAttributionRequest, mut chunking: Chunking) -> Result<TextAttribution> {
    let features = request.features.count();
    let Some(positions) = request.features.token_positions() else {
        return Err(Error::bad_input("the gradient methods attribute to tokens: give the prompt as text, not as a template"));
    };
    if features == 0 {
        return Err(Error::bad_input("the prompt has no features to attribute to (every token is skipped)"));
    }
    let tapped = model.tapped()?;
    let tap = tapped.tap_index(&request.layer)?;
    let prompt = request.features.ids(&vec![true; features])?;
    let baseline_prompt = request.features.ids(&vec![false; features])?;
    let targets: Vec<(Vec<i64>, Vec<i64>, TextTarget)> = match &request.target {
        TextTarget::Continuation(tokens) => (0..tokens.len())
            .map(|j| {
                let input: Vec<i64> = prompt.iter().chain(&tokens[..j]).copied().collect();
                let baseline: Vec<i64> = baseline_prompt.iter().chain(&tokens[..j]).copied().collect();
                (input, baseline, TextTarget::Continuation(vec![tokens[j]]))
            })
            .collect(),
        TextTarget::Class(class) => vec![(prompt.clone(), baseline_prompt.clone(), TextTarget::Class(*class))],
    };
    let (alphas, weights) = match request.method {
        TextMethod::LayerIntegratedGradients => crate::attribution::integrated::quadrature("gausslegendre", request.n_steps.max(1)),
        _ => (vec![1.0], vec![1.0]),
    };
    let device = model.device.to_tch();
    let layer_output = |ids: &[i64]| -> Result<Tensor> {
        let input = Tensor::from_slice(ids).reshape([1, ids.len() as i64]).to_device(device);
        tch::no_grad(|| tapped.taps(&[input]))?
            .swap_remove(tap)
            .ok_or_else(|| Error::bad_input(format!("layer {} has no tensor output", request.layer)))
    };
    let mut token_attr = Vec::with_capacity(targets.len());
    for (input_ids, baseline_ids, target) in &targets {
        let actual = layer_output(input_ids)?.detach();
        let baseline = match request.method {
            TextMethod::LayerIntegratedGradients => layer_output(baseline_ids)?.detach(),
            _ => actual.zeros_like(),
        };
        let difference = &actual - &baseline;
        let mut gradient_sum = actual.zeros_like().to_kind(Kind::Double);
        let length = input_ids.len() as i64;
        in_chunks(
            &mut chunking,
            alphas.len(),
            1,
            true,
            |start, end| {
                let rows = (end - start) as i64;
                let alpha = Tensor::from_slice(&alphas[start..end]).to_kind(actual.kind()).to_device(device).view([rows, 1, 1]);
                let weight = Tensor::from_slice(&weights[start..end]).to_device(device).view([rows, 1, 1]);
                let scaled = (&baseline + &difference * &alpha).detach().set_requires_grad(true);
                let ids = Tensor::from_slice(input_ids).reshape([1, length]).expand([rows, length], false).contiguous().to_device(device);
                let output = tapped.forward_replacing(&[ids], tap, &scaled)?.to_kind(Kind::Double);
                let score = match target {
                    TextTarget::Continuation(token) => output.select(1, length - 1).log_softmax(-1, Kind::Double).select(1, token[0]),
                    TextTarget::Class(class) => output.select(1, *class),
                };
                let gradient =
                    Tensor::f_run_backward(&[score.sum(Kind::Double)], &[&scaled], false, false).map_err(torch_error("the backward pass"))?;
                Ok((gradient[0].to_kind(Kind::Double) * weight).sum_dim_intlist([0i64].as_slice(), false, Kind::Double))
            },
            |_, chunk| {
                gradient_sum = &gradient_sum + chunk.squeeze_dim(0);
                Ok(())
            },
        )?;
        let per_position =
            (difference.to_kind(Kind::Double).squeeze_dim(0) * gradient_sum.squeeze_dim(0)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
        let per_position: Vec<f64> = Vec::<f64>::try_from(per_position.to_device(tch::Device::Cpu)).map_err(torch_error("reading attributions"))?;
        token_attr.push(positions.iter().map(|&position| per_position[position]).collect::<Vec<f64>>());
    }
    let full = vec![prompt];
    let scores = score_prompts(model, &full, &request.target, &mut chunking)?;
    let output_probs = match &request.target {
        TextTarget::Continuation(_) => scores[0][1..].iter().map(|log_prob| log_prob.exp()).collect(),
        TextTarget::Class(_) => vec![scores[0][1]],
    };
    let seq_attr: Vec<f64> = (0..features).map(|feature| token_attr.iter().map(|row| row[feature]).sum()).collect();
    let token_attr = if matches!(request.target, TextTarget::Class(_)) { Vec::new() } else { token_attr };
    Ok(TextAttribution { seq_attr, token_attr, output_probs, passes: chunking.passes, sequences: targets.len() as u64 })
}

/// How a continuation is generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    pub sample: bool,
    pub seed: u64,
    pub temperature: f64,
    pub top_k: usize,
    pub eos_token_id: Option<i64>,
}

/// One generated token: its id and log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratedToken {
    pub id: i64,
    pub log_prob: f64,
}

/// A causal LM's continuation of `prompt`: one forward pass over the whole sequence per
/// new token (an exported program keeps no cache), greedy (the argmax, as
/// `generate(do_sample=False)`) or sampled from softmax(logits / temperature) over the
/// top-k tokens with a ChaCha8 generator seeded by `seed`. `report` hears of each token
/// and stops the generation by returning false. Stops after the end-of-text token.
pub fn generate_text(
    model: &LoadedModel,
    prompt: &[i64],
    options: &GenerationOptions,
    report: &mut dyn FnMut(GeneratedToken) -> bool,
) -> Result<Vec<GeneratedToken>> {
    if prompt.is_empty() {
        return Err(Error::bad_input("the prompt has no tokens"));
    }
    if options.sample && !(options.temperature > 0.0 && options.temperature.is_finite()) {
        return Err(Error::bad_input(format!("temperature must be a positive number, not {}", options.temperature)));
    }
    if let Some(context) = model.max_sequence_length() {
        let needed = prompt.len() + options.max_new_tokens;
        if needed as i64 > context {
            return Err(Error::bad_input(format!(
                "the prompt's {} tokens and {} new tokens make {needed}, more than the model's context of {context} tokens",
                prompt.len(),
                options.max_new_tokens
            )));
        }
    }
    // Sampling draws between passes, so from a generator of its own (see `seeded`).
    let mut generator = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let mut sequence = prompt.to_vec();
    let mut generated = Vec::new();
    for _ in 0..options.max_new_tokens {
        let token = tch::no_grad(|| -> Result<GeneratedToken> {
            let output = forward_ids(model, &[&sequence])?;
            if output.dim() != 3 {
                return Err(Error::bad_input(format!(
                    "generation needs a causal language model, whose output is (batch, sequence, vocabulary); this model's is {:?} \
                     (to explain a classifier, give the class as the target)",
                    output.size()
                )));
            }
            let logits = output.get(0).get(-1).to_kind(Kind::Double);
            let log_probs = logits.log_softmax(-1, Kind::Double);
            let id = if options.sample {
                let mut scaled = &logits / options.temperature;
                if options.top_k > 0 && (options.top_k as i64) < scaled.size()[0] {
                    let (kept, _) = scaled.topk(options.top_k as i64, -1, true, true);
                    let threshold = kept.get(options.top_k as i64 - 1);
                    scaled = scaled.where_self(&scaled.ge_tensor(&threshold), &Tensor::from(f64::NEG_INFINITY).to_device(scaled.device()));
                }
                let probabilities = Vec::<f64>::try_from(scaled.softmax(-1, Kind::Double).to_device(tch::Device::Cpu))
                    .map_err(torch_error("reading the next token's probabilities"))?;
                sample_index(&probabilities, generator.random::<f64>()) as i64
            } else {
                logits.argmax(-1, false).int64_value(&[])
            };
            Ok(GeneratedToken { id, log_prob: log_probs.double_value(&[id]) })
        })?;
        sequence.push(token.id);
        generated.push(token);
        if !report(token) {
            return Err(Error::new(ErrorKind::Cancelled, "generation cancelled: the client went away"));
        }
        if Some(token.id) == options.eos_token_id {
            break;
        }
    }
    Ok(generated)
}

/// The index whose cumulative probability first exceeds `uniform` ∈ [0, 1) (inverse
/// transform sampling; zero-probability tokens are never picked).
fn sample_index(probabilities: &[f64], uniform: f64) -> usize {
    let total: f64 = probabilities.iter().sum();
    let mut cumulative = 0.0;
    let mut last = 0;
    for (index, &probability) in probabilities.iter().enumerate() {
        if probability > 0.0 {
            cumulative += probability;
            last = index;
            if cumulative > uniform * total {
                return index;
            }
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_ablation_masks_remove_one_feature_each() {
        let masks = masks(TextMethod::FeatureAblation, 3, 0, 0);
        assert_eq!(masks, vec![vec![true, true, true], vec![false, true, true], vec![true, false, true], vec![true, true, false]]);
    }

    #[test]
    fn shapley_masks_grow_along_torchs_permutations() {
        let drawn = permutations(5, 3, 42);
        assert_eq!(drawn, permutations(5, 3, 42), "a seed gives the same permutations");
        for permutation in &drawn {
            let mut sorted = permutation.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        }
        let masks = masks(TextMethod::ShapleyValueSampling, 5, 3, 42);
        assert_eq!(masks.len(), 1 + 3 * 5);
        assert_eq!(masks[0], vec![false; 5]);
        assert_eq!(masks[5], vec![true; 5], "each permutation ends with every feature present");
        assert!(masks[1][drawn[0][0]] && masks[1].iter().filter(|&&present| present).count() == 1);
    }

    #[test]
    fn kernel_shap_masks_start_with_the_ends_then_draw_coalitions_of_one_to_m_minus_one() {
        let masks = masks(TextMethod::KernelShap, 6, 30, 3);
        assert_eq!(masks.len(), 30);
        assert_eq!((masks[0].clone(), masks[1].clone()), (vec![true; 6], vec![false; 6]));
        for mask in &masks[2..] {
            let present = mask.iter().filter(|&&on| on).count();
            assert!((1..6).contains(&present), "{mask:?}");
        }
        assert_eq!(masks, super::masks(TextMethod::KernelShap, 6, 30, 3), "a seed gives the same samples");
        assert_ne!(masks, super::masks(TextMethod::KernelShap, 6, 30, 4));
    }

    #[test]
    fn sampling_picks_by_cumulative_probability_and_never_an_impossible_token() {
        let probabilities = [0.0, 0.25, 0.0, 0.75, 0.0];
        assert_eq!(sample_index(&probabilities, 0.0), 1);
        assert_eq!(sample_index(&probabilities, 0.2), 1);
        assert_eq!(sample_index(&probabilities, 0.3), 3);
        assert_eq!(sample_index(&probabilities, 0.999_999_999), 3);
    }

    #[test]
    fn lime_weighs_masks_by_their_cosine_distance_to_the_prompt() {
        assert_eq!(lime_similarity(&[true, true, true, true]), 1.0);
        assert!((lime_similarity(&[false; 4]) - (-0.5f64).exp()).abs() < 1e-15);
        // One of four present: cosine 1/2, distance 1/2.
        assert!((lime_similarity(&[true, false, false, false]) - (-0.125f64).exp()).abs() < 1e-15);
    }
}
