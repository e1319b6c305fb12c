//! What the optimiser does to each parameter, rebuilt from the state a checkpoint
//! holds (the weights after the last step, the optimiser's moments and param groups).
//!
//! The last update Δθ is rebuilt where the state determines it, exactly as PyTorch 2.11
//! applied it:
//! - Adam/AdamW (amsgrad too): `θ ← θ·(1 − lr·wd) − lr/bc1 · m / (√v/√bc2 + ε)` with
//!   `bc1 = 1 − β1^t`, `bc2 = 1 − β2^t`, the decay term only for decoupled weight decay
//!   (AdamW), `v` the running maximum under amsgrad. Coupled (L2) decay is already
//!   inside the moments.
//! - SGD with momentum: `θ ← θ − lr·buf` (Nesterov needs the last gradient, which no
//!   checkpoint holds: approximated by `lr·(1+μ)·buf`, and said so).
//! - RMSprop with momentum: `θ ← θ − lr·buf`.
//!
//! Plain SGD, RMSprop without momentum and Adagrad keep no state that determines the
//! step (it needs the last gradient): their update is unknown (NaN) and a note says
//! why; their effective learning rate per coordinate is still reported.
//!
//! The effective learning rate per coordinate is `lr/(√v̂+ε)` for Adam (`v̂ = v/bc2`),
//! `lr/(√(E[g²] − E[g]²)+ε)` for RMSprop, `clr/(√Σg²+ε)` for Adagrad and `lr` for SGD.
//! The update:weight ratio is ‖Δθ‖/‖θ‖ with θ the checkpoint's weights; CS231n's rule
//! of thumb puts a healthy one near 1e-3, and the findings flag ratios outside
//! 1e-4..1e-2, non-finite moments, parameters the optimiser never stepped and
//! coordinates whose second moment is still zero (never had a gradient).

use super::bind::BoundCheckpoint;
use super::stats::{histogram, norm, p50_p99_max};
use crate::error::Result;
use layerlens_checkpoint::{OptimizerKind, TensorData, Value};

/// The healthy band of the update:weight ratio.
pub const HEALTHY_RATIO: (f64, f64) = (1e-4, 1e-2);
/// Above this ratio an update is exploding: it moves the weights by more than a tenth.
const EXPLODING_RATIO: f64 = 0.1;
/// Below this ratio an update is vanishing.
const VANISHING_RATIO: f64 = 1e-7;
/// A second moment at or below this counts as zero (no gradient ever reached it).
const ZERO_SECOND_MOMENT: f64 = 1e-30;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    fn of(values: &[f64]) -> Quantiles {
        let [p50, p99, max] = p50_p99_max(values);
        Quantiles { p50, p99, max }
    }

    const UNKNOWN: Quantiles = Quantiles { p50: f64::NAN, p99: f64::NAN, max: f64::NAN };
}

/// One moment buffer's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct MomentStat {
    pub name: String,
    pub norm: f64,
    pub max_abs: f64,
    pub nonfinite: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterUpdate {
    pub parameter: String,
    pub layer: String,
    pub shape: Vec<i64>,
    pub group: usize,
    pub learning_rate: f64,
    pub weight_norm: f64,
    /// NaN when the state does not determine the update.
    pub update_norm: f64,
    pub update_weight_ratio: f64,
    pub effective_lr: Quantiles,
    /// |Δθ| per coordinate.
    pub step_size: Quantiles,
    pub momentum_norm: f64,
    pub zero_second_moment_fraction: f64,
    /// |decay term| / (|gradient term| + |decay term|) of the update's norms; NaN when unknown.
    pub weight_decay_share: f64,
    /// Histogram of Δθ per coordinate (empty when unknown).
    pub step_histogram: (Vec<f64>, Vec<u64>),
    pub moments: Vec<MomentStat>,
    pub has_state: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerUpdate {
    pub layer: String,
    pub weight_norm: f64,
    pub update_norm: f64,
    pub update_weight_ratio: f64,
    pub numel: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `warning` or `error`.
    pub severity: &'static str,
    pub layer: String,
    pub parameter: String,
    pub kind: &'static str,
    pub message: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroupInfo {
    pub index: usize,
    pub learning_rate: f64,
    pub options: Vec<(String, String)>,
    pub parameters: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    pub state: Vec<(String, String)>,
    pub last_epoch: i64,
    pub last_lr: Vec<f64>,
    pub base_lr: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerReport {
    /// `Adam`, ..., `unknown`, or empty without optimiser state.
    pub optimizer: String,
    pub step: Option<i64>,
    pub rows: Vec<ParameterUpdate>,
    pub layers: Vec<LayerUpdate>,
    pub findings: Vec<Finding>,
    pub param_groups: Vec<ParamGroupInfo>,
    pub schedule: Option<Schedule>,
    pub notes: Vec<String>,
}

/// A param group's options, read as numbers and flags.
struct GroupOptions<'a>(&'a [(String, Value)]);

impl GroupOptions<'_> {
    fn value(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.value(key).and_then(number)
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.value(key), Some(Value::Bool(true)))
    }

    fn pair(&self, key: &str) -> Option<(f64, f64)> {
        match self.value(key)? {
            Value::Tuple(items) | Value::List(items) if items.len() == 2 => Some((number(&items[0])?, number(&items[1])?)),
            _ => None,
        }
    }
}

