//! The executor of exported programs (`torch.export`, `.pt2`), with gradients.
//!
//! PyTorch's own C++ runtimes for `.pt2` run under inference mode and give no
//! gradients, so layerlens walks the graph itself: the archive is read in Rust
//! (archive.rs), each node is compiled once at load (operator resolved through the
//! dispatcher, arguments placed by the operator's schema, names turned into slots),
//! and a run calls the nodes in order through `csrc/ops.cpp`, outside inference mode,
//! so autograd records the pass as it does for eager PyTorch.
//!
//! The program also describes itself in the shapes the TorchScript path uses
//! (`taps::ForwardGraph` from each node's `nn_module_stack`, `structure::ModuleInfo`
//! from the signature's parameters and buffers), so every feature reaches both kinds
//! through one interface (`taps::TappedModel`, `model::LoadedModel`).

pub mod archive;
mod compile;
mod ffi;
mod module_calls;

use crate::device::Device;
use crate::error::{Error, ErrorKind, Result};
use crate::structure::ModuleInfo;
use crate::taps::ForwardGraph;
use compile::{Arg, Callee, IntItem, Node, PythonOp};
use ffi::{arg_kind, OpArg, OpValue};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

pub use archive::is_exported_archive;

/// A run-time value in a slot.
#[derive(Debug)]
enum Value {
    None,
    Tensor(Tensor),
    Int(i64),
    Float(f64),
    Bool(bool),
    Tensors(Vec<Tensor>),
}

/// One dimension of a user input as the program was exported: a fixed size, or a
/// symbol with its allowed range.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    Static(i64),
    Symbolic {
        name: String,
        min: i64,
        max: Option<i64>,
    },
    /// An expression of symbols (`2*s0`): not checked here, the operators check it.
    Derived,
}

/// An exported program loaded on one device.
pub struct ExportedProgram {
    nodes: Vec<Node>,
    slot_count: usize,
    /// Slots of the user inputs, in forward's order, with their exported dimensions.
    input_slots: Vec<usize>,
    pub input_dims: Vec<Vec<Dimension>>,
    /// The shapes of the example inputs the program was exported with.
    pub example_shapes: Vec<Vec<i64>>,
    /// The dtype of each user input (int64 for token ids).
    pub input_kinds: Vec<tch::Kind>,
    /// Parameters, buffers and constants: their slots and tensors on the device.
    bound: Vec<(usize, Tensor)>,
    /// Slots of the user outputs.
    output_slots: Vec<usize>,
    /// Per node: slots no later node reads, freed after it unless a run keeps them.
    frees_after: Vec<Vec<usize>>,
    /// Parameters by fully qualified name, in signature order (shared with `bound`).
    pub parameters: Vec<(String, Tensor)>,
    /// Buffers (running statistics, ...) by fully qualified name (shared with `bound`).
    pub buffers: Vec<(String, Tensor)>,
    /// The module tree rebuilt from the signature and `nn_module_stack`.
    pub modules: Vec<ModuleInfo>,
    /// The graph in the TorchScript path's terms (value ids are slots).
    pub graph: ForwardGraph,
    /// Per module call with a tensor output: its path, call and output slot.
    pub tap_paths: Vec<String>,
    pub tap_calls: Vec<usize>,
    pub tap_slots: Vec<usize>,
    pub tap_first: Vec<usize>,
    pub device: Device,
    /// The batch size of a program exported with a fixed batch dimension: passes
    /// over larger batches run as several passes of this size.
    static_batch: Option<i64>,
}

// SAFETY: tensors may move between threads; operators are global dispatcher entries.
// The engine uses a program from one worker thread at a time.
unsafe impl Send for ExportedProgram {}
unsafe impl Sync for ExportedProgram {}

/// What a run keeps and reports.
struct RunPlan<'a> {
    /// Slots whose values the caller wants back.
    keep: &'a [bool],
    /// Nodes to run (None: all).
    needed: Option<&'a [bool]>,
}

