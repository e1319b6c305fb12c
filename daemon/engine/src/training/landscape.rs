//! The loss surface around a checkpoint (Li et al., "Visualizing the Loss Landscape of
//! Neural Nets", NeurIPS 2018): the loss of θ* + α·δ (1-D) or θ* + α·δ + β·η (2-D)
//! over a grid of coordinates, for a data batch and a loss.
//!
//! Directions are either
//! - random and *filter-normalised*: drawn from N(0, 1) (ChaCha8 seeded by the request,
//!   so a seed gives the same directions on every device), then for every parameter
//!   with two or more dimensions each filter (slice along the first dimension) is
//!   scaled to the norm of the same filter of θ*: `d_f ← d_f · ‖θ_f‖ / (‖d_f‖ + 1e-10)`.
//!   One-dimensional parameters (biases, normalisation weights) get a zero direction, as
//!   in Li et al.'s `ignore='biasbn'`. Buffers (running statistics) are never moved.
//! - or the top two PCA directions of a training trajectory: the differences
//!   θ_i − θ* of the trajectory's checkpoints, centred, decomposed by SVD; each
//!   checkpoint's coordinates are its difference projected on the two directions.
//!
//! The model is a fresh copy in eval mode, so BatchNorm uses the checkpoint's running
//! statistics and the resident model is never touched. Each grid point writes the
//! perturbed weights into the copy and runs the data through it in chunks sized to
//! the pass budget (forward only); the loss is the mean over the whole batch, as
//! `F.cross_entropy` / `F.mse_loss` with their default reduction compute it.

use crate::attribution::gradients::{in_chunks, Chunking};
use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use crate::taps::TappedModel;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};

/// Most grid points per direction.
pub const MAX_STEPS_1D: usize = 1001;
pub const MAX_STEPS_2D: usize = 101;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Mean cross entropy of logits `(batch, classes)` against class indices `(batch,)`.
    CrossEntropy,
    /// Mean squared error against targets of the output's shape.
    Mse,
    /// The mean of the model's output (a model that computes its own loss).
    Output,
}

/// One checkpoint of a trajectory: its label, step and parameters by name.
#[derive(Debug, Clone)]
pub struct TrajectoryCheckpoint {
    pub label: String,
    pub step: Option<i64>,
    pub parameters: Vec<(String, HostTensor)>,
}

#[derive(Debug, Clone)]
pub struct LandscapeRequest {
    /// The centre's parameters and buffers by name; `None` for the model's own weights.
    pub centre: Option<Vec<(String, HostTensor)>>,
    pub inputs: Vec<HostTensor>,
    pub targets: Option<HostTensor>,
    pub loss: LossKind,
    /// 1 or 2 (a trajectory makes it 2).
    pub dims: usize,
    pub steps: usize,
    /// Coordinates from −range to range; 0 with a trajectory: fitted to its points.
    pub range: f64,
    pub seed: u64,
    pub trajectory: Vec<TrajectoryCheckpoint>,
    pub return_directions: bool,
}

/// A direction per parameter: `values[d][p]` is direction d of parameter p.
#[derive(Debug, Clone, Default)]
pub struct Directions {
    pub names: Vec<String>,
    pub values: Vec<Vec<HostTensor>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryPoint {
    pub label: String,
    pub step: Option<i64>,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone)]
pub struct Landscape {
    pub dims: usize,
    pub steps: usize,
    pub range: f64,
    pub centre_loss: f64,
    pub coordinates: Vec<f64>,
    /// `steps` losses, or `steps × steps` row-major with the second direction's
    /// coordinate as the row.
    pub losses: Vec<f64>,
    pub directions: Option<Directions>,
    pub trajectory: Vec<TrajectoryPoint>,
    pub explained_variance: Vec<f64>,
    pub passes: u64,
    /// Caveats, e.g. buffers that could not be loaded.
    pub notes: Vec<String>,
}

