//! What a training checkpoint holds, found by the names training scripts use:
//! `torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
//! "scheduler": sched.state_dict(), "step": n, ...})`, a bare `model.state_dict()`, a
//! bare `opt.state_dict()`, or a safetensors file of weights.

use crate::error::CheckpointError;
use crate::value::{Dtype, TensorData, Value};
use crate::{read_value, Format};

/// A Python dict's items, as [`Value::Dict`] holds them.
type DictItems = Vec<(Value, Value)>;

/// Keys under which scripts save the model's state dict, in the order they are tried.
const MODEL_KEYS: &[&str] = &["model", "model_state_dict", "state_dict", "net", "module"];
const OPTIMIZER_KEYS: &[&str] = &["optimizer", "optimizer_state_dict", "optim", "opt"];
const SCHEDULER_KEYS: &[&str] = &["scheduler", "lr_scheduler", "scheduler_state_dict"];
const STEP_KEYS: &[&str] = &["step", "global_step", "iteration", "epoch"];

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub format: Format,
    /// The model's state dict (parameters and buffers by dotted name), in file order.
    /// Empty for a checkpoint that holds only optimizer state.
    pub model: Vec<(String, TensorData)>,
    pub optimizer: Option<OptimizerState>,
    /// An LR scheduler's state dict as saved (`last_epoch`, `base_lrs`, `_last_lr`, ...).
    pub scheduler: Option<Vec<(String, Value)>>,
    /// The training step: a top-level `step`, `global_step`, `iteration` or `epoch`
    /// (the first present), else the largest per-parameter `step` in the optimizer's state.
    pub step: Option<i64>,
    /// Every other top-level entry, in file order (for a safetensors file, its
    /// `__metadata__`). Keys that are not strings are written as Python would print them.
    pub extra: Vec<(String, Value)>,
}

/// An optimizer's `state_dict()`.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub kind: OptimizerKind,
    /// Per-parameter state (`exp_avg`, `momentum_buffer`, `step`, ...) keyed by the
    /// parameter's index in `param_groups`. Parameters that never had a gradient have none.
    pub state: Vec<(i64, Vec<(String, Value)>)>,
    pub param_groups: Vec<ParamGroup>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// Indices of the group's parameters.
    pub params: Vec<i64>,
    /// The group's hyper-parameters in file order: `lr`, `betas`, `eps`,
    /// `weight_decay`, `momentum`, `nesterov`, `amsgrad`, `decoupled_weight_decay`, ...
    pub options: Vec<(String, Value)>,
}

impl ParamGroup {
    pub fn option(&self, name: &str) -> Option<&Value> {
        self.options.iter().find(|(option, _)| option == name).map(|(_, value)| value)
    }
}

/// Which `torch.optim` class wrote an optimizer state dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Adam,
    AdamW,
    Sgd,
    RmsProp,
    Adagrad,
    Unknown,
}

impl OptimizerKind {
    /// The `torch.optim` class name; `None` for [`OptimizerKind::Unknown`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            OptimizerKind::Adam => Some("Adam"),
            OptimizerKind::AdamW => Some("AdamW"),
            OptimizerKind::Sgd => Some("SGD"),
            OptimizerKind::RmsProp => Some("RMSprop"),
            OptimizerKind::Adagrad => Some("Adagrad"),
            OptimizerKind::Unknown => None,
        }
    }

    /// Infers the class from the hyper-parameter names of the first param group, which
    /// every group shares and which (unlike the per-parameter state) exist before the
    /// first step. Each class's defaults in torch 2.11 include a pair no other class in
    /// `torch.optim` has. AdamW is Adam with `decoupled_weight_decay: True` (since torch
    /// 2.6 AdamW is that subclass and their state dicts are otherwise identical); an
    /// older AdamW, which lacks the flag, reads as Adam.
    fn infer(param_groups: &[ParamGroup]) -> OptimizerKind {
        let Some(group) = param_groups.first() else {
            return OptimizerKind::Unknown;
        };
        let has = |names: [&str; 2]| names.iter().all(|name| group.option(name).is_some());
        if has(["betas", "amsgrad"]) {
            if group.option("decoupled_weight_decay") == Some(&Value::Bool(true)) {
                OptimizerKind::AdamW
            } else {
                OptimizerKind::Adam
            }
        } else if has(["nesterov", "dampening"]) {
            OptimizerKind::Sgd
        } else if has(["alpha", "centered"]) {
            OptimizerKind::RmsProp
        } else if has(["lr_decay", "initial_accumulator_value"]) {
            OptimizerKind::Adagrad
        } else {
            OptimizerKind::Unknown
        }
    }
}