impl ExportedProgram {
    /// Reads and compiles an archive and places its weights on `device`.
    pub fn load(path: &Path, device: Device) -> Result<ExportedProgram> {
        device.check_available()?;
        let archive = archive::Archive::read(path)?;
        let compiled = compile::compile(&archive, device)?;
        let mut bound = Vec::new();
        let mut parameters = Vec::new();
        let mut buffers = Vec::new();
        for binding in &compiled.bindings {
            let tensor = match &binding.source {
                compile::BindingSource::Weight(name) => {
                    let stored = archive.weights.get(name).ok_or_else(|| {
                        Error::bad_input(format!("not a torch.export archive layerlens can read: weight '{name}' is missing from the weights config"))
                    })?;
                    archive.tensor(name, stored, false)?
                }
                compile::BindingSource::Constant(name) => {
                    let stored = archive.constants.get(name).ok_or_else(|| {
                        Error::bad_input(format!(
                            "not a torch.export archive layerlens can read: constant '{name}' is missing from the constants config"
                        ))
                    })?;
                    archive.tensor(name, stored, true)?
                }
            };
            // Parameters require grad, as in the eager module: layer methods differentiate
            // the output with respect to a layer's output even when the input has no
            // gradient (token ids), which needs the layer on the autograd path.
            let requires_grad = binding.is_parameter && archive.weights.get(&binding.fqn).is_none_or(|stored| stored.tensor_meta.requires_grad);
            let tensor = tensor.to_device(device.to_tch()).detach().set_requires_grad(requires_grad);
            if binding.is_parameter {
                parameters.push((binding.fqn.clone(), tensor.shallow_clone()));
            } else if binding.is_buffer {
                buffers.push((binding.fqn.clone(), tensor.shallow_clone()));
            }
            bound.push((binding.slot, tensor));
        }
        let calls = module_calls::describe(&compiled, &archive);
        let mut program = ExportedProgram {
            nodes: compiled.nodes,
            slot_count: compiled.slot_count,
            input_slots: compiled.input_slots,
            input_dims: compiled.input_dims,
            example_shapes: compiled.example_shapes,
            input_kinds: compiled.input_kinds,
            bound,
            output_slots: compiled.output_slots,
            frees_after: compiled.frees_after,
            parameters,
            buffers,
            modules: calls.modules,
            graph: calls.graph,
            tap_paths: calls.tap_paths,
            tap_calls: calls.tap_calls,
            tap_slots: calls.tap_slots,
            tap_first: calls.tap_first,
            device,
            static_batch: None,
        };
        program.static_batch = match program.input_dims.iter().map(|dims| dims.first().cloned()).collect::<Vec<_>>().as_slice() {
            dims if !dims.is_empty() && dims.iter().all(|dim| matches!(dim, Some(Dimension::Static(_)))) => {
                let sizes: Vec<i64> = dims.iter().map(|dim| if let Some(Dimension::Static(size)) = dim { *size } else { 0 }).collect();
                (sizes.iter().all(|size| *size == sizes[0] && *size > 0)).then_some(sizes[0])
            }
            _ => None,
        };
        Ok(program)
    }

