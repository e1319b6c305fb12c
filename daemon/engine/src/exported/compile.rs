//! Compiling an exported program's graph once at load: each node's operator resolved
//! through the dispatcher, its named arguments placed by the operator's schema (a
//! schema default where the node gives none), names turned into slots, and the
//! signature bound (user inputs, parameters, buffers, constants).
//!
//! In-place operators (`aten::relu_`, `aten::add_`) run as their out-of-place variants,
//! and the mutated name is renamed to the result from then on, so the value a layer
//! produced stays what it was (a tap is never overwritten later) and a user input is
//! never changed by a pass.

use super::archive::{c10_scalar_type, symbol_name, Archive};
use super::ffi::Operator;
use super::Dimension;
use crate::device::Device;
use crate::error::{Error, Result};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Arc;

/// A compiled argument, in schema order.
#[derive(Debug)]
pub enum Arg {
    /// The schema's default.
    Default,
    None,
    /// A value another node (or the signature) produced.
    Slot(usize),
    Int(i64),
    Float(f64),
    Bool(bool),
    Ints(Vec<IntItem>),
    Floats(Vec<f64>),
    Bools(Vec<i64>),
    Tensors(Vec<usize>),
    OptionalTensors(Vec<Option<usize>>),
    String(CString),
    ScalarType(i64),
    Layout(i64),
    MemoryFormat(i64),
    Device(CString),
}

/// An item of an integer list: a constant, or a symbolic size computed in the pass.
#[derive(Debug)]
pub enum IntItem {
    Const(i64),
    Slot(usize),
}

/// Python arithmetic on symbolic sizes that export leaves in the graph.
#[derive(Debug, Clone, Copy)]
pub enum PythonOp {
    Add,
    Sub,
    Mul,
    FloorDiv,
    Mod,
    TrueDiv,
    Neg,
    Max,
    Min,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Ceil,
    Floor,
    Not,
}

pub enum Callee {
    Operator(Arc<Operator>),
    Python(PythonOp),
}

/// Where a node's result goes.
#[derive(Debug)]
pub enum Output {
    Slot(usize),
    List(Vec<Option<usize>>),
    Ignored,
}

/// One module frame of a node's `nn_module_stack`, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub key: String,
    pub path: String,
    pub type_name: String,
}

/// The in-place form of a node compiled to its out-of-place variant: what the run may
/// call instead when nothing else reads the value it would overwrite.
pub struct InPlace {
    pub operator: Arc<Operator>,
    pub args: Vec<Arg>,
    /// The slot the in-place operator writes to (its first argument).
    pub mutated_slot: usize,
}

pub struct Node {
    /// `aten::conv2d` (the operator actually called), or `_operator.mul`.
    pub target: String,
    pub callee: Callee,
    pub args: Vec<Arg>,
    /// For an in-place operator run out of place: the in-place form, which a run uses
    /// when the overwritten value is read by no later node and kept for no caller (as
    /// eager PyTorch does, it saves allocating a new tensor).
    pub inplace: Option<InPlace>,
    pub outputs: Vec<Output>,
    /// The module frames the node was traced in (the root excluded).
    pub frames: Vec<Frame>,
    /// Whether the node carries a module stack at all (nodes export adds itself,
    /// such as `sym_size`, may not).
    pub has_stack: bool,
    /// The innermost module path, for error messages.
    pub module_path: String,
    /// The original Python frames as `file:line`, outermost first.
    pub source_frames: Vec<String>,
}

impl Node {
    pub fn output_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.outputs.iter().flat_map(|output| -> Vec<usize> {
            match output {
                Output::Slot(slot) => vec![*slot],
                Output::List(slots) => slots.iter().flatten().copied().collect(),
                Output::Ignored => Vec::new(),
            }
        })
    }

    pub fn input_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.args.iter().flat_map(|arg| -> Vec<usize> {
            match arg {
                Arg::Slot(slot) => vec![*slot],
                Arg::Ints(items) => items.iter().filter_map(|item| if let IntItem::Slot(slot) = item { Some(*slot) } else { None }).collect(),
                Arg::Tensors(slots) => slots.clone(),
                Arg::OptionalTensors(slots) => slots.iter().flatten().copied().collect(),
                _ => Vec::new(),
            }
        })
    }
}

