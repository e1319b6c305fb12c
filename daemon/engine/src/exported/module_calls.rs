//! An exported program described in the terms the TorchScript path uses, so every
//! feature (summary, graph figure, activation report, layer methods, generation) reads
//! both kinds the same way:
//! - module calls from each node's `nn_module_stack`: a run of consecutive nodes that
//!   share a frame is one call of that module; its outputs are the tensors produced
//!   inside and used outside (or returned), its tap the last of them;
//! - the module tree from the signature's parameters and buffers, the module call
//!   graph's list of modules (definition order) and the types the stacks name.

use super::archive::{kind_from_code, sym_int_constant, Archive};
use super::compile::Compiled;
use crate::structure::{BufferInfo, ModuleInfo, ParamInfo};
use crate::taps::{ForwardGraph, GraphNode, ModuleCall};
use std::collections::{HashMap, HashSet};

pub struct Described {
    pub graph: ForwardGraph,
    pub modules: Vec<ModuleInfo>,
    pub tap_paths: Vec<String>,
    pub tap_calls: Vec<usize>,
    pub tap_slots: Vec<usize>,
    pub tap_first: Vec<usize>,
}

pub fn describe(compiled: &Compiled, archive: &Archive) -> Described {
    let nodes = &compiled.nodes;
    let bound: HashSet<usize> = compiled.bindings.iter().map(|binding| binding.slot).collect();
    let is_tensor = |slot: usize| compiled.slot_is_tensor[slot];

    // Calls: consecutive nodes with the same frame belong to one call of it.
    let mut calls: Vec<ModuleCall> = Vec::new();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut node_call: Vec<i64> = Vec::with_capacity(nodes.len());
    let mut active: Vec<(super::compile::Frame, usize)> = Vec::new();
    let mut per_path: HashMap<String, usize> = HashMap::new();
    for (index, node) in nodes.iter().enumerate() {
        if !node.has_stack {
            // A node export added itself belongs to whatever call is open.
            node_call.push(active.last().map(|(_, call)| *call as i64).unwrap_or(-1));
            continue;
        }
        let common = active.iter().zip(&node.frames).take_while(|((frame, _), other)| frame == *other).count();
        for (_, call) in active.drain(common..) {
            ranges[call].1 = index;
        }
        for (depth, frame) in node.frames.iter().enumerate().skip(common) {
            let id = calls.len();
            let count = per_path.entry(frame.path.clone()).or_insert(0);
            calls.push(ModuleCall {
                id,
                parent: active.last().map(|(_, call)| *call as i64).unwrap_or(-1),
                path: frame.path.clone(),
                qualified_type: frame.type_name.clone(),
                site: node.source_frames.get(depth).cloned().unwrap_or_default(),
                index: *count,
                in_branch: false,
                inputs: Vec::new(),
                outputs: Vec::new(),
            });
            *count += 1;
            ranges.push((index, nodes.len()));
            active.push((frame.clone(), id));
        }
        node_call.push(active.last().map(|(_, call)| *call as i64).unwrap_or(-1));
    }
    for (_, call) in active.drain(..) {
        ranges[call].1 = nodes.len();
    }

    // Producers and consumers of every slot.
    let mut producer: Vec<Option<usize>> = vec![None; compiled.slot_count];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); compiled.slot_count];
    for (index, node) in nodes.iter().enumerate() {
        for slot in node.output_slots() {
            producer[slot] = Some(index);
        }
        for slot in node.input_slots() {
            consumers[slot].push(index);
        }
    }
    let returned: HashSet<usize> = compiled.output_slots.iter().copied().collect();
    for (call, &(start, end)) in calls.iter_mut().zip(&ranges) {
        let inside = |node: usize| node >= start && node < end;
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for slot in 0..compiled.slot_count {
            if !is_tensor(slot) || bound.contains(&slot) {
                continue;
            }
            let produced_inside = producer[slot].is_some_and(inside);
            if produced_inside && (returned.contains(&slot) || consumers[slot].iter().any(|&node| !inside(node))) {
                outputs.push(slot);
            }
            if !produced_inside && consumers[slot].iter().any(|&node| inside(node)) {
                inputs.push(slot);
            }
        }
        call.inputs = inputs;
        call.outputs = outputs;
    }

    let graph_nodes = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| GraphNode {
            kind: node.target.clone(),
            call: node_call[index],
            source: node.source_frames.last().cloned().unwrap_or_default(),
            inputs: node.input_slots().filter(|slot| is_tensor(*slot) && !bound.contains(slot)).collect(),
            outputs: node.output_slots().filter(|slot| is_tensor(*slot)).collect(),
        })
        .collect();
    let tensor_values = nodes.iter().flat_map(|node| node.output_slots()).filter(|slot| is_tensor(*slot)).collect();
    let graph =
        ForwardGraph { inputs: compiled.input_slots.clone(), outputs: compiled.output_slots.clone(), nodes: graph_nodes, calls, tensor_values };

    let (mut tap_paths, mut tap_calls, mut tap_slots) = (Vec::new(), Vec::new(), Vec::new());
    for call in &graph.calls {
        if let Some(&slot) = call.outputs.last() {
            tap_paths.push(call.path.clone());
            tap_calls.push(call.id);
            tap_slots.push(slot);
        }
    }
    let tap_first = tap_slots.iter().map(|slot| tap_slots.iter().position(|other| other == slot).unwrap_or(0)).collect();
    let modules = module_tree(compiled, archive, &graph);
    Described { graph, modules, tap_paths, tap_calls, tap_slots, tap_first }
}

