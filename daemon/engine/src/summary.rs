//! The torchinfo-style summary: one row per module call, in the order the forward
//! pass makes them, with input and output shapes from one run on a sample input,
//! parameter counts (tied parameters counted once) and mult-adds counted as
//! torchinfo 1.8 counts them, plus torchinfo's size footer.
//!
//! Where torchinfo and layerlens differ on purpose: torchinfo counts a parameter
//! shared by two layers (tied weights) twice in its totals; layerlens counts it once.

use crate::error::Result;
use crate::model::{LoadedModel, SampleInput};
use crate::structure::{readable_type_name, ModuleInfo};
use crate::taps::TappedModel;
use std::collections::{HashMap, HashSet};

/// One row: the root module, or one call of a module instance.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub path: String,
    pub type_name: String,
    pub depth: u32,
    /// 0 for the first call of the module, 1 for the second, ...
    pub call_index: u32,
    /// `file:line` of the call in the parent's forward.
    pub call_site: String,
    pub input_shapes: Vec<Vec<i64>>,
    pub output_shapes: Vec<Vec<i64>>,
    pub num_params: u64,
    pub trainable_params: u64,
    pub own_params: u64,
    pub kernel_size: Vec<i64>,
    pub mult_adds: u64,
    pub is_leaf: bool,
    pub params_percent: f64,
    /// Attributes as (name, JSON text) pairs.
    pub attributes: Vec<(String, String)>,
    pub num_buffers: u64,
    pub own_buffers: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallSummary {
    pub rows: Vec<CallRow>,
    pub total_params: u64,
    pub trainable_params: u64,
    pub total_mult_adds: u64,
    pub input_bytes: u64,
    pub forward_backward_bytes: u64,
    pub params_bytes: u64,
    pub total_bytes: u64,
    pub notes: Vec<String>,
}

/// Shapes and element sizes of graph values from one `forward_all` run.
pub struct ValueShapes {
    pub shapes: HashMap<usize, (Vec<i64>, u64)>,
}

/// Per call (indexed by call id): torchinfo's mult-adds, the output torchinfo reports
/// (the first tensor of the last node that produces one of the call's outputs), whether
/// it is a leaf, and the mult-adds of the leaf calls below it (for rows at the depth
/// limit).
struct CallMultAdds {
    call_macs: Vec<u64>,
    call_outputs: Vec<Option<usize>>,
    leaf_calls: Vec<bool>,
    macs_below: Vec<u64>,
}

fn call_mult_adds(modules: &[ModuleInfo], tapped: &TappedModel, values: &ValueShapes, is_leaf: &dyn Fn(&str) -> bool) -> CallMultAdds {
    let calls = &tapped.graph.calls;
    let mut call_macs = vec![0u64; calls.len()];
    let mut call_outputs: Vec<Option<usize>> = vec![None; calls.len()];
    for call in calls {
        let output = main_output(tapped, call.id);
        call_outputs[call.id] = output;
        if let Some((shape, _)) = output.and_then(|id| values.shapes.get(&id)) {
            let type_name = readable_type_name(&call.qualified_type);
            call_macs[call.id] = torchinfo_macs(modules, &call.path, &type_name, shape);
        }
    }
    let leaf_calls: Vec<bool> = calls.iter().map(|call| is_leaf(&call.path)).collect();
    let ancestors = |mut id: usize| {
        let mut chain = Vec::new();
        while calls[id].parent >= 0 {
            id = calls[id].parent as usize;
            chain.push(id);
        }
        chain
    };
    let mut macs_below = vec![0u64; calls.len()];
    for call in calls {
        if leaf_calls[call.id] {
            for ancestor in ancestors(call.id) {
                macs_below[ancestor] += call_macs[call.id];
            }
        }
    }
    CallMultAdds { call_macs, call_outputs, leaf_calls, macs_below }
}