/// A number from a scalar value (an int, a float, or a one-element tensor such as
/// Adam's `step`).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(int) => Some(*int as f64),
        Value::Float(float) => Some(*float),
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        Value::Tensor(tensor) if tensor.numel() == 1 => tensor.to_f32().first().map(|&value| value as f64),
        _ => None,
    }
}

/// A value as Python would print it (for param group options and scheduler state).
pub(crate) fn python_text(value: &Value) -> String {
    let join = |items: &[Value]| items.iter().map(python_text).collect::<Vec<_>>().join(", ");
    match value {
        Value::None => "None".to_string(),
        Value::Bool(flag) => if *flag { "True" } else { "False" }.to_string(),
        Value::Int(int) => int.to_string(),
        Value::Float(float) => format!("{float:?}"),
        Value::Str(text) => format!("{text:?}"),
        Value::Bytes(bytes) => format!("<{} bytes>", bytes.len()),
        Value::List(items) => format!("[{}]", join(items)),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", join(items)),
        Value::Tuple(items) => format!("({})", join(items)),
        Value::Dict(entries) => {
            let entries: Vec<String> = entries.iter().map(|(key, value)| format!("{}: {}", python_text(key), python_text(value))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Tensor(tensor) if tensor.numel() == 1 => format!("tensor({})", tensor.to_f32()[0]),
        Value::Tensor(tensor) => format!("tensor of shape {:?}", tensor.shape),
    }
}

fn values_f64(tensor: &TensorData) -> Vec<f64> {
    tensor.to_f32().into_iter().map(f64::from).collect()
}

fn moment<'a>(state: &'a [(String, Value)], key: &str) -> Option<&'a TensorData> {
    state.iter().find_map(|(name, value)| match value {
        Value::Tensor(tensor) if name == key => Some(tensor),
        _ => None,
    })
}

/// How one parameter's last step is rebuilt.
struct Rebuilt {
    /// The update's gradient part and decay part per coordinate (Δθ = −(gradient + decay)).
    gradient_term: Option<Vec<f64>>,
    decay_term: Option<Vec<f64>>,
    effective_lr: Option<Vec<f64>>,
    momentum: Option<Vec<f64>>,
    second_moment: Option<Vec<f64>>,
    /// Coupled weight decay: its share estimated from wd·θ against the gradient estimate.
    coupled_decay_share: Option<f64>,
}

impl Rebuilt {
    /// A parameter without optimiser state: only SGD's effective learning rate (lr) is known.
    fn without_state(kind: OptimizerKind, learning_rate: f64, numel: usize) -> Rebuilt {
        Rebuilt {
            gradient_term: None,
            decay_term: None,
            effective_lr: (kind == OptimizerKind::Sgd).then(|| vec![learning_rate; numel]),
            momentum: None,
            second_moment: None,
            coupled_decay_share: None,
        }
    }
}