pub enum BindingSource {
    Weight(String),
    Constant(String),
}

/// A signature input bound to stored data.
pub struct Binding {
    pub slot: usize,
    /// Fully qualified name (`layer1.0.conv1.weight`).
    pub fqn: String,
    pub is_parameter: bool,
    pub is_buffer: bool,
    pub source: BindingSource,
}

pub struct Compiled {
    pub nodes: Vec<Node>,
    pub slot_count: usize,
    /// Slots that hold tensors (from the graph's tensor_values).
    pub slot_is_tensor: Vec<bool>,
    pub input_slots: Vec<usize>,
    pub input_dims: Vec<Vec<Dimension>>,
    pub example_shapes: Vec<Vec<i64>>,
    pub input_kinds: Vec<tch::Kind>,
    pub bindings: Vec<Binding>,
    pub output_slots: Vec<usize>,
    pub frees_after: Vec<Vec<usize>>,
    /// The root module's type (`__main__.Net`).
    pub root_type: String,
}

struct Names {
    slots: HashMap<String, usize>,
    names: Vec<String>,
}

impl Names {
    fn define(&mut self, name: &str) -> usize {
        let slot = self.names.len();
        self.names.push(name.to_string());
        self.slots.insert(name.to_string(), slot);
        slot
    }

    fn get(&self, name: &str, node: &str) -> Result<usize> {
        self.slots
            .get(name)
            .copied()
            .ok_or_else(|| Error::bad_input(format!("not a valid exported program: {node} reads '{name}', which nothing defines")))
    }
}

fn unsupported(message: String) -> Error {
    Error::bad_input(format!("this exported program cannot run in layerlens: {message}"))
}

