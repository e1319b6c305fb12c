//! Attribution methods with Captum 0.9's semantics and names.
//!
//! Layout: `gradients` holds the one gradient routine (chunked into passes that fit
//! the memory budget) that every gradient method uses; `integrated` is integrated
//! gradients (fixed and adaptive step counts); `noise_tunnel` wraps any gradient
//! method in SmoothGrad / SmoothGrad² / VarGrad and implements GradientSHAP;
//! `perturbation` is occlusion and feature ablation; `layer` the layer methods.
//! This file parses requests, resolves targets and dispatches.

pub(crate) mod gradients;
pub(crate) mod integrated;
mod layer;
mod methods;
mod metrics;
mod noise_tunnel;
mod options;
mod perturbation;
mod progress;
mod sanity;

use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
pub use gradients::Chunking;
pub use methods::{find as find_method, MethodInfo, Sampling, METHODS};
pub use metrics::{evaluate, Evaluation, EvaluationRequest, METRICS};
pub(crate) use noise_tunnel::MAX_UPFRONT_NOISE_VALUES;
pub use options::Options;
pub use progress::{Progress, ProgressUpdate};
pub use sanity::{sanity_check, SanityCheck, SanityStep};
use std::collections::BTreeMap;
use tch::Tensor;

/// A request for one attribution, in plain types.
#[derive(Debug, Clone, Default)]
pub struct AttributionRequest {
    /// Captum's method name, e.g. `integrated_gradients`.
    pub method: String,
    /// The model's inputs, each `(batch, ...)`; most models take one.
    pub inputs: Vec<HostTensor>,
    /// Output index explained for every batch row, one per row, or none (the
    /// predicted class of each row).
    pub targets: Targets,
    /// Further options under Captum's argument names, as text.
    pub params: BTreeMap<String, String>,
    /// Tensor-valued options: `baselines` (`baselines.1` for the second input, ...),
    /// `feature_mask`, `noise`.
    pub tensor_params: BTreeMap<String, HostTensor>,
    /// Module path for layer methods.
    pub layer: Option<String>,
    /// Told after every pass; stops the request when it answers `false` (progress.rs).
    /// Not part of what is computed: two requests that differ only here give the
    /// same answer.
    pub progress: Option<Progress>,
    /// A joined request (batching.rs) of a method that draws noise: each original
    /// request's rows, in order, with its own `seed`, so each part's noise is drawn as
    /// that request would draw it alone. Empty for a request of one caller.
    pub draw_groups: Vec<DrawGroup>,
}

/// The rows of one caller's request inside a joined request, and its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawGroup {
    pub rows: usize,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Targets {
    /// The class each row's output ranks highest.
    #[default]
    Predicted,
    /// The same output index for every row.
    All(i64),
    /// One output index per batch row.
    PerRow(Vec<i64>),
}

/// The answer: one attribution per input, plus what explains them.
#[derive(Debug, Clone)]
pub struct Attribution {
    pub method: String,
    /// One target per batch row.
    pub targets: Vec<i64>,
    /// One per input, each shaped as its input (layer methods: as the layer's output).
    pub values: Vec<HostTensor>,
    /// The model's output for the inputs, `(batch, outputs)`.
    pub output: HostTensor,
    /// Per batch row, Captum's convergence delta (methods that have one).
    pub convergence_deltas: Vec<f64>,
    /// Integrated gradients: the number of steps used.
    pub n_steps: Option<u32>,
    /// Rows evaluated (forward, or forward and backward) and the passes they were
    /// batched into.
    pub rows_evaluated: u64,
    pub passes: u64,
    /// For figures: the attribution to draw over input 0 when it is not `values[0]`.
    pub figure_values: Option<HostTensor>,
}

impl AttributionRequest {
    /// Whether running the request twice gives the same numbers, so an answer may be
    /// reused: every method is a pure function of its inputs and options except the
    /// sampling ones and `baselines` = `uniform`, which are only with an explicit
    /// `seed` (SmoothGrad and its kin with explicit `noise` draw nothing unless their
    /// baselines are uniform; GradientSHAP always draws baselines and points).
    pub fn is_deterministic(&self) -> bool {
        // An unknown method fails; nothing to keep. Every known one says how it samples
        // in the table, so none can be cached by omission.
        let Ok(method) = methods::find(&self.method) else { return false };
        if self.params.contains_key("seed") {
            return true;
        }
        if self.params.get("baselines").is_some_and(|kind| kind == "uniform") {
            return false;
        }
        match method.sampling {
            Sampling::Never => true,
            Sampling::UnlessNoiseGiven => self.tensor_params.contains_key("noise"),
            Sampling::Always => false,
        }
    }
}

/// What a method computed, before the common fields are filled in.
pub(crate) struct MethodResult {
    pub values: Vec<Tensor>,
    pub convergence_deltas: Vec<f64>,
    pub n_steps: Option<u32>,
    /// What a figure should draw when it differs from `values[0]` (a coarse layer map
    /// resized to the input).
    pub figure_values: Option<Tensor>,
}

