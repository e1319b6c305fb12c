//! Faithfulness metrics of an attribution, with Captum's definitions (Yeh et al.
//! 2019): `infidelity` (how well attribution · perturbation predicts the output
//! change under Gaussian perturbations) and `sensitivity_max` (the largest relative
//! change of the explanation under uniform input noise of radius `perturb_radius`).
//!
//! Perturbations are drawn from libtorch's default generator in the order Captum's
//! documented perturbation functions draw them (after `seed`, per input, over the
//! batch repeated `n_perturb_samples` times row by row), so a Captum run seeded the
//! same in the same process order gets the same numbers.

use super::gradients::forward_selected;
use super::{finish, prepare, run_method, shallow, torch_error, Attribution, AttributionRequest, Chunking, Context};
use crate::error::{Error, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub const METRICS: &[&str] = &["infidelity", "sensitivity_max"];
const OPTIONS: &[&str] = &["n_perturb_samples", "noise_std", "normalize", "perturb_radius", "seed"];

#[derive(Debug, Clone, Default)]
pub struct EvaluationRequest {
    pub attribution: AttributionRequest,
    /// Names from `METRICS`.
    pub metrics: Vec<String>,
    /// n_perturb_samples (10), noise_std (0.003, infidelity), normalize (false,
    /// infidelity), perturb_radius (0.02, sensitivity_max), seed.
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    pub attribution: Attribution,
    /// Per batch row.
    pub infidelity: Option<Vec<f64>>,
    pub sensitivity_max: Option<Vec<f64>>,
}

pub fn evaluate(model: &LoadedModel, request: &EvaluationRequest, chunking: Chunking) -> Result<Evaluation> {
    if request.metrics.is_empty() {
        return Err(Error::bad_input(format!("no metric given; available: {}", METRICS.join(", "))));
    }
    if let Some(unknown) = request.metrics.iter().find(|metric| !METRICS.contains(&metric.as_str())) {
        return Err(Error::bad_input(format!("unknown metric '{unknown}'; available: {}", METRICS.join(", "))));
    }
    let metric_options = super::Options::new("evaluate", &request.params);
    metric_options.accept(OPTIONS)?;
    let samples = metric_options.int("n_perturb_samples", 10, 1, 10_000)?;
    if let Some(seed) = metric_options.optional_int("seed", 0, i64::MAX)? {
        tch::manual_seed(seed);
    }
    let (mut context, output) = prepare(model, &request.attribution, chunking)?;
    let layer = request.attribution.layer.as_deref();
    let result = run_method(&mut context, &request.attribution.method, layer)?;
    let attributions = shallow(&result.values);
    let mut infidelity_values = None;
    let mut sensitivity_values = None;
    for metric in &request.metrics {
        match metric.as_str() {
            "infidelity" => {
                if layer.is_some() {
                    return Err(Error::bad_input("infidelity needs attributions to the inputs; layer methods attribute to a layer"));
                }
                let std = metric_options.f64("noise_std", 0.003)?;
                let normalize = metric_options.bool("normalize", false)?;
                infidelity_values = Some(infidelity(&mut context, &attributions, samples, std, normalize)?);
            }
            _ => {
                let radius = metric_options.f64("perturb_radius", 0.02)?;
                sensitivity_values = Some(sensitivity_max(&mut context, &request.attribution, &attributions, samples, radius)?);
            }
        }
    }
    let attribution = finish(&request.attribution, context, &output, result)?;
    Ok(Evaluation { attribution, infidelity: infidelity_values, sensitivity_max: sensitivity_values })
}

fn infidelity(context: &mut Context<'_>, attributions: &[Tensor], samples: i64, std: f64, normalize: bool) -> Result<Vec<f64>> {
    let _no_grad = tch::no_grad_guard();
    let batch = context.batch();
    let expanded_targets: Vec<i64> = context.targets.iter().flat_map(|&target| std::iter::repeat_n(target, samples as usize)).collect();
    let mut noises = Vec::new();
    let mut perturbed = Vec::new();
    for input in &context.inputs {
        let expanded = input.repeat_interleave_self_int(samples, 0, None::<i64>);
        let noise = expanded.empty_like().normal_(0.0, 1.0) * std;
        perturbed.push(&expanded - &noise);
        noises.push(noise);
    }
    let at_inputs = context.selected_output()?;
    let at_perturbed = forward_selected(context.model, &mut context.chunking, &perturbed, &expanded_targets)?;
    let differences = (at_inputs.repeat_interleave_self_int(samples, 0, None::<i64>) - at_perturbed).to_kind(Kind::Double).view([batch, samples]);
    let mut products = Tensor::zeros([batch * samples], (Kind::Double, differences.device()));
    for (attribution, noise) in attributions.iter().zip(&noises) {
        if attribution.size() != context.inputs[0].size() && attribution.size()[1..] != noise.size()[1..] {
            return Err(Error::bad_input("infidelity needs attributions shaped like the inputs"));
        }
        let expanded = attribution.repeat_interleave_self_int(samples, 0, None::<i64>);
        products += (expanded * noise).to_kind(Kind::Double).view([batch * samples, -1]).sum_dim_intlist(1, false, Kind::Double);
    }
    let products = products.view([batch, samples]);
    let values = if normalize {
        let squares = products.pow_tensor_scalar(2).sum_dim_intlist(-1, false, Kind::Double);
        let cross = (&products * &differences).sum_dim_intlist(-1, false, Kind::Double);
        let difference_squares = differences.pow_tensor_scalar(2).sum_dim_intlist(-1, false, Kind::Double);
        // Captum's safe_div: a zero denominator counts as 1.
        let denominator = squares.where_self(&squares.ne(0.0), &squares.ones_like());
        let beta = &cross / denominator;
        &beta * &beta * &squares - 2.0 * &beta * &cross + difference_squares
    } else {
        (&products - &differences).pow_tensor_scalar(2).sum_dim_intlist(-1, false, Kind::Double)
    };
    to_f64(&(values / samples as f64))
}

fn sensitivity_max(context: &mut Context<'_>, request: &AttributionRequest, explanations: &[Tensor], samples: i64, radius: f64) -> Result<Vec<f64>> {
    let batch = context.batch();
    if request.tensor_params.contains_key("noise") {
        return Err(Error::bad_input("sensitivity_max re-explains perturbed inputs; explicit noise tensors cannot be reused for them"));
    }
    let perturbed: Vec<HostTensor> = context
        .inputs
        .iter()
        .map(|input| {
            let expanded = input.repeat_interleave_self_int(samples, 0, None::<i64>);
            let noise = expanded.empty_like().uniform_(-radius, radius);
            HostTensor::from_tch(&(expanded + noise))
        })
        .collect::<Result<_>>()?;
    // Tensor options with one row per batch row follow their rows.
    let tensor_params: BTreeMap<String, HostTensor> =
        request.tensor_params.iter().map(|(key, value)| (key.clone(), repeat_rows(value, batch, samples))).collect();
    let expanded_request = AttributionRequest {
        method: request.method.clone(),
        inputs: perturbed,
        targets: super::Targets::PerRow(context.targets.iter().flat_map(|&target| std::iter::repeat_n(target, samples as usize)).collect()),
        params: request.params.clone(),
        tensor_params,
        layer: request.layer.clone(),
        progress: None,
        draw_groups: Vec::new(),
    };
    // The request's progress handle travels on the chunking, with the counts so far.
    let mut chunking = context.chunking.continued();
    chunking.stage = Some("sensitivity".to_string());
    let (mut perturbed_context, _) = prepare(context.model, &expanded_request, chunking)?;
    let perturbed_explanations = run_method(&mut perturbed_context, &request.method, request.layer.as_deref())?.values;
    context.chunking.rows_evaluated = perturbed_context.chunking.rows_evaluated;
    context.chunking.passes = perturbed_context.chunking.passes;
    let rows = batch * samples;
    let differences: Vec<Tensor> = explanations
        .iter()
        .zip(&perturbed_explanations)
        .map(|(explanation, perturbed)| (explanation.repeat_interleave_self_int(samples, 0, None::<i64>) - perturbed).view([rows, -1]))
        .collect();
    let originals: Vec<Tensor> = explanations.iter().map(|explanation| explanation.view([batch, -1])).collect();
    let difference_norms =
        Tensor::f_cat(&differences, 1).map_err(torch_error("joining explanations"))?.to_kind(Kind::Double).norm_scalaropt_dim(2, [1], false);
    let original_norms =
        Tensor::f_cat(&originals, 1).map_err(torch_error("joining explanations"))?.to_kind(Kind::Double).norm_scalaropt_dim(2, [1], false);
    let original_norms =
        original_norms.where_self(&original_norms.ne(0.0), &original_norms.ones_like()).repeat_interleave_self_int(samples, 0, None::<i64>);
    let ratios = (difference_norms / original_norms).view([batch, samples]);
    to_f64(&ratios.amax([1], false))
}

/// A host tensor with `batch` rows repeated `samples` times each; other shapes as is.
fn repeat_rows(value: &HostTensor, batch: i64, samples: i64) -> HostTensor {
    if value.shape.first() != Some(&batch) || batch == 1 && value.shape.len() == 1 {
        return value.clone();
    }
    let row_len = value.values.len() / batch as usize;
    let mut values = Vec::with_capacity(value.values.len() * samples as usize);
    for row in value.values.chunks(row_len) {
        for _ in 0..samples {
            values.extend_from_slice(row);
        }
    }
    let mut shape = value.shape.clone();
    shape[0] *= samples;
    HostTensor { shape, values, integer: value.integer }
}

fn to_f64(tensor: &Tensor) -> Result<Vec<f64>> {
    Vec::<f64>::try_from(&tensor.to_kind(Kind::Double).to_device(tch::Device::Cpu).view([-1])).map_err(torch_error("reading metric values"))
}