pub fn compile(archive: &Archive, device: Device) -> Result<Compiled> {
    let module = &archive.program["graph_module"];
    let graph = &module["graph"];
    let signature = &module["signature"];
    let mut names = Names { slots: HashMap::new(), names: Vec::new() };
    let mut bindings = Vec::new();
    let mut input_slots = Vec::new();
    let mut input_names = Vec::new();
    for spec in signature["input_specs"].as_array().into_iter().flatten() {
        let (kind, body) = single_entry(spec).ok_or_else(|| unsupported("an input spec is malformed".to_string()))?;
        match kind {
            "user_input" => {
                if let Some(name) = body["arg"]["as_tensor"]["name"].as_str() {
                    input_slots.push(names.define(name));
                    input_names.push(name.to_string());
                } else if body["arg"].get("as_none").is_none() {
                    return Err(unsupported(format!("a non-tensor user input ({})", body["arg"])));
                }
            }
            "parameter" | "buffer" | "tensor_constant" => {
                let name = body["arg"]["name"].as_str().ok_or_else(|| unsupported(format!("a {kind} without a name")))?;
                let (fqn_key, is_parameter) = match kind {
                    "parameter" => ("parameter_name", true),
                    "buffer" => ("buffer_name", false),
                    _ => ("tensor_constant_name", false),
                };
                let fqn = body[fqn_key].as_str().unwrap_or(name).to_string();
                let slot = names.define(name);
                let source =
                    if archive.weights.contains_key(&fqn) { BindingSource::Weight(fqn.clone()) } else { BindingSource::Constant(fqn.clone()) };
                bindings.push(Binding { slot, fqn, is_parameter, is_buffer: kind == "buffer", source });
            }
            "constant_input" => {}
            other => return Err(unsupported(format!("input kind '{other}' (custom objects and tokens are not supported)"))),
        }
    }
    let tensor_values = &graph["tensor_values"];
    let range_constraints = &archive.program["range_constraints"];
    // Per user input: its exported dimensions, the example's shape (a symbolic size at
    // its hint) and its dtype.
    let sizes_of = |name: &str| tensor_values[name]["sizes"].as_array().cloned().unwrap_or_default();
    let input_dims = input_names.iter().map(|name| sizes_of(name).iter().map(|size| dimension(size, range_constraints)).collect()).collect();
    let example_shapes = input_names
        .iter()
        .map(|name| {
            sizes_of(name)
                .iter()
                .map(|size| size.get("as_int").and_then(Json::as_i64).or_else(|| size["as_expr"]["hint"]["as_int"].as_i64()).unwrap_or(1))
                .collect()
        })
        .collect();
    let input_kinds = input_names
        .iter()
        .map(|name| tensor_values[name.as_str()]["dtype"].as_i64().and_then(super::archive::kind_from_code).unwrap_or(tch::Kind::Float))
        .collect();

    let device_text = CString::new(match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(index) => format!("cuda:{index}"),
    })
    .expect("device names have no NUL");
    let mut operators: HashMap<(String, String), Option<Arc<Operator>>> = HashMap::new();
    let mut find = |name: &str, overload: &str| -> Result<Option<Arc<Operator>>> {
        let key = (name.to_string(), overload.to_string());
        if let Some(found) = operators.get(&key) {
            return Ok(found.clone());
        }
        let found = Operator::find(name, overload)?.map(Arc::new);
        operators.insert(key, found.clone());
        Ok(found)
    };
    let mut nodes = Vec::new();
    let mut root_type = String::new();
    for node in graph["nodes"].as_array().into_iter().flatten() {
        let target = node["target"].as_str().unwrap_or("");
        let metadata = &node["metadata"];
        let stack_text = metadata["nn_module_stack"].as_str().unwrap_or("");
        let has_stack = !stack_text.is_empty() && !stack_text.starts_with("_empty_nn_module_stack");
        let (frames, root) = if has_stack { parse_module_stack(stack_text) } else { (Vec::new(), String::new()) };
        if root_type.is_empty() {
            root_type = root;
        }
        let source_frames = parse_stack_trace(metadata["stack_trace"].as_str().unwrap_or(""));
        let module_path = frames.last().map(|frame| frame.path.clone()).unwrap_or_default();
        let inputs: Vec<(&str, &Json)> =
            node["inputs"].as_array().into_iter().flatten().map(|input| (input["name"].as_str().unwrap_or(""), &input["arg"])).collect();
        let (callee, display, args, mutated, inplace) = if let Some(op) = python_op(target) {
            let args = inputs.iter().map(|(_, arg)| convert_arg(arg, &names, target, &device_text)).collect::<Result<Vec<_>>>()?;
            (Callee::Python(op), target.to_string(), args, None, None)
        } else if let Some(rest) = target.strip_prefix("torch.ops.") {
            if rest.starts_with("higher_order.") {
                return Err(unsupported(format!(
                    "{target} (a higher-order operator: control flow, or a region with a different grad mode) is not supported"
                )));
            }
            let mut parts: Vec<&str> = rest.split('.').collect();
            if parts.len() < 2 {
                return Err(unsupported(format!("cannot read the operator name '{target}'")));
            }
            let overload = if parts.len() >= 3 { parts.pop().unwrap_or("default") } else { "default" };
            let overload = if overload == "default" { "" } else { overload };
            let op_name = format!("{}::{}", parts[0], parts[1..].join("."));
            let operator = find(&op_name, overload)?.ok_or_else(|| {
                let shown = if overload.is_empty() { op_name.clone() } else { format!("{op_name}.{overload}") };
                unsupported(format!(
                    "operator {shown} is unknown to this daemon's libtorch (a custom operator? start layerlensd with --op-library PATH to load its library)"
                ))
            })?;
            // An in-place operator runs as its out-of-place variant where one exists.
            let mut chosen = operator.clone();
            let mut display = op_name.clone();
            let mut mutated = None;
            let first_mutable = operator.schema.arguments.first().filter(|argument| argument.mutable).map(|argument| argument.name.clone());
            if let (Some(first), Some(base)) = (first_mutable, op_name.strip_suffix('_')) {
                if let Some(functional) = find(base, overload)? {
                    let names_match = inputs.iter().all(|(name, _)| functional.schema.arguments.iter().any(|argument| argument.name == *name));
                    if names_match && !functional.schema.arguments.iter().any(|argument| argument.mutable) {
                        chosen = functional;
                        display = base.to_string();
                    }
                }
                mutated = inputs.iter().find(|(name, _)| *name == first).and_then(|(_, arg)| arg["as_tensor"]["name"].as_str()).map(str::to_string);
            }
            let args = place_arguments(&chosen, &inputs, &names, target, &display, &device_text)?;
            // The in-place form is kept beside the out-of-place one it was replaced by.
            let inplace = match (&mutated, Arc::ptr_eq(&chosen, &operator)) {
                (Some(name), false) => {
                    let mutated_slot = names.get(name, target)?;
                    Some(InPlace {
                        args: place_arguments(&operator, &inputs, &names, target, &op_name, &device_text)?,
                        operator: operator.clone(),
                        mutated_slot,
                    })
                }
                _ => None,
            };
            (Callee::Operator(chosen), display, args, mutated, inplace)
        } else {
            return Err(unsupported(format!("the node target '{target}' is not an operator layerlens can call")));
        };
        let outputs = node["outputs"].as_array().into_iter().flatten().map(|output| define_output(output, &mut names)).collect::<Vec<_>>();
        if let (Some(mutated), Some(Output::Slot(slot))) = (mutated, outputs.first()) {
            // From here on the mutated name means the result.
            names.slots.insert(mutated, *slot);
        }
        nodes.push(Node { target: display, callee, args, inplace, outputs, frames, has_stack, module_path, source_frames });
    }
    let mut output_slots = Vec::new();
    for spec in signature["output_specs"].as_array().into_iter().flatten() {
        let Some((kind, body)) = single_entry(spec) else { continue };
        if kind == "user_output" {
            if let Some(name) = body["arg"]["as_tensor"]["name"].as_str() {
                output_slots.push(names.get(name, "the program output")?);
            } else {
                return Err(unsupported(format!("a non-tensor program output ({})", body["arg"])));
            }
        }
    }
    let slot_count = names.names.len();
    let slot_is_tensor = names.names.iter().map(|name| tensor_values.get(name.as_str()).is_some()).collect::<Vec<bool>>();
    // Each slot is freed after the last node that reads it, unless the caller holds it
    // anyway (inputs, bound tensors) or it is a program output.
    let mut last_use: Vec<Option<usize>> = vec![None; slot_count];
    for (index, node) in nodes.iter().enumerate() {
        for slot in node.output_slots() {
            last_use[slot] = Some(index);
        }
        for slot in node.input_slots() {
            last_use[slot] = Some(index);
        }
    }
    let mut frees_after = vec![Vec::new(); nodes.len()];
    let mut pinned = vec![false; slot_count];
    for slot in input_slots.iter().chain(&output_slots).chain(bindings.iter().map(|binding| &binding.slot)) {
        pinned[*slot] = true;
    }
    for (slot, last) in last_use.iter().enumerate() {
        if let (Some(last), false) = (last, pinned[slot]) {
            frees_after[*last].push(slot);
        }
    }
    Ok(Compiled {
        nodes,
        slot_count,
        slot_is_tensor,
        input_slots,
        input_dims,
        example_shapes,
        input_kinds,
        bindings,
        output_slots,
        frees_after,
        root_type,
    })
}

