//! The model's forward pass as a graph of data operations for drawing: one node per
//! tensor-producing ATen op (glue such as list building, tuple packing and shape reads
//! is looked through), each placed in the module calls it runs in, with the tensor
//! shapes of one run on a sample input on the edges.

use crate::error::Result;
use crate::model::{LoadedModel, SampleInput};
use crate::structure::readable_type_name;
use crate::taps::TappedModel;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct OpNode {
    pub id: usize,
    /// The op without its namespace: `conv2d`, `add`, `flatten`.
    pub label: String,
    /// `file:line` of the original source.
    pub source: String,
    /// Enclosing module calls, outermost first: (path, type name, call index).
    pub scopes: Vec<(String, String, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpEdge {
    pub from: usize,
    pub to: usize,
    pub shape: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpGraph {
    pub nodes: Vec<OpNode>,
    pub edges: Vec<OpEdge>,
    /// (name, shape, nodes fed) per model input.
    pub inputs: Vec<(String, Vec<i64>, Vec<usize>)>,
    /// (name, shape, producing node) per model output.
    pub outputs: Vec<(String, Vec<i64>, usize)>,
}

/// Runs the model once on zero inputs and builds its op graph.
pub fn op_graph(model: &LoadedModel, inputs: &[SampleInput]) -> Result<OpGraph> {
    let tensors = model.sample_tensors(inputs)?;
    let tapped = model.tapped()?;
    // Grad mode on, as for summaries: under no_grad library code takes fused paths.
    let (output, values) = tapped.forward_all(&tensors)?;
    let mut shapes: HashMap<usize, Vec<i64>> = HashMap::new();
    for (id, value) in tapped.graph.tensor_values.iter().zip(&values) {
        if let Some(value) = value {
            shapes.insert(*id, value.size());
        }
    }
    Ok(build(tapped, &shapes, inputs, output.map(|output| output.size()).unwrap_or_default()))
}

/// Ops that only move data between real ops, or read metadata.
fn is_glue(kind: &str) -> bool {
    !kind.starts_with("aten::")
        || matches!(
            kind,
            "aten::size"
                | "aten::dim"
                | "aten::Int"
                | "aten::ScalarImplicit"
                | "aten::len"
                | "aten::__getitem__"
                | "aten::numel"
                | "aten::format"
                | "aten::warn"
                | "aten::eq"
                | "aten::ne"
                | "aten::__is__"
                | "aten::__isnot__"
                | "aten::list"
                | "aten::contiguous"
                | "aten::detach"
        )
}

fn build(tapped: &TappedModel, shapes: &HashMap<usize, Vec<i64>>, inputs: &[SampleInput], output_shape: Vec<i64>) -> OpGraph {
    let graph = &tapped.graph;
    let calls = &graph.calls;
    let scopes_of = |call: i64| {
        let mut chain = Vec::new();
        let mut current = call;
        while current >= 0 {
            let entry = &calls[current as usize];
            let type_name = readable_type_name(&entry.qualified_type);
            let short = type_name.rsplit('.').next().unwrap_or(&type_name).to_string();
            chain.push((entry.path.clone(), short, entry.index as u32));
            current = entry.parent;
        }
        chain.reverse();
        chain
    };
    // Which node produces each value, and which op nodes each glue value comes from.
    let mut producer: HashMap<usize, usize> = HashMap::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        for &output in &node.outputs {
            producer.insert(output, index);
        }
    }
    let mut op_id: HashMap<usize, usize> = HashMap::new();
    let mut result = OpGraph::default();
    for (index, node) in graph.nodes.iter().enumerate() {
        if is_glue(&node.kind) || !node.outputs.iter().any(|id| shapes.contains_key(id)) {
            continue;
        }
        let id = result.nodes.len();
        op_id.insert(index, id);
        result.nodes.push(OpNode {
            id,
            label: node.kind.trim_start_matches("aten::").to_string(),
            source: node.source.clone(),
            scopes: scopes_of(node.call),
        });
    }
    // The real sources of a value: its op producer, or through glue nodes the op
    // producers of their inputs; graph inputs end the walk.
    let input_ids: Vec<usize> = graph.inputs.clone();
    // (op nodes, positions of the graph inputs) a value comes from.
    let sources = |value: usize| -> (Vec<usize>, Vec<usize>) {
        let mut found = Vec::new();
        let mut from_inputs = Vec::new();
        let mut stack = vec![value];
        let mut seen = std::collections::HashSet::new();
        while let Some(value) = stack.pop() {
            if !seen.insert(value) {
                continue;
            }
            if let Some(position) = input_ids.iter().position(|input| *input == value) {
                from_inputs.push(position);
                continue;
            }
            if let Some(&index) = producer.get(&value) {
                match op_id.get(&index) {
                    Some(&id) => found.push(id),
                    None => stack.extend(graph.nodes[index].inputs.iter().copied()),
                }
            }
        }
        (found, from_inputs)
    };
    let op_shape: HashMap<usize, Vec<i64>> = op_id
        .iter()
        .filter_map(|(&index, &id)| graph.nodes[index].outputs.iter().find_map(|value| shapes.get(value)).map(|shape| (id, shape.clone())))
        .collect();
    let mut fed_by_input: Vec<Vec<usize>> = vec![Vec::new(); input_ids.len().max(inputs.len())];
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(&to) = op_id.get(&index) else { continue };
        for &value in &node.inputs {
            let (from_nodes, from_inputs) = sources(value);
            for from in from_nodes {
                if from != to && !result.edges.iter().any(|edge| edge.from == from && edge.to == to) {
                    // A value built by glue (a list of tensors) shows its source's shape.
                    let shape = shapes.get(&value).cloned().or_else(|| op_shape.get(&from).cloned());
                    result.edges.push(OpEdge { from, to, shape });
                }
            }
            for position in from_inputs {
                if !fed_by_input[position].contains(&to) {
                    fed_by_input[position].push(to);
                }
            }
        }
    }
    for (position, fed) in fed_by_input.into_iter().enumerate() {
        let name = if inputs.len() > 1 { format!("input {position}") } else { "input".to_string() };
        let shape = inputs.get(position).map(|input| input.shape.clone()).unwrap_or_default();
        result.inputs.push((name, shape, fed));
    }
    if let Some(&output) = graph.outputs.first() {
        if let Some(&last) = sources(output).0.last() {
            result.outputs.push(("output".to_string(), output_shape, last));
        }
    }
    result
}
