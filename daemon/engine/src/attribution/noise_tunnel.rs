//! Captum's `NoiseTunnel` around a gradient method (SmoothGrad, SmoothGrad², VarGrad;
//! Smilkov et al. 2017, Adebayo et al. 2018) and `GradientShap` (Lundberg and Lee
//! 2017), which is a noise tunnel around input-minus-baseline × gradient at random
//! points between input and baselines drawn from a distribution.
//!
//! Noise is drawn from libtorch's default generator exactly as Captum draws it
//! (per sample partition, per input, `normal(0, 1) · stdev` over the expanded batch),
//! so with the same `seed` set in both the results are identical. Explicit `noise`
//! tensors (and for GradientSHAP `baseline_indices` and `rand_coefficients`) replace
//! the sampling altogether.

use super::gradients::{apply_row_cap, gradients};
use super::integrated::{self, integrated_gradients_on};
use super::{shallow, torch_error, Context, DrawGroup, MethodResult};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

const BASE_METHODS: &[&str] = &["saliency", "input_x_gradient", "integrated_gradients"];

pub fn noise_tunnel(context: &mut Context<'_>, nt_type: &str) -> Result<MethodResult> {
    let base = context.options.choice("base_method", "saliency", BASE_METHODS)?;
    // The table accepts every base method's options; only the chosen base's apply.
    let mut accepted = vec!["nt_samples", "nt_samples_batch_size", "stdevs", "seed", "base_method"];
    accepted.extend_from_slice(super::methods::find(base)?.options);
    context.options.accept(&accepted)?;
    apply_row_cap(context)?;
    let nt_samples = context.options.int("nt_samples", 5, 1, 100_000)? as usize;
    let partition = context.options.int("nt_samples_batch_size", nt_samples as i64, 1, 100_000)?.min(nt_samples as i64) as usize;
    let stdevs = per_input(context, "stdevs", 1.0)?;
    let seed = context.options.optional_int("seed", 0, i64::MAX)?;
    let explicit_noise = explicit_noise(context, nt_samples)?;
    let batch = context.batch();
    // Seeded noise is drawn up front, under the process-wide generator lock, when it is
    // small enough and no other draw comes between the seed and the noise (integrated
    // gradients' random baselines do): another request's draws cannot land in between.
    // A joined request always draws so (batching.rs keeps its noise small).
    let noise_values: i64 = context.inputs.iter().map(Tensor::numel).sum::<usize>() as i64 * nt_samples as i64;
    let own_group;
    let groups: &[DrawGroup] = if !context.draw_groups.is_empty() {
        context.draw_groups
    } else if explicit_noise.is_none() && base != "integrated_gradients" && noise_values <= MAX_UPFRONT_NOISE_VALUES {
        own_group = seed.map(|seed| DrawGroup { rows: batch as usize, seed: Some(seed as u64) });
        own_group.as_slice()
    } else {
        if let Some(seed) = seed {
            tch::manual_seed(seed);
        }
        &[]
    };
    let baselines = if base == "integrated_gradients" { Some(integrated::baselines(context)?) } else { None };
    let inputs = shallow(&context.inputs);
    let targets = context.targets.clone();

    let mut sums: Vec<Tensor> = inputs.iter().map(Tensor::zeros_like).collect();
    let mut sums_sq: Vec<Tensor> = inputs.iter().map(Tensor::zeros_like).collect();
    // Captum's partitions: full batches of `partition` samples, then the remainder.
    // Explicit noise is one tensor for all samples, so it is used in one partition.
    let mut sizes = if explicit_noise.is_some() { vec![nt_samples] } else { vec![partition; nt_samples / partition] };
    if explicit_noise.is_none() && !nt_samples.is_multiple_of(partition) {
        sizes.push(nt_samples % partition);
    }
    // Every caller's noise (one caller's, seeded), for every partition, drawn up front.
    let mut joined_noise = noise_up_front(groups, &inputs, &stdevs, &sizes).into_iter();
    for samples in sizes {
        let partition_noise = joined_noise.next();
        let noisy: Vec<Tensor> = inputs
            .iter()
            .zip(&stdevs)
            .enumerate()
            .map(|(index, (input, &stdev))| {
                let expanded = input.repeat_interleave_self_int(samples as i64, 0, None::<i64>);
                let noise = match (&explicit_noise, &partition_noise) {
                    (Some(noise), _) => noise[index].shallow_clone(),
                    (None, Some(noise)) => noise[index].shallow_clone(),
                    (None, None) => expanded.empty_like().normal_(0.0, 1.0) * stdev,
                };
                expanded + noise
            })
            .collect();
        let expanded_targets: Vec<i64> = targets.iter().flat_map(|&target| std::iter::repeat_n(target, samples)).collect();
        let attributions = match base {
            "integrated_gradients" => {
                let expanded_baselines: Vec<Tensor> = baselines
                    .as_ref()
                    .expect("baselines for integrated gradients")
                    .iter()
                    .map(|baseline| baseline.repeat_interleave_self_int(samples as i64, 0, None::<i64>))
                    .collect();
                integrated_gradients_on(context, &noisy, &expanded_baselines, &expanded_targets, None)?.values
            }
            _ => {
                let grads = gradients(context.model, &mut context.chunking, &noisy, &expanded_targets)?;
                if base == "saliency" {
                    let absolute = context.options.bool("abs", true)?;
                    grads.into_iter().map(|gradient| if absolute { gradient.abs() } else { gradient }).collect()
                } else {
                    grads.iter().zip(&noisy).map(|(gradient, input)| gradient * input).collect()
                }
            }
        };
        for ((sum, sum_sq), attribution) in sums.iter_mut().zip(sums_sq.iter_mut()).zip(&attributions) {
            let mut shape = vec![batch, samples as i64];
            shape.extend_from_slice(&attribution.size()[1..]);
            let grouped = attribution.view(shape.as_slice());
            *sum += grouped.sum_dim_intlist(1, false, Kind::Float);
            *sum_sq += grouped.pow_tensor_scalar(2).sum_dim_intlist(1, false, Kind::Float);
        }
    }
    let count = nt_samples as f64;
    let values = sums
        .iter()
        .zip(&sums_sq)
        .map(|(sum, sum_sq)| {
            let (mean, mean_sq) = (sum / count, sum_sq / count);
            match nt_type {
                "smoothgrad" => mean,
                "smoothgrad_sq" => mean_sq,
                _ => &mean_sq - &mean * &mean,
            }
        })
        .collect();
    Ok(MethodResult { values, convergence_deltas: Vec::new(), n_steps: None, figure_values: None })
}