fn torch_error(doing: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |error| Error::from_torch(error, ErrorKind::Internal, doing)
}

fn check_request(request: &LandscapeRequest) -> Result<usize> {
    let dims = if request.trajectory.is_empty() { request.dims } else { 2 };
    if !(1..=2).contains(&dims) {
        return Err(Error::bad_input(format!("a landscape has 1 or 2 dimensions, not {dims}")));
    }
    let most = if dims == 1 { MAX_STEPS_1D } else { MAX_STEPS_2D };
    if request.steps < 2 || request.steps > most {
        return Err(Error::bad_input(format!("steps must be 2..={most} for a {dims}-D landscape, not {}", request.steps)));
    }
    if !request.range.is_finite() || request.range < 0.0 || (request.range == 0.0 && request.trajectory.is_empty()) {
        return Err(Error::bad_input(format!("range must be a positive number, not {}", request.range)));
    }
    if request.trajectory.len() == 1 {
        return Err(Error::bad_input("a trajectory needs at least two checkpoints besides the centre"));
    }
    if request.inputs.is_empty() {
        return Err(Error::bad_input("a landscape needs a data batch: at least one input tensor"));
    }
    for (index, input) in request.inputs.iter().enumerate() {
        input.validate(&format!("input {index}"))?;
    }
    let rows = request.inputs[0].rows();
    if let Some(input) = request.inputs.iter().find(|input| input.rows() != rows) {
        return Err(Error::bad_input(format!("the inputs disagree in batch size: {rows} and {} rows", input.rows())));
    }
    match (request.loss, &request.targets) {
        (LossKind::Output, _) => {}
        (_, None) => return Err(Error::bad_input("cross entropy and MSE need targets (`y` in the data file)")),
        (loss, Some(targets)) => {
            targets.validate("the targets")?;
            if targets.rows() != rows {
                return Err(Error::bad_input(format!("the targets have {} rows for {rows} input rows", targets.rows())));
            }
            if loss == LossKind::CrossEntropy && (targets.shape.len() != 1 || targets.values.iter().any(|value| value.fract() != 0.0 || *value < 0.0))
            {
                return Err(Error::bad_input(format!(
                    "cross entropy needs class indices: targets of shape (batch,) holding whole numbers ≥ 0, not shape {:?}",
                    targets.shape
                )));
            }
        }
    }
    Ok(dims)
}

