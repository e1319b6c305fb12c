//! Perturbation methods with Captum's semantics: `occlusion` (Zeiler and Fergus
//! 2014: slide a window of baseline values over each input and record how much the
//! target output drops, averaged over the windows covering each element) and
//! `feature_ablation` (replace each feature group of a mask by the baseline).
//! Perturbed copies are batched into forward passes sized to the memory budget.

use super::gradients::{apply_row_cap, for_each_forward_chunk, forward_selected};
use super::integrated::broadcast_to_input;
use super::{shallow, torch_error, Context, MethodResult};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Most perturbations one request may ask for (windows or features × inputs).
const MAX_PERTURBATIONS: usize = 2_000_000;

pub fn occlusion(context: &mut Context<'_>) -> Result<MethodResult> {
    context.options.accept(&["sliding_window_shapes", "strides", "baselines", "perturbations_per_eval"])?;
    apply_row_cap(context)?;
    let mut masks_per_input = Vec::new();
    for (index, input) in context.inputs.iter().enumerate() {
        let key = if index == 0 { "sliding_window_shapes".to_string() } else { format!("sliding_window_shapes.{index}") };
        let element_shape = &input.size()[1..];
        let window = context.options.int_list(&key, 1)?.ok_or_else(|| {
            context.options.missing(&key, &format!("the window shape without the batch dimension, e.g. {}", example_window(element_shape)))
        })?;
        if window.len() != element_shape.len() || window.iter().zip(element_shape).any(|(w, d)| w > d) {
            return Err(Error::bad_input(format!(
                "{key}={window:?} does not fit input {index}: its rows have shape {element_shape:?}; give one size per dimension, each at most the dimension"
            )));
        }
        let strides_key = if index == 0 { "strides".to_string() } else { format!("strides.{index}") };
        let strides = match context.options.int_list(&strides_key, 1)? {
            None => vec![1; window.len()],
            Some(strides) if strides.len() == 1 => vec![strides[0]; window.len()],
            Some(strides) if strides.len() == window.len() => strides,
            Some(strides) => {
                return Err(Error::bad_input(format!("{strides_key}={strides:?} needs one value or one per window dimension ({})", window.len())))
            }
        };
        masks_per_input.push(WindowMasks::new(element_shape.to_vec(), window, strides, input.device()));
    }
    let total: usize = masks_per_input.iter().map(|masks| masks.count).sum();
    check_perturbation_count(total)?;
    let sources: Vec<Box<dyn Fn(usize) -> Tensor + '_>> = masks_per_input
        .iter()
        .map(|masks| Box::new(move |index| masks.mask(index)) as Box<dyn Fn(usize) -> Tensor + '_>)
        .collect();
    let counts: Vec<usize> = masks_per_input.iter().map(|masks| masks.count).collect();
    ablate(context, &sources, &counts, true)
}

pub fn feature_ablation(context: &mut Context<'_>) -> Result<MethodResult> {
    context.options.accept(&["baselines", "perturbations_per_eval"])?;
    apply_row_cap(context)?;
    let mut feature_masks = Vec::new();
    for (index, input) in context.inputs.iter().enumerate() {
        let element_shape = input.size()[1..].to_vec();
        let mask = match context.tensor_param("feature_mask", index)? {
            Some(mask) => {
                let mask = broadcast_to_input(&mask, &input.narrow(0, 0, 1), "feature_mask")
                    .or_else(|_| broadcast_to_input(&mask, input, "feature_mask"))?;
                mask.to_kind(Kind::Int64)
            }
            // Every element of a row is its own feature.
            None => Tensor::arange(element_shape.iter().product::<i64>(), (Kind::Int64, input.device())).view([&[1][..], &element_shape[..]].concat().as_slice()),
        };
        let ids: Vec<i64> = Vec::<i64>::try_from(&mask.reshape([-1]).to_device(tch::Device::Cpu))
            .map_err(torch_error("reading feature ids"))?
            .into_iter()
            .collect::<std::collections::BTreeSet<i64>>()
            .into_iter()
            .collect();
        feature_masks.push((mask, ids));
    }
    let total: usize = feature_masks.iter().map(|(_, ids)| ids.len()).sum();
    check_perturbation_count(total)?;
    let sources: Vec<Box<dyn Fn(usize) -> Tensor + '_>> = feature_masks
        .iter()
        .map(|(mask, ids)| Box::new(move |index: usize| mask.eq(ids[index]).to_kind(Kind::Float)) as Box<dyn Fn(usize) -> Tensor + '_>)
        .collect();
    let counts: Vec<usize> = feature_masks.iter().map(|(_, ids)| ids.len()).collect();
    ablate(context, &sources, &counts, false)
}

/// For each input, for each of its `counts[input]` masks (`mask_of[input](i)`, shaped
/// `(1 or batch, ...)` like the input rows), replaces the masked elements with the
/// baseline and accumulates (F(input) - F(perturbed)) × mask. Occlusion divides by
/// how many masks covered each element.
fn ablate(context: &mut Context<'_>, mask_of: &[Box<dyn Fn(usize) -> Tensor + '_>], counts: &[usize], average: bool) -> Result<MethodResult> {
    let baselines = scalar_or_tensor_baselines(context)?;
    let batch = context.batch();
    let inputs = shallow(&context.inputs);
    let targets = context.targets.clone();
    let initial = forward_selected(context.model, &mut context.chunking, &inputs, &targets)?;
    let mut values = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let mut total = input.zeros_like();
        let mut weights = input.zeros_like();
        let count = counts[index];
        // Virtual rows: mask-major, `batch` rows per mask.
        let expanded_targets: Vec<i64> = (0..count).flat_map(|_| targets.iter().copied()).collect();
        let masks = &mask_of[index];
        let baseline = &baselines[index];
        for_each_forward_chunk(
            context.model,
            &mut context.chunking,
            &expanded_targets,
            batch as usize,
            |start, end| {
                let (first, last) = (start / batch as usize, (end - 1) / batch as usize);
                debug_assert_eq!(start % batch as usize, 0);
                let perturbed: Vec<Tensor> = (first..=last)
                    .map(|mask_index| {
                        let mask = masks(mask_index);
                        input * (1.0 - &mask) + baseline * &mask
                    })
                    .collect();
                let groups = (last - first + 1) as i64;
                Ok(inputs
                    .iter()
                    .enumerate()
                    .map(|(other, tensor)| {
                        if other == index {
                            Tensor::cat(&perturbed, 0)
                        } else {
                            tensor.repeat([&[groups][..], &vec![1; tensor.dim() - 1][..]].concat().as_slice())
                        }
                    })
                    .collect())
            },
            |start, selected| {
                let first = start / batch as usize;
                let groups = selected.size()[0] / batch;
                let mut shape = vec![batch];
                shape.extend(std::iter::repeat_n(1, input.dim() - 1));
                for group in 0..groups {
                    let mask = masks(first + group as usize);
                    let drop = (&initial - selected.narrow(0, group * batch, batch)).view(shape.as_slice());
                    total += drop * &mask;
                    weights += &mask;
                }
                Ok(())
            },
        )?;
        let value = if average {
            // Elements no window covered keep 0 rather than 0/0.
            let covered = weights.gt(0.0);
            total.where_self(&covered, &input.zeros_like()) / weights.where_self(&covered, &input.ones_like())
        } else {
            total
        };
        values.push(value);
    }
    Ok(MethodResult { values, convergence_deltas: Vec::new(), n_steps: None, figure_values: None })
}