/// A node's named arguments in the order of `operator`'s schema, with `Default` where
/// the node gives none (trailing defaults left out).
fn place_arguments(operator: &Operator, inputs: &[(&str, &Json)], names: &Names, target: &str, display: &str, device: &CString) -> Result<Vec<Arg>> {
    for (name, _) in inputs {
        if !operator.schema.arguments.iter().any(|argument| argument.name == *name) {
            return Err(unsupported(format!("{target} has an argument '{name}' that this libtorch's schema of {display} does not know")));
        }
    }
    let mut args = Vec::with_capacity(operator.schema.arguments.len());
    for argument in &operator.schema.arguments {
        match inputs.iter().find(|(name, _)| *name == argument.name) {
            Some((_, arg)) => args.push(convert_arg(arg, names, target, device)?),
            None if argument.has_default => args.push(Arg::Default),
            None => return Err(unsupported(format!("{target} gives no value for '{}', which has no default", argument.name))),
        }
    }
    while matches!(args.last(), Some(Arg::Default)) {
        args.pop();
    }
    Ok(args)
}

/// One exported dimension of a user input: a fixed size, a symbol with the range
/// `range_constraints` gives it, or an expression of symbols.
fn dimension(size: &Json, range_constraints: &Json) -> Dimension {
    if let Some(value) = size.get("as_int").and_then(Json::as_i64) {
        return Dimension::Static(value);
    }
    match symbol_name(size["as_expr"]["expr_str"].as_str().unwrap_or("")) {
        Some(symbol) => {
            let range = &range_constraints[symbol.as_str()];
            Dimension::Symbolic { min: range["min_val"].as_i64().unwrap_or(0), max: range["max_val"].as_i64(), name: symbol }
        }
        None => Dimension::Derived,
    }
}

