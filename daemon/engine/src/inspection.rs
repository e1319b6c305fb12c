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

/// Everything the reports read from one tensor: its statistics and the counts that
/// the activation report's ReLU-like and sigmoid/tanh columns need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reduction {
    pub stats: TensorStats,
    /// Values ≤ 0.
    pub nonpositive: u64,
    /// Values < 0.01 or > 0.99 (a sigmoid near the ends of its range).
    pub sigmoid_saturated: u64,
    /// Values with |x| > 0.99 (a tanh near the ends of its range).
    pub tanh_saturated: u64,
    /// (channels never positive over dimensions other than 1, channels) for ≥ 2-d tensors.
    pub dead_channels: Option<(u64, u64)>,
}

/// Statistics of a tensor, reduced where it lives; only scalars and the histogram come
/// back to the host.
pub fn tensor_stats(tensor: &Tensor, bins: usize) -> Result<TensorStats> {
    Ok(reduce(tensor, bins, false)?.stats)
}

/// Reduces a tensor: float32 CPU tensors in two fused passes (`csrc/stats.cpp`), any
/// other tensor (CUDA, other dtypes) with one libtorch reduction per figure. The
/// sigmoid/tanh saturation counts are only taken when `saturation` is set (else 0).
pub fn reduce(tensor: &Tensor, bins: usize, saturation: bool) -> Result<Reduction> {
    if tensor.device() == tch::Device::Cpu && tensor.kind() == Kind::Float {
        fused::reduce(tensor, bins, saturation)
    } else {
        reduce_with_ops(tensor, bins, saturation)
    }
}

/// torch.histc's edges: the data's min..max, widened by 1 each way when they are equal.
fn histogram_edges(min: f64, max: f64, bins: usize) -> Vec<f32> {
    let (low, high) = if max > min { (min, max) } else { (min - 1.0, max + 1.0) };
    let step = (high - low) / bins as f64;
    (0..=bins).map(|index| (low + step * index as f64) as f32).collect()
}

mod fused {
    use super::{histogram_edges, Histogram, Reduction, TensorStats};
    use crate::error::{Error, ErrorKind, Result};
    use std::os::raw::{c_char, c_int};
    use torch_sys::C_tensor;

    /// Mirrors `LayerlensFusedStats` in csrc/stats.cpp.
    #[repr(C)]
    #[derive(Default)]
    struct FusedStats {
        count: i64,
        finite_count: i64,
        nan_count: i64,
        inf_count: i64,
        zero_count: i64,
        nonpositive_count: i64,
        sigmoid_saturated: i64,
        tanh_saturated: i64,
        dead_channels: i64,
        channels: i64,
        shift: f64,
        shifted_sum: f64,
        shifted_sum_squares: f64,
        min: f64,
        max: f64,
    }

    extern "C" {
        fn layerlens_fused_stats(
            tensor: *const C_tensor,
            bins: i64,
            saturation: c_int,
            out: *mut FusedStats,
            histogram: *mut i64,
            out_error: *mut *mut c_char,
        ) -> c_int;
    }

