//! Attribution methods. One gradient routine (`input_gradients`) serves every
//! gradient-based method; today that is saliency, later integrated gradients,
//! SmoothGrad and Grad-CAM reuse it.

use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use std::collections::BTreeMap;

/// A request for one attribution, in plain types.
#[derive(Debug, Clone)]
pub struct AttributionRequest {
    /// Captum's method name, e.g. `saliency`.
    pub method: String,
    /// The model input, `(batch, ...)`.
    pub input: HostTensor,
    /// Output index explained for every batch row; `None` explains the predicted class.
    pub target: Option<i64>,
    /// Further options under Captum's argument names.
    pub params: BTreeMap<String, String>,
}

/// The answer: the attribution, with the targets and model output it explains.
#[derive(Debug, Clone)]
pub struct Attribution {
    pub method: String,
    /// One target per batch row.
    pub targets: Vec<i64>,
    /// Same shape as the input.
    pub values: HostTensor,
    /// The model's output for the input, `(batch, outputs)`.
    pub output: HostTensor,
    pub convergence_delta: Option<f64>,
}

/// Method names this engine serves.
pub const METHODS: &[&str] = &["saliency"];

/// Runs one attribution on a loaded model. Called on the model's worker thread.
pub fn attribute(model: &LoadedModel, request: &AttributionRequest) -> Result<Attribution> {
    model.check_input(&request.input)?;
    match request.method.as_str() {
        "saliency" => saliency(model, request),
        other => Err(Error::bad_input(format!(
            "unknown attribution method '{other}'; available: {}",
            METHODS.join(", ")
        ))),
    }
}

/// Captum's `Saliency`: the gradient of the target output with respect to the input,
/// in absolute value unless `abs=false`.
fn saliency(model: &LoadedModel, request: &AttributionRequest) -> Result<Attribution> {
    let options = Options::parse("saliency", &request.params, &["abs"])?;
    let absolute = options.bool("abs", true)?;
    let input = request.input.to_tch(model.device.to_tch())?;
    let gradients = input_gradients(model, &input, request.target)?;
    let values = if absolute { gradients.gradients.abs() } else { gradients.gradients };
    Ok(Attribution {
        method: "saliency".to_string(),
        targets: gradients.targets,
        values: HostTensor::from_tch(&values)?,
        output: HostTensor::from_tch(&gradients.output)?,
        convergence_delta: None,
    })
}

/// d output[row, target[row]] / d input for every batch row, with the output and the
/// resolved targets.
pub struct InputGradients {
    pub gradients: tch::Tensor,
    pub output: tch::Tensor,
    pub targets: Vec<i64>,
}

/// The one gradient routine: forward with the input on the autograd path, select one
/// output per batch row, backpropagate their sum (rows are independent, so each row's
/// gradient is that of its own output, exactly as Captum's `compute_gradients`).
pub fn input_gradients(model: &LoadedModel, input: &tch::Tensor, target: Option<i64>) -> Result<InputGradients> {
    let input = input.detach().set_requires_grad(true);
    let output = model.forward(&input)?;
    let output_shape = output.size();
    let batch = input.size()[0];
    if output_shape.len() != 2 || output_shape[0] != batch {
        return Err(Error::bad_input(format!(
            "the model's output has shape {output_shape:?}; attribution needs (batch, outputs) with batch {batch}"
        )));
    }
    let n_outputs = output_shape[1];
    let targets: Vec<i64> = match target {
        Some(target) if target < 0 || target >= n_outputs => {
            return Err(Error::bad_input(format!(
                "target {target} is out of range: the model has {n_outputs} outputs (0..={})",
                n_outputs - 1
            )))
        }
        Some(target) => vec![target; batch as usize],
        None => {
            let predicted = output.detach().argmax(1, false).to_device(tch::Device::Cpu);
            Vec::<i64>::try_from(&predicted)
                .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "reading the predicted classes"))?
        }
    };
    let index = tch::Tensor::from_slice(&targets).to_device(output.device()).view([-1, 1]);
    let selected = output
        .f_gather(1, &index, false)
        .and_then(|picked| picked.f_sum(tch::Kind::Float))
        .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "selecting the target outputs"))?;
    let mut gradients = tch::Tensor::f_run_backward(&[selected], &[&input], false, false)
        .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "computing input gradients"))?;
    let gradients = gradients.pop().ok_or_else(|| Error::internal("autograd returned no gradient for the input"))?;
    Ok(InputGradients { gradients, output: output.detach(), targets })
}

/// A method's options, checked against the names it accepts.
struct Options<'a> {
    method: &'a str,
    params: &'a BTreeMap<String, String>,
}

impl<'a> Options<'a> {
    fn parse(method: &'a str, params: &'a BTreeMap<String, String>, accepted: &[&str]) -> Result<Options<'a>> {
        if let Some(unknown) = params.keys().find(|key| !accepted.contains(&key.as_str())) {
            return Err(Error::bad_input(format!(
                "unknown parameter '{unknown}' for {method}; accepted: {}",
                if accepted.is_empty() { "none".to_string() } else { accepted.join(", ") }
            )));
        }
        Ok(Options { method, params })
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.params.get(key).map(String::as_str) {
            None => Ok(default),
            Some("true" | "True" | "1") => Ok(true),
            Some("false" | "False" | "0") => Ok(false),
            Some(other) => Err(Error::bad_input(format!(
                "parameter {key}={other} for {} is not a boolean; expected true or false",
                self.method
            ))),
        }
    }
}