/// Everything a method needs: the model, inputs on its device, resolved targets,
/// options and the pass counter.
pub(crate) struct Context<'a> {
    pub model: &'a LoadedModel,
    pub inputs: Vec<Tensor>,
    pub targets: Vec<i64>,
    pub options: Options<'a>,
    pub tensor_params: &'a BTreeMap<String, HostTensor>,
    /// See [`AttributionRequest::draw_groups`].
    pub draw_groups: &'a [DrawGroup],
    pub chunking: Chunking,
    /// The model's output for `inputs` (no gradient), from resolving the targets.
    pub output: Tensor,
}

impl Context<'_> {
    pub fn batch(&self) -> i64 {
        self.inputs[0].size()[0]
    }

    /// output[row, target[row]] for every row, as float32 (no forward pass).
    pub fn selected_output(&self) -> Result<Tensor> {
        let index = Tensor::from_slice(&self.targets).to_device(self.output.device()).view([-1, 1]);
        self.output
            .f_gather(1, &index, false)
            .and_then(|picked| picked.f_view([-1]))
            .and_then(|picked| picked.f_to_kind(tch::Kind::Float))
            .map_err(torch_error("selecting the target outputs"))
    }

    /// A tensor option for input `index` (`name`, `name.1`, ...), on the device and
    /// checked against `shape` rules by the caller.
    pub fn tensor_param(&self, name: &str, index: usize) -> Result<Option<Tensor>> {
        let key = if index == 0 { name.to_string() } else { format!("{name}.{index}") };
        match self.tensor_params.get(&key) {
            None => Ok(None),
            Some(host) => {
                host.validate(&key)?;
                Ok(Some(host.to_tch(self.model.device.to_tch())?))
            }
        }
    }
}

/// Runs one attribution on a loaded model. Called on the model's worker thread.
pub fn attribute(model: &LoadedModel, request: &AttributionRequest, chunking: Chunking) -> Result<Attribution> {
    let method = methods::find(&request.method)?;
    // Methods whose gradient passes compute the output anyway need no separate forward
    // pass for it when the targets are explicit.
    let defer_output = method.output_from_gradient_passes && request.targets != Targets::Predicted;
    let (mut context, _) = prepare_deferring(model, request, chunking, defer_output)?;
    let result = run_method(&mut context, &request.method, request.layer.as_deref())?;
    let output = context.output.shallow_clone();
    finish(request, context, &output, result)
}

/// The answer from a method's result.
pub(crate) fn finish(request: &AttributionRequest, context: Context<'_>, output: &Tensor, result: MethodResult) -> Result<Attribution> {
    let values = result.values.iter().map(HostTensor::from_tch).collect::<Result<Vec<_>>>()?;
    Ok(Attribution {
        method: request.method.clone(),
        targets: context.targets,
        values,
        output: HostTensor::from_tch(output)?,
        convergence_deltas: result.convergence_deltas,
        n_steps: result.n_steps,
        rows_evaluated: context.chunking.rows_evaluated,
        passes: context.chunking.passes,
        figure_values: result.figure_values.as_ref().map(HostTensor::from_tch).transpose()?,
    })
}

/// Dispatches to the method through the table: its options are checked against the
/// entry, then its run function computes it on the prepared context.
pub(crate) fn run_method(context: &mut Context<'_>, method: &str, layer: Option<&str>) -> Result<MethodResult> {
    let method = methods::find(method)?;
    context.options.accept(method.options)?;
    let run = methods::run_function(method.name).ok_or_else(|| Error::internal(format!("{} has no run function", method.name)))?;
    run(context, method, layer)
}

/// Checks the request and runs it: the common start of attribute, evaluate and
/// the sanity check. Answers the context (inputs on the device, targets) and the
/// model's output.
pub(crate) fn prepare<'a>(model: &'a LoadedModel, request: &'a AttributionRequest, chunking: Chunking) -> Result<(Context<'a>, Tensor)> {
    prepare_deferring(model, request, chunking, false)
}

/// `prepare`; with `defer_output`, the targets must be explicit and no forward pass
/// runs here: the context's output is left undefined for the method to fill in, and
/// the targets are checked against the output's shape in the method's passes.
fn prepare_deferring<'a>(
    model: &'a LoadedModel,
    request: &'a AttributionRequest,
    chunking: Chunking,
    defer_output: bool,
) -> Result<(Context<'a>, Tensor)> {
    let method = methods::find(&request.method)?;
    if request.inputs.is_empty() {
        return Err(Error::bad_input("the request has no input tensor"));
    }
    model.check_inputs(&request.inputs)?;
    if !method.layer && request.inputs.iter().any(|input| input.integer) {
        return Err(Error::bad_input(format!(
            "{} needs gradients or perturbations of the inputs, but integer inputs (token ids) have neither; \
             attribute to the model's embedding layer instead with a layer method ({}) and --layer PATH",
            request.method,
            METHODS.iter().filter(|method| method.layer).map(|method| method.name).collect::<Vec<_>>().join(", ")
        )));
    }
    let device = model.device.to_tch();
    let inputs = request.inputs.iter().map(|input| input.to_tch(device)).collect::<Result<Vec<_>>>()?;
    let mut chunking = chunking;
    // A handle the caller put on the chunking (a scheduler's cancel flag) and the
    // request's own both apply.
    chunking.progress = match (chunking.progress.take(), request.progress.clone()) {
        (Some(first), Some(second)) => Some(first.and(second)),
        (first, second) => first.or(second),
    };
    // The targets' forward pass is chunked and counted like every other pass.
    let (output, targets) = if defer_output {
        (Tensor::new(), explicit_targets(&request.targets, inputs[0].size()[0])?)
    } else {
        resolve_targets(model, &mut chunking, &inputs, &request.targets)?
    };
    let options = Options::new(&request.method, &request.params);
    let context = Context {
        model,
        inputs,
        targets,
        options,
        tensor_params: &request.tensor_params,
        draw_groups: &request.draw_groups,
        chunking,
        output: output.shallow_clone(),
    };
    Ok((context, output))
}