/// Computes a landscape on a fresh copy of `model`.
pub fn landscape(model: &LoadedModel, request: &LandscapeRequest, mut chunking: Chunking) -> Result<Landscape> {
    let dims = check_request(request)?;
    let copy = model.fresh_copy()?;
    // The tapped copy reaches every parameter and buffer of both kinds (TorchScript
    // buffers only through the shim), and runs the passes.
    let tapped = copy.tapped()?;
    let (parameters, buffers) = tapped.state_tensors()?;
    let mut notes = Vec::new();
    if let Some(centre) = &request.centre {
        let skipped = load_state(&parameters, &buffers, centre)?;
        if !skipped.is_empty() {
            notes.push(format!(
                "{} entries of the checkpoint (such as {}) are not parameters or buffers of the model and were not loaded",
                skipped.len(),
                skipped[0]
            ));
        }
    }
    let centre: Vec<Tensor> = parameters.iter().map(|(_, tensor)| tensor.detach().copy()).collect();
    let device = copy.device.to_tch();
    let inputs: Vec<Tensor> = request.inputs.iter().map(|input| input.to_tch(device)).collect::<Result<_>>()?;
    let targets = request.targets.as_ref().map(|targets| targets.to_tch(device)).transpose()?;
    let rows = request.inputs[0].rows();
    let row_bytes = chunking.bytes_per_row / 2;
    if row_bytes > chunking.budget_bytes {
        return Err(Error::new(
            ErrorKind::OutOfMemory,
            format!("one data row needs about {row_bytes} bytes in a forward pass, more than the pass budget of {} bytes", chunking.budget_bytes),
        ));
    }
    let evaluate = |chunking: &mut Chunking| mean_loss(tapped, &inputs, targets.as_ref(), request.loss, rows, chunking);
    let centre_loss = evaluate(&mut chunking)?;

    let (directions, trajectory, explained_variance, range) = if request.trajectory.is_empty() {
        (random_directions(&parameters, &centre, dims, request.seed)?, Vec::new(), Vec::new(), request.range)
    } else {
        let pca = pca_directions(&parameters, &centre, &request.trajectory)?;
        let fitted = pca.points.iter().fold(0.0f64, |most, point| most.max(point.x.abs()).max(point.y.abs())) * 1.25;
        let range = if request.range > 0.0 { request.range } else { fitted.max(1e-3) };
        (pca.directions, pca.points, pca.explained_variance, range)
    };
    let steps = request.steps;
    let coordinates: Vec<f64> = (0..steps).map(|index| -range + 2.0 * range * index as f64 / (steps - 1) as f64).collect();
    let points: Vec<(f64, f64)> = if dims == 1 {
        coordinates.iter().map(|&alpha| (alpha, 0.0)).collect()
    } else {
        coordinates.iter().flat_map(|&beta| coordinates.iter().map(move |&alpha| (alpha, beta))).collect()
    };
    let mut losses = Vec::with_capacity(points.len());
    for (alpha, beta) in points {
        tch::no_grad(|| -> Result<()> {
            for (index, (_, parameter)) in parameters.iter().enumerate() {
                let mut moved = centre[index].shallow_clone();
                if alpha != 0.0 {
                    moved = moved + &directions[0][index] * alpha;
                }
                if beta != 0.0 {
                    moved = moved + &directions[1][index] * beta;
                }
                parameter.shallow_clone().f_copy_(&moved).map_err(torch_error("moving the weights along the directions"))?;
            }
            Ok(())
        })?;
        losses.push(evaluate(&mut chunking)?);
    }
    let directions = if request.return_directions {
        Some(Directions {
            names: parameters.iter().map(|(name, _)| name.clone()).collect(),
            values: directions
                .iter()
                .map(|direction| direction.iter().map(HostTensor::from_tch).collect::<Result<Vec<_>>>())
                .collect::<Result<_>>()?,
        })
    } else {
        None
    };
    Ok(Landscape { dims, steps, range, centre_loss, coordinates, losses, directions, trajectory, explained_variance, passes: chunking.passes, notes })
}

/// Copies a checkpoint's parameters and buffers into the model's tensors; answers the
/// names the model does not have (none after binding; kept as a note, not an error).
fn load_state(parameters: &[(String, Tensor)], buffers: &[(String, Tensor)], state: &[(String, HostTensor)]) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    tch::no_grad(|| {
        for (name, values) in state {
            let Some((_, target)) = parameters.iter().chain(buffers).find(|(candidate, _)| candidate == name) else {
                skipped.push(name.clone());
                continue;
            };
            let source = values.to_tch(tch::Device::Cpu)?.to_kind(target.kind()).to_device(target.device());
            if source.size() != target.size() {
                return Err(Error::bad_input(format!("the checkpoint's {name} has shape {:?}, the model's {:?}", source.size(), target.size())));
            }
            target.shallow_clone().f_copy_(&source).map_err(torch_error("loading the checkpoint's weights"))?;
        }
        Ok(())
    })?;
    Ok(skipped)
}