/// The root row: the whole model on the sample inputs.
fn root_row(
    modules: &[ModuleInfo],
    root: Option<&ModuleInfo>,
    inputs: &[SampleInput],
    output_shape: Vec<i64>,
    total_params: u64,
    trainable_params: u64,
) -> CallRow {
    CallRow {
        path: String::new(),
        type_name: root.map(|module| readable_type_name(&module.qualified_type)).unwrap_or_default(),
        depth: 0,
        call_index: 0,
        call_site: String::new(),
        input_shapes: inputs.iter().map(|input| input.shape.clone()).collect(),
        output_shapes: if output_shape.is_empty() { Vec::new() } else { vec![output_shape] },
        num_params: total_params,
        trainable_params,
        own_params: root.map(|module| module.params.iter().map(|param| param.numel).sum()).unwrap_or(0),
        kernel_size: Vec::new(),
        mult_adds: 0,
        is_leaf: modules.len() <= 1,
        params_percent: if total_params > 0 { 1.0 } else { 0.0 },
        attributes: root.map(crate::structure::attribute_pairs).unwrap_or_default(),
        num_buffers: crate::structure::count_buffers(modules, ""),
        own_buffers: root.map(|module| module.buffers.iter().map(|buffer| buffer.numel).sum()).unwrap_or(0),
    }
}

/// Builds the summary from the module tree, the tapped graph and the value shapes of
/// one run on the sample `inputs`: the root row, then one row per module call that ran.
pub fn summarize_calls(
    modules: &[ModuleInfo],
    tapped: &TappedModel,
    values: &ValueShapes,
    inputs: &[SampleInput],
    output_shape: Vec<i64>,
    max_depth: Option<u32>,
) -> CallSummary {
    let by_path: HashMap<&str, &ModuleInfo> = modules.iter().map(|module| (module.path.as_str(), module)).collect();
    let is_leaf = |path: &str| {
        let prefix = format!("{path}.");
        !modules.iter().any(|module| module.path.starts_with(&prefix))
    };
    let shape_of = |id: &usize| values.shapes.get(id).map(|(shape, _)| shape.clone());
    let (total_params, trainable_params) = crate::structure::count_params(modules, "");
    let calls = &tapped.graph.calls;

    let CallMultAdds { call_macs, call_outputs, leaf_calls, macs_below } = call_mult_adds(modules, tapped, values, &is_leaf);

    let mut summary = CallSummary { total_params, trainable_params, ..CallSummary::default() };
    // torchinfo's "Input size" adds up every input.
    summary.input_bytes = inputs.iter().map(SampleInput::bytes).sum();
    summary.rows.push(root_row(modules, by_path.get("").copied(), inputs, output_shape, total_params, trainable_params));
    let mut counted_param_modules = HashSet::new();
    let mut seen_storage = HashSet::new();
    let mut untapped = Vec::new();
    let mut calls_shown: HashMap<&str, u32> = HashMap::new();
    for call in calls {
        let depth = call.path.split('.').count() as u32;
        let leaf = leaf_calls[call.id];
        let module = by_path.get(call.path.as_str());
        let (num_params, trainable) = crate::structure::count_params(modules, &call.path);
        let own_params: u64 = module.map(|module| module.params.iter().map(|param| param.numel).sum()).unwrap_or(0);
        let output_shape = call_outputs[call.id].and_then(|id| shape_of(&id));
        if output_shape.is_none() {
            if call.in_branch {
                // In a branch this input did not take: the call did not run, and like
                // torchinfo (which sees only calls that run) the summary leaves it out.
                continue;
            }
            untapped.push(call.path.clone());
        }
        // Calls of a path are numbered among the calls that ran.
        let call_index = {
            let count = calls_shown.entry(call.path.as_str()).or_insert(0u32);
            *count += 1;
            *count - 1
        };
        if leaf {
            summary.total_mult_adds += call_macs[call.id];
            if let (Some(id), true) = (call_outputs[call.id], num_params > 0) {
                if let Some((shape, element_size)) = values.shapes.get(&id) {
                    summary.forward_backward_bytes += 2 * shape.iter().product::<i64>().max(0) as u64 * element_size;
                }
            }
            if counted_param_modules.insert(call.path.clone()) {
                for param in module.map(|module| module.params.as_slice()).unwrap_or(&[]) {
                    if seen_storage.insert(param.storage) {
                        summary.params_bytes += param.numel * param.element_size;
                    }
                }
            }
        }
        if max_depth.is_some_and(|max| depth > max) {
            continue;
        }
        let at_limit = max_depth == Some(depth) && !leaf;
        let shown_params = if leaf || at_limit { num_params } else { own_params };
        summary.rows.push(CallRow {
            path: call.path.clone(),
            type_name: readable_type_name(&call.qualified_type),
            depth,
            call_index,
            call_site: call.site.clone(),
            input_shapes: call.inputs.iter().filter_map(|id| shape_of(id).or_else(|| graph_input_shape(tapped, *id, inputs))).take(1).collect(),
            output_shapes: output_shape.into_iter().collect(),
            num_params,
            trainable_params: trainable,
            own_params,
            kernel_size: kernel_size(module.copied(), &call.qualified_type),
            mult_adds: if leaf {
                call_macs[call.id]
            } else if at_limit {
                macs_below[call.id]
            } else {
                0
            },
            is_leaf: leaf,
            params_percent: if total_params > 0 { shown_params as f64 / total_params as f64 } else { 0.0 },
            attributes: module.map(|module| crate::structure::attribute_pairs(module)).unwrap_or_default(),
            num_buffers: crate::structure::count_buffers(modules, &call.path),
            own_buffers: module.map(|module| module.buffers.iter().map(|buffer| buffer.numel).sum()).unwrap_or(0),
        });
    }
    summary.total_bytes = summary.input_bytes + summary.forward_backward_bytes + summary.params_bytes;
    // Every call that ran, at any depth, has a key in calls_shown.
    let without_rows = modules_without_rows(modules, calls_shown.keys().copied());
    if !without_rows.is_empty() {
        let shown: Vec<&str> = without_rows.iter().take(5).copied().collect();
        summary.notes.push(format!(
            "{} module(s) have no row: no call of theirs ran an op on this input ({}{}). Such a module is called in a branch not taken, or its parent uses its weights without calling it (MultiheadAttention's out_proj), or, in a traced or exported model, it returns its input unchanged (StochasticDepth or Dropout in eval mode, Identity), which records no op",
            without_rows.len(),
            shown.join(", "),
            if without_rows.len() > 5 { ", ..." } else { "" }
        ));
    }
    if !untapped.is_empty() {
        untapped.dedup();
        let shown: Vec<&str> = untapped.iter().take(5).map(String::as_str).collect();
        summary.notes.push(format!(
            "{} module call(s) return no tensor or run inside loops, so their shapes and mult-adds are not shown ({}{}); a traced model unrolls loops",
            untapped.len(),
            shown.join(", "),
            if untapped.len() > 5 { ", ..." } else { "" }
        ));
    }
    summary
}

