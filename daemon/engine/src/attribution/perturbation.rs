//! Perturbation methods with Captum's semantics: `occlusion` (Zeiler and Fergus
//! 2014: slide a window of baseline values over each input and record how much the
//! target output drops, averaged over the windows covering each element) and
//! `feature_ablation` (replace each feature group of a mask by the baseline).
//! Perturbed copies are batched into forward passes sized to the memory budget.

use super::gradients::{apply_row_cap, for_each_forward_chunk};
use super::integrated::broadcast_to_input;
use super::{shallow, torch_error, Context, MethodResult};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Most perturbations one request may ask for (windows or features × inputs).
const MAX_PERTURBATIONS: usize = 2_000_000;

pub fn occlusion(context: &mut Context<'_>) -> Result<MethodResult> {
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
        // A stride past the window skips elements, unless the window spans the dimension.
        if let Some(((stride, size), _)) = strides.iter().zip(&window).zip(element_shape).find(|((stride, size), dim)| stride > size && dim > size) {
            return Err(Error::bad_input(format!(
                "{strides_key}: a stride of {stride} is larger than the window ({size}) and would leave elements never occluded"
            )));
        }
        masks_per_input.push(WindowMasks::new(element_shape.to_vec(), window, strides, input.device()));
    }
    let total: usize = masks_per_input.iter().map(|masks| masks.count).sum();
    check_perturbation_count(total)?;
    // Windows are numbered input after input: feature f belongs to one input only.
    let offsets: Vec<usize> = masks_per_input
        .iter()
        .scan(0, |offset, masks| {
            let start = *offset;
            *offset += masks.count;
            Some(start)
        })
        .collect();
    let masks_of = |feature: usize| -> Vec<Option<Tensor>> {
        masks_per_input
            .iter()
            .zip(&offsets)
            .map(|(masks, &offset)| (feature >= offset && feature < offset + masks.count).then(|| masks.mask(feature - offset)))
            .collect()
    };
    ablate(context, total, &masks_of, true)
}

pub fn feature_ablation(context: &mut Context<'_>) -> Result<MethodResult> {
    apply_row_cap(context)?;
    let mut feature_masks = Vec::new();
    let mut next_default_id = 0i64;
    for (index, input) in context.inputs.iter().enumerate() {
        let element_shape = input.size()[1..].to_vec();
        let mask = match context.tensor_param("feature_mask", index)? {
            Some(mask) => {
                let mask = broadcast_to_input(&mask, &input.narrow(0, 0, 1), "feature_mask")
                    .or_else(|_| broadcast_to_input(&mask, input, "feature_mask"))?;
                mask.to_kind(Kind::Int64)
            }
            // Every element of a row is its own feature, numbered on from the previous
            // inputs' elements (Captum's default mask), so no id is shared.
            None => {
                let count = element_shape.iter().product::<i64>();
                let mask = Tensor::arange_start(next_default_id, next_default_id + count, (Kind::Int64, input.device()));
                next_default_id += count;
                mask.view([&[1][..], &element_shape[..]].concat().as_slice())
            }
        };
        let ids: Vec<i64> = Vec::<i64>::try_from(&mask.reshape([-1]).to_device(tch::Device::Cpu))
            .map_err(torch_error("reading feature ids"))?
            .into_iter()
            .collect::<std::collections::BTreeSet<i64>>()
            .into_iter()
            .collect();
        feature_masks.push((mask, ids));
    }
    check_perturbation_count(feature_masks.iter().map(|(_, ids)| ids.len()).sum())?;
    // Feature ids are shared across inputs: one id is ablated in every input that holds it.
    let all_ids: Vec<i64> =
        feature_masks.iter().flat_map(|(_, ids)| ids.iter().copied()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let masks_of = |feature: usize| -> Vec<Option<Tensor>> {
        let id = all_ids[feature];
        feature_masks.iter().map(|(mask, ids)| ids.binary_search(&id).is_ok().then(|| mask.eq(id).to_kind(Kind::Float))).collect()
    };
    ablate(context, all_ids.len(), &masks_of, false)
}

/// For each of `count` features, `masks_of(feature)` gives one mask per input (`None`
/// where the feature does not touch that input; masks shaped `(1 or batch, ...)` like
/// the input rows). The masked elements of every input the feature touches are
/// replaced by the baseline together (Captum ablates a feature id in all inputs that
/// hold it at once), and (F(input) - F(perturbed)) × mask is accumulated per input.
/// Occlusion divides by how many masks covered each element.
fn ablate(context: &mut Context<'_>, count: usize, masks_of: &dyn Fn(usize) -> Vec<Option<Tensor>>, average: bool) -> Result<MethodResult> {
    let baselines = scalar_or_tensor_baselines(context)?;
    let batch = context.batch();
    let inputs = shallow(&context.inputs);
    let targets = context.targets.clone();
    // F(input) for the targets, from the forward pass that resolved them.
    let initial = context.selected_output()?;
    let mut totals: Vec<Tensor> = inputs.iter().map(Tensor::zeros_like).collect();
    let mut weights: Vec<Tensor> = inputs.iter().map(Tensor::zeros_like).collect();
    // Virtual rows: feature-major, `batch` rows per feature.
    let expanded_targets: Vec<i64> = (0..count).flat_map(|_| targets.iter().copied()).collect();
    for_each_forward_chunk(
        context.model,
        &mut context.chunking,
        &expanded_targets,
        batch as usize,
        |start, end| {
            let (first, last) = (start / batch as usize, (end - 1) / batch as usize);
            let mut perturbed: Vec<Vec<Tensor>> = inputs.iter().map(|_| Vec::new()).collect();
            for feature in first..=last {
                for (index, mask) in masks_of(feature).into_iter().enumerate() {
                    let input = &inputs[index];
                    perturbed[index].push(match mask {
                        Some(mask) => input * (1.0 - &mask) + &baselines[index] * &mask,
                        None => input.shallow_clone(),
                    });
                }
            }
            Ok(perturbed.iter().map(|pieces| Tensor::cat(pieces, 0)).collect())
        },
        |start, selected| {
            let first = start / batch as usize;
            let groups = selected.size()[0] / batch;
            for group in 0..groups {
                let drop = &initial - selected.narrow(0, group * batch, batch);
                for (index, mask) in masks_of(first + group as usize).into_iter().enumerate() {
                    if let Some(mask) = mask {
                        let mut shape = vec![batch];
                        shape.extend(std::iter::repeat_n(1, inputs[index].dim() - 1));
                        totals[index] += drop.view(shape.as_slice()) * &mask;
                        weights[index] += &mask;
                    }
                }
            }
            Ok(())
        },
    )?;
    let values = totals
        .into_iter()
        .zip(weights)
        .zip(&inputs)
        .map(|((total, weight), input)| {
            if average {
                // Elements no window covered keep 0 rather than 0/0.
                let covered = weight.gt(0.0);
                total.where_self(&covered, &input.zeros_like()) / weight.where_self(&covered, &input.ones_like())
            } else {
                total
            }
        })
        .collect();
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
