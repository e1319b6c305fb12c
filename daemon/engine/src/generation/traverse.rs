//! Latent traversals for generator models (a module mapping a latent vector to an
//! image): vary chosen latent dimensions over a range around z, or interpolate from z
//! to another latent, and run every latent through the model in one batch.

use crate::error::{Error, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;

#[derive(Debug, Clone)]
pub struct TraverseRequest {
    /// (1, D) or (D).
    pub z: HostTensor,
    pub dims: Vec<u32>,
    /// Each dim goes over z[d] + linspace(-range, range, steps).
    pub range: f64,
    /// 0: 7.
    pub steps: u32,
    /// Interpolate from z to this latent instead.
    pub z_end: Option<HostTensor>,
}

#[derive(Debug, Clone)]
pub struct Traversal {
    /// The model's outputs, (rows × columns, ...).
    pub images: HostTensor,
    /// The latents they came from, (rows × columns, D).
    pub latents: HostTensor,
    pub rows: u32,
    pub columns: u32,
}

/// Latents in one batch at most.
const MAX_LATENTS: usize = 1024;

pub fn traverse(model: &LoadedModel, request: &TraverseRequest) -> Result<Traversal> {
    let latent = |tensor: &HostTensor, what: &str| -> Result<Vec<f32>> {
        tensor.validate(what)?;
        match tensor.shape.as_slice() {
            [_] | [1, _] => Ok(tensor.values.clone()),
            shape => Err(Error::bad_input(format!("{what} has shape {shape:?}; a latent vector is (D) or (1, D)"))),
        }
    };
    let z = latent(&request.z, "z")?;
    if z.iter().any(|value| !value.is_finite()) {
        return Err(Error::bad_input("z holds NaN or infinite values"));
    }
    let columns = if request.steps == 0 { 7 } else { request.steps } as usize;
    if columns < 2 {
        return Err(Error::bad_input("a traversal needs at least 2 steps"));
    }
    let spread = |from: f64, to: f64| (0..columns).map(move |index| from + (to - from) * index as f64 / (columns - 1) as f64);
    let mut latents: Vec<Vec<f32>> = Vec::new();
    let rows = match &request.z_end {
        Some(end) => {
            let end = latent(end, "z_end")?;
            if end.len() != z.len() {
                return Err(Error::bad_input(format!("z has {} values but z_end has {}", z.len(), end.len())));
            }
            for t in spread(0.0, 1.0) {
                latents.push(z.iter().zip(&end).map(|(a, b)| (f64::from(*a) * (1.0 - t) + f64::from(*b) * t) as f32).collect());
            }
            1
        }
        None => {
            if request.dims.is_empty() {
                return Err(Error::bad_input("no latent dimension to vary (dims), and no z_end to interpolate to"));
            }
            if !(request.range > 0.0 && request.range.is_finite()) {
                return Err(Error::bad_input(format!("range {} must be positive", request.range)));
            }
            for &dim in &request.dims {
                if dim as usize >= z.len() {
                    return Err(Error::bad_input(format!("latent dimension {dim} is out of range; z has dimensions 0..{}", z.len() - 1)));
                }
                for offset in spread(-request.range, request.range) {
                    let mut varied = z.clone();
                    varied[dim as usize] = (f64::from(varied[dim as usize]) + offset) as f32;
                    latents.push(varied);
                }
            }
            request.dims.len()
        }
    };
    if latents.len() > MAX_LATENTS {
        return Err(Error::bad_input(format!("{} latents in one traversal; at most {MAX_LATENTS}", latents.len())));
    }
    let batch = HostTensor { shape: vec![latents.len() as i64, z.len() as i64], values: latents.concat(), integer: false };
    let device = model.device.to_tch();
    let _no_grad = tch::no_grad_guard();
    let output = model.forward(&[batch.to_tch(device)?])?;
    Ok(Traversal { images: HostTensor::from_tch(&output)?, latents: batch, rows: rows as u32, columns: columns as u32 })
}