/// Explains the optimiser state of a bound checkpoint; `bins` per step histogram.
pub fn explain_optimizer(bound: &BoundCheckpoint, names: &[super::ParameterSpec], bins: usize) -> Result<OptimizerReport> {
    let checkpoint = &bound.checkpoint;
    let mut notes = Vec::new();
    let Some(optimizer) = &checkpoint.optimizer else {
        return Ok(OptimizerReport {
            optimizer: String::new(),
            step: checkpoint.step,
            rows: Vec::new(),
            layers: Vec::new(),
            findings: Vec::new(),
            param_groups: Vec::new(),
            schedule: None,
            notes: vec!["the checkpoint holds no optimiser state (save optimizer.state_dict() with the model's)".to_string()],
        });
    };
    let kind = optimizer.kind;
    let kind_name = kind.name().unwrap_or("unknown").to_string();
    match kind {
        OptimizerKind::Unknown => {
            notes.push("unknown optimiser: its state does not match Adam, AdamW, SGD, RMSprop or Adagrad; shown are its moments' statistics only".into())
        }
        OptimizerKind::Sgd if optimizer.param_groups.iter().any(|group| GroupOptions(&group.options).flag("nesterov")) => notes.push(
            "Nesterov momentum: the last update also needs the last gradient, which a checkpoint does not hold; it is approximated by lr·(1+momentum)·buf"
                .into(),
        ),
        OptimizerKind::Adagrad => notes.push("Adagrad keeps no state that determines its last step (it needs the last gradient): the update is unknown".into()),
        _ => {}
    }
    let mut rows = Vec::new();
    let mut unknown_updates = 0;
    for (index, spec) in names.iter().enumerate() {
        let weights = values_f64(&bound.weights[index]);
        let state = bound.optimizer_state(index);
        let group_index = bound.group_of(index).unwrap_or(0);
        let group = optimizer.param_groups.get(group_index).map(|group| GroupOptions(&group.options)).unwrap_or(GroupOptions(&[]));
        let learning_rate = group.number("lr").unwrap_or(f64::NAN);
        let rebuilt = if state.is_empty() {
            Rebuilt::without_state(kind, learning_rate, weights.len())
        } else {
            rebuild(kind, state, &group, &weights, checkpoint.step)
        };
        let moments: Vec<MomentStat> = state
            .iter()
            .filter_map(|(name, value)| match value {
                // Scalars (Adam's `step`) are counters, not moments.
                Value::Tensor(tensor) if !tensor.shape.is_empty() => {
                    let values = values_f64(tensor);
                    Some(MomentStat {
                        name: name.clone(),
                        norm: norm(&values),
                        max_abs: values.iter().fold(0.0, |max: f64, value| max.max(value.abs())),
                        nonfinite: values.iter().filter(|value| !value.is_finite()).count() as u64,
                    })
                }
                _ => None,
            })
            .collect();
        let weight_norm = norm(&weights);
        let has_state = !state.is_empty();
        let update: Option<Vec<f64>> = rebuilt.gradient_term.as_ref().map(|gradient| match &rebuilt.decay_term {
            Some(decay) => gradient.iter().zip(decay).map(|(g, d)| -(g + d)).collect(),
            None => gradient.iter().map(|g| -g).collect(),
        });
        // A parameter the optimiser keeps no state for did not move, unless the
        // optimiser keeps none at all (plain SGD): then its step needs the gradient.
        let keeps_no_state = kind == OptimizerKind::Sgd && !has_momentum(&group);
        let update_norm = match &update {
            Some(update) => norm(update),
            None if !has_state && !keeps_no_state => 0.0,
            None => f64::NAN,
        };
        if has_state && update.is_none() {
            unknown_updates += 1;
        }
        let weight_decay_share = match (&rebuilt.gradient_term, &rebuilt.decay_term, rebuilt.coupled_decay_share) {
            (Some(gradient), Some(decay), _) => {
                let (gradient, decay) = (norm(gradient), norm(decay));
                if gradient + decay > 0.0 {
                    decay / (gradient + decay)
                } else {
                    0.0
                }
            }
            (_, _, Some(share)) => share,
            (Some(_), None, None) => 0.0,
            _ => f64::NAN,
        };
        let magnitudes: Option<Vec<f64>> = update.as_ref().map(|update| update.iter().map(|value| value.abs()).collect());
        let zero_second_moment_fraction = rebuilt
            .second_moment
            .as_ref()
            .map(|second| second.iter().filter(|&&value| value <= ZERO_SECOND_MOMENT).count() as f64 / second.len().max(1) as f64)
            .unwrap_or(0.0);
        let row = ParameterUpdate {
            parameter: spec.name.clone(),
            layer: spec.layer.clone(),
            shape: spec.shape.clone(),
            group: group_index,
            learning_rate,
            weight_norm,
            update_norm,
            update_weight_ratio: if weight_norm > 0.0 && has_state { update_norm / weight_norm } else { f64::NAN },
            effective_lr: rebuilt.effective_lr.as_deref().map(Quantiles::of).unwrap_or(Quantiles::UNKNOWN),
            step_size: magnitudes.as_deref().map(Quantiles::of).unwrap_or(Quantiles::UNKNOWN),
            momentum_norm: rebuilt.momentum.as_deref().map(norm).unwrap_or(0.0),
            zero_second_moment_fraction,
            weight_decay_share,
            step_histogram: update.as_deref().map(|update| histogram(update, bins)).unwrap_or_default(),
            moments,
            has_state,
        };
        rows.push(row);
    }
    if !rows.iter().any(|row| row.has_state) && kind != OptimizerKind::Unknown {
        notes.push(
            "the optimiser keeps no per-parameter state (plain SGD, or no step taken yet): the last update needs the last gradient, which a checkpoint does not hold"
                .into(),
        );
    }
    if unknown_updates > 0 && !matches!(kind, OptimizerKind::Unknown | OptimizerKind::Adagrad) {
        notes.push(format!(
            "{unknown_updates} parameters have state that does not determine the last update (it needs the last gradient): their update is unknown"
        ));
    }
    let layers = layer_updates(&rows, names);
    let findings = findings(&rows);
    let param_groups = optimizer
        .param_groups
        .iter()
        .enumerate()
        .map(|(index, group)| ParamGroupInfo {
            index,
            learning_rate: GroupOptions(&group.options).number("lr").unwrap_or(f64::NAN),
            options: group.options.iter().map(|(key, value)| (key.clone(), python_text(value))).collect(),
            parameters: group.params.len(),
        })
        .collect();
    let step = checkpoint.step.or_else(|| optimizer_step(bound));
    Ok(OptimizerReport { optimizer: kind_name, step, rows, layers, findings, param_groups, schedule: schedule(bound), notes })
}

