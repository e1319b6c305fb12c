//! Activation maximisation (Simonyan et al. 2013 class models; Olah et al. 2017
//! feature visualisation) with Lucent's defaults: an FFT-parameterised,
//! colour-decorrelated image through a sigmoid, Lucent's standard transforms at every
//! step, Adam at 0.05.

use super::image::{blur_penalty, l2_penalty, total_variation, Adam, ImageParam, Parameterization, Transforms};
use super::objective::{self, LayerIndex, Objective};
use super::{check_steps, Report};
use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use crate::taps::Selected;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// Images per job at most (objectives × images per objective).
pub const MAX_IMAGES: i64 = 256;

#[derive(Debug, Clone)]
pub struct VisualizeRequest {
    /// One image (or `images_per_objective`) per objective.
    pub objectives: Vec<Objective>,
    pub images_per_objective: i64,
    /// One model input's shape; the batch dimension is replaced.
    pub input_shape: Option<Vec<i64>>,
    pub parameterization: Parameterization,
    /// None: on for 3-channel images.
    pub decorrelate: Option<bool>,
    /// 0: the default (256).
    pub steps: u32,
    pub learning_rate: f64,
    pub seed: u64,
    pub transforms: Transforms,
    pub l2: f64,
    pub total_variation: f64,
    pub blur: f64,
    pub diversity: f64,
    pub diversity_layer: Option<String>,
    /// The model's input normalisation: one value, or one per channel; empty for none.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub low: f32,
    pub high: f32,
    /// Report every k steps (0: 16 reports per job); images every m steps (0: never).
    pub progress_every: u32,
    pub image_every: u32,
}

pub const DEFAULT_STEPS: u32 = 256;

#[derive(Debug, Clone)]
pub struct VisualizeProgress {
    pub step: u32,
    pub steps: u32,
    /// Objective value per image on this step's transformed images.
    pub objective: Vec<f32>,
    /// The current images in [0, 1], every `image_every` steps.
    pub images: Option<HostTensor>,
}

#[derive(Debug, Clone)]
pub struct Visualization {
    /// What the model is fed: low + (high - low)·image, then normalised.
    pub inputs: HostTensor,
    /// The images in [0, 1] (before mapping to [low, high] and normalising).
    pub images: HostTensor,
    /// Objective value per image on the final, untransformed images.
    pub objective: Vec<f32>,
    pub steps: u32,
    /// Per image: the predicted class and its softmax probability, for (batch, classes) outputs.
    pub predictions: Vec<(i64, f32)>,
    pub labels: Vec<String>,
}

/// How images in [0, 1] become model inputs.
struct InputMapping {
    low: f64,
    high: f64,
    mean: Option<Tensor>,
    std: Option<Tensor>,
}

impl InputMapping {
    fn new(request: &VisualizeRequest, channels: i64, device: tch::Device) -> Result<InputMapping> {
        if !(request.low.is_finite() && request.high.is_finite() && request.low < request.high) {
            return Err(Error::bad_input(format!("the value range [{}, {}] is empty; low must be below high", request.low, request.high)));
        }
        let per_channel = |values: &[f32], what: &str| -> Result<Option<Tensor>> {
            match values.len() {
                0 => Ok(None),
                1 => Ok(Some(Tensor::from_slice(values).to_device(device))),
                n if n as i64 == channels => Ok(Some(Tensor::from_slice(values).reshape([1, channels, 1, 1]).to_device(device))),
                n => Err(Error::bad_input(format!("{what} has {n} values; give one, or one per channel ({channels})"))),
            }
        };
        if request.std.iter().any(|&value| value <= 0.0 || !value.is_finite()) {
            return Err(Error::bad_input("std values must be positive"));
        }
        Ok(InputMapping {
            low: request.low.into(),
            high: request.high.into(),
            mean: per_channel(&request.mean, "mean")?,
            std: per_channel(&request.std, "std")?,
        })
    }

    fn apply(&self, images: &Tensor) -> Tensor {
        let mut x = images * (self.high - self.low) + self.low;
        if let Some(mean) = &self.mean {
            x = x - mean;
        }
        if let Some(std) = &self.std {
            x = x / std;
        }
        x
    }
}

/// The image shape (channels, height, width) from the request or the model's stored
/// input shape; refused unless it is image-like.
fn image_shape(request: &VisualizeRequest, model: &LoadedModel) -> Result<[i64; 3]> {
    let (shape, source) = match (&request.input_shape, &model.input_shape) {
        (Some(shape), _) if !shape.is_empty() => (shape.clone(), "the request's input shape"),
        (_, Some(shape)) => (shape.clone(), "the input shape stored with the model"),
        _ => return Err(Error::bad_input("no input shape: give one, e.g. [1, 3, 224, 224], or store the model with an example input shape")),
    };
    let dims = match shape.len() {
        3 => [shape[0], shape[1], shape[2]],
        4 => [shape[1], shape[2], shape[3]],
        _ => return Err(Error::bad_input(format!("{source} {shape:?} is not image-like; image parameterisations need (N, C, H, W) or (C, H, W)"))),
    };
    if dims[0] < 1 || dims[0] > 4 || dims[1] < 2 || dims[2] < 2 || dims[1] * dims[2] > 4096 * 4096 {
        return Err(Error::bad_input(format!("{source} {shape:?} is not image-like: expected 1 to 4 channels and a height and width of at least 2")));
    }
    Ok(dims)
}