/// Modules of the file with no call that ran, of their own or below them, outermost
/// only (`ran`: the paths of the calls that ran): calls
/// that did not run on this input, or that ran no op (a trace or an export keeps no
/// trace of a call that returns its input).
fn modules_without_rows<'m, 'r>(modules: &'m [ModuleInfo], ran: impl Iterator<Item = &'r str>) -> Vec<&'m str> {
    let shown: HashSet<&str> = ran.collect();
    let mut covered: HashSet<&str> = HashSet::new();
    for &ran_path in &shown {
        // A call covers its ancestors: containers (ModuleList) are never called themselves.
        let mut path = ran_path;
        while let Some((parent, _)) = path.rsplit_once('.') {
            covered.insert(parent);
            path = parent;
        }
    }
    let missing: Vec<&str> = modules
        .iter()
        .map(|module| module.path.as_str())
        .filter(|path| !path.is_empty() && !shown.contains(path) && !covered.contains(path))
        .collect();
    let missing_set: HashSet<&str> = missing.iter().copied().collect();
    missing.into_iter().filter(|path| !path.rsplit_once('.').is_some_and(|(parent, _)| missing_set.contains(parent))).collect()
}

/// The shape of a graph input value: the sample input at its position.
fn graph_input_shape(tapped: &TappedModel, id: usize, inputs: &[SampleInput]) -> Option<Vec<i64>> {
    let position = tapped.graph.inputs.iter().position(|input| *input == id)?;
    inputs.get(position).map(|input| input.shape.clone())
}

/// The value torchinfo would report as a call's output: among the call's outputs,
/// the first one produced by the last node that produces any of them.
fn main_output(tapped: &TappedModel, call_id: usize) -> Option<usize> {
    let outputs = &tapped.graph.calls[call_id].outputs;
    let last = *outputs.last()?;
    let producer = tapped.graph.nodes.iter().find(|node| node.outputs.contains(&last));
    match producer {
        Some(node) => node.outputs.iter().find(|id| outputs.contains(id)).copied(),
        None => Some(last),
    }
}