fn has_momentum(group: &GroupOptions<'_>) -> bool {
    group.number("momentum").is_some_and(|momentum| momentum != 0.0)
}

/// The optimiser's own step count (Adam's per-parameter `step`), the largest one.
pub fn optimizer_step(bound: &BoundCheckpoint) -> Option<i64> {
    let optimizer = bound.checkpoint.optimizer.as_ref()?;
    optimizer
        .state
        .iter()
        .filter_map(|(_, state)| state.iter().find(|(name, _)| name == "step").and_then(|(_, value)| number(value)))
        .map(|step| step as i64)
        .max()
}

/// Rebuilds the last step of one parameter from its state (see the module docs).
fn rebuild(kind: OptimizerKind, state: &[(String, Value)], group: &GroupOptions<'_>, weights: &[f64], checkpoint_step: Option<i64>) -> Rebuilt {
    let lr = group.number("lr").unwrap_or(f64::NAN);
    let weight_decay = group.number("weight_decay").unwrap_or(0.0);
    let eps = group.number("eps").unwrap_or(1e-8);
    let tensor = |key: &str| moment(state, key).map(values_f64);
    let step = state.iter().find(|(name, _)| name == "step").and_then(|(_, value)| number(value)).or(checkpoint_step.map(|step| step as f64));
    let coupled_share = |estimate: &[f64]| -> Option<f64> {
        if weight_decay == 0.0 {
            return Some(0.0);
        }
        let decay = weight_decay * norm(weights);
        let gradient = norm(estimate);
        Some(if gradient > 0.0 { (decay / gradient).min(1.0) } else { 1.0 })
    };
    let mut rebuilt =
        Rebuilt { gradient_term: None, decay_term: None, effective_lr: None, momentum: None, second_moment: None, coupled_decay_share: None };
    match kind {
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            let (beta1, beta2) = group.pair("betas").unwrap_or((0.9, 0.999));
            let amsgrad = group.flag("amsgrad");
            let decoupled = kind == OptimizerKind::AdamW || group.flag("decoupled_weight_decay");
            let (Some(m), Some(v), Some(t)) = (tensor("exp_avg"), tensor(if amsgrad { "max_exp_avg_sq" } else { "exp_avg_sq" }), step) else {
                return rebuilt;
            };
            let bias_correction1 = 1.0 - beta1.powf(t);
            let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            let step_size = lr / bias_correction1;
            let denominators: Vec<f64> = v.iter().map(|v| v.sqrt() / bias_correction2_sqrt + eps).collect();
            let gradient: Vec<f64> = m.iter().zip(&denominators).map(|(m, denominator)| step_size * m / denominator).collect();
            if decoupled && weight_decay != 0.0 {
                // θ_after = θ_before·(1 − lr·wd) − gradient term, so θ_before is recovered
                // from the checkpoint's weights.
                let keep = 1.0 - lr * weight_decay;
                rebuilt.decay_term = Some(weights.iter().zip(&gradient).map(|(w, g)| lr * weight_decay * (w + g) / keep).collect());
            } else {
                let m_hat: Vec<f64> = m.iter().map(|m| m / bias_correction1).collect();
                rebuilt.coupled_decay_share = coupled_share(&m_hat);
            }
            rebuilt.effective_lr = Some(denominators.iter().map(|denominator| lr / denominator).collect());
            rebuilt.gradient_term = Some(gradient);
            rebuilt.momentum = Some(m);
            rebuilt.second_moment = Some(v);
        }
        OptimizerKind::Sgd => {
            let momentum = group.number("momentum").unwrap_or(0.0);
            rebuilt.effective_lr = Some(vec![lr; weights.len()]);
            if let Some(buffer) = tensor("momentum_buffer") {
                let scale = if group.flag("nesterov") { lr * (1.0 + momentum) } else { lr };
                rebuilt.gradient_term = Some(buffer.iter().map(|b| scale * b).collect());
                rebuilt.coupled_decay_share = coupled_share(&buffer);
                rebuilt.momentum = Some(buffer);
            }
        }
        OptimizerKind::RmsProp => {
            let Some(square_avg) = tensor("square_avg") else { return rebuilt };
            let average: Vec<f64> = match tensor("grad_avg").filter(|_| group.flag("centered")) {
                Some(grad_avg) => square_avg.iter().zip(&grad_avg).map(|(s, g)| (s - g * g).sqrt() + eps).collect(),
                None => square_avg.iter().map(|s| s.sqrt() + eps).collect(),
            };
            rebuilt.effective_lr = Some(average.iter().map(|average| lr / average).collect());
            if let Some(buffer) = tensor("momentum_buffer").filter(|_| has_momentum(group)) {
                rebuilt.gradient_term = Some(buffer.iter().map(|b| lr * b).collect());
                rebuilt.momentum = Some(buffer);
            }
            rebuilt.second_moment = Some(square_avg);
        }
        OptimizerKind::Adagrad => {
            let Some(sum) = tensor("sum") else { return rebuilt };
            let lr_decay = group.number("lr_decay").unwrap_or(0.0);
            let initial = group.number("initial_accumulator_value").unwrap_or(0.0);
            let clr = lr / (1.0 + (step.unwrap_or(1.0) - 1.0) * lr_decay);
            rebuilt.effective_lr = Some(sum.iter().map(|s| clr / (s.sqrt() + eps)).collect());
            rebuilt.second_moment = Some(sum.iter().map(|s| s - initial).collect());
        }
        OptimizerKind::Unknown => {}
    }
    rebuilt
}