    /// Checks the user inputs' shapes against the exported dimensions: a fixed size
    /// must match, a symbolic one must lie in its range and be the same wherever the
    /// symbol appears. `allow_batch_multiples` accepts a multiple of a fixed batch
    /// size (internal passes are split into passes of the exported size).
    pub fn check_shapes(&self, shapes: &[Vec<i64>], allow_batch_multiples: bool) -> Result<()> {
        if shapes.len() != self.input_dims.len() {
            return Err(Error::bad_input(format!("this program takes {} input(s), got {}", self.input_dims.len(), shapes.len())));
        }
        let mut bound: HashMap<&str, (i64, usize, usize)> = HashMap::new();
        for (index, (shape, dims)) in shapes.iter().zip(&self.input_dims).enumerate() {
            let which = if shapes.len() == 1 { "the input".to_string() } else { format!("input {index}") };
            if shape.len() != dims.len() {
                return Err(Error::bad_input(format!(
                    "{which} has {} dimensions {shape:?}; the program was exported for {} dimensions",
                    shape.len(),
                    dims.len()
                )));
            }
            for (axis, (&size, dim)) in shape.iter().zip(dims).enumerate() {
                match dim {
                    Dimension::Static(expected) => {
                        let batch_multiple = allow_batch_multiples && axis == 0 && self.static_batch.is_some() && size > 0 && size % expected == 0;
                        if size != *expected && !batch_multiple {
                            return Err(Error::bad_input(format!(
                                "{which} has size {size} in dimension {axis}, but the program was exported with that dimension fixed at {expected}; \
                                 export with dynamic_shapes (torch.export.Dim) to accept other sizes"
                            )));
                        }
                    }
                    Dimension::Symbolic { name, min, max } => {
                        if size < *min || max.is_some_and(|max| size > max) {
                            let upper = max.map(|max| max.to_string()).unwrap_or_else(|| "inf".to_string());
                            return Err(Error::bad_input(format!(
                                "{which} has size {size} in dimension {axis} ({name}), outside the exported range [{min}, {upper}]"
                            )));
                        }
                        if let Some((other, other_input, other_axis)) = bound.get(name.as_str()) {
                            if *other != size {
                                return Err(Error::bad_input(format!(
                                    "{which} has size {size} in dimension {axis} ({name}), but input {other_input} has {other} in dimension {other_axis}; the program requires them equal"
                                )));
                            }
                        } else {
                            bound.insert(name, (size, index, axis));
                        }
                    }
                    Dimension::Derived => {}
                }
            }
        }
        Ok(())
    }