/// Baselines for perturbation methods: a number (`baselines=0.5`, default 0) or a
/// tensor option shaped like the input.
fn scalar_or_tensor_baselines(context: &Context<'_>) -> Result<Vec<Tensor>> {
    let value = context.options.f64("baselines", 0.0)?;
    context
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| match context.tensor_param("baselines", index)? {
            Some(tensor) => broadcast_to_input(&tensor, input, "baselines"),
            None => Ok(input.zeros_like() + value),
        })
        .collect()
}

fn check_perturbation_count(total: usize) -> Result<()> {
    if total > MAX_PERTURBATIONS {
        return Err(Error::bad_input(format!(
            "this request would evaluate {total} perturbations (limit {MAX_PERTURBATIONS}); use larger windows or strides, or a feature_mask with fewer groups"
        )));
    }
    Ok(())
}

fn example_window(element_shape: &[i64]) -> String {
    element_shape.iter().map(|&dim| (dim / 4).max(1).to_string()).collect::<Vec<_>>().join(",")
}

/// Captum's sliding windows over one input's rows: `count` positions, the i-th
/// unravelled with the first dimension varying fastest; windows at the far edge are
/// cut to the input.
struct WindowMasks {
    element_shape: Vec<i64>,
    window: Vec<i64>,
    strides: Vec<i64>,
    shift_counts: Vec<i64>,
    count: usize,
    device: tch::Device,
}

impl WindowMasks {
    fn new(element_shape: Vec<i64>, window: Vec<i64>, strides: Vec<i64>, device: tch::Device) -> WindowMasks {
        let shift_counts: Vec<i64> = element_shape
            .iter()
            .zip(&window)
            .zip(&strides)
            .map(|((&dim, &size), &stride)| ((dim - size) as f64 / stride as f64).ceil() as i64 + 1)
            .collect();
        let count = shift_counts.iter().product::<i64>() as usize;
        WindowMasks { element_shape, window, strides, shift_counts, count, device }
    }

    /// `(1, ...)` float mask of window `index`.
    fn mask(&self, index: usize) -> Tensor {
        let mut remaining = index as i64;
        let mut slices = Vec::new();
        for (dimension, &shift_count) in self.shift_counts.iter().enumerate() {
            let start = (remaining % shift_count) * self.strides[dimension];
            remaining /= shift_count;
            let end = (start + self.window[dimension]).min(self.element_shape[dimension]);
            slices.push((start, end));
        }
        let full = Tensor::zeros(self.element_shape.as_slice(), (Kind::Float, self.device));
        let mut view = full.shallow_clone();
        for (dimension, (start, end)) in slices.iter().enumerate() {
            view = view.narrow(dimension as i64, *start, end - start);
        }
        let _ = view.fill_(1.0);
        full.unsqueeze(0)
    }
}