/// Reads a checkpoint and sorts out its model, optimizer, scheduler and step.
pub fn read_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let (format, value) = read_value(bytes)?;
    let Value::Dict(mut entries) = value else {
        return Err(CheckpointError::Unrecognised(format!("the file holds a {}, not a dict", value.kind())));
    };
    let mut checkpoint = Checkpoint { format, model: Vec::new(), optimizer: None, scheduler: None, step: None, extra: Vec::new() };
    if format == Format::Safetensors || (!entries.is_empty() && is_state_dict(&entries)) {
        (checkpoint.model, entries) = split_tensors(entries);
    } else if entries.iter().any(|(key, _)| key.as_str() == Some("state")) && entries.iter().any(|(key, _)| key.as_str() == Some("param_groups")) {
        checkpoint.optimizer = Some(optimizer_state("at the top level".into(), Value::Dict(std::mem::take(&mut entries)))?);
    } else {
        if let Some((_, Value::Dict(model))) =
            take_entry(&mut entries, MODEL_KEYS, |value| matches!(value, Value::Dict(items) if is_state_dict(items)))
        {
            checkpoint.model = split_tensors(model).0;
        }
        let is_optimizer = |value: &Value| value.get("state").is_some() && value.get("param_groups").is_some();
        if let Some((key, optimizer)) = take_entry(&mut entries, OPTIMIZER_KEYS, is_optimizer) {
            checkpoint.optimizer = Some(optimizer_state(format!("under `{key}`"), optimizer)?);
        }
        let is_string_keyed_dict = |value: &Value| matches!(value, Value::Dict(items) if items.iter().all(|(key, _)| matches!(key, Value::Str(_))));
        checkpoint.scheduler = take_entry(&mut entries, SCHEDULER_KEYS, is_string_keyed_dict).map(|(_, scheduler)| string_keyed(scheduler));
        checkpoint.step = take_entry(&mut entries, STEP_KEYS, |value| whole_number(value).is_some()).and_then(|(_, step)| whole_number(&step));
        if checkpoint.model.is_empty() && checkpoint.optimizer.is_none() {
            return Err(CheckpointError::Unrecognised(describe_keys(&entries)));
        }
    }
    if checkpoint.step.is_none() {
        checkpoint.step = checkpoint.optimizer.as_ref().and_then(optimizer_step);
    }
    checkpoint.extra = entries.into_iter().map(|(key, value)| (key.as_str().map_or_else(|| key.to_string(), str::to_owned), value)).collect();
    Ok(checkpoint)
}

/// Removes and returns the first entry, trying `keys` in order, whose value `accept`s.
fn take_entry(entries: &mut DictItems, keys: &[&str], accept: impl Fn(&Value) -> bool) -> Option<(String, Value)> {
    let position = keys.iter().find_map(|&wanted| entries.iter().position(|(key, value)| key.as_str() == Some(wanted) && accept(value)))?;
    let (key, value) = entries.remove(position);
    Some((key.as_str().unwrap_or_default().to_owned(), value))
}

/// Whether every item maps a name to a tensor, as in a module's `state_dict()`.
fn is_state_dict(items: &[(Value, Value)]) -> bool {
    items.iter().all(|(key, value)| matches!((key, value), (Value::Str(_), Value::Tensor(_))))
}

/// Moves the items that map a name to a tensor out of `items`, keeping their order;
/// returns them and the rest.
fn split_tensors(items: DictItems) -> (Vec<(String, TensorData)>, DictItems) {
    let mut tensors = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        match item {
            (Value::Str(name), Value::Tensor(tensor)) => tensors.push((name, tensor)),
            other => rest.push(other),
        }
    }
    (tensors, rest)
}

/// A dict's items whose keys are strings (the callers have checked that all are).
fn string_keyed(value: Value) -> Vec<(String, Value)> {
    let Value::Dict(items) = value else {
        return Vec::new();
    };
    items.into_iter().filter_map(|(key, value)| if let Value::Str(key) = key { Some((key, value)) } else { None }).collect()
}