fn single_entry(value: &Json) -> Option<(&str, &Json)> {
    let object = value.as_object()?;
    object.iter().find(|(_, body)| !body.is_null()).map(|(key, body)| (key.as_str(), body))
}

fn define_output(output: &Json, names: &mut Names) -> Output {
    match single_entry(output) {
        Some(("as_tensor", body)) => body["name"].as_str().map(|name| Output::Slot(names.define(name))).unwrap_or(Output::Ignored),
        Some(("as_tensors", body)) => {
            Output::List(body.as_array().into_iter().flatten().map(|item| item["name"].as_str().map(|name| names.define(name))).collect())
        }
        Some(("as_sym_int" | "as_sym_float" | "as_sym_bool", body)) => {
            body["as_name"].as_str().map(|name| Output::Slot(names.define(name))).unwrap_or(Output::Ignored)
        }
        Some(("as_optional_tensor", body)) => {
            body["as_tensor"]["name"].as_str().map(|name| Output::Slot(names.define(name))).unwrap_or(Output::Ignored)
        }
        _ => Output::Ignored,
    }
}

fn convert_arg(arg: &Json, names: &Names, node: &str, device: &CString) -> Result<Arg> {
    let (kind, body) = single_entry(arg).ok_or_else(|| unsupported(format!("{node} has a malformed argument")))?;
    let slot_or = |body: &Json, constant: &str| -> Result<Arg> {
        if let Some(name) = body["as_name"].as_str() {
            return Ok(Arg::Slot(names.get(name, node)?));
        }
        Ok(match constant {
            "as_int" => Arg::Int(body["as_int"].as_i64().unwrap_or(0)),
            "as_float" => Arg::Float(body["as_float"].as_f64().unwrap_or(0.0)),
            _ => Arg::Bool(body["as_bool"].as_bool().unwrap_or(false)),
        })
    };
    Ok(match kind {
        "as_none" => Arg::None,
        "as_tensor" => Arg::Slot(names.get(body["name"].as_str().unwrap_or(""), node)?),
        "as_tensors" => Arg::Tensors(
            body.as_array().into_iter().flatten().map(|item| names.get(item["name"].as_str().unwrap_or(""), node)).collect::<Result<_>>()?,
        ),
        "as_optional_tensor" => match body["as_tensor"]["name"].as_str() {
            Some(name) => Arg::Slot(names.get(name, node)?),
            None => Arg::None,
        },
        "as_optional_tensors" => Arg::OptionalTensors(
            body.as_array()
                .into_iter()
                .flatten()
                .map(|item| item["as_tensor"]["name"].as_str().map(|name| names.get(name, node)).transpose())
                .collect::<Result<_>>()?,
        ),
        "as_int" => Arg::Int(body.as_i64().ok_or_else(|| unsupported(format!("{node}: an integer argument is out of range")))?),
        "as_float" => Arg::Float(float_value(body)),
        "as_bool" => Arg::Bool(body.as_bool().unwrap_or(false)),
        "as_string" => {
            Arg::String(CString::new(body.as_str().unwrap_or("")).map_err(|_| unsupported(format!("{node}: a string argument holds a NUL byte")))?)
        }
        "as_ints" => Arg::Ints(body.as_array().into_iter().flatten().map(|item| IntItem::Const(item.as_i64().unwrap_or(0))).collect()),
        "as_floats" => Arg::Floats(body.as_array().into_iter().flatten().map(float_value).collect()),
        "as_bools" => Arg::Bools(body.as_array().into_iter().flatten().map(|item| i64::from(item.as_bool().unwrap_or(false))).collect()),
        "as_sym_int" => slot_or(body, "as_int")?,
        "as_sym_float" => slot_or(body, "as_float")?,
        "as_sym_bool" => slot_or(body, "as_bool")?,
        "as_sym_ints" => Arg::Ints(
            body.as_array()
                .into_iter()
                .flatten()
                .map(|item| match item["as_name"].as_str() {
                    Some(name) => names.get(name, node).map(IntItem::Slot),
                    None => Ok(IntItem::Const(item["as_int"].as_i64().unwrap_or(0))),
                })
                .collect::<Result<_>>()?,
        ),
        "as_scalar_type" => {
            let code = body.as_i64().unwrap_or(0);
            Arg::ScalarType(c10_scalar_type(code).ok_or_else(|| unsupported(format!("{node}: dtype code {code} is not supported")))?)
        }
        "as_layout" => match body.as_i64() {
            Some(7) => Arg::Layout(0),
            other => return Err(unsupported(format!("{node}: layout {other:?} (only strided tensors are supported)"))),
        },
        "as_memory_format" => Arg::MemoryFormat(match body.as_i64() {
            Some(1) => 0,
            Some(2) => 2,
            Some(3) => 3,
            Some(4) => 1,
            other => return Err(unsupported(format!("{node}: memory format {other:?}"))),
        }),
        // Devices recorded at export (usually the CPU) mean the program's device here.
        "as_device" => Arg::Device(device.clone()),
        "as_graph" => return Err(unsupported(format!("{node} takes a subgraph (higher-order operators are not supported)"))),
        other => return Err(unsupported(format!("{node}: argument kind '{other}' is not supported"))),
    })
}