/// The most noise values (input values × samples) one caller's request draws up front;
/// a larger one draws partition by partition as it goes.
pub(crate) const MAX_UPFRONT_NOISE_VALUES: i64 = 1 << 22;

/// The noise of the callers' rows (`groups`: one per caller of a joined request, or the
/// one seeded caller), per partition and input: each caller's part drawn as that
/// request draws alone (seeded with its seed, partition by partition, input by input,
/// over its own expanded rows), then the parts stacked in the rows' order. Drawn under
/// the process-wide generator lock, so no other request's draws land in between.
/// Empty without groups: the request draws as it goes.
fn noise_up_front(groups: &[DrawGroup], inputs: &[Tensor], stdevs: &[f64], sizes: &[usize]) -> Vec<Vec<Tensor>> {
    if groups.is_empty() {
        return Vec::new();
    }
    let draw_group = |start: i64, rows: i64| -> Vec<Vec<Tensor>> {
        sizes
            .iter()
            .map(|&samples| {
                inputs
                    .iter()
                    .zip(stdevs)
                    .map(|(input, &stdev)| {
                        let part = input.narrow(0, start, rows).repeat_interleave_self_int(samples as i64, 0, None::<i64>);
                        part.empty_like().normal_(0.0, 1.0) * stdev
                    })
                    .collect()
            })
            .collect()
    };
    let mut start = 0i64;
    let mut drawn: Vec<Vec<Vec<Tensor>>> = Vec::with_capacity(groups.len());
    for group in groups {
        let rows = group.rows as i64;
        drawn.push(match group.seed {
            Some(seed) => crate::seeded::with_seed(seed, || draw_group(start, rows)),
            None => crate::seeded::unseeded(|| draw_group(start, rows)),
        });
        start += rows;
    }
    (0..sizes.len())
        .map(|partition| {
            (0..inputs.len()).map(|input| Tensor::cat(&drawn.iter().map(|group| &group[partition][input]).collect::<Vec<_>>(), 0)).collect()
        })
        .collect()
}