    /// The model output when the program returns one tensor.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let values = self.run_slots(inputs, &self.output_slots.clone(), None)?;
        single_output(values, self.output_slots.len())
    }

    /// The output (when it is one tensor) and the values of `slots`.
    pub fn run_slots(&self, inputs: &[Tensor], slots: &[usize], needed: Option<&[bool]>) -> Result<Vec<Option<Tensor>>> {
        let mut keep = vec![false; self.slot_count];
        for &slot in slots.iter().chain(&self.output_slots) {
            keep[slot] = true;
        }
        let env = self.run_batched(inputs, RunPlan { keep: &keep, needed })?;
        Ok(slots.iter().map(|&slot| env.get(&slot).and_then(|value| value.as_ref().map(Tensor::shallow_clone))).collect())
    }

    /// Slots the output and `slots` depend on: the nodes to run for them.
    pub fn needed_nodes(&self, slots: &[usize]) -> Vec<bool> {
        let mut wanted = vec![false; self.slot_count];
        for &slot in slots {
            wanted[slot] = true;
        }
        let mut needed = vec![false; self.nodes.len()];
        for (index, node) in self.nodes.iter().enumerate().rev() {
            if node.output_slots().any(|slot| wanted[slot]) {
                needed[index] = true;
                for slot in node.input_slots() {
                    wanted[slot] = true;
                }
            }
        }
        needed
    }

    /// Runs with a callback for each kept tensor slot as soon as it is produced.
    pub fn observe(&self, inputs: &[Tensor], slots: &[usize], visit: &mut dyn FnMut(usize, &Tensor)) -> Result<Option<Tensor>> {
        let mut keep = vec![false; self.slot_count];
        for &slot in slots {
            keep[slot] = true;
        }
        let mut outputs_only = vec![false; self.slot_count];
        for &slot in &self.output_slots {
            outputs_only[slot] = true;
        }
        // Observed slots are reported, then freed like any other value: `keep` marks
        // them for the callback only, and the output is kept for the caller.
        let mut env = self.run_once(inputs, &outputs_only, None, Some((&keep, visit)), None)?;
        let outputs: Vec<Option<Tensor>> = self.output_slots.iter().map(|slot| env.remove(slot).flatten()).collect();
        Ok(if outputs.len() == 1 { outputs.into_iter().next().flatten() } else { None })
    }

    /// The output when the value of `slot` (a layer's output) is `value` instead of what
    /// the graph computes there: later nodes read `value`, so gradients reach it (layer
    /// integrated gradients inject interpolated embeddings this way). One pass; a
    /// fixed-batch program must be given its batch.
    pub fn forward_replacing(&self, inputs: &[Tensor], slot: usize, value: &Tensor) -> Result<Tensor> {
        let mut keep = vec![false; self.slot_count];
        for &output in &self.output_slots {
            keep[output] = true;
        }
        let mut env = self.run_once(inputs, &keep, None, None, Some((slot, value)))?;
        let outputs: Vec<Option<Tensor>> = self.output_slots.iter().map(|slot| env.remove(slot).flatten()).collect();
        single_output(outputs, self.output_slots.len())
    }

    /// A run over a batch that a fixed-batch program cannot take at once is split into
    /// passes of the exported batch size, and kept tensors are concatenated back.
    fn run_batched(&self, inputs: &[Tensor], plan: RunPlan) -> Result<HashMap<usize, Option<Tensor>>> {
        let batch = inputs.first().map(|input| input.size().first().copied().unwrap_or(0)).unwrap_or(0);
        let Some(size) = self.static_batch.filter(|size| batch != *size && *size > 0 && batch % *size == 0) else {
            return self.run_once(inputs, plan.keep, plan.needed, None, None);
        };
        let mut parts: Vec<HashMap<usize, Option<Tensor>>> = Vec::new();
        for start in (0..batch).step_by(size as usize) {
            let chunk: Vec<Tensor> = inputs.iter().map(|input| input.narrow(0, start, size)).collect();
            parts.push(self.run_once(&chunk, plan.keep, plan.needed, None, None)?);
        }
        let mut joined = HashMap::new();
        for slot in parts[0].keys().copied().collect::<Vec<_>>() {
            let pieces: Option<Vec<Tensor>> =
                parts.iter().map(|part| part.get(&slot).and_then(|value| value.as_ref().map(Tensor::shallow_clone))).collect();
            let value =
                pieces.map(
                    |pieces| {
                        if pieces[0].dim() > 0 && pieces[0].size()[0] == size {
                            Tensor::cat(&pieces, 0)
                        } else {
                            pieces[0].shallow_clone()
                        }
                    },
                );
            joined.insert(slot, value);
        }
        Ok(joined)
    }

    /// One pass over the graph. Returns the kept slots' tensors.
    #[allow(clippy::type_complexity)]
    fn run_once(
        &self,
        inputs: &[Tensor],
        keep: &[bool],
        needed: Option<&[bool]>,
        mut observe: Option<(&[bool], &mut dyn FnMut(usize, &Tensor))>,
        replace: Option<(usize, &Tensor)>,
    ) -> Result<HashMap<usize, Option<Tensor>>> {
        if inputs.len() != self.input_slots.len() {
            return Err(Error::bad_input(format!("this program takes {} input(s), got {}", self.input_slots.len(), inputs.len())));
        }
        let mut env: Vec<Option<Value>> = (0..self.slot_count).map(|_| None).collect();
        for (slot, tensor) in &self.bound {
            env[*slot] = Some(Value::Tensor(tensor.shallow_clone()));
        }
        for (slot, input) in self.input_slots.iter().zip(inputs) {
            env[*slot] = Some(Value::Tensor(input.shallow_clone()));
        }
        let mut kept: HashMap<usize, Option<Tensor>> = HashMap::new();
        for (slot, input) in self.input_slots.iter().zip(inputs) {
            if keep[*slot] {
                kept.insert(*slot, Some(input.shallow_clone()));
            }
        }
        for (index, node) in self.nodes.iter().enumerate() {
            if needed.is_some_and(|needed| !needed[index]) {
                continue;
            }
            // An in-place operator overwrites its input only when nothing else needs the
            // value: no later node reads it (it is freed after this one) and no caller
            // keeps or observes it (a tap).
            let inplace = node.inplace.as_ref().filter(|inplace| {
                let slot = inplace.mutated_slot;
                !keep[slot] && !observe.as_ref().is_some_and(|(observed, _)| observed[slot]) && self.frees_after[index].contains(&slot)
            });
            let results = match inplace {
                Some(inplace) => self.call_operator(node, &inplace.operator, &inplace.args, &env)?,
                None => self.call_node(node, &env)?,
            };
            for (binding, result) in node.outputs.iter().zip(results) {
                match (binding, result) {
                    (compile::Output::Slot(slot), value) => {
                        // The replaced value takes the computed one's place for every later node.
                        let value = match replace {
                            Some((replaced, tensor)) if replaced == *slot => Value::Tensor(tensor.shallow_clone()),
                            _ => value,
                        };
                        if keep[*slot] {
                            kept.insert(*slot, if let Value::Tensor(tensor) = &value { Some(tensor.shallow_clone()) } else { None });
                        }
                        if let (Some((observed, visit)), Value::Tensor(tensor)) = (observe.as_mut(), &value) {
                            if observed[*slot] {
                                visit(*slot, tensor);
                            }
                        }
                        env[*slot] = Some(value);
                    }
                    (compile::Output::List(slots), Value::Tensors(tensors)) => {
                        for (slot, tensor) in slots.iter().zip(tensors) {
                            if let Some(slot) = slot {
                                if keep[*slot] {
                                    kept.insert(*slot, Some(tensor.shallow_clone()));
                                }
                                if let Some((observed, visit)) = observe.as_mut() {
                                    if observed[*slot] {
                                        visit(*slot, &tensor);
                                    }
                                }
                                env[*slot] = Some(Value::Tensor(tensor));
                            }
                        }
                    }
                    (compile::Output::List(_), _) => {
                        return Err(Error::internal(format!("{} did not return a list of tensors", node.target)));
                    }
                    (compile::Output::Ignored, _) => {}
                }
            }
            for &slot in &self.frees_after[index] {
                env[slot] = None;
            }
        }
        for &slot in &self.output_slots {
            if keep[slot] && !kept.contains_key(&slot) {
                // An output that is an input or a bound tensor.
                kept.insert(
                    slot,
                    env[slot].as_ref().and_then(|value| if let Value::Tensor(tensor) = value { Some(tensor.shallow_clone()) } else { None }),
                );
            }
        }
        Ok(kept)
    }

    fn call_node(&self, node: &Node, env: &[Option<Value>]) -> Result<Vec<Value>> {
        let read = |slot: usize| -> Result<&Value> {
            env[slot].as_ref().ok_or_else(|| Error::internal(format!("{}: an argument was freed or never produced", node.target)))
        };
        match &node.callee {
            Callee::Python(op) => {
                let numbers: Vec<Number> = node
                    .args
                    .iter()
                    .map(|arg| match arg {
                        Arg::Int(value) => Ok(Number::Int(*value)),
                        Arg::Float(value) => Ok(Number::Float(*value)),
                        Arg::Bool(value) => Ok(Number::Int(i64::from(*value))),
                        Arg::Slot(slot) => match read(*slot)? {
                            Value::Int(value) => Ok(Number::Int(*value)),
                            Value::Float(value) => Ok(Number::Float(*value)),
                            Value::Bool(value) => Ok(Number::Int(i64::from(*value))),
                            _ => Err(Error::internal(format!("{}: argument is not a number", node.target))),
                        },
                        _ => Err(Error::internal(format!("{}: unexpected argument", node.target))),
                    })
                    .collect::<Result<_>>()?;
                Ok(vec![op.apply(&numbers).map_err(|message| Error::bad_input(format!("{}: {message}", node.target)))?])
            }
            Callee::Operator(operator) => self.call_operator(node, operator, &node.args, env),
        }
    }

    /// Calls `operator` with `args` (slots read from `env`), boxed through the dispatcher.
    fn call_operator(&self, node: &Node, operator: &ffi::Operator, args: &[Arg], env: &[Option<Value>]) -> Result<Vec<Value>> {
        let read = |slot: usize| -> Result<&Value> {
            env[slot].as_ref().ok_or_else(|| Error::internal(format!("{}: an argument was freed or never produced", node.target)))
        };
        // Buffers the argument pointers refer to live until the call returns.
        let mut int_buffers: Vec<Vec<i64>> = Vec::new();
        let mut pointer_buffers: Vec<Vec<*mut torch_sys::C_tensor>> = Vec::new();
        for arg in args {
            match arg {
                Arg::Ints(items) => int_buffers.push(
                    items
                        .iter()
                        .map(|item| match item {
                            IntItem::Const(value) => Ok(*value),
                            IntItem::Slot(slot) => match read(*slot)? {
                                Value::Int(value) => Ok(*value),
                                _ => Err(Error::internal(format!("{}: a size is not an integer", node.target))),
                            },
                        })
                        .collect::<Result<_>>()?,
                ),
                Arg::Tensors(slots) => pointer_buffers.push(
                    slots
                        .iter()
                        .map(|slot| match read(*slot)? {
                            Value::Tensor(tensor) => Ok(tensor.as_ptr() as *mut _),
                            _ => Err(Error::internal(format!("{}: a list item is not a tensor", node.target))),
                        })
                        .collect::<Result<_>>()?,
                ),
                Arg::OptionalTensors(slots) => pointer_buffers.push(
                    slots
                        .iter()
                        .map(|slot| match slot {
                            None => Ok(std::ptr::null_mut()),
                            Some(slot) => match read(*slot)? {
                                Value::Tensor(tensor) => Ok(tensor.as_ptr() as *mut _),
                                _ => Ok(std::ptr::null_mut()),
                            },
                        })
                        .collect::<Result<_>>()?,
                ),
                _ => {}
            }
        }
        let (mut next_ints, mut next_pointers) = (0, 0);
        let mut op_args: Vec<OpArg> = Vec::with_capacity(args.len());
        for arg in args {
            let op_arg = match arg {
                Arg::Default => OpArg::new(arg_kind::DEFAULT),
                Arg::None => OpArg::new(arg_kind::NONE),
                Arg::Slot(slot) => match read(*slot)? {
                    Value::None => OpArg::new(arg_kind::NONE),
                    Value::Tensor(tensor) => OpArg { tensor: tensor.as_ptr() as *mut _, ..OpArg::new(arg_kind::TENSOR) },
                    Value::Int(value) => OpArg { int_value: *value, ..OpArg::new(arg_kind::INT) },
                    Value::Float(value) => OpArg { float_value: *value, ..OpArg::new(arg_kind::FLOAT) },
                    Value::Bool(value) => OpArg { int_value: i64::from(*value), ..OpArg::new(arg_kind::BOOL) },
                    Value::Tensors(_) => return Err(Error::internal(format!("{}: a tensor list passed as one value", node.target))),
                },
                Arg::Int(value) => OpArg { int_value: *value, ..OpArg::new(arg_kind::INT) },
                Arg::Float(value) => OpArg { float_value: *value, ..OpArg::new(arg_kind::FLOAT) },
                Arg::Bool(value) => OpArg { int_value: i64::from(*value), ..OpArg::new(arg_kind::BOOL) },
                Arg::Ints(_) => {
                    let buffer = &int_buffers[next_ints];
                    next_ints += 1;
                    OpArg { ints: buffer.as_ptr(), len: buffer.len(), ..OpArg::new(arg_kind::INTS) }
                }
                Arg::Floats(values) => OpArg { floats: values.as_ptr(), len: values.len(), ..OpArg::new(arg_kind::FLOATS) },
                Arg::Bools(values) => OpArg { ints: values.as_ptr(), len: values.len(), ..OpArg::new(arg_kind::BOOLS) },
                Arg::Tensors(_) | Arg::OptionalTensors(_) => {
                    let buffer = &pointer_buffers[next_pointers];
                    next_pointers += 1;
                    let kind = if matches!(arg, Arg::Tensors(_)) { arg_kind::TENSORS } else { arg_kind::OPTIONAL_TENSORS };
                    OpArg { tensors: buffer.as_ptr(), len: buffer.len(), ..OpArg::new(kind) }
                }
                Arg::String(text) => OpArg { text: text.as_ptr(), ..OpArg::new(arg_kind::STRING) },
                Arg::ScalarType(code) => OpArg { int_value: *code, ..OpArg::new(arg_kind::SCALAR_TYPE) },
                Arg::Layout(code) => OpArg { int_value: *code, ..OpArg::new(arg_kind::LAYOUT) },
                Arg::MemoryFormat(code) => OpArg { int_value: *code, ..OpArg::new(arg_kind::MEMORY_FORMAT) },
                Arg::Device(text) => OpArg { text: text.as_ptr(), ..OpArg::new(arg_kind::DEVICE) },
            };
            op_args.push(op_arg);
        }
        let results = operator.call(&op_args).map_err(|reason| {
            let kind = if crate::error::is_out_of_memory(&reason) { ErrorKind::OutOfMemory } else { ErrorKind::BadInput };
            let site = if node.module_path.is_empty() { String::new() } else { format!(" in {}", node.module_path) };
            Error::new(kind, format!("{}{site}: {reason}", node.target))
        })?;
        Ok(results
            .into_iter()
            .map(|result| match result {
                OpValue::None | OpValue::Other => Value::None,
                OpValue::Tensor(tensor) => Value::Tensor(tensor),
                OpValue::Int(value) => Value::Int(value),
                OpValue::Float(value) => Value::Float(value),
                OpValue::Bool(value) => Value::Bool(value),
                OpValue::Tensors(tensors) => Value::Tensors(tensors),
            })
            .collect())
    }

    /// Total bytes of the bound parameters, buffers and constants.
    pub fn resident_bytes(&self) -> u64 {
        self.bound.iter().map(|(_, tensor)| tensor.numel() as u64 * tensor.kind().elt_size_in_bytes() as u64).sum()
    }

    pub fn output_count(&self) -> usize {
        self.output_slots.len()
    }
}