/// Floats arrive as JSON numbers, or as strings for inf/nan.
fn float_value(value: &Json) -> f64 {
    match value {
        Json::String(text) => match text.as_str() {
            "inf" | "Infinity" => f64::INFINITY,
            "-inf" | "-Infinity" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        other => other.as_f64().unwrap_or(0.0),
    }
}

fn python_op(target: &str) -> Option<PythonOp> {
    Some(match target {
        "_operator.add" => PythonOp::Add,
        "_operator.sub" => PythonOp::Sub,
        "_operator.mul" => PythonOp::Mul,
        "_operator.floordiv" => PythonOp::FloorDiv,
        "_operator.mod" => PythonOp::Mod,
        "_operator.truediv" => PythonOp::TrueDiv,
        "_operator.neg" => PythonOp::Neg,
        "_operator.eq" => PythonOp::Eq,
        "_operator.ne" => PythonOp::Ne,
        "_operator.lt" => PythonOp::Lt,
        "_operator.le" => PythonOp::Le,
        "_operator.gt" => PythonOp::Gt,
        "_operator.ge" => PythonOp::Ge,
        "_operator.not_" | "torch.sym_not" => PythonOp::Not,
        "torch.sym_max" => PythonOp::Max,
        "torch.sym_min" => PythonOp::Min,
        "math.ceil" | "torch._sym_ceil" => PythonOp::Ceil,
        "math.floor" | "torch._sym_floor" => PythonOp::Floor,
        _ => return None,
    })
}

/// `nn_module_stack` as serialized: `key,path,type` entries joined by `;`, outermost
/// first, the root (`L__self__,,__main__.Net`) included. Returns the frames without
/// the root, and the root's type.
pub fn parse_module_stack(text: &str) -> (Vec<Frame>, String) {
    let mut frames = Vec::new();
    let mut root_type = String::new();
    for entry in text.split(';').filter(|entry| !entry.is_empty()) {
        let Some((key, rest)) = entry.split_once(',') else { continue };
        let Some((path, type_name)) = rest.rsplit_once(',') else { continue };
        let path = normalise_path(path);
        if path.is_empty() {
            root_type = type_name.to_string();
            continue;
        }
        frames.push(Frame { key: key.to_string(), path, type_name: type_name.to_string() });
    }
    (frames, root_type)
}

/// Module paths as strict (Dynamo) export writes them (`L['self'].layer1[0]`,
/// `getattr(L['self'].layers, '0')`) become dotted paths (`layer1.0`).
fn normalise_path(path: &str) -> String {
    let mut text = path.trim().to_string();
    for prefix in ["L['self'].", "L[\"self\"].", "L['self']", "self."] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.to_string();
        }
    }
    if text.contains("getattr(") {
        // getattr(getattr(a, '0'), 'b') -> a.0.b
        let cleaned: String = text.replace("getattr(", "").replace(')', "").replace(", '", ".").replace(", \"", ".").replace(['\'', '"'], "");
        text = cleaned.strip_prefix("L[self].").unwrap_or(&cleaned).to_string();
    }
    text.replace('[', ".").replace(']', "").replace(['\'', '"'], "").trim_matches('.').to_string()
}