/// The forward pass without gradients: the output, and one target per row (the
/// predicted class where none was given), checked against the output's width.
fn resolve_targets(model: &LoadedModel, chunking: &mut Chunking, inputs: &[Tensor], targets: &Targets) -> Result<(Tensor, Vec<i64>)> {
    let output = gradients::forward_output(model, chunking, inputs)?;
    let batch = inputs[0].size()[0];
    let resolved = match targets {
        Targets::Predicted => {
            check_targets(&output, batch, &[])?;
            let predicted = output.argmax(1, false).to_device(tch::Device::Cpu);
            Vec::<i64>::try_from(&predicted).map_err(|error| Error::from_torch(error, ErrorKind::Internal, "reading the predicted classes"))?
        }
        explicit => explicit_targets(explicit, batch)?,
    };
    check_targets(&output, batch, &resolved)?;
    Ok((output, resolved))
}

/// One target per row from explicit targets (`Predicted` needs the output).
fn explicit_targets(targets: &Targets, batch: i64) -> Result<Vec<i64>> {
    match targets {
        Targets::Predicted => Err(Error::internal("predicted targets need the model's output")),
        Targets::All(target) => Ok(vec![*target; batch as usize]),
        Targets::PerRow(targets) => {
            if targets.len() as i64 != batch {
                return Err(Error::bad_input(format!(
                    "{} targets were given for a batch of {batch} rows; give one per row or a single target",
                    targets.len()
                )));
            }
            Ok(targets.clone())
        }
    }
}

/// The output must be (batch, outputs) and every target one of the outputs.
pub(crate) fn check_targets(output: &Tensor, batch: i64, targets: &[i64]) -> Result<()> {
    let output_shape = output.size();
    if output_shape.len() != 2 || output_shape[0] != batch {
        return Err(Error::bad_input(format!(
            "the model's output has shape {output_shape:?}; attribution needs (batch, outputs) with batch {batch}"
        )));
    }
    let n_outputs = output_shape[1];
    if let Some(bad) = targets.iter().find(|&&target| target < 0 || target >= n_outputs) {
        return Err(Error::bad_input(format!("target {bad} is out of range: the model has {n_outputs} outputs (0..={})", n_outputs - 1)));
    }
    Ok(())
}

/// Maps libtorch failures inside a method: out-of-memory keeps its kind, anything
/// else is ours.
pub(crate) fn torch_error(doing: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |error| Error::from_torch(error, ErrorKind::Internal, doing)
}

/// Cheap copies (shared storage) of a list of tensors.
pub(crate) fn shallow(tensors: &[Tensor]) -> Vec<Tensor> {
    tensors.iter().map(Tensor::shallow_clone).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, text params, tensor param names, reusable)
    /// (method, text params, tensor param names, reusable)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], bool);

    #[test]
    fn only_unseeded_sampling_is_nondeterministic() {
        let cases: &[Case] = &[
            ("saliency", &[], &[], true),
            ("integrated_gradients", &[("n_steps", "16")], &[], true),
            ("integrated_gradients", &[("baselines", "uniform")], &[], false),
            ("integrated_gradients", &[("baselines", "uniform"), ("seed", "3")], &[], true),
            ("occlusion", &[], &[], true),
            ("grad_cam", &[], &[], true),
            ("smoothgrad", &[], &[], false),
            ("smoothgrad", &[("seed", "0")], &[], true),
            ("smoothgrad", &[], &["noise"], true),
            ("vargrad", &[], &[], false),
            ("gradient_shap", &[], &["baselines", "noise"], false),
            ("gradient_shap", &[("seed", "1")], &["baselines"], true),
            ("no_such_method", &[], &[], false),
        ];
        for &(method, params, tensor_params, expected) in cases {
            let request = AttributionRequest {
                method: method.to_string(),
                params: params.iter().map(|&(key, value)| (key.to_string(), value.to_string())).collect(),
                tensor_params: tensor_params
                    .iter()
                    .map(|&key| (key.to_string(), HostTensor { shape: vec![1], values: vec![0.0], integer: false }))
                    .collect(),
                ..AttributionRequest::default()
            };
            assert_eq!(request.is_deterministic(), expected, "{method} {params:?} {tensor_params:?}");
        }
    }
}
