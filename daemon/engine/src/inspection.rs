//! What the parameters look like and how the model behaves on an input:
//! per-tensor parameter statistics with histograms, per-layer activation statistics
//! computed on the device (only scalars and histogram counts come back to the host),
//! an anomaly report, and predictions with top-k probabilities.

use crate::error::{Error, ErrorKind, Result};
use crate::host_tensor::HostTensor;
use crate::model::LoadedModel;
use crate::structure::readable_type_name;
use tch::{Kind, Tensor};

/// A histogram: `edges` has one more entry than `counts`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub edges: Vec<f32>,
    pub counts: Vec<u64>,
}

/// Summary statistics of one tensor. `std` is torch.std's (unbiased); NaN and
/// infinite elements are left out of mean, std, min, max and the L2 norm.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TensorStats {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub l2_norm: f64,
    pub zero_fraction: f64,
    pub nan_count: u64,
    pub inf_count: u64,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterStats {
    /// `features.0.weight`
    pub name: String,
    /// `features.0`
    pub module_path: String,
    pub shape: Vec<i64>,
    pub dtype: String,
    pub requires_grad: bool,
    pub stats: TensorStats,
}

pub struct ParameterReport {
    pub parameters: Vec<ParameterStats>,
    /// The first convolution's weight (out, in, kh, kw), for a filter image.
    pub first_conv: Option<(String, HostTensor)>,
}

fn torch_error(doing: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |error| Error::from_torch(error, ErrorKind::Internal, doing)
}

/// Statistics of a tensor, reduced where it lives: a handful of single passes in the
/// tensor's own precision (float32 for activations), with only scalars and the
/// histogram coming back to the host.
pub fn tensor_stats(tensor: &Tensor, bins: usize) -> Result<TensorStats> {
    let _no_grad = tch::no_grad_guard();
    let values = tensor.detach().flatten(0, -1);
    let values = if values.is_floating_point() { values } else { values.to_kind(Kind::Float) };
    let count = values.numel() as u64;
    if count == 0 {
        return Ok(TensorStats::default());
    }
    let all_finite = values.isfinite().all().int64_value(&[]) != 0;
    let (nan_count, inf_count, finite_values) = if all_finite {
        (0, 0, values.shallow_clone())
    } else {
        let nan_count = values.isnan().sum(Kind::Int64).int64_value(&[]) as u64;
        let inf_count = values.isinf().sum(Kind::Int64).int64_value(&[]) as u64;
        (nan_count, inf_count, values.masked_select(&values.isfinite()))
    };
    let finite_count = finite_values.numel();
    let (mean, std, min, max, l2_norm, zero_fraction) = if finite_count == 0 {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN, 0.0)
    } else {
        let (std, mean) = finite_values.std_mean(true);
        let (min, max) = finite_values.aminmax(None::<i64>, false);
        (
            mean.double_value(&[]),
            if finite_count > 1 { std.double_value(&[]) } else { 0.0 },
            min.double_value(&[]),
            max.double_value(&[]),
            finite_values.norm().double_value(&[]),
            values.eq(0.0).sum(Kind::Int64).double_value(&[]) / count as f64,
        )
    };
    let histogram = if finite_count == 0 || bins == 0 {
        Histogram::default()
    } else {
        // torch.histc spans the data's min..max, widened by 1 each way when they are equal.
        let (low, high) = if max > min { (min, max) } else { (min - 1.0, max + 1.0) };
        let counts = finite_values.histc(bins as i64).to_device(tch::Device::Cpu);
        let counts: Vec<f32> = Vec::<f32>::try_from(&counts.to_kind(Kind::Float)).map_err(torch_error("reading a histogram"))?;
        let step = (high - low) / bins as f64;
        Histogram {
            edges: (0..=bins).map(|index| (low + step * index as f64) as f32).collect(),
            counts: counts.into_iter().map(|count| count.round() as u64).collect(),
        }
    };
    Ok(TensorStats { count, mean, std, min, max, l2_norm, zero_fraction, nan_count, inf_count, histogram })
}

/// Every parameter tensor with its statistics, in definition order.
pub fn parameter_report(model: &LoadedModel, bins: usize, modules: &[crate::structure::ModuleInfo]) -> Result<ParameterReport> {
    let mut parameters = Vec::new();
    let mut first_conv = None;
    for (module_path, tensors) in model.named_parameter_tensors()? {
        for (name, tensor) in tensors {
            let full = if module_path.is_empty() { name.clone() } else { format!("{module_path}.{name}") };
            if first_conv.is_none() && name == "weight" && tensor.dim() == 4 {
                let is_conv = modules
                    .iter()
                    .find(|module| module.path == module_path)
                    .is_some_and(|module| readable_type_name(&module.qualified_type).contains("Conv"));
                if is_conv {
                    first_conv = Some((module_path.clone(), HostTensor::from_tch(&tensor)?));
                }
            }
            parameters.push(ParameterStats {
                name: full,
                module_path: module_path.clone(),
                shape: tensor.size(),
                dtype: format!("{:?}", tensor.kind()).to_lowercase(),
                requires_grad: tensor.requires_grad(),
                stats: tensor_stats(&tensor, bins)?,
            });
        }
    }
    Ok(ParameterReport { parameters, first_conv })
}