/// The `File "x.py", line 7` frames of a stack trace as `x.py:7`, outermost first.
pub fn parse_stack_trace(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("File \"")?;
            let (file, rest) = rest.split_once('"')?;
            let number: String = rest.trim_start_matches(", line ").chars().take_while(char::is_ascii_digit).collect();
            (!number.is_empty()).then(|| format!("{file}:{number}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_stacks_parse() {
        let (frames, root) =
            parse_module_stack("L__self__,,__main__.M;L__self__layer1_0,layer1.0,torchvision.models.resnet.BasicBlock;L__self__layer1_0_conv1,layer1.0.conv1,torch.nn.modules.conv.Conv2d");
        assert_eq!(root, "__main__.M");
        assert_eq!(frames.iter().map(|frame| frame.path.as_str()).collect::<Vec<_>>(), ["layer1.0", "layer1.0.conv1"]);
        assert_eq!(frames[1].type_name, "torch.nn.modules.conv.Conv2d");
    }

    #[test]
    fn strict_export_paths_become_dotted() {
        let cases = [("L['self'].layer1[0].conv1", "layer1.0.conv1"), ("conv1", "conv1"), ("getattr(L['self'].layers, '0')", "layers.0"), ("", "")];
        for (path, expected) in cases {
            assert_eq!(normalise_path(path), expected, "{path}");
        }
    }

    #[test]
    fn stack_traces_give_file_and_line() {
        let trace =
            "File \"/x/model.py\", line 7, in forward\n    return self.fc(x)\n  File \"/t/linear.py\", line 134, in forward\n    return F.linear(";
        assert_eq!(parse_stack_trace(trace), ["/x/model.py:7", "/t/linear.py:134"]);
    }
}