/// The mean loss over the whole batch, evaluated in chunks.
fn mean_loss(model: &TappedModel, inputs: &[Tensor], targets: Option<&Tensor>, loss: LossKind, rows: usize, chunking: &mut Chunking) -> Result<f64> {
    let mut total = 0.0f64;
    let mut count = 0.0f64;
    in_chunks(
        chunking,
        rows,
        1,
        false,
        |start, end| {
            tch::no_grad(|| {
                let (start, length) = (start as i64, (end - start) as i64);
                let chunk: Vec<Tensor> = inputs.iter().map(|input| input.narrow(0, start, length)).collect();
                let (output, _) = model.forward(&chunk)?;
                let output = output.to_kind(Kind::Double);
                let target = targets.map(|targets| targets.narrow(0, start, length));
                let (sum, elements) = match (loss, target) {
                    (LossKind::CrossEntropy, Some(target)) => {
                        if output.dim() != 2 {
                            return Err(Error::bad_input(format!(
                                "cross entropy needs the model's output as logits (batch, classes); it is {:?}",
                                output.size()
                            )));
                        }
                        let classes = output.size()[1];
                        let target = target.to_kind(Kind::Int64);
                        let largest = target.max().int64_value(&[]);
                        if largest >= classes {
                            return Err(Error::bad_input(format!("target class {largest} is out of range for {classes} classes")));
                        }
                        let picked = output.log_softmax(-1, Kind::Double).gather(1, &target.unsqueeze(1), false);
                        (-picked.sum(Kind::Double).double_value(&[]), length as f64)
                    }
                    (LossKind::Mse, Some(target)) => {
                        let target = target.to_kind(Kind::Double);
                        let elements = target.numel() as f64;
                        if target.size() != output.size() {
                            return Err(Error::bad_input(format!(
                                "MSE targets have shape {:?}, the model's output {:?}",
                                target.size(),
                                output.size()
                            )));
                        }
                        ((output - target).square().sum(Kind::Double).double_value(&[]), elements)
                    }
                    // A model that returns its own (mean) loss for the chunk weighs it by
                    // the chunk's rows; a per-row output is averaged over all elements.
                    _ if output.dim() == 0 => (output.double_value(&[]) * length as f64, length as f64),
                    _ => (output.sum(Kind::Double).double_value(&[]), output.numel() as f64),
                };
                Ok((sum, elements))
            })
        },
        |_, (sum, elements)| {
            total += sum;
            count += elements;
            Ok(())
        },
    )?;
    Ok(total / count)
}

/// Filter-normalised random directions (see the module docs), on the parameters' device.
fn random_directions(parameters: &[(String, Tensor)], centre: &[Tensor], dims: usize, seed: u64) -> Result<Vec<Vec<Tensor>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut directions = Vec::new();
    for _ in 0..dims {
        let mut direction = Vec::new();
        for ((_, parameter), weights) in parameters.iter().zip(centre) {
            let shape = parameter.size();
            let numel = parameter.numel();
            // Draw for every parameter, even those that get a zero direction, so that a
            // parameter's direction depends only on the seed and its position.
            let values: Vec<f32> = (0..numel).map(|_| StandardNormal.sample(&mut rng)).collect();
            let random = Tensor::from_slice(&values).reshape(shape.as_slice());
            let normalised = if shape.len() <= 1 {
                random.zeros_like()
            } else {
                let filters = shape[0];
                let random = random.reshape([filters, -1]);
                let weights = weights.to_device(tch::Device::Cpu).to_kind(Kind::Float).reshape([filters, -1]);
                let random_norm = random.norm_scalaropt_dim(2, [1i64].as_slice(), true);
                let weight_norm = weights.norm_scalaropt_dim(2, [1i64].as_slice(), true);
                (random * weight_norm / (random_norm + 1e-10)).reshape(shape.as_slice())
            };
            direction.push(normalised.to_kind(parameter.kind()).to_device(parameter.device()));
        }
        directions.push(direction);
    }
    Ok(directions)
}

struct Pca {
    directions: Vec<Vec<Tensor>>,
    points: Vec<TrajectoryPoint>,
    explained_variance: Vec<f64>,
}