/// Parses `{"state": {index: {name: value}}, "param_groups": [{"params": [index], ...}]}`;
/// `location` says where it was found, for errors.
fn optimizer_state(location: String, value: Value) -> Result<OptimizerState, CheckpointError> {
    let malformed = |reason: String| CheckpointError::MalformedOptimizer { location: location.clone(), reason };
    let Value::Dict(items) = value else {
        return Err(malformed(format!("it is a {}, not a dict", value.kind())));
    };
    let mut state = Vec::new();
    let mut param_groups = Vec::new();
    for (name, value) in items {
        match (name.as_str(), value) {
            (Some("state"), Value::Dict(entries)) => {
                for (index, entry) in entries {
                    let Value::Int(index) = index else {
                        return Err(malformed(format!("`state` is keyed by a {}, not a parameter index", index.kind())));
                    };
                    state.push((
                        index,
                        string_keyed_or(entry, || malformed(format!("the state of parameter {index} is not a dict of named values")))?,
                    ));
                }
            }
            (Some("param_groups"), Value::List(groups)) => {
                for group in groups {
                    let mut options = string_keyed_or(group, || malformed("a param group is not a dict of named values".into()))?;
                    let Some(position) = options.iter().position(|(option, _)| option == "params") else {
                        return Err(malformed("a param group has no `params`".into()));
                    };
                    let params = match options.remove(position).1 {
                        Value::List(params) => params
                            .into_iter()
                            .map(|param| if let Value::Int(index) = param { Some(index) } else { None })
                            .collect::<Option<Vec<i64>>>(),
                        _ => None,
                    };
                    let params = params.ok_or_else(|| malformed("a param group's `params` is not a list of parameter indices".into()))?;
                    param_groups.push(ParamGroup { params, options });
                }
            }
            (Some(name @ ("state" | "param_groups")), value) => return Err(malformed(format!("`{name}` is a {}", value.kind()))),
            // Anything else an optimizer adds to its state dict is not part of PyTorch's layout.
            _ => {}
        }
    }
    Ok(OptimizerState { kind: OptimizerKind::infer(&param_groups), state, param_groups })
}

fn string_keyed_or(value: Value, error: impl FnOnce() -> CheckpointError) -> Result<Vec<(String, Value)>, CheckpointError> {
    match value {
        Value::Dict(items) if items.iter().all(|(key, _)| matches!(key, Value::Str(_))) => Ok(string_keyed(Value::Dict(items))),
        _ => Err(error()),
    }
}

/// The optimizer's own count: torch 2.11 keeps `step` per parameter as a 0-d float32
/// tensor (older versions as an int); SGD keeps none.
fn optimizer_step(optimizer: &OptimizerState) -> Option<i64> {
    optimizer.state.iter().filter_map(|(_, entries)| entries.iter().find(|(name, _)| name == "step").and_then(|(_, step)| whole_number(step))).max()
}

/// An int, or a float or one-element tensor holding a whole number.
fn whole_number(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Int(int) => return Some(*int),
        Value::Float(float) => *float,
        Value::Tensor(tensor) if tensor.numel() == 1 => match tensor.dtype {
            Dtype::I64 => return tensor.data.as_slice().try_into().ok().map(i64::from_le_bytes),
            Dtype::F64 => f64::from_le_bytes(tensor.data.as_slice().try_into().ok()?),
            _ => f64::from(*tensor.to_f32().first()?),
        },
        _ => return None,
    };
    (number.is_finite() && number.fract() == 0.0 && number.abs() < 9.0e15).then_some(number as i64)
}

/// `'config' (dict), 'weights' (list)` and what was looked for, for the error when
/// nothing is recognised.
fn describe_keys(entries: &[(Value, Value)]) -> String {
    let keys: Vec<String> = entries.iter().map(|(key, value)| format!("{key} ({})", value.kind())).collect();
    let found = if keys.is_empty() { "the dict is empty".to_owned() } else { format!("the top-level keys are {}", keys.join(", ")) };
    format!(
        "{found}; expected a bare state dict (every value a tensor), a dict of tensors under {}, or an optimizer state dict (`state` and `param_groups`) under {}",
        MODEL_KEYS.join(", "),
        OPTIMIZER_KEYS.join(", ")
    )
}