/// Statistics of one module call's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub path: String,
    pub type_name: String,
    pub call_index: u32,
    pub call_site: String,
    pub shape: Vec<i64>,
    pub stats: TensorStats,
    /// ReLU-like layers: the fraction of outputs ≤ 0.
    pub nonpositive_fraction: Option<f64>,
    /// Sigmoid/tanh layers: the fraction of outputs within 1% of the range's ends.
    pub saturated_fraction: Option<f64>,
    /// ReLU-like layers: channels (dimension 1) never positive over the batch.
    pub dead_channels: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub severity: Severity,
    /// `nan`, `inf`, `dead_units`, `saturation`, `exploding_scale`.
    pub kind: String,
    pub path: String,
    pub call_site: String,
    pub message: String,
}

pub struct ActivationReport {
    pub layers: Vec<LayerStats>,
    pub anomalies: Vec<Anomaly>,
}

fn is_relu_like(type_name: &str) -> bool {
    ["ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "ELU", "Hardswish", "Mish", "Softplus"].iter().any(|name| type_name.ends_with(name))
}

/// Runs the tapped forward pass on `inputs` and reduces every module call's output
/// on the device; then looks for anomalies across layers in call order.
pub fn activation_report(model: &LoadedModel, inputs: &[HostTensor], bins: usize) -> Result<ActivationReport> {
    model.check_inputs(inputs)?;
    let tapped = model.tapped()?;
    let device = model.device.to_tch();
    let tensors = inputs.iter().map(|input| input.to_tch(device)).collect::<Result<Vec<_>>>()?;
    let _no_grad = tch::no_grad_guard();
    let taps = tapped.taps(&tensors)?;
    let mut layers = Vec::new();
    // A block's output is often its last layer's output: reduce each tensor once.
    let mut reduced: std::collections::HashMap<(usize, Vec<i64>), TensorStats> = std::collections::HashMap::new();
    for ((tap, path), call_id) in taps.iter().zip(&tapped.tap_paths).zip(&tapped.tap_calls) {
        let Some(tap) = tap else { continue };
        if !tap.is_floating_point() {
            continue;
        }
        let call = &tapped.graph.calls[*call_id];
        let type_name = readable_type_name(&call.qualified_type);
        let short = type_name.rsplit('.').next().unwrap_or(&type_name).to_string();
        let key = (tap.data_ptr() as usize, tap.size());
        let stats = match reduced.get(&key) {
            Some(stats) => stats.clone(),
            None => {
                let stats = tensor_stats(tap, bins)?;
                reduced.insert(key, stats.clone());
                stats
            }
        };
        let count = tap.numel().max(1) as f64;
        let relu_like = is_relu_like(&short);
        let nonpositive_fraction = relu_like.then(|| tap.le(0.0).sum(Kind::Int64).double_value(&[]) / count);
        let saturated_fraction = match short.as_str() {
            "Sigmoid" => Some((tap.lt(0.01).logical_or(&tap.gt(0.99))).sum(Kind::Int64).double_value(&[]) / count),
            "Tanh" => Some(tap.abs().gt(0.99).sum(Kind::Int64).double_value(&[]) / count),
            _ => None,
        };
        let dead_channels = (relu_like && tap.dim() >= 2).then(|| {
            let channels = tap.size()[1];
            let per_channel = tap.transpose(0, 1).reshape([channels, -1]).amax([1], false);
            (per_channel.le(0.0).sum(Kind::Int64).int64_value(&[]) as u64, channels as u64)
        });
        layers.push(LayerStats {
            path: path.clone(),
            type_name,
            call_index: call.index as u32,
            call_site: call.site.clone(),
            shape: tap.size(),
            stats,
            nonpositive_fraction,
            saturated_fraction,
            dead_channels,
        });
    }
    let anomalies = find_anomalies(&layers, tapped);
    Ok(ActivationReport { layers, anomalies })
}

fn find_anomalies(layers: &[LayerStats], tapped: &crate::taps::TappedModel) -> Vec<Anomaly> {
    let is_leaf = |path: &str| {
        let prefix = format!("{path}.");
        !tapped.tap_paths.iter().any(|other| other.starts_with(&prefix))
    };
    let mut anomalies = Vec::new();
    let first_bad = |pick: fn(&TensorStats) -> u64| layers.iter().find(|layer| pick(&layer.stats) > 0 && is_leaf(&layer.path));
    if let Some(layer) = first_bad(|stats| stats.nan_count) {
        anomalies.push(Anomaly {
            severity: Severity::Error,
            kind: "nan".into(),
            path: layer.path.clone(),
            call_site: layer.call_site.clone(),
            message: format!("NaN first appears in the output of {} ({} of {} values)", layer.path, layer.stats.nan_count, layer.stats.count),
        });
    }
    if let Some(layer) = first_bad(|stats| stats.inf_count) {
        anomalies.push(Anomaly {
            severity: Severity::Error,
            kind: "inf".into(),
            path: layer.path.clone(),
            call_site: layer.call_site.clone(),
            message: format!("infinite values first appear in the output of {} ({} of {} values)", layer.path, layer.stats.inf_count, layer.stats.count),
        });
    }
    let mut previous_std: Option<(f64, &str)> = None;
    for layer in layers.iter().filter(|layer| is_leaf(&layer.path)) {
        if let Some((dead, channels)) = layer.dead_channels {
            if dead > 0 {
                let fraction = dead as f64 / channels as f64;
                let batch = layer.shape.first().copied().unwrap_or(1);
                // A channel silent for a few inputs is not necessarily dead: with a
                // small batch this is only a hint.
                let severity = if batch < 8 {
                    Severity::Info
                } else if fraction >= 0.5 {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let hint = if batch < 8 { format!("; with a batch of {batch}, explain more inputs to confirm") } else { String::new() };
                anomalies.push(Anomaly {
                    severity,
                    kind: "dead_units".into(),
                    path: layer.path.clone(),
                    call_site: layer.call_site.clone(),
                    message: format!("{dead} of {channels} channels of {} are never positive over the batch (dead units){hint}", layer.path),
                });
            }
        }
        if let Some(fraction) = layer.saturated_fraction {
            if fraction > 0.5 {
                anomalies.push(Anomaly {
                    severity: Severity::Warning,
                    kind: "saturation".into(),
                    path: layer.path.clone(),
                    call_site: layer.call_site.clone(),
                    message: format!("{:.0}% of the outputs of {} are saturated", fraction * 100.0, layer.path),
                });
            }
        }
        let std = layer.stats.std;
        if std.is_finite() {
            if let Some((before, before_path)) = previous_std {
                if before > 0.0 && std > 10.0 * before {
                    anomalies.push(Anomaly {
                        severity: Severity::Warning,
                        kind: "exploding_scale".into(),
                        path: layer.path.clone(),
                        call_site: layer.call_site.clone(),
                        message: format!("the std of the outputs grows {:.1}× from {before_path} ({before:.3e}) to {} ({std:.3e})", std / before, layer.path),
                    });
                }
            }
            previous_std = Some((std, &layer.path));
        }
    }
    anomalies.sort_by(|a, b| b.severity.cmp(&a.severity));
    anomalies
}

/// The model's output, and for `(batch, classes)` outputs the top-k classes per row
/// with softmax probabilities.
pub struct Prediction {
    pub output: HostTensor,
    /// Per row: (class, logit, probability), best first.
    pub top_k: Vec<Vec<(i64, f64, f64)>>,
}

pub fn predict(model: &LoadedModel, inputs: &[HostTensor], k: usize) -> Result<Prediction> {
    model.check_inputs(inputs)?;
    let device = model.device.to_tch();
    let tensors = inputs.iter().map(|input| input.to_tch(device)).collect::<Result<Vec<_>>>()?;
    let _no_grad = tch::no_grad_guard();
    let output = model.forward(&tensors)?;
    let mut top_k = Vec::new();
    if output.dim() == 2 && k > 0 {
        let classes = output.size()[1];
        let k = (k as i64).min(classes);
        let probabilities = output.to_kind(Kind::Double).softmax(1, Kind::Double);
        let (values, indices) = output.to_kind(Kind::Double).topk(k, 1, true, true);
        let probabilities = probabilities.gather(1, &indices, false);
        for row in 0..output.size()[0] {
            let mut entries = Vec::new();
            for column in 0..k {
                entries.push((
                    indices.int64_value(&[row, column]),
                    values.double_value(&[row, column]),
                    probabilities.double_value(&[row, column]),
                ));
            }
            top_k.push(entries);
        }
    }
    Ok(Prediction { output: HostTensor::from_tch(&output)?, top_k })
}