    pub(super) fn reduce(tensor: &tch::Tensor, bins: usize, saturation: bool) -> Result<Reduction> {
        let _no_grad = tch::no_grad_guard();
        let values = tensor.detach();
        let mut out = FusedStats::default();
        let mut counts = vec![0i64; bins];
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: `values` is a live tch tensor (an at::Tensor*), `out` and `counts`
        // have the sizes the kernel writes (one struct, `bins` counts).
        let status =
            unsafe { layerlens_fused_stats(values.as_ptr(), bins as i64, c_int::from(saturation), &mut out, counts.as_mut_ptr(), &mut error) };
        if status != 0 {
            return Err(Error::new(ErrorKind::Internal, format!("reducing a tensor: {}", crate::taps::take_error(error))));
        }
        if out.count == 0 {
            return Ok(Reduction::default());
        }
        let finite = out.finite_count as f64;
        let stats = if out.finite_count == 0 {
            TensorStats {
                count: out.count as u64,
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                l2_norm: f64::NAN,
                zero_fraction: 0.0,
                nan_count: out.nan_count as u64,
                inf_count: out.inf_count as u64,
                histogram: Histogram::default(),
            }
        } else {
            // Sums of d = x - shift: mean = shift + Σd/n, (n-1)·var = Σd² - (Σd)²/n,
            // Σx² = Σd² + 2·shift·Σd + n·shift².
            let (shift, sum, squares) = (out.shift, out.shifted_sum, out.shifted_sum_squares);
            let variance = if out.finite_count > 1 { ((squares - sum * sum / finite) / (finite - 1.0)).max(0.0) } else { 0.0 };
            let l2 = (squares + 2.0 * shift * sum + finite * shift * shift).max(0.0).sqrt();
            TensorStats {
                count: out.count as u64,
                mean: shift + sum / finite,
                std: variance.sqrt(),
                min: out.min,
                max: out.max,
                l2_norm: l2,
                zero_fraction: out.zero_count as f64 / out.count as f64,
                nan_count: out.nan_count as u64,
                inf_count: out.inf_count as u64,
                histogram: if bins == 0 {
                    Histogram::default()
                } else {
                    Histogram { edges: histogram_edges(out.min, out.max, bins), counts: counts.into_iter().map(|count| count as u64).collect() }
                },
            }
        };
        Ok(Reduction {
            stats,
            nonpositive: out.nonpositive_count as u64,
            sigmoid_saturated: out.sigmoid_saturated as u64,
            tanh_saturated: out.tanh_saturated as u64,
            dead_channels: (out.dead_channels >= 0).then_some((out.dead_channels as u64, out.channels as u64)),
        })
    }
}

/// The generic path: one libtorch reduction per figure, on the tensor's device.
fn reduce_with_ops(tensor: &Tensor, bins: usize, saturation: bool) -> Result<Reduction> {
    let _no_grad = tch::no_grad_guard();
    let values = tensor.detach();
    let values = if values.is_floating_point() { values } else { values.to_kind(Kind::Float) };
    let flat = values.flatten(0, -1);
    let count = flat.numel() as u64;
    if count == 0 {
        return Ok(Reduction::default());
    }
    let all_finite = flat.isfinite().all().int64_value(&[]) != 0;
    let (nan_count, inf_count, finite_values) = if all_finite {
        (0, 0, flat.shallow_clone())
    } else {
        let nan_count = flat.isnan().sum(Kind::Int64).int64_value(&[]) as u64;
        let inf_count = flat.isinf().sum(Kind::Int64).int64_value(&[]) as u64;
        (nan_count, inf_count, flat.masked_select(&flat.isfinite()))
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
            flat.eq(0.0).sum(Kind::Int64).double_value(&[]) / count as f64,
        )
    };
    let histogram = if finite_count == 0 || bins == 0 {
        Histogram::default()
    } else {
        let counts = finite_values.histc(bins as i64).to_device(tch::Device::Cpu);
        let counts: Vec<f32> = Vec::<f32>::try_from(&counts.to_kind(Kind::Float)).map_err(torch_error("reading a histogram"))?;
        Histogram { edges: histogram_edges(min, max, bins), counts: counts.into_iter().map(|count| count.round() as u64).collect() }
    };
    let count_where = |mask: Tensor| mask.sum(Kind::Int64).int64_value(&[]) as u64;
    let dead_channels = (values.dim() >= 2).then(|| {
        let channels = values.size()[1];
        let per_channel = values.transpose(0, 1).reshape([channels, -1]).amax([1], false);
        (count_where(per_channel.le(0.0)), channels as u64)
    });
    Ok(Reduction {
        stats: TensorStats { count, mean, std, min, max, l2_norm, zero_fraction, nan_count, inf_count, histogram },
        nonpositive: count_where(flat.le(0.0)),
        sigmoid_saturated: if saturation { count_where(flat.lt(0.01).logical_or(&flat.gt(0.99))) } else { 0 },
        tanh_saturated: if saturation { count_where(flat.abs().gt(0.99)) } else { 0 },
        dead_channels,
    })
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