/// Per layer: norms summed over its parameters (in quadrature).
fn layer_updates(rows: &[ParameterUpdate], names: &[super::ParameterSpec]) -> Vec<LayerUpdate> {
    let mut layers: Vec<LayerUpdate> = Vec::new();
    for (row, spec) in rows.iter().zip(names) {
        let numel = spec.shape.iter().product::<i64>().max(1) as u64;
        let (weight, update) = (row.weight_norm.powi(2), if row.has_state { row.update_norm.powi(2) } else { 0.0 });
        match layers.iter_mut().find(|layer| layer.layer == row.layer) {
            Some(layer) => {
                layer.weight_norm += weight;
                layer.update_norm += update;
                layer.numel += numel;
            }
            None => layers.push(LayerUpdate { layer: row.layer.clone(), weight_norm: weight, update_norm: update, update_weight_ratio: 0.0, numel }),
        }
    }
    for layer in &mut layers {
        layer.weight_norm = layer.weight_norm.sqrt();
        layer.update_norm = layer.update_norm.sqrt();
        layer.update_weight_ratio = if layer.weight_norm > 0.0 { layer.update_norm / layer.weight_norm } else { f64::NAN };
    }
    layers
}

fn scientific(value: f64) -> String {
    format!("{value:.2e}")
}