/// Captum's `GradientShap`: `baselines` (tensor, required) is a distribution of
/// baselines `(n_baselines, ...)`; for each of `n_samples` draws per row, noise with
/// `stdevs` (default 0) is added, a baseline is drawn and a random point between
/// them is differentiated; attribution = mean over draws of (noisy input -
/// baseline) × gradient.
pub fn gradient_shap(context: &mut Context<'_>) -> Result<MethodResult> {
    apply_row_cap(context)?;
    let n_samples = context.options.int("n_samples", 5, 1, 100_000)?;
    let stdevs = per_input(context, "stdevs", 0.0)?;
    if let Some(seed) = context.options.optional_int("seed", 0, i64::MAX)? {
        tch::manual_seed(seed);
    }
    let batch = context.batch();
    let rows = batch * n_samples;
    let device = context.inputs[0].device();
    let explicit_noise = explicit_noise(context, n_samples as usize)?;
    let inputs = shallow(&context.inputs);
    let mut distributions = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let name = if index == 0 { "baselines".to_string() } else { format!("baselines.{index}") };
        let distribution = context
            .tensor_param("baselines", index)?
            .ok_or_else(|| context.options.missing(&name, "a tensor of baselines (n_baselines, ...) shaped like the input rows"))?;
        if distribution.size()[1..] != input.size()[1..] {
            return Err(Error::bad_input(format!(
                "{name} has shape {:?}; gradient_shap needs (n_baselines, {}) to match the input {:?}",
                distribution.size(),
                input.size()[1..].iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                input.size()
            )));
        }
        distributions.push(distribution);
    }
    // Noise, baseline indices and coefficients all come from libtorch's generator;
    // Captum draws the last two from numpy's, so seeded runs repeat but differ from
    // Captum's unless `baseline_indices` and `rand_coefficients` are given.
    let noisy: Vec<Tensor> = inputs
        .iter()
        .zip(&stdevs)
        .enumerate()
        .map(|(index, (input, &stdev))| {
            let expanded = input.repeat_interleave_self_int(n_samples, 0, None::<i64>);
            match &explicit_noise {
                Some(noise) => &expanded + &noise[index],
                None => &expanded + expanded.empty_like().normal_(0.0, 1.0) * stdev,
            }
        })
        .collect();
    let indices = match context.tensor_params.get("baseline_indices") {
        Some(host) => {
            host.validate("baseline_indices")?;
            if host.values.len() as i64 != rows {
                return Err(Error::bad_input(format!("baseline_indices needs {rows} values (batch × n_samples), got {}", host.values.len())));
            }
            Tensor::from_slice(&host.values.iter().map(|&value| value as i64).collect::<Vec<_>>()).to_device(device)
        }
        // Captum draws baseline indices for each input separately.
        None => Tensor::randint(distributions[0].size()[0], [rows], (Kind::Int64, device)),
    };
    let mut per_input_indices = vec![indices];
    for distribution in &distributions[1..] {
        per_input_indices.push(match context.tensor_params.get("baseline_indices") {
            Some(_) => per_input_indices[0].shallow_clone(),
            None => Tensor::randint(distribution.size()[0], [rows], (Kind::Int64, device)),
        });
    }
    let coefficients = match context.tensor_params.get("rand_coefficients") {
        Some(host) => {
            host.validate("rand_coefficients")?;
            if host.values.len() as i64 != rows {
                return Err(Error::bad_input(format!("rand_coefficients needs {rows} values (batch × n_samples), got {}", host.values.len())));
            }
            Tensor::from_slice(&host.values).to_device(device)
        }
        None => Tensor::rand([rows], (Kind::Float, device)),
    };
    let mut drawn = Vec::new();
    let mut points = Vec::new();
    for ((input, distribution), indices) in noisy.iter().zip(&distributions).zip(&per_input_indices) {
        let count = distribution.size()[0];
        let baseline = distribution.f_index_select(0, &indices.clamp(0, count - 1)).map_err(torch_error("drawing baselines"))?;
        let mut view_shape = vec![rows];
        view_shape.extend(std::iter::repeat_n(1, input.dim() - 1));
        let coefficient = coefficients.view(view_shape.as_slice());
        points.push(&coefficient * input + (1.0 - &coefficient) * &baseline);
        drawn.push(baseline);
    }
    let expanded_targets: Vec<i64> = context.targets.iter().flat_map(|&target| std::iter::repeat_n(target, n_samples as usize)).collect();
    let grads = gradients(context.model, &mut context.chunking, &points, &expanded_targets)?;
    let values = grads
        .iter()
        .zip(noisy.iter().zip(&drawn))
        .map(|(gradient, (input, baseline))| {
            let attribution = (input - baseline) * gradient;
            let mut shape = vec![batch, n_samples];
            shape.extend_from_slice(&attribution.size()[1..]);
            attribution.view(shape.as_slice()).mean_dim(1, false, Kind::Float)
        })
        .collect();
    Ok(MethodResult { values, convergence_deltas: Vec::new(), n_steps: None, figure_values: None })
}

/// A per-input number: `stdevs=0.1` for all inputs or `stdevs=0.1,0.2`.
fn per_input(context: &Context<'_>, key: &str, default: f64) -> Result<Vec<f64>> {
    let count = context.inputs.len();
    match context.options.f64_list(key)? {
        None => Ok(vec![default; count]),
        Some(values) if values.len() == 1 => Ok(vec![values[0]; count]),
        Some(values) if values.len() == count => Ok(values),
        Some(values) => Err(Error::bad_input(format!("{key} has {} values for {count} inputs; give one, or one per input", values.len()))),
    }
}

/// Explicit noise tensors (`noise`, `noise.1`, ...), each `(batch × samples, ...)`
/// in Captum's order (each row's samples together).
fn explicit_noise(context: &Context<'_>, samples: usize) -> Result<Option<Vec<Tensor>>> {
    let mut noises = Vec::new();
    for (index, input) in context.inputs.iter().enumerate() {
        match context.tensor_param("noise", index)? {
            None if index == 0 => return Ok(None),
            None => return Err(Error::bad_input(format!("noise was given for input 0 but not for input {index}"))),
            Some(noise) => {
                let mut expected = input.size();
                expected[0] *= samples as i64;
                if noise.size() != expected {
                    return Err(Error::bad_input(format!(
                        "noise{} has shape {:?}; expected {expected:?} (batch × samples, ...)",
                        if index == 0 { String::new() } else { format!(".{index}") },
                        noise.size()
                    )));
                }
                noises.push(noise);
            }
        }
    }
    Ok(Some(noises))
}
