//! `HostTensor`: the engine's plain float32 tensor in host memory, the type that
//! crosses the engine boundary in both directions.

use crate::error::{Error, Result};

/// Row-major values with their shape, e.g. `(batch, channels, height, width)`. Values
/// are float32; an `integer` tensor (token ids) holds whole numbers, exactly
/// representable (|v| < 2^24), and goes to the model as int64.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostTensor {
    pub shape: Vec<i64>,
    pub values: Vec<f32>,
    pub integer: bool,
}

impl HostTensor {
    /// Checks that the shape is non-empty, has no zero or negative dimension and
    /// matches the number of values.
    pub fn validate(&self, what: &str) -> Result<()> {
        let shape = crate::error::shape_text(&self.shape);
        if self.shape.is_empty() {
            return Err(Error::bad_input(format!("{what} is a scalar (0-d); expected at least a batch dimension")));
        }
        if let Some(axis) = self.shape.iter().position(|&dim| dim <= 0) {
            return Err(Error::bad_input(format!(
                "{what} shape {shape} has size {} in dimension {axis}; every dimension needs at least one element",
                self.shape[axis]
            )));
        }
        let expected = self.shape.iter().try_fold(1usize, |count, &dim| count.checked_mul(dim as usize));
        if expected != Some(self.values.len()) {
            let expected = expected.map(|count| count.to_string()).unwrap_or_else(|| "more".to_string());
            return Err(Error::bad_input(format!("{what} shape {shape} needs {expected} values but {} were given", self.values.len())));
        }
        Ok(())
    }

    /// Rows (first dimension) of the tensor.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0).max(0) as usize
    }

    /// The tensors stacked along their first dimension; they must agree in the rest of
    /// their shape and in `integer` (the batcher only joins tensors that do).
    pub fn concat_rows(parts: &[&HostTensor]) -> HostTensor {
        let mut shape = parts.first().map(|part| part.shape.clone()).unwrap_or_default();
        if let Some(rows) = shape.first_mut() {
            *rows = parts.iter().map(|part| part.shape[0]).sum();
        }
        let values = parts.iter().flat_map(|part| part.values.iter().copied()).collect();
        HostTensor { shape, values, integer: parts.first().is_some_and(|part| part.integer) }
    }

    /// Splits along the first dimension into pieces of `rows[i]` rows each (their sum
    /// is this tensor's row count).
    pub fn split_rows(&self, rows: &[usize]) -> Vec<HostTensor> {
        let row_len: usize = self.shape.iter().skip(1).product::<i64>().max(0) as usize;
        let mut start = 0;
        rows.iter()
            .map(|&count| {
                let mut shape = self.shape.clone();
                shape[0] = count as i64;
                let end = start + count * row_len;
                let part = HostTensor { shape, values: self.values[start..end].to_vec(), integer: self.integer };
                start = end;
                part
            })
            .collect()
    }

    pub(crate) fn to_tch(&self, device: tch::Device) -> Result<tch::Tensor> {
        wait_for_device(device);
        crate::trace::time(crate::trace::Phase::ToDevice, || self.copy_to(device))
    }

    fn copy_to(&self, device: tch::Device) -> Result<tch::Tensor> {
        let kind = if self.integer { tch::Kind::Int64 } else { tch::Kind::Float };
        tch::Tensor::f_from_slice(&self.values)
            .and_then(|flat| flat.f_to_kind(kind))
            .and_then(|flat| flat.f_reshape(self.shape.as_slice()))
            .and_then(|tensor| tensor.f_to_device(device))
            .map_err(|error| Error::from_torch(error, crate::ErrorKind::Internal, "copying the input to the device"))
    }

    pub(crate) fn from_tch(tensor: &tch::Tensor) -> Result<HostTensor> {
        wait_for_device(tensor.device());
        crate::trace::time(crate::trace::Phase::ToHost, || HostTensor::copy_from(tensor))
    }

    fn copy_from(tensor: &tch::Tensor) -> Result<HostTensor> {
        let on_host = tensor
            .f_to_kind(tch::Kind::Float)
            .and_then(|t| t.f_to_device(tch::Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_view([-1]))
            .map_err(|error| Error::from_torch(error, crate::ErrorKind::Internal, "copying a result to the host"))?;
        let values =
            Vec::<f32>::try_from(&on_host).map_err(|error| Error::from_torch(error, crate::ErrorKind::Internal, "copying a result to the host"))?;
        Ok(HostTensor { shape: tensor.size(), values, integer: false })
    }
}

/// On CUDA, kernels run after the calls that queued them have returned, and a copy
/// between pageable host memory and the device waits for everything queued on the
/// stream before it (the daemon queues all its work on the default stream). Waiting
/// for the device before a copy is timed keeps the pass's time in the trace's `run`
/// and out of `to_device` and `to_host`; the copy would have waited as long, so the
/// wait adds no time. Nothing to wait for on the CPU.
fn wait_for_device(device: tch::Device) {
    if let tch::Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
