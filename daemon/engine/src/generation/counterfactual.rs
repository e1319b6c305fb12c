//! Counterfactuals: the smallest change to an input that makes the model predict a
//! chosen class. Projected-gradient style steps on the cross-entropy towards the
//! target (normalised gradient steps for L2, signed steps for L∞), kept inside the
//! valid value range; a row stops as soon as it is predicted as its target. Then each
//! flipped row's change is shrunk by bisection along the line from the original to the
//! point found, keeping the target prediction, so the answer is close to the smallest
//! change in that direction.

use super::{check_steps, Report};
use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    L2,
    LInf,
}

impl Norm {
    pub fn parse(text: &str) -> Result<Norm> {
        match text {
            "" | "l2" | "L2" => Ok(Norm::L2),
            "linf" | "Linf" | "l_inf" => Ok(Norm::LInf),
            other => Err(Error::bad_input(format!("norm '{other}' is unknown; use 'l2' or 'linf'"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CounterfactualRequest {
    pub input: HostTensor,
    /// One target for every row, or one per row.
    pub targets: Vec<i64>,
    pub norm: Norm,
    /// 0: the default (100).
    pub steps: u32,
    /// None: 1% of the value range × √(elements per row) for L2, 1% of the range for L∞.
    pub step_size: Option<f64>,
    pub low: f32,
    pub high: f32,
}

pub const DEFAULT_STEPS: u32 = 100;
/// Bisection steps that shrink each flipped row's change.
const SHRINK_STEPS: usize = 10;

#[derive(Debug, Clone)]
pub struct CounterfactualProgress {
    pub step: u32,
    pub steps: u32,
    pub flipped: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualRow {
    pub flipped: bool,
    /// In the request's norm.
    pub distance: f32,
    pub l2_distance: f32,
    pub steps: u32,
    pub original_class: i64,
    pub final_class: i64,
    /// Class probabilities from the original input, after each step, and at the
    /// answer.
    pub probability_path: Vec<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct Counterfactual {
    pub counterfactual: HostTensor,
    pub rows: Vec<CounterfactualRow>,
}

fn to_vec<T>(tensor: &Tensor) -> Vec<T>
where
    for<'a> Vec<T>: TryFrom<&'a Tensor>,
{
    Vec::<T>::try_from(&tensor.detach().to_device(tch::Device::Cpu).contiguous().view([-1])).unwrap_or_default()
}

pub fn counterfactual(
    model: &LoadedModel,
    request: &CounterfactualRequest,
    max_steps: u32,
    report: Report<'_, CounterfactualProgress>,
) -> Result<Counterfactual> {
    model.check_inputs(std::slice::from_ref(&request.input))?;
    let steps = check_steps(request.steps, DEFAULT_STEPS, max_steps)?;
    if !(request.low.is_finite() && request.high.is_finite() && request.low < request.high) {
        return Err(Error::bad_input(format!("the value range [{}, {}] is empty; low must be below high", request.low, request.high)));
    }
    let device = model.device.to_tch();
    let original = request.input.to_tch(device)?;
    let rows = original.size()[0];
    let targets: Vec<i64> = match request.targets.len() {
        1 => vec![request.targets[0]; rows as usize],
        n if n as i64 == rows => request.targets.clone(),
        0 => return Err(Error::bad_input("no target class given")),
        n => return Err(Error::bad_input(format!("{n} targets for {rows} rows; give one for all rows, or one per row"))),
    };
    let elements = original.numel() as i64 / rows;
    let range = f64::from(request.high - request.low);
    let step_size = match request.step_size {
        Some(size) if size > 0.0 && size.is_finite() => size,
        Some(size) => return Err(Error::bad_input(format!("step size {size} must be positive"))),
        None => match request.norm {
            Norm::L2 => 0.01 * range * (elements as f64).sqrt(),
            Norm::LInf => 0.01 * range,
        },
    };
    let forward = |x: &Tensor| -> Result<Tensor> {
        let output = model.forward(&[x.shallow_clone()])?;
        if output.dim() != 2 {
            return Err(Error::bad_input(format!("the model output has shape {:?}; counterfactuals need (batch, classes)", output.size())));
        }
        Ok(output)
    };
    let initial = {
        let _no_grad = tch::no_grad_guard();
        forward(&original)?
    };
    let classes = initial.size()[1];
    if let Some(bad) = targets.iter().find(|&&target| target < 0 || target >= classes) {
        return Err(Error::bad_input(format!("target class {bad} is out of range; the model has classes 0..{}", classes - 1)));
    }
    let target_tensor = Tensor::from_slice(&targets).to_device(device);
    let original_classes: Vec<i64> = to_vec(&initial.argmax(1, false));
    let mut paths: Vec<Vec<Vec<f32>>> = vec![Vec::new(); rows as usize];
    let mut done = vec![false; rows as usize];
    let mut steps_taken = vec![0u32; rows as usize];
    let mut current = original.copy();
    let view = |t: &Tensor| t.reshape([rows, -1]);
    for step in 0..=steps {
        if !report(None) {
            return Err(Error::new(ErrorKind::Cancelled, format!("cancelled at step {step} of {steps}")));
        }
        let x = current.detach().set_requires_grad(true);
        let output = forward(&x)?;
        let probabilities = to_vec::<f32>(&output.softmax(1, Kind::Float));
        let predicted: Vec<i64> = to_vec(&output.argmax(1, false));
        for row in 0..rows as usize {
            if done[row] {
                continue;
            }
            paths[row].push(probabilities[row * classes as usize..(row + 1) * classes as usize].to_vec());
            steps_taken[row] = step;
            if predicted[row] == targets[row] {
                done[row] = true;
            }
        }
        let flipped = done.iter().filter(|&&flag| flag).count() as u32;
        if (step % 10 == 0 || step == steps) && !report(Some(CounterfactualProgress { step, steps, flipped })) {
            return Err(Error::new(ErrorKind::Cancelled, format!("cancelled at step {step} of {steps}")));
        }
        if step == steps || done.iter().all(|&flag| flag) {
            break;
        }
        let loss = output.cross_entropy_for_logits(&target_tensor);
        let gradient = Tensor::f_run_backward(&[&loss], &[&x], false, false)
            .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "computing the counterfactual's gradient"))?
            .remove(0);
        let _no_grad = tch::no_grad_guard();
        let active: Vec<f32> = done.iter().map(|&flag| if flag { 0.0 } else { 1.0 }).collect();
        let mut active_shape = vec![rows];
        active_shape.extend(std::iter::repeat_n(1, original.dim() - 1));
        let active = Tensor::from_slice(&active).reshape(&active_shape[..]).to_device(device);
        // Descend the loss: a step of `step_size` in L2 along the normalised gradient,
        // or of `step_size` per element along its sign.
        let update = match request.norm {
            Norm::L2 => {
                let norms = view(&gradient).norm_scalaropt_dim(2, [1i64].as_slice(), false).clamp_min(1e-12).reshape(&active_shape[..]);
                &gradient / norms * step_size
            }
            Norm::LInf => gradient.sign() * step_size,
        };
        current = (current - update * active).clamp(f64::from(request.low), f64::from(request.high));
    }

    // Shrink each flipped row's change by bisection on t in x0 + t·(x - x0).
    let _no_grad = tch::no_grad_guard();
    let delta = &current - &original;
    let mut low_t = vec![0.0f64; rows as usize];
    let mut high_t = vec![1.0f64; rows as usize];
    let mut shape = vec![rows];
    shape.extend(std::iter::repeat_n(1, original.dim() - 1));
    for _ in 0..SHRINK_STEPS {
        let middle: Vec<f32> = low_t.iter().zip(&high_t).map(|(low, high)| ((low + high) / 2.0) as f32).collect();
        let t = Tensor::from_slice(&middle).reshape(&shape[..]).to_device(device);
        let predicted: Vec<i64> = to_vec(&forward(&(&original + &delta * &t))?.argmax(1, false));
        for row in 0..rows as usize {
            if !done[row] {
                continue;
            }
            if predicted[row] == targets[row] {
                high_t[row] = f64::from(middle[row]);
            } else {
                low_t[row] = f64::from(middle[row]);
            }
        }
    }
    let final_t: Vec<f32> = high_t.iter().zip(&done).map(|(t, &flipped)| if flipped { *t as f32 } else { 1.0 }).collect();
    let t = Tensor::from_slice(&final_t).reshape(&shape[..]).to_device(device);
    let answer = &original + &delta * &t;
    let output = forward(&answer)?;
    let probabilities = to_vec::<f32>(&output.softmax(1, Kind::Float));
    let final_classes: Vec<i64> = to_vec(&output.argmax(1, false));
    let change = view(&(&answer - &original));
    let l2: Vec<f32> = to_vec(&change.norm_scalaropt_dim(2, [1i64].as_slice(), false));
    let linf: Vec<f32> = to_vec(&change.abs().amax([1i64].as_slice(), false));
    let rows_out = (0..rows as usize)
        .map(|row| {
            let mut path = std::mem::take(&mut paths[row]);
            path.push(probabilities[row * classes as usize..(row + 1) * classes as usize].to_vec());
            CounterfactualRow {
                flipped: final_classes[row] == targets[row],
                distance: match request.norm {
                    Norm::L2 => l2[row],
                    Norm::LInf => linf[row],
                },
                l2_distance: l2[row],
                steps: steps_taken[row],
                original_class: original_classes[row],
                final_class: final_classes[row],
                probability_path: path,
            }
        })
        .collect();
    Ok(Counterfactual { counterfactual: HostTensor::from_tch(&answer)?, rows: rows_out })
}
