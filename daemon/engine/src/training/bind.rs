//! Tying a checkpoint to a stored model: every parameter of the model must be in the
//! checkpoint's state dict with the same shape, nothing in it may be foreign, and the
//! optimiser's per-parameter state (numbered 0.. in the order the parameters were
//! handed to the optimiser) is mapped to parameter names.
//!
//! PyTorch numbers an optimiser's parameters by position in its param groups, so the
//! names are not in the state dict. layerlens assumes the usual
//! `optimizer = Adam(model.parameters())`: positions follow the model's parameters in
//! definition order (each tied parameter once), or its trainable parameters when the
//! optimiser holds fewer. Every moment must then have its parameter's shape; a
//! checkpoint whose moments do not fit is refused rather than explained wrongly.

use crate::error::{Error, Result};
use crate::structure::ModuleInfo;
use layerlens_checkpoint::{Checkpoint, TensorData, Value};
use std::collections::{HashMap, HashSet};

/// One parameter of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterSpec {
    /// Fully qualified name, `features.0.weight`.
    pub name: String,
    /// The module that owns it, `features.0`.
    pub layer: String,
    pub shape: Vec<i64>,
    pub requires_grad: bool,
}

/// The model's parameters (each tied tensor once, in definition order) and buffers.
#[derive(Debug, Clone, Default)]
pub struct ModelParameters {
    pub parameters: Vec<ParameterSpec>,
    /// Buffers by name with their element count (`features.1.running_mean`).
    pub buffers: Vec<(String, u64)>,
    /// Names of tied parameters that are the same tensor as an earlier one.
    pub aliases: Vec<(String, String)>,
}

/// A checkpoint whose state dict fits the model.
#[derive(Debug)]
pub struct BoundCheckpoint {
    pub checkpoint: Checkpoint,
    /// Per model parameter: its tensor in the checkpoint.
    pub weights: Vec<TensorData>,
    /// Per model buffer present in the checkpoint: its name and tensor.
    pub buffers: Vec<(String, TensorData)>,
    /// Per model parameter: its index among the optimiser's parameters, if the
    /// optimiser was given it.
    pub optimizer_index: Vec<Option<usize>>,
}

/// The parameters and buffers of a model's module tree.
pub fn model_parameters(modules: &[ModuleInfo]) -> ModelParameters {
    let mut model = ModelParameters::default();
    let mut seen: HashMap<u64, String> = HashMap::new();
    let qualified = |path: &str, name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    for module in modules {
        for parameter in &module.params {
            let name = qualified(&module.path, &parameter.name);
            // Tied parameters (one tensor under two names) are one parameter to an
            // optimiser, as `model.parameters()` yields each tensor once.
            if parameter.storage != 0 {
                if let Some(first) = seen.get(&parameter.storage) {
                    model.aliases.push((name, first.clone()));
                    continue;
                }
                seen.insert(parameter.storage, name.clone());
            }
            model.parameters.push(ParameterSpec {
                name,
                layer: module.path.clone(),
                shape: parameter.shape.clone(),
                requires_grad: parameter.requires_grad,
            });
        }
        for buffer in &module.buffers {
            model.buffers.push((qualified(&module.path, &buffer.name), buffer.numel));
        }
    }
    model
}

/// At most this many names of each kind in a mismatch message.
const LISTED: usize = 8;

fn listed(names: &[String]) -> String {
    let mut text = names.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    text
}

/// Checks a checkpoint against the model and maps its state to the model's names.
pub fn bind(checkpoint: Checkpoint, model: &ModelParameters) -> Result<BoundCheckpoint> {
    let prefix = wrapper_prefix(&checkpoint, model);
    let mut by_name: HashMap<&str, &TensorData> = HashMap::new();
    for (name, tensor) in &checkpoint.model {
        by_name.insert(name.strip_prefix(prefix).unwrap_or(name), tensor);
    }
    let known: HashSet<&str> = model
        .parameters
        .iter()
        .map(|parameter| parameter.name.as_str())
        .chain(model.buffers.iter().map(|(name, _)| name.as_str()))
        .chain(model.aliases.iter().map(|(alias, _)| alias.as_str()))
        .collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut weights = Vec::new();
    for parameter in &model.parameters {
        match by_name.get(parameter.name.as_str()) {
            None => missing.push(parameter.name.clone()),
            Some(tensor) => {
                let shape: Vec<i64> = tensor.shape.iter().map(|&size| size as i64).collect();
                if shape != parameter.shape {
                    mismatched.push(format!("{} (checkpoint {:?}, model {:?})", parameter.name, shape, parameter.shape));
                } else {
                    weights.push((*tensor).clone());
                }
            }
        }
    }
    let mut buffers = Vec::new();
    for (name, numel) in &model.buffers {
        if let Some(tensor) = by_name.get(name.as_str()) {
            if tensor.numel() as u64 != *numel {
                mismatched.push(format!("{name} (checkpoint {} elements, model {numel})", tensor.numel()));
            } else {
                buffers.push((name.clone(), (*tensor).clone()));
            }
        }
    }
    let mut unexpected: Vec<String> = by_name.keys().filter(|name| !known.contains(**name)).map(|name| name.to_string()).collect();
    unexpected.sort();
    if !missing.is_empty() || !mismatched.is_empty() || !unexpected.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing parameters: {}", listed(&missing)));
        }
        if !mismatched.is_empty() {
            parts.push(format!("different shapes: {}", listed(&mismatched)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("not in the model: {}", listed(&unexpected)));
        }
        return Err(Error::bad_input(format!("the checkpoint is not for this model's architecture ({})", parts.join("; "))));
    }
    let optimizer_index = optimizer_positions(&checkpoint, model)?;
    Ok(BoundCheckpoint { checkpoint, weights, buffers, optimizer_index })
}