/// The top-2 PCA directions of a trajectory around the centre (see the module docs).
fn pca_directions(parameters: &[(String, Tensor)], centre: &[Tensor], trajectory: &[TrajectoryCheckpoint]) -> Result<Pca> {
    let flat_centre =
        Tensor::cat(&centre.iter().map(|tensor| tensor.to_device(tch::Device::Cpu).to_kind(Kind::Double).flatten(0, -1)).collect::<Vec<_>>(), 0);
    let mut rows = Vec::new();
    for checkpoint in trajectory {
        let mut pieces = Vec::new();
        for (name, parameter) in parameters {
            let Some((_, values)) = checkpoint.parameters.iter().find(|(candidate, _)| candidate == name) else {
                return Err(Error::bad_input(format!("trajectory checkpoint {} has no parameter {name}", checkpoint.label)));
            };
            if values.values.len() as i64 != parameter.numel() as i64 {
                return Err(Error::bad_input(format!(
                    "trajectory checkpoint {}: {name} has {} values, the model {}",
                    checkpoint.label,
                    values.values.len(),
                    parameter.numel()
                )));
            }
            pieces.push(Tensor::from_slice(&values.values).to_kind(Kind::Double));
        }
        rows.push(Tensor::cat(&pieces, 0) - &flat_centre);
    }
    let differences = Tensor::stack(&rows, 0);
    // PCA through the small Gram matrix of the centred rows (n checkpoints × n): its
    // eigenvectors u give the principal directions Cᵀu/√λ, its eigenvalues the variances.
    let centred = &differences - differences.mean_dim([0i64].as_slice(), true, Kind::Double);
    let gram = centred.matmul(&centred.transpose(0, 1));
    let (eigenvalues, eigenvectors) = gram.linalg_eigh("L");
    let n = eigenvalues.size()[0];
    let total = eigenvalues.clamp_min(0.0).sum(Kind::Double).double_value(&[]);
    if total <= 0.0 {
        return Err(Error::bad_input("the trajectory's checkpoints do not differ from each other: there is no direction to project on"));
    }
    // eigh answers ascending eigenvalues: the largest are last.
    let components: Vec<i64> = (0..n.min(2)).map(|rank| n - 1 - rank).collect();
    let explained_variance: Vec<f64> = components.iter().map(|&index| eigenvalues.double_value(&[index]).max(0.0) / total).collect();
    let mut directions = Vec::new();
    for rank in 0..2 {
        let flat = match components.get(rank) {
            Some(&index) if eigenvalues.double_value(&[index]) > total * 1e-12 => {
                let direction = centred.transpose(0, 1).matmul(&eigenvectors.select(1, index));
                let norm = direction.norm().double_value(&[]);
                direction / norm
            }
            // Fewer independent directions than two: the second stays zero.
            _ => Tensor::zeros([flat_centre.size()[0]], (Kind::Double, tch::Device::Cpu)),
        };
        let coordinates = differences.matmul(&flat);
        directions.push((flat, coordinates));
    }
    let points = trajectory
        .iter()
        .enumerate()
        .map(|(row, checkpoint)| TrajectoryPoint {
            label: checkpoint.label.clone(),
            step: checkpoint.step,
            x: directions[0].1.double_value(&[row as i64]),
            y: directions[1].1.double_value(&[row as i64]),
        })
        .collect();
    // Split each flat direction back into per-parameter tensors.
    let sizes: Vec<i64> = parameters.iter().map(|(_, parameter)| parameter.numel() as i64).collect();
    let directions = directions
        .iter()
        .map(|(flat, _)| {
            flat.split_with_sizes(sizes.as_slice(), 0)
                .into_iter()
                .zip(parameters)
                .map(|(piece, (_, parameter))| piece.reshape(parameter.size().as_slice()).to_kind(parameter.kind()).to_device(parameter.device()))
                .collect()
        })
        .collect();
    Ok(Pca { directions, points, explained_variance })
}