/// Every module with the parameters and buffers it owns directly, in definition order.
fn module_tree(compiled: &Compiled, archive: &Archive, graph: &ForwardGraph) -> Vec<ModuleInfo> {
    let mut order: Vec<String> = vec![String::new()];
    let add = |path: &str, order: &mut Vec<String>| {
        // Every prefix of a path is a module too.
        let parts: Vec<&str> = path.split('.').collect();
        for end in 1..=parts.len() {
            let prefix = parts[..end].join(".");
            if !order.contains(&prefix) {
                order.push(prefix);
            }
        }
    };
    let call_graph = archive.program["graph_module"]["module_call_graph"].as_array().cloned().unwrap_or_default();
    for entry in &call_graph {
        if let Some(fqn) = entry["fqn"].as_str().filter(|fqn| !fqn.is_empty()) {
            add(fqn, &mut order);
        }
    }
    for call in &graph.calls {
        add(&call.path, &mut order);
    }
    let owner =
        |fqn: &str| fqn.rsplit_once('.').map(|(owner, name)| (owner.to_string(), name.to_string())).unwrap_or((String::new(), fqn.to_string()));
    for binding in &compiled.bindings {
        let (module, _) = owner(&binding.fqn);
        if !module.is_empty() {
            add(&module, &mut order);
        }
    }
    let types: HashMap<&str, &str> = graph.calls.iter().map(|call| (call.path.as_str(), call.qualified_type.as_str())).collect();
    let mut modules: Vec<ModuleInfo> = order
        .iter()
        .map(|path| ModuleInfo {
            path: path.clone(),
            qualified_type: if path.is_empty() {
                compiled.root_type.clone()
            } else {
                types.get(path.as_str()).map(|name| name.to_string()).unwrap_or_default()
            },
            params: Vec::new(),
            buffers: Vec::new(),
            attributes: serde_json::Map::new(),
        })
        .collect();
    let index: HashMap<String, usize> = modules.iter().enumerate().map(|(position, module)| (module.path.clone(), position)).collect();
    let mut storages: HashMap<(String, i64), u64> = HashMap::new();
    for binding in &compiled.bindings {
        let stored = archive.weights.get(&binding.fqn).or_else(|| archive.constants.get(&binding.fqn));
        let Some(stored) = stored else { continue };
        let (module, name) = owner(&binding.fqn);
        let Some(&position) = index.get(&module) else { continue };
        let shape: Vec<i64> = stored.tensor_meta.sizes.iter().map(|size| sym_int_constant(size).unwrap_or(0)).collect();
        let numel = shape.iter().product::<i64>().max(0) as u64;
        let element_size = kind_from_code(stored.tensor_meta.dtype).map(|kind| kind.elt_size_in_bytes() as u64).unwrap_or(4);
        if binding.is_parameter {
            // Tied parameters are one stored tensor: same file, same offset.
            let offset = stored.tensor_meta.storage_offset.as_ref().and_then(sym_int_constant).unwrap_or(0);
            let next = storages.len() as u64 + 1;
            let storage = *storages.entry((stored.path_name.clone(), offset)).or_insert(next);
            modules[position].params.push(ParamInfo { name, shape, numel, element_size, requires_grad: stored.tensor_meta.requires_grad, storage });
        } else if binding.is_buffer {
            modules[position].buffers.push(BufferInfo { name, numel, element_size });
        }
    }
    modules
}
