//! The model-parameter randomisation test of Adebayo et al. 2018 ("Sanity Checks for
//! Saliency Maps"): re-initialise the model's layers one after another from the
//! output towards the input (cascading), explain the same input with the same
//! method after each step, and report the Spearman rank correlation of |attribution|
//! with the original. A method that explains the model decorrelates as layers are
//! randomised; one that only reflects the input does not.

use super::{prepare, run_method, Attribution, AttributionRequest, Chunking};
use crate::error::{Error, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct SanityStep {
    /// The module whose parameters were re-initialised at this step (all layers
    /// listed before it stay randomised).
    pub layer: String,
    /// Mean over batch rows of the Spearman correlation with the original attribution.
    pub spearman: f64,
    pub spearman_per_row: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct SanityCheck {
    pub attribution: Attribution,
    pub steps: Vec<SanityStep>,
}

/// Runs the cascade on a fresh copy of the model (the resident model is untouched).
/// `seed` makes the re-initialisation repeatable.
pub fn sanity_check(model: &LoadedModel, request: &AttributionRequest, chunking: Chunking, seed: i64, signed: bool) -> Result<SanityCheck> {
    if request.layer.is_some() {
        return Err(Error::bad_input("the sanity check compares input attributions; layer methods are not supported"));
    }
    // Each randomised step continues the original's pass counts, so progress reports
    // span the whole check. `chunking` keeps the caller's handle only; `prepare` joins
    // the request's to it for every attribution.
    let mut chunking = chunking;
    chunking.stage = Some("original".to_string());
    let original = super::attribute(model, request, chunking.clone())?;
    chunking.rows_evaluated += original.rows_evaluated;
    chunking.passes += original.passes;
    let copy = model.fresh_copy()?;
    let groups = copy.parameter_groups()?;
    if groups.is_empty() {
        return Err(Error::bad_input("the model has no parameters to randomise"));
    }
    tch::manual_seed(seed);
    let mut steps = Vec::new();
    for (layer, parameters) in groups.iter().rev() {
        tch::no_grad(|| {
            for parameter in parameters {
                let mut parameter = parameter.shallow_clone();
                let count = parameter.numel();
                let std = if count > 1 { parameter.std(false).double_value(&[]) } else { 0.0 };
                let scale = if std.is_finite() && std > 0.0 { std } else { parameter.abs().mean(tch::Kind::Float).double_value(&[]).max(0.01) };
                parameter.copy_(&(parameter.randn_like() * scale));
            }
        });
        let mut step_chunking = chunking.continued();
        step_chunking.stage = Some(format!("randomised {layer}"));
        let (mut context, _) = prepare(&copy, request, step_chunking)?;
        let randomised = run_method(&mut context, &request.method, None)?;
        chunking.rows_evaluated = context.chunking.rows_evaluated;
        chunking.passes = context.chunking.passes;
        let per_row = spearman_per_row(&original.values, &randomised.values, signed)?;
        let mean = per_row.iter().sum::<f64>() / per_row.len().max(1) as f64;
        steps.push(SanityStep { layer: layer.clone(), spearman: mean, spearman_per_row: per_row });
    }
    Ok(SanityCheck { attribution: original, steps })
}

/// Spearman correlation of |a| and |b| (or a and b) per batch row, over all inputs'
/// elements.
fn spearman_per_row(original: &[HostTensor], randomised: &[Tensor], signed: bool) -> Result<Vec<f64>> {
    let batch = original[0].shape[0] as usize;
    let randomised: Vec<HostTensor> = randomised.iter().map(HostTensor::from_tch).collect::<Result<_>>()?;
    let mut rows = Vec::with_capacity(batch);
    for row in 0..batch {
        let take = |tensors: &[HostTensor]| -> Vec<f64> {
            tensors
                .iter()
                .flat_map(|tensor| {
                    let row_len = tensor.values.len() / batch;
                    tensor.values[row * row_len..(row + 1) * row_len].iter().map(move |value| f64::from(if signed { *value } else { value.abs() }))
                })
                .collect()
        };
        rows.push(spearman(&take(original), &take(&randomised)));
    }
    Ok(rows)
}

pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Ranks with ties given their average rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let average = (start + end) as f64 / 2.0 + 1.0;
        for &index in &order[start..=end] {
            ranks[index] = average;
        }
        start = end + 1;
    }
    ranks
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut covariance, mut variance_a, mut variance_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        covariance += (x - mean_a) * (y - mean_b);
        variance_a += (x - mean_a).powi(2);
        variance_b += (y - mean_b).powi(2);
    }
    if variance_a == 0.0 || variance_b == 0.0 {
        return 0.0;
    }
    covariance / (variance_a * variance_b).sqrt()
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_matches_hand_computed_values() {
        // Monotone → 1, reversed → -1; with one tie, ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]:
        // Pearson = 4.5 / sqrt(4.5 * 5) = 0.9486...
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 300.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        let tied = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((tied - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12, "{tied}");
    }
}
