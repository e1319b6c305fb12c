//! Layer attributions on any module path, through the model's taps: Captum's
//! `LayerGradCam` (Selvaraju et al. 2017), `LayerActivation` and
//! `LayerGradientXActivation`. Answers have the layer output's shape.

use super::gradients::{apply_row_cap, for_each_gradient_chunk_wrt, in_chunks, Wrt};
use super::{shallow, torch_error, Context, MethodResult};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

pub fn layer_method(context: &mut Context<'_>, method: &str, layer: Option<&str>) -> Result<MethodResult> {
    apply_row_cap(context)?;
    let layer = layer.ok_or_else(|| Error::bad_input(format!("{method} needs a layer: pass the module path, e.g. --layer features.2")))?;
    let index = context.model.tapped()?.tap_index(layer)?;
    let inputs = shallow(&context.inputs);
    let targets = context.targets.clone();
    let slice = |start: usize, end: usize| -> Result<Vec<Tensor>> {
        Ok(inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect())
    };
    let value = if method == "layer_activation" {
        layer_activations(context, &inputs, index, layer)?
    } else {
        let relu = context.options.bool("relu_attributions", false)?;
        let summation = context.options.bool("attr_dim_summation", true)?;
        let multiply = context.options.bool("multiply_by_inputs", true)?;
        let mut pieces = Vec::new();
        for_each_gradient_chunk_wrt(context.model, Wrt::Layer { index }, &mut context.chunking, &targets, slice, |_, mut gradients, activation| {
            let gradient = gradients.remove(0);
            let activation = activation.expect("layer passes return the activation");
            let piece = if method == "grad_cam" {
                let rank = gradient.dim() as i64;
                let weights = if rank > 2 { gradient.mean_dim((2..rank).collect::<Vec<_>>().as_slice(), true, Kind::Float) } else { gradient };
                let scaled = if summation { (weights * &activation).sum_dim_intlist(1, true, Kind::Float) } else { weights * &activation };
                if relu {
                    scaled.relu()
                } else {
                    scaled
                }
            } else if multiply {
                gradient * activation
            } else {
                gradient
            };
            pieces.push(piece);
            Ok(())
        })?;
        Tensor::f_cat(&pieces, 0).map_err(torch_error("joining layer attributions"))?
    };
    let input_shape = context.inputs[0].size();
    let spatial = value.dim() == 4 && input_shape.len() == 4;
    // Captum's LayerAttribution.interpolate: resize the map to the input's height and
    // width (nearest by default, or bilinear).
    let value = if method == "grad_cam" && context.options.bool("upsample", false)? {
        if !spatial {
            return Err(Error::bad_input(format!(
                "upsample needs a layer output and an input of shape (batch, channels, height, width); the layer gives {:?}",
                value.size()
            )));
        }
        let mode = context.options.choice("interpolate_mode", "nearest", &["nearest", "bilinear"])?;
        resize(&value, &input_shape[2..], mode)?
    } else {
        value
    };
    // Figures of a spatial layer map are drawn over the input, so resize a copy.
    let figure_values = (spatial && value.size()[2..] != input_shape[2..]).then(|| resize(&value, &input_shape[2..], "bilinear")).transpose()?;
    Ok(MethodResult { values: vec![value], convergence_deltas: Vec::new(), n_steps: None, figure_values })
}

fn resize(value: &Tensor, size: &[i64], mode: &str) -> Result<Tensor> {
    let resized =
        if mode == "bilinear" { value.f_upsample_bilinear2d(size, false, None, None) } else { value.f_upsample_nearest2d(size, None, None) };
    resized.map_err(torch_error("resizing a layer attribution"))
}

/// The layer's output for every row, in forward-only chunks sized like the other
/// passes.
fn layer_activations(context: &mut Context<'_>, inputs: &[Tensor], index: usize, layer: &str) -> Result<Tensor> {
    let tapped = context.model.tapped()?;
    let _no_grad = tch::no_grad_guard();
    let rows = inputs[0].size()[0] as usize;
    let mut pieces = Vec::new();
    in_chunks(
        &mut context.chunking,
        rows,
        1,
        false,
        |start, end| {
            let chunk: Vec<Tensor> = inputs.iter().map(|input| input.narrow(0, start as i64, (end - start) as i64)).collect();
            let mut taps = tapped.taps(&chunk)?;
            taps.swap_remove(index).ok_or_else(|| Error::bad_input(format!("the output of layer '{layer}' is not a single tensor")))
        },
        |_, tap| {
            pieces.push(tap);
            Ok(())
        },
    )?;
    Tensor::f_cat(&pieces, 0).map_err(torch_error("joining activations"))
}