fn single_output(mut values: Vec<Option<Tensor>>, count: usize) -> Result<Tensor> {
    if count != 1 {
        return Err(Error::bad_input(format!("the program returns {count} outputs; this explanation needs a single tensor output")));
    }
    values.pop().flatten().ok_or_else(|| Error::bad_input("the program's output is not a tensor; this explanation needs a single tensor output"))
}

/// Loads a shared library of custom operators (`TORCH_LIBRARY` registrations run as it
/// loads), for exported programs that call them. The library stays loaded for the life
/// of the process: its operators are registered globally.
pub fn load_op_library(path: &Path) -> Result<()> {
    // SAFETY: loading a library runs its initialisers; the daemon's operator names the
    // file on purpose, as with torch.ops.load_library in Python.
    let library = unsafe { libloading::os::unix::Library::open(Some(path), libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL) }
        .map_err(|error| Error::bad_input(format!("cannot load the operator library {}: {error}", path.display())))?;
    std::mem::forget(library);
    Ok(())
}

/// The module tree of an archive, without placing its weights anywhere.
pub fn module_tree(path: &Path) -> Result<Vec<ModuleInfo>> {
    let archive = archive::Archive::read(path)?;
    let compiled = compile::compile(&archive, Device::Cpu)?;
    Ok(module_calls::describe(&compiled, &archive).modules)
}