/// Runs the tapped forward pass on `inputs`, reducing every module call's output on
/// the device as soon as it is produced (so each is freed when the model is done with
/// it); then looks for anomalies across layers in call order.
pub fn activation_report(model: &LoadedModel, inputs: &[HostTensor], bins: usize) -> Result<ActivationReport> {
    model.check_inputs(inputs)?;
    let tapped = model.tapped()?;
    let device = model.device.to_tch();
    let tensors = inputs.iter().map(|input| input.to_tch(device)).collect::<Result<Vec<_>>>()?;
    let short_types: Vec<String> = tapped
        .tap_calls
        .iter()
        .map(|call| {
            let type_name = readable_type_name(&tapped.graph.calls[*call].qualified_type);
            type_name.rsplit('.').next().unwrap_or(&type_name).to_string()
        })
        .collect();
    // A value shared by several taps (a block's output is often its last layer's) is
    // reduced once, with the saturation counts if any of its taps is a sigmoid or tanh.
    let mut saturation = vec![false; tapped.tap_first.len()];
    for (index, first) in tapped.tap_first.iter().enumerate() {
        saturation[*first] |= matches!(short_types[index].as_str(), "Sigmoid" | "Tanh");
    }
    let mut reduced: Vec<Option<(Vec<i64>, Reduction)>> = vec![None; tapped.tap_first.len()];
    let mut failure: Option<Error> = None;
    let _no_grad = tch::no_grad_guard();
    let started = std::time::Instant::now();
    tapped.observe(&tensors, &mut |index, tensor| {
        if failure.is_some() || !tensor.is_floating_point() {
            return;
        }
        match reduce(&tensor, bins, saturation[index]) {
            Ok(reduction) => reduced[index] = Some((tensor.size(), reduction)),
            Err(error) => failure = Some(error),
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    let mut layers = Vec::new();
    for (index, (path, call_id)) in tapped.tap_paths.iter().zip(&tapped.tap_calls).enumerate() {
        let Some((shape, reduction)) = &reduced[tapped.tap_first[index]] else { continue };
        let call = &tapped.graph.calls[*call_id];
        let type_name = readable_type_name(&call.qualified_type);
        let short = &short_types[index];
        let count = reduction.stats.count.max(1) as f64;
        let relu_like = is_relu_like(short);
        let nonpositive_fraction = relu_like.then(|| reduction.nonpositive as f64 / count);
        let saturated_fraction = match short.as_str() {
            "Sigmoid" => Some(reduction.sigmoid_saturated as f64 / count),
            "Tanh" => Some(reduction.tanh_saturated as f64 / count),
            _ => None,
        };
        let dead_channels = if relu_like { reduction.dead_channels } else { None };
        let stats = reduction.stats.clone();
        let shape = shape.clone();
        layers.push(LayerStats {
            path: path.clone(),
            type_name,
            call_index: call.index as u32,
            call_site: call.site.clone(),
            shape,
            stats,
            nonpositive_fraction,
            saturated_fraction,
            dead_channels,
        });
    }
    tracing::debug!(
        forward_and_reduce_ms = started.elapsed().as_secs_f64() * 1e3,
        tensors = reduced.iter().filter(|reduction| reduction.is_some()).count(),
        "activation report"
    );
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
            message: format!(
                "infinite values first appear in the output of {} ({} of {} values)",
                layer.path, layer.stats.inf_count, layer.stats.count
            ),
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
                        message: format!(
                            "the std of the outputs grows {:.1}× from {before_path} ({before:.3e}) to {} ({std:.3e})",
                            std / before,
                            layer.path
                        ),
                    });
                }
            }
            previous_std = Some((std, &layer.path));
        }
    }
    anomalies.sort_by_key(|anomaly| std::cmp::Reverse(anomaly.severity));
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
                entries.push((indices.int64_value(&[row, column]), values.double_value(&[row, column]), probabilities.double_value(&[row, column])));
            }
            top_k.push(entries);
        }
    }
    Ok(Prediction { output: HostTensor::from_tch(&output)?, top_k })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_same(fused: &Reduction, generic: &Reduction, what: &str) {
        let (a, b) = (&fused.stats, &generic.stats);
        assert_eq!((a.count, a.nan_count, a.inf_count), (b.count, b.nan_count, b.inf_count), "{what}: counts");
        assert_eq!(a.zero_fraction, b.zero_fraction, "{what}: zero fraction");
        for (name, x, y) in
            [("mean", a.mean, b.mean), ("std", a.std, b.std), ("min", a.min, b.min), ("max", a.max, b.max), ("l2", a.l2_norm, b.l2_norm)]
        {
            if y.is_nan() {
                assert!(x.is_nan(), "{what}: {name} {x} vs NaN");
            } else {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}: {name} {x} vs {y}");
            }
        }
        assert_eq!(
            (fused.nonpositive, fused.sigmoid_saturated, fused.tanh_saturated, fused.dead_channels),
            (generic.nonpositive, generic.sigmoid_saturated, generic.tanh_saturated, generic.dead_channels),
            "{what}: fractions and dead channels"
        );
        assert_eq!(a.histogram.edges, b.histogram.edges, "{what}: edges");
        let total: u64 = a.histogram.counts.iter().sum();
        assert_eq!(total, b.histogram.counts.iter().sum::<u64>(), "{what}: histogram total");
        // Bins are found in float32 by both; values that sit on an edge may land on
        // either side of it.
        let moved: u64 = a.histogram.counts.iter().zip(&b.histogram.counts).map(|(x, y)| x.abs_diff(*y)).sum();
        assert!(
            moved as f64 <= 1e-4 * total as f64 + 2.0,
            "{what}: histograms differ by {moved}: {:?} vs {:?}",
            a.histogram.counts,
            b.histogram.counts
        );
    }

    #[test]
    fn fused_reduction_matches_libtorch_ops() {
        tch::manual_seed(7);
        let relu_batch = (Tensor::randn([16, 24, 30, 30], (Kind::Float, tch::Device::Cpu)) - 1.5).relu();
        // Channel 3 never positive: dead over the batch.
        let _ = relu_batch.narrow(1, 3, 1).fill_(0.0);
        let mut planted = Tensor::randn([4, 5, 7], (Kind::Float, tch::Device::Cpu)) * 3.0;
        let flat = planted.view([-1]);
        let _ = flat.get(3).fill_(f64::NAN);
        let _ = flat.get(10).fill_(f64::INFINITY);
        let _ = flat.get(11).fill_(f64::NEG_INFINITY);
        let _ = flat.get(12).fill_(0.0);
        planted = planted.contiguous();
        let cases: Vec<(&str, Tensor)> = vec![
            ("relu batch, several chunks", relu_batch),
            ("planted NaN/Inf", planted),
            ("large offset, small spread", Tensor::randn([3000], (Kind::Float, tch::Device::Cpu)) * 1e-3 + 1000.0),
            ("all ones", Tensor::ones([64, 3], (Kind::Float, tch::Device::Cpu))),
            ("sigmoid", (Tensor::randn([8, 100], (Kind::Float, tch::Device::Cpu)) * 6.0).sigmoid()),
            ("tanh, not contiguous", (Tensor::randn([40, 9], (Kind::Float, tch::Device::Cpu)) * 4.0).tanh().transpose(0, 1)),
            ("all NaN", Tensor::full([5, 2], f64::NAN, (Kind::Float, tch::Device::Cpu))),
            ("one value", Tensor::from_slice(&[2.5f32])),
            ("empty", Tensor::zeros([0, 4], (Kind::Float, tch::Device::Cpu))),
        ];
        for (what, tensor) in &cases {
            for (bins, saturation) in [(0, true), (1, false), (30, true)] {
                let fused = reduce(tensor, bins, saturation).unwrap();
                let generic = reduce_with_ops(tensor, bins, saturation).unwrap();
                assert_same(&fused, &generic, &format!("{what}, {bins} bins"));
            }
        }
        let dead = reduce(&cases[0].1, 10, false).unwrap().dead_channels.unwrap();
        assert!(dead.0 >= 1 && dead.1 == 24, "{dead:?}");
    }
}