/// The objectives with every `channel:LAYER:*` replaced by one objective per channel
/// of LAYER (counted on one forward pass of a grey image).
fn expand_every_channel(
    model: &LoadedModel,
    objectives: &[Objective],
    mapping: &InputMapping,
    [channels, height, width]: [i64; 3],
) -> Result<Vec<Objective>> {
    let mut expanded = Vec::new();
    for objective in objectives {
        let Some(layer) = objective.every_channel()? else {
            expanded.push(objective.clone());
            continue;
        };
        let tapped = model.tapped()?;
        let tap = tapped.tap_index(layer)?;
        let grey = Tensor::full([1, channels, height, width], 0.5, (Kind::Float, model.device.to_tch()));
        let _no_grad = tch::no_grad_guard();
        let output = tapped.forward_selected(&[mapping.apply(&grey)], &[Selected::Tap(tap)])?.remove(0);
        let output = output.ok_or_else(|| Error::bad_input(format!("layer {layer} produced no tensor on a grey image")))?;
        if output.dim() < 2 {
            return Err(Error::bad_input(format!("layer {layer} has output shape {:?}, which has no channels", output.size())));
        }
        expanded.extend(Objective::channels_of(layer, output.size()[1]));
    }
    Ok(expanded)
}

pub fn visualize(model: &LoadedModel, request: &VisualizeRequest, max_steps: u32, report: Report<'_, VisualizeProgress>) -> Result<Visualization> {
    if request.objectives.is_empty() {
        return Err(Error::bad_input("no objective given, e.g. class:3 or channel:layer3:5"));
    }
    let steps = check_steps(request.steps, DEFAULT_STEPS, max_steps)?;
    if !(request.learning_rate > 0.0 && request.learning_rate.is_finite()) {
        return Err(Error::bad_input(format!("learning rate {} must be positive", request.learning_rate)));
    }
    let [channels, height, width] = image_shape(request, model)?;
    let device = model.device.to_tch();
    let mapping = InputMapping::new(request, channels, device)?;
    let objectives = expand_every_channel(model, &request.objectives, &mapping, [channels, height, width])?;
    let per_objective = request.images_per_objective.max(1);
    let batch = objectives.len() as i64 * per_objective;
    if batch > MAX_IMAGES {
        return Err(Error::bad_input(format!("{batch} images in one job; at most {MAX_IMAGES} (objectives × images per objective)")));
    }
    let decorrelate = request.decorrelate.unwrap_or(channels == 3);
    let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
    let mut param = ImageParam::new([batch, channels, height, width], request.parameterization, decorrelate, &mut rng, device);

    let layer_names: Vec<&str> = objectives.iter().flat_map(Objective::layers).chain(request.diversity_layer.as_deref()).collect();
    let tapped = if layer_names.is_empty() { None } else { Some(model.tapped()?) };
    let layers = match tapped {
        Some(tapped) => LayerIndex::resolve(tapped, layer_names.into_iter())?,
        None => LayerIndex::empty(),
    };
    if request.diversity != 0.0 && request.diversity_layer.is_none() {
        return Err(Error::bad_input("diversity needs a layer (diversity_layer)"));
    }
    // Layer objectives run a copy of the forward pass pruned to what they read: the
    // model output only when a class term needs it, and the layers' outputs.
    let needs_output = objectives.iter().flat_map(|objective| &objective.terms).any(|term| term.layer().is_none());
    let selection: Vec<Selected> = needs_output.then_some(Selected::Output).into_iter().chain(layers.tap_indices().map(Selected::Tap)).collect();
    let forward = |images: &Tensor| -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let inputs = [mapping.apply(images)];
        let Some(tapped) = tapped else { return Ok((model.forward(&inputs)?, Vec::new())) };
        let mut output = None;
        let mut taps: Vec<Option<Tensor>> = (0..tapped.tap_paths.len()).map(|_| None).collect();
        for (selected, value) in selection.iter().zip(tapped.forward_selected(&inputs, &selection)?) {
            match selected {
                Selected::Output => output = value,
                Selected::Tap(index) => taps[*index] = value,
            }
        }
        Ok((output.unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, device))), taps))
    };
    {
        let _no_grad = tch::no_grad_guard();
        let (output, taps) = forward(&param.images())?;
        objective::check(&objectives, &output, &taps, &layers)?;
    }

    let every = if request.progress_every > 0 { request.progress_every } else { steps.div_ceil(16).max(1) };
    let mut adam = Adam::new(&param.parameter, request.learning_rate);
    // Each step's loss, kept until the next progress report reads them all at once.
    let mut unchecked: Vec<(u32, Tensor)> = Vec::new();
    // Seconds spent in each phase of a step, logged at debug level.
    let mut phases = [0.0f64; 4];
    let mut clock = std::time::Instant::now();
    let mut lap = |phase: usize| {
        let now = std::time::Instant::now();
        phases[phase] += (now - clock).as_secs_f64();
        clock = now;
    };
    for step in 1..=steps {
        if !report(None) {
            return Err(Error::new(ErrorKind::Cancelled, format!("cancelled at step {step} of {steps}")));
        }
        lap(3);
        let images = param.images();
        let transformed = request.transforms.apply(&images, &mut rng);
        lap(0);
        let (output, taps) = forward(&transformed)?;
        let values = objective::evaluate(&objectives, per_objective, &output, &taps, &layers)?;
        let mut total = values.shallow_clone();
        if request.l2 != 0.0 {
            total = total - l2_penalty(&images) * request.l2;
        }
        if request.total_variation != 0.0 {
            total = total - total_variation(&images) * request.total_variation;
        }
        if request.blur != 0.0 {
            total = total - blur_penalty(&images) * request.blur;
        }
        if let (true, Some(layer)) = (request.diversity != 0.0, &request.diversity_layer) {
            let tap = layers.tap_of(&taps, layer)?;
            total = total + objective::diversity(tap, objectives.len() as i64, per_objective)? * request.diversity;
        }
        let loss = -total.sum(Kind::Float);
        unchecked.push((step, loss.detach()));
        lap(1);
        let gradient = Tensor::f_run_backward(&[&loss], &[&param.parameter], false, false)
            .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "computing the objective's gradient"))?
            .remove(0);
        lap(2);
        adam.step(&mut param.parameter, &gradient);
        if step % every == 0 || step == steps {
            check_finite(&mut unchecked)?;
            let objective = Vec::<f32>::try_from(&values.detach().to_kind(Kind::Float).to_device(tch::Device::Cpu)).unwrap_or_default();
            let images = (request.image_every > 0 && (step % request.image_every == 0 || step == steps))
                .then(|| HostTensor::from_tch(&images.detach()))
                .transpose()?;
            if !report(Some(VisualizeProgress { step, steps, objective, images })) {
                return Err(Error::new(ErrorKind::Cancelled, format!("cancelled at step {step} of {steps}")));
            }
        }
    }

    lap(3);
    tracing::debug!(
        steps,
        image_and_transforms_ms = phases[0] * 1e3,
        forward_ms = phases[1] * 1e3,
        backward_ms = phases[2] * 1e3,
        update_and_report_ms = phases[3] * 1e3,
        "activation maximisation"
    );
    let _no_grad = tch::no_grad_guard();
    let images = param.images();
    let inputs = mapping.apply(&images);
    let (selected_output, taps) = forward(&images)?;
    let values = objective::evaluate(&objectives, per_objective, &selected_output, &taps, &layers)?;
    let output = if needs_output || tapped.is_none() { selected_output } else { model.forward(std::slice::from_ref(&inputs))? };
    let objective = Vec::<f32>::try_from(&values.to_kind(Kind::Float).to_device(tch::Device::Cpu)).unwrap_or_default();
    let predictions = if output.dim() == 2 {
        let probabilities = output.to_kind(Kind::Float).softmax(1, Kind::Float);
        let (best, classes) = probabilities.max_dim(1, false);
        let best = Vec::<f32>::try_from(&best.to_device(tch::Device::Cpu)).unwrap_or_default();
        let classes = Vec::<i64>::try_from(&classes.to_device(tch::Device::Cpu)).unwrap_or_default();
        classes.into_iter().zip(best).collect()
    } else {
        Vec::new()
    };
    let labels = objectives.iter().flat_map(|objective| std::iter::repeat_n(objective.label(), per_objective as usize)).collect();
    Ok(Visualization { inputs: HostTensor::from_tch(&inputs)?, images: HostTensor::from_tch(&images)?, objective, steps, predictions, labels })
}

/// Reads the losses of the steps since the last check in one copy, and fails the job at
/// the first that is not finite, naming its step. Reading a value waits for the device
/// to finish the work queued before it; reading each step's loss as it was computed
/// would keep a GPU from running one step while the next is queued.
fn check_finite(losses: &mut Vec<(u32, Tensor)>) -> Result<()> {
    if losses.is_empty() {
        return Ok(());
    }
    let stacked = Tensor::stack(&losses.iter().map(|(_, loss)| loss).collect::<Vec<_>>(), 0);
    let values = Vec::<f64>::try_from(&stacked.to_kind(Kind::Double).to_device(tch::Device::Cpu))
        .map_err(|error| Error::from_torch(error, ErrorKind::Internal, "reading the objective"))?;
    let first_bad = losses.iter().zip(values).find(|(_, value)| !value.is_finite()).map(|((step, _), value)| (*step, value));
    losses.clear();
    match first_bad {
        Some((step, value)) => Err(Error::bad_input(format!("the objective became {value} at step {step}; try a smaller learning rate"))),
        None => Ok(()),
    }
}