/// torchinfo 1.8's `LayerInfo.calculate_macs`: for every parameter of the module
/// (recursively, named relative to it), `weight`/`bias` count params × (batch ×
/// spatial output) in convolutions and params × batch elsewhere; other weight or bias
/// tensors (RNN `weight_ih_l0`, ...) count params × output[0] × output[1].
pub fn torchinfo_macs(modules: &[ModuleInfo], path: &str, type_name: &str, output: &[i64]) -> u64 {
    let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
    let class_name = type_name.rsplit('.').next().unwrap_or(type_name);
    let product = |dims: &[i64]| dims.iter().product::<i64>().max(0) as u64;
    let batch = output.first().copied().unwrap_or(0).max(0) as u64;
    let mut seen = HashSet::new();
    let mut macs = 0u64;
    for module in modules.iter().filter(|module| module.path == path || (module.path.starts_with(&prefix) && !prefix.is_empty()) || path.is_empty()) {
        let relative_module = module.path.strip_prefix(&prefix).unwrap_or(if module.path == path { "" } else { &module.path });
        for param in &module.params {
            if !seen.insert(param.storage) {
                continue;
            }
            let name =
                if relative_module.is_empty() || module.path == path { param.name.clone() } else { format!("{relative_module}.{}", param.name) };
            if name == "weight" || name == "bias" {
                if class_name.contains("Conv") {
                    let spatial = if output.len() > 2 { product(&output[2..]) } else { 1 };
                    macs += param.numel * batch * spatial;
                } else {
                    macs += batch * param.numel;
                }
            } else if name.contains("weight") || name.contains("bias") {
                macs += product(&output[..output.len().min(2)]) * param.numel;
            }
        }
    }
    macs
}

fn kernel_size(module: Option<&ModuleInfo>, qualified_type: &str) -> Vec<i64> {
    if !qualified_type.contains("Conv") {
        return Vec::new();
    }
    module
        .and_then(|module| module.params.iter().find(|param| param.name == "weight"))
        .filter(|weight| weight.shape.len() > 2)
        .map(|weight| weight.shape[2..].to_vec())
        .unwrap_or_default()
}

/// Runs the model once (through its tapped copy) on zero inputs and summarises every
/// module call.
pub fn run_call_summary(model: &LoadedModel, modules: &[ModuleInfo], inputs: &[SampleInput], max_depth: Option<u32>) -> Result<CallSummary> {
    let tensors = model.sample_tensors(inputs)?;
    let tapped = match model.tapped() {
        Ok(tapped) => tapped,
        // The graph cannot be tapped: still answer with the module tree, and say why.
        Err(error) => {
            let note = format!("shapes and mult-adds are not available: {}; rows come from the module tree", error.message);
            return Ok(from_module_tree(modules, inputs, note, max_depth));
        }
    };
    // With grad mode on, as torchinfo runs it: library code that picks a fused path
    // under no_grad (the Transformer encoder's fast path) would skip the module calls
    // the summary is about.
    let (output, values) = tapped.forward_all(&tensors)?;
    let mut shapes = HashMap::new();
    for (id, value) in tapped.graph.tensor_values.iter().zip(&values) {
        if let Some(value) = value {
            shapes.insert(*id, (value.size(), value.kind().elt_size_in_bytes() as u64));
        }
    }
    let output_shape = output.map(|output| output.size()).unwrap_or_default();
    Ok(summarize_calls(modules, tapped, &ValueShapes { shapes }, inputs, output_shape, max_depth))
}

/// A summary from the module tree alone (no shapes, no mult-adds), with a note saying
/// why; used without a sample input and for models that cannot be tapped.
pub fn from_module_tree(modules: &[ModuleInfo], inputs: &[SampleInput], note: String, max_depth: Option<u32>) -> CallSummary {
    let tree = crate::structure::summarize(modules, max_depth);
    let rows = tree
        .rows
        .iter()
        .map(|row| CallRow {
            path: row.path.clone(),
            type_name: row.type_name.clone(),
            depth: row.depth,
            call_index: 0,
            call_site: String::new(),
            input_shapes: if row.path.is_empty() { inputs.iter().map(|input| input.shape.clone()).collect() } else { Vec::new() },
            output_shapes: Vec::new(),
            num_params: row.num_params,
            trainable_params: row.trainable_params,
            own_params: row.own_params,
            kernel_size: Vec::new(),
            mult_adds: 0,
            is_leaf: !modules.iter().any(|module| module.path.starts_with(&format!("{}.", row.path)) && !row.path.is_empty()),
            params_percent: if tree.total_params > 0 { row.num_params as f64 / tree.total_params as f64 } else { 0.0 },
            attributes: row.attributes.clone(),
            num_buffers: row.num_buffers,
            own_buffers: row.own_buffers,
        })
        .collect();
    CallSummary { rows, total_params: tree.total_params, trainable_params: tree.trainable_params, notes: vec![note], ..CallSummary::default() }
}