/// The anomaly report: each finding names the parameter, its layer and the number.
fn findings(rows: &[ParameterUpdate]) -> Vec<Finding> {
    let any_state = rows.iter().any(|row| row.has_state);
    let mut findings = Vec::new();
    let mut add = |row: &ParameterUpdate, severity: &'static str, kind: &'static str, value: f64, message: String| {
        findings.push(Finding { severity, layer: row.layer.clone(), parameter: row.parameter.clone(), kind, message, value });
    };
    for row in rows {
        let name = &row.parameter;
        let nonfinite: u64 = row.moments.iter().map(|moment| moment.nonfinite).sum();
        if nonfinite > 0 || !row.weight_norm.is_finite() {
            let count = nonfinite as f64;
            add(
                row,
                "error",
                "nonfinite_state",
                count,
                format!("{name}: {nonfinite} NaN/Inf values in the optimiser's moments or the weights: training has diverged"),
            );
            continue;
        }
        if !row.has_state {
            if any_state {
                add(
                    row,
                    "warning",
                    "frozen",
                    0.0,
                    format!(
                        "{name}: the optimiser holds no state for it: it never received a gradient (frozen, unused, or not given to the optimiser)"
                    ),
                );
            }
            continue;
        }
        if row.zero_second_moment_fraction >= 0.5 {
            let percent = 100.0 * row.zero_second_moment_fraction;
            add(
                row,
                if row.zero_second_moment_fraction >= 0.999 { "error" } else { "warning" },
                "never_updated",
                row.zero_second_moment_fraction,
                format!("{name}: {percent:.0}% of coordinates have a zero second moment: no gradient has ever reached them (dead units)"),
            );
        }
        let ratio = row.update_weight_ratio;
        if !ratio.is_finite() {
            continue;
        }
        let (low, high) = HEALTHY_RATIO;
        if row.update_norm == 0.0 {
            if row.zero_second_moment_fraction < 0.5 {
                add(row, "warning", "frozen", 0.0, format!("{name}: the last update was exactly zero: the layer did not move"));
            }
        } else if ratio > EXPLODING_RATIO {
            add(
                row,
                "error",
                "exploding_update",
                ratio,
                format!(
                    "{name}: update:weight ratio {} — each step changes the weights by {:.0}% (healthy is {}..{}): the learning rate is far too high",
                    scientific(ratio),
                    100.0 * ratio,
                    scientific(low),
                    scientific(high)
                ),
            );
        } else if ratio > high {
            add(
                row,
                "warning",
                "ratio_high",
                ratio,
                format!(
                    "{name}: update:weight ratio {} is above the healthy {}..{}: the learning rate may be too high",
                    scientific(ratio),
                    scientific(low),
                    scientific(high)
                ),
            );
        } else if ratio < VANISHING_RATIO {
            add(
                row,
                "warning",
                "vanishing_update",
                ratio,
                format!("{name}: update:weight ratio {}: the updates have vanished and the layer barely learns", scientific(ratio)),
            );
        } else if ratio < low {
            add(
                row,
                "warning",
                "ratio_low",
                ratio,
                format!(
                    "{name}: update:weight ratio {} is below the healthy {}..{}: the learning rate may be too low",
                    scientific(ratio),
                    scientific(low),
                    scientific(high)
                ),
            );
        }
    }
    findings
}

/// The LR scheduler's state, when the checkpoint has one.
fn schedule(bound: &BoundCheckpoint) -> Option<Schedule> {
    let state = bound.checkpoint.scheduler.as_ref()?;
    let get = |key: &str| state.iter().find(|(name, _)| name == key).map(|(_, value)| value);
    let numbers = |value: Option<&Value>| match value {
        Some(Value::List(items) | Value::Tuple(items)) => items.iter().filter_map(number).collect(),
        _ => Vec::new(),
    };
    Some(Schedule {
        state: state.iter().map(|(key, value)| (key.clone(), python_text(value))).collect(),
        last_epoch: get("last_epoch").and_then(number).unwrap_or(-1.0) as i64,
        last_lr: numbers(get("_last_lr")),
        base_lr: numbers(get("base_lrs")),
    })
}
