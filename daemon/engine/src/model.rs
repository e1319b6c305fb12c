//! A TorchScript model loaded on one device, and the checks every request's input
//! goes through before it reaches libtorch.

use crate::device::Device;
use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use std::path::Path;

/// A TorchScript module resident on a device, in eval mode.
pub struct LoadedModel {
    module: tch::CModule,
    pub device: Device,
    /// Shape of one example input when the model was stored with one, e.g. `[1, 1, 8, 8]`;
    /// the batch dimension is not checked.
    pub input_shape: Option<Vec<i64>>,
}

/// Loads a TorchScript file on `device` and switches it to eval mode.
pub fn load_torchscript(path: &Path, device: Device, input_shape: Option<Vec<i64>>) -> Result<LoadedModel> {
    device.check_available()?;
    let mut module = tch::CModule::load_on_device(path, device.to_tch()).map_err(|error| {
        let reason = crate::error::torch_reason(&error.to_string());
        // libtorch's zip reader appends several sentences of advice about corrupted
        // checkpoints; the first sentence says what failed.
        let reason = reason.split(". ").next().unwrap_or(&reason).to_string();
        let kind = if reason.contains("out of memory") { ErrorKind::OutOfMemory } else { ErrorKind::BadInput };
        Error::new(
            kind,
            format!(
                "not a TorchScript model libtorch can load ({reason}); save the model with \
                 torch.jit.script(model).save(path) or torch.jit.trace(model, example).save(path), \
                 not torch.save"
            ),
        )
    })?;
    module.set_eval();
    Ok(LoadedModel { module, device, input_shape })
}

/// Checks that libtorch can load the file as TorchScript (on the CPU), so the store
/// only ever accepts loadable models.
pub fn validate_torchscript(path: &Path) -> Result<()> {
    load_torchscript(path, Device::Cpu, None).map(drop)
}

impl LoadedModel {
    /// Runs `forward` on one tensor. An error from inside the model is reported as
    /// bad input: the model rejected what it was given.
    pub fn forward(&self, input: &tch::Tensor) -> Result<tch::Tensor> {
        let output = self.module.forward_is(&[tch::IValue::Tensor(input.shallow_clone())]).map_err(|error| {
            Error::from_torch(error, ErrorKind::BadInput, &format!("the model rejected an input of shape {:?}", input.size()))
        })?;
        match output {
            tch::IValue::Tensor(tensor) => Ok(tensor),
            other => Err(Error::bad_input(format!(
                "the model returns {}; this explanation needs a single tensor output",
                ivalue_kind(&other)
            ))),
        }
    }

    /// Checks a request's input before it reaches libtorch: well formed, finite, and
    /// of the model's input shape when that is known.
    pub fn check_input(&self, input: &HostTensor) -> Result<()> {
        input.validate("input")?;
        let nan_count = input.values.iter().filter(|value| value.is_nan()).count();
        let infinite_count = input.values.iter().filter(|value| value.is_infinite()).count();
        if nan_count + infinite_count > 0 {
            return Err(Error::bad_input(format!(
                "input contains {nan_count} NaN and {infinite_count} infinite values; explanations need finite inputs"
            )));
        }
        if let Some(expected) = &self.input_shape {
            let matches = expected.len() == input.shape.len() && expected[1..] == input.shape[1..];
            if !matches {
                let mut expected_text: Vec<String> = expected.iter().map(i64::to_string).collect();
                if let Some(batch) = expected_text.first_mut() {
                    *batch = "N".to_string();
                }
                return Err(Error::bad_input(format!(
                    "input shape {:?} does not match the model's input shape [{}]",
                    input.shape,
                    expected_text.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn ivalue_kind(value: &tch::IValue) -> &'static str {
    match value {
        tch::IValue::Tuple(_) => "a tuple",
        tch::IValue::GenericList(_) | tch::IValue::TensorList(_) => "a list",
        tch::IValue::GenericDict(_) => "a dict",
        tch::IValue::None => "None",
        _ => "a non-tensor value",
    }
}