/// A Python number a symbolic-size computation works on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl PythonOp {
    fn apply(&self, args: &[Number]) -> std::result::Result<Value, String> {
        let int = |index: usize| match args.get(index) {
            Some(Number::Int(value)) => Ok(*value),
            Some(Number::Float(value)) => Ok(*value as i64),
            None => Err("missing argument".to_string()),
        };
        let float = |index: usize| match args.get(index) {
            Some(Number::Int(value)) => Ok(*value as f64),
            Some(Number::Float(value)) => Ok(*value),
            None => Err("missing argument".to_string()),
        };
        let all_int = args.iter().all(|arg| matches!(arg, Number::Int(_)));
        let both = |int_op: fn(i64, i64) -> Option<i64>, float_op: fn(f64, f64) -> f64| -> std::result::Result<Value, String> {
            if all_int {
                int_op(int(0)?, int(1)?).map(Value::Int).ok_or_else(|| "integer overflow or division by zero".to_string())
            } else {
                Ok(Value::Float(float_op(float(0)?, float(1)?)))
            }
        };
        match self {
            PythonOp::Add => both(i64::checked_add, |a, b| a + b),
            PythonOp::Sub => both(i64::checked_sub, |a, b| a - b),
            PythonOp::Mul => both(i64::checked_mul, |a, b| a * b),
            PythonOp::FloorDiv => both(python_floor_div, |a, b| (a / b).floor()),
            PythonOp::Mod => both(python_mod, |a, b| a - b * (a / b).floor()),
            PythonOp::TrueDiv => Ok(Value::Float(float(0)? / float(1)?)),
            PythonOp::Neg => Ok(if all_int { Value::Int(-int(0)?) } else { Value::Float(-float(0)?) }),
            PythonOp::Max => both(|a, b| Some(a.max(b)), f64::max),
            PythonOp::Min => both(|a, b| Some(a.min(b)), f64::min),
            PythonOp::Eq => Ok(Value::Bool(float(0)? == float(1)?)),
            PythonOp::Ne => Ok(Value::Bool(float(0)? != float(1)?)),
            PythonOp::Lt => Ok(Value::Bool(float(0)? < float(1)?)),
            PythonOp::Le => Ok(Value::Bool(float(0)? <= float(1)?)),
            PythonOp::Gt => Ok(Value::Bool(float(0)? > float(1)?)),
            PythonOp::Ge => Ok(Value::Bool(float(0)? >= float(1)?)),
            PythonOp::Ceil => Ok(Value::Int(float(0)?.ceil() as i64)),
            PythonOp::Floor => Ok(Value::Int(float(0)?.floor() as i64)),
            PythonOp::Not => Ok(Value::Bool(int(0)? == 0)),
        }
    }
}

/// Python's `a // b` on integers (rounds towards negative infinity).
fn python_floor_div(a: i64, b: i64) -> Option<i64> {
    let quotient = a.checked_div(b)?;
    Some(if a % b != 0 && ((a < 0) != (b < 0)) { quotient - 1 } else { quotient })
}

/// Python's `a % b` on integers (the sign of the divisor).
fn python_mod(a: i64, b: i64) -> Option<i64> {
    let remainder = a.checked_rem(b)?;
    Some(if remainder != 0 && ((remainder < 0) != (b < 0)) { remainder + b } else { remainder })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_integer_division() {
        let cases = [(7, 2, 3, 1), (-7, 2, -4, 1), (7, -2, -4, -1), (-7, -2, 3, -1), (6, 3, 2, 0)];
        for (a, b, quotient, remainder) in cases {
            assert_eq!(python_floor_div(a, b), Some(quotient), "{a} // {b}");
            assert_eq!(python_mod(a, b), Some(remainder), "{a} % {b}");
        }
        assert_eq!(python_floor_div(1, 0), None);
    }
}