/// `module.` (DataParallel) or `_orig_mod.` (torch.compile) when every key carries it
/// and the model's names do not.
fn wrapper_prefix(checkpoint: &Checkpoint, model: &ModelParameters) -> &'static str {
    for prefix in ["module.", "_orig_mod."] {
        let model_has_it = model.parameters.first().is_some_and(|parameter| parameter.name.starts_with(prefix));
        if !model_has_it && !checkpoint.model.is_empty() && checkpoint.model.iter().all(|(name, _)| name.starts_with(prefix)) {
            return prefix;
        }
    }
    ""
}

/// Maps the model's parameters to the optimiser's positions (see the module docs).
fn optimizer_positions(checkpoint: &Checkpoint, model: &ModelParameters) -> Result<Vec<Option<usize>>> {
    let Some(optimizer) = &checkpoint.optimizer else { return Ok(vec![None; model.parameters.len()]) };
    let count: usize = optimizer.param_groups.iter().map(|group| group.params.len()).sum();
    let trainable: Vec<usize> = (0..model.parameters.len()).filter(|&index| model.parameters[index].requires_grad).collect();
    let all: Vec<usize> = (0..model.parameters.len()).collect();
    let candidates = [all, trainable];
    let Some(order) = candidates.iter().find(|order| order.len() == count) else {
        return Err(Error::bad_input(format!(
            "the optimiser state covers {count} parameters, the model has {} ({} trainable); layerlens maps an optimiser's \
             parameters to the model's by position, as `optimizer = Adam(model.parameters())` numbers them",
            candidates[0].len(),
            candidates[1].len()
        )));
    };
    // The optimiser's ids in group order are its positions 0.. in creation order.
    let mut ids: Vec<i64> = optimizer.param_groups.iter().flat_map(|group| group.params.iter().copied()).collect();
    ids.sort_unstable();
    let mut positions = vec![None; model.parameters.len()];
    for (position, &parameter) in order.iter().enumerate() {
        positions[parameter] = Some(position);
    }
    let position_of_id: HashMap<i64, usize> = ids.iter().enumerate().map(|(position, &id)| (id, position)).collect();
    for (id, state) in &optimizer.state {
        let Some(&position) = position_of_id.get(id) else {
            return Err(Error::bad_input(format!("the optimiser state has an entry for parameter {id}, which no param group lists")));
        };
        let parameter = &model.parameters[order[position]];
        for (key, value) in state {
            if let Value::Tensor(tensor) = value {
                let shape: Vec<i64> = tensor.shape.iter().map(|&size| size as i64).collect();
                if tensor.numel() > 1 && shape != parameter.shape {
                    return Err(Error::bad_input(format!(
                        "the optimiser's {key} for its parameter {id} has shape {shape:?}, but the model's parameter at that position, \
                         {}, has shape {:?}: the optimiser was not built from model.parameters() in order",
                        parameter.name, parameter.shape
                    )));
                }
            }
        }
    }
    Ok(positions)
}

impl BoundCheckpoint {
    /// The optimiser's state of the model's parameter `index` (empty when none).
    pub fn optimizer_state(&self, index: usize) -> &[(String, Value)] {
        let (Some(optimizer), Some(position)) = (&self.checkpoint.optimizer, self.optimizer_index[index]) else { return &[] };
        let mut ids: Vec<i64> = optimizer.param_groups.iter().flat_map(|group| group.params.iter().copied()).collect();
        ids.sort_unstable();
        let Some(id) = ids.get(position) else { return &[] };
        optimizer.state.iter().find(|(state_id, _)| state_id == id).map(|(_, state)| state.as_slice()).unwrap_or(&[])
    }

    /// The param group that holds the model's parameter `index`.
    pub fn group_of(&self, index: usize) -> Option<usize> {
        let optimizer = self.checkpoint.optimizer.as_ref()?;
        let position = self.optimizer_index[index]?;
        let mut ids: Vec<i64> = optimizer.param_groups.iter().flat_map(|group| group.params.iter().copied()).collect();
        ids.sort_unstable();
        let id = *ids.get(position)?;
        optimizer.param_groups.iter().position(|group| group.params.contains(&id))
    }
}
