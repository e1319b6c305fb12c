//! Taps: the model's forward rewritten (by the C++ shim) to also return the output of
//! every module instance, on the autograd path. Layer attributions read and
//! differentiate these outputs; chunk sizing reads their sizes.

use crate::device::Device;
use crate::error::{Error, ErrorKind, Result};
use crate::exported::ExportedProgram;
use crate::model::NamedTensors;
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn layerlens_tapped_load(path: *const c_char, device_type: c_int, device_index: c_int, out_error: *mut *mut c_char) -> *mut c_void;
    fn layerlens_tapped_free(handle: *mut c_void);
    fn layerlens_tapped_count(handle: *mut c_void) -> c_int;
    fn layerlens_tapped_path(handle: *mut c_void, index: c_int) -> *const c_char;
    fn layerlens_tapped_call(handle: *mut c_void, index: c_int) -> c_int;
    fn layerlens_tapped_value_count(handle: *mut c_void) -> c_int;
    fn layerlens_tapped_graph_json(handle: *mut c_void) -> *const c_char;
    fn layerlens_tapped_forward(
        handle: *mut c_void,
        all_values: c_int,
        inputs: *const *mut C_tensor,
        n_inputs: c_int,
        out_output: *mut *mut C_tensor,
        out_taps: *mut *mut C_tensor,
        out_error: *mut *mut c_char,
    ) -> c_int;
    fn layerlens_tapped_first(handle: *mut c_void, index: c_int) -> c_int;
    fn layerlens_tapped_observe(
        handle: *mut c_void,
        inputs: *const *mut C_tensor,
        n_inputs: c_int,
        callback: extern "C" fn(*mut c_void, *mut C_tensor, i64),
        user: *mut c_void,
        out_output: *mut *mut C_tensor,
        out_error: *mut *mut c_char,
    ) -> c_int;
    fn layerlens_tapped_forward_selected(
        handle: *mut c_void,
        inputs: *const *mut C_tensor,
        n_inputs: c_int,
        selection: *const c_int,
        n_selected: c_int,
        out_values: *mut *mut C_tensor,
        out_error: *mut *mut c_char,
    ) -> c_int;
    fn layerlens_free_string(text: *mut c_char);
    fn layerlens_tapped_state(
        handle: *mut c_void,
        callback: extern "C" fn(*mut c_void, *const c_char, *mut C_tensor, c_int),
        user: *mut c_void,
        out_error: *mut *mut c_char,
    ) -> c_int;
}

/// What a pruned forward pass returns: the model output or one tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selected {
    Output,
    Tap(usize),
}

/// What `forward_observe`'s callback reaches through its `user` pointer.
struct Observer<'a> {
    visit: &'a mut dyn FnMut(usize, Tensor),
    panicked: bool,
}

extern "C" fn observe_trampoline(user: *mut c_void, tensor: *mut C_tensor, index: i64) {
    // SAFETY: `user` is the &mut Observer that `TappedModel::observe` passed down for
    // the duration of the call; `tensor` is a new at::Tensor* we own.
    let observer = unsafe { &mut *(user as *mut Observer) };
    let tensor = unsafe { Tensor::from_ptr(tensor) };
    // A panic must not unwind into C++.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (observer.visit)(index as usize, tensor))).is_err() {
        observer.panicked = true;
    }
}

/// A second copy of the model, loaded by the shim, with the `forward_taps` and
/// `forward_all` methods and a description of its inlined forward graph.
pub struct TappedModel {
    backend: Backend,
    /// Module path of each tap (one per module call), in the order the calls begin.
    pub tap_paths: Vec<String>,
    /// The module call (an index into `graph.calls`) of each tap.
    pub tap_calls: Vec<usize>,
    /// Per tap: the first tap with the same tensor value (itself when none comes
    /// earlier); `observe` reports each value once, under that index.
    pub tap_first: Vec<usize>,
    pub graph: ForwardGraph,
}

/// What runs the taps: the shim's rewritten TorchScript copy, or the executor of an
/// exported program (whose every value can be a tap without rewriting).
enum Backend {
    Script(*mut c_void),
    Exported { program: Arc<ExportedProgram>, pruned: Mutex<HashMap<Vec<usize>, Arc<Vec<bool>>>> },
}

/// The inlined forward graph as the shim describes it. Value ids are the graph's own.
#[derive(Debug, Clone, Deserialize)]
pub struct ForwardGraph {
    /// Tensor inputs of forward (after `self`).
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub nodes: Vec<GraphNode>,
    pub calls: Vec<ModuleCall>,
    /// Every tensor value nodes produce, in the order `forward_all` returns them.
    pub tensor_values: Vec<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphNode {
    /// `aten::conv2d`, `prim::TupleConstruct`, ...
    pub kind: String,
    /// The innermost module call the node belongs to; -1 for the root forward.
    pub call: i64,
    /// `file:line` of the original Python source, or "".
    pub source: String,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// One call of a module instance.
#[derive(Debug, Clone, Deserialize)]
pub struct ModuleCall {
    pub id: usize,
    /// The enclosing call; -1 for calls made by the root forward.
    pub parent: i64,
    pub path: String,
    /// TorchScript's qualified class name.
    #[serde(rename = "type")]
    pub qualified_type: String,
    /// `file:line` of the call in the parent's forward (`x = self.conv1(x)`), or "".
    pub site: String,
    /// 0 for the first call of this path, 1 for the second, ...
    pub index: usize,
    /// The call sits in a data-dependent branch (its outputs are None when the branch
    /// is not taken).
    #[serde(default)]
    pub in_branch: bool,
    /// Tensor values used inside the call and produced outside it, and the reverse.
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

// SAFETY: the handle owns a torch::jit::Module, which libtorch allows to move between
// threads; the engine uses it from one worker thread at a time.
unsafe impl Send for TappedModel {}

impl Drop for TappedModel {
    fn drop(&mut self) {
        if let Backend::Script(handle) = self.backend {
            // SAFETY: the handle came from layerlens_tapped_load and is freed once.
            unsafe { layerlens_tapped_free(handle) };
        }
    }
}

pub(crate) fn take_error(error: *mut c_char) -> String {
    if error.is_null() {
        return "unknown error in the C++ shim".to_string();
    }
    // SAFETY: the shim hands out malloc'd, NUL-terminated strings.
    let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { layerlens_free_string(error) };
    crate::error::torch_reason(&text)
}

impl TappedModel {
    pub fn load(path: &Path, device: Device) -> Result<TappedModel> {
        let path_text = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::bad_input(format!("model path {} contains a NUL byte", path.display())))?;
        let (device_type, device_index) = match device {
            Device::Cpu => (0, 0),
            Device::Cuda(index) => (1, index as c_int),
        };
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: arguments are valid for the call; the shim catches all exceptions.
        let handle = unsafe { layerlens_tapped_load(path_text.as_ptr(), device_type, device_index, &mut error) };
        if handle.is_null() {
            return Err(Error::bad_input(format!("this model's forward graph cannot be tapped for per-layer outputs: {}", take_error(error))));
        }
        let count = unsafe { layerlens_tapped_count(handle) };
        let tap_paths =
            (0..count).map(|index| unsafe { CStr::from_ptr(layerlens_tapped_path(handle, index)) }.to_string_lossy().into_owned()).collect();
        let tap_calls = (0..count).map(|index| unsafe { layerlens_tapped_call(handle, index) } as usize).collect();
        // SAFETY: the handle owns the JSON text for its lifetime.
        let json = unsafe { CStr::from_ptr(layerlens_tapped_graph_json(handle)) }.to_string_lossy();
        let graph: ForwardGraph = match serde_json::from_str(&json) {
            Ok(graph) => graph,
            Err(error) => {
                unsafe { layerlens_tapped_free(handle) };
                return Err(Error::internal(format!("the shim's graph description is not valid JSON: {error}")));
            }
        };
        debug_assert_eq!(graph.tensor_values.len(), unsafe { layerlens_tapped_value_count(handle) } as usize);
        let tap_first = (0..count).map(|index| unsafe { layerlens_tapped_first(handle, index) } as usize).collect();
        let mut tapped = TappedModel { backend: Backend::Script(handle), tap_paths, tap_calls, tap_first, graph };
        if let Ok(tree) = crate::structure::module_tree(path) {
            tapped.resolve_paths(&tree);
        }
        Ok(tapped)
    }

    /// The taps of an exported program: every module call's output is a value the
    /// executor can keep, so nothing is rewritten.
    pub fn from_exported(program: Arc<ExportedProgram>) -> TappedModel {
        TappedModel {
            tap_paths: program.tap_paths.clone(),
            tap_calls: program.tap_calls.clone(),
            tap_first: program.tap_first.clone(),
            graph: program.graph.clone(),
            backend: Backend::Exported { program, pruned: Mutex::new(HashMap::new()) },
        }
    }

    /// A call stack names a module by its last attribute only: a block reached through
    /// a container that is never called itself (`self.layers[0]`, a ModuleList) shows
    /// as `0`. Rebuild each call's full path from the module tree: the parent's path
    /// plus the name, or else the shallowest module below the parent with that name and
    /// the call's type.
    fn resolve_paths(&mut self, tree: &[crate::structure::ModuleInfo]) {
        let mut resolved: Vec<String> = Vec::with_capacity(self.graph.calls.len());
        for call in &self.graph.calls {
            let name = call.path.rsplit('.').next().unwrap_or(&call.path).to_string();
            let parent = if call.parent >= 0 { resolved[call.parent as usize].clone() } else { String::new() };
            let direct = if parent.is_empty() { name.clone() } else { format!("{parent}.{name}") };
            let path = if tree.iter().any(|module| module.path == direct) {
                direct
            } else {
                let prefix = if parent.is_empty() { String::new() } else { format!("{parent}.") };
                let suffix = format!(".{name}");
                tree.iter()
                    .filter(|module| {
                        module.path.starts_with(&prefix) && module.path.ends_with(&suffix) && module.qualified_type == call.qualified_type
                    })
                    .min_by_key(|module| module.path.split('.').count())
                    .map(|module| module.path.clone())
                    .unwrap_or(direct)
            };
            resolved.push(path);
        }
        for (call, path) in self.graph.calls.iter_mut().zip(&resolved) {
            call.path = path.clone();
        }
        // Recount calls per path now that paths are whole.
        let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for call in &mut self.graph.calls {
            let count = counts.entry(call.path.clone()).or_insert(0);
            call.index = *count;
            *count += 1;
        }
        for (tap_path, call) in self.tap_paths.iter_mut().zip(&self.tap_calls) {
            *tap_path = resolved[*call].clone();
        }
    }

    /// Runs `forward_taps`: the model output and every tap (`None` where a layer's
    /// output is not a tensor). Fails when the model's output is not one tensor.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let (output, taps) = self.run(inputs, false)?;
        let output =
            output.ok_or_else(|| Error::bad_input("the model returns a tuple, list or dict; this explanation needs a single tensor output"))?;
        Ok((output, taps))
    }

    /// Runs `forward_taps` for the taps alone (the model may return a tuple or dict).
    pub fn taps(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        Ok(self.run(inputs, false)?.1)
    }

    /// Runs `forward_all`: the model output (`None` unless it is one tensor) and every
    /// tensor value of the graph, in the order of `graph.tensor_values`.
    pub fn forward_all(&self, inputs: &[Tensor]) -> Result<(Option<Tensor>, Vec<Option<Tensor>>)> {
        self.run(inputs, true)
    }

    /// Runs `forward_observe`: `visit(tap index, tensor)` is called for each distinct
    /// tapped tensor as soon as the forward pass produces it (see `tap_first` for taps
    /// that share a value), and the tensor is freed once the model and `visit` are done
    /// with it. Returns the output when it is one tensor.
    pub fn observe(&self, inputs: &[Tensor], visit: &mut dyn FnMut(usize, Tensor)) -> Result<Option<Tensor>> {
        let handle = match &self.backend {
            Backend::Script(handle) => *handle,
            Backend::Exported { program, .. } => {
                let slots: Vec<usize> =
                    program.tap_slots.iter().enumerate().filter(|(index, _)| self.tap_first[*index] == *index).map(|(_, slot)| *slot).collect();
                let tap_of: HashMap<usize, usize> = program.tap_slots.iter().enumerate().rev().map(|(index, slot)| (*slot, index)).collect();
                let mut panicked = false;
                let output = program.observe(inputs, &slots, &mut |slot, tensor| {
                    let index = tap_of[&slot];
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| visit(index, tensor.shallow_clone()))).is_err() {
                        panicked = true;
                    }
                })?;
                if panicked {
                    return Err(Error::new(ErrorKind::Internal, "a layer statistic panicked during the forward pass"));
                }
                return Ok(output);
            }
        };
        let pointers: Vec<*mut C_tensor> = inputs.iter().map(|input| input.as_ptr() as *mut C_tensor).collect();
        let mut observer = Observer { visit, panicked: false };
        let mut output: *mut C_tensor = std::ptr::null_mut();
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `run`; `observer` outlives the call, which is synchronous.
        let status = unsafe {
            layerlens_tapped_observe(
                handle,
                pointers.as_ptr(),
                inputs.len() as c_int,
                observe_trampoline,
                &mut observer as *mut Observer as *mut c_void,
                &mut output,
                &mut error,
            )
        };
        if status != 0 {
            return Err(self.forward_error(inputs, take_error(error)));
        }
        if observer.panicked {
            return Err(Error::new(ErrorKind::Internal, "a layer statistic panicked during the forward pass"));
        }
        Ok((!output.is_null()).then(|| unsafe { Tensor::from_ptr(output) }))
    }

    /// Runs a copy of the forward pass pruned to what `selection` needs (a channel
    /// objective at layer3 of a ResNet skips layer4 and the head), on the autograd
    /// path; one value per selected entry (`None` where it is not a tensor). Each
    /// selection's copy is built on first use and kept.
    pub fn forward_selected(&self, inputs: &[Tensor], selection: &[Selected]) -> Result<Vec<Option<Tensor>>> {
        let handle = match &self.backend {
            Backend::Script(handle) => *handle,
            Backend::Exported { program, pruned } => {
                let slots: Vec<usize> = selection
                    .iter()
                    .map(|selected| match selected {
                        Selected::Output => self.graph.outputs.first().copied().unwrap_or(0),
                        Selected::Tap(index) => program.tap_slots[*index],
                    })
                    .collect();
                let needed = {
                    let mut pruned = pruned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    pruned.entry(slots.clone()).or_insert_with(|| Arc::new(program.needed_nodes(&slots))).clone()
                };
                return program.run_slots(inputs, &slots, Some(&needed));
            }
        };
        let pointers: Vec<*mut C_tensor> = inputs.iter().map(|input| input.as_ptr() as *mut C_tensor).collect();
        let indices: Vec<c_int> = selection
            .iter()
            .map(|selected| match selected {
                Selected::Output => -1,
                Selected::Tap(index) => *index as c_int,
            })
            .collect();
        let mut values: Vec<*mut C_tensor> = vec![std::ptr::null_mut(); selection.len()];
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `run`; `values` has one slot per selected entry.
        let status = unsafe {
            layerlens_tapped_forward_selected(
                handle,
                pointers.as_ptr(),
                inputs.len() as c_int,
                indices.as_ptr(),
                indices.len() as c_int,
                values.as_mut_ptr(),
                &mut error,
            )
        };
        if status != 0 {
            return Err(self.forward_error(inputs, take_error(error)));
        }
        Ok(values.into_iter().map(|value| (!value.is_null()).then(|| unsafe { Tensor::from_ptr(value) })).collect())
    }

    fn forward_error(&self, inputs: &[Tensor], reason: String) -> Error {
        // One classification for every pass: a CPU allocator failure in a tapped pass
        // (Grad-CAM) is out of memory too, so `in_chunks` retries it in halves.
        let kind = if crate::error::is_out_of_memory(&reason) { ErrorKind::OutOfMemory } else { ErrorKind::BadInput };
        let shapes: Vec<String> = inputs.iter().map(|input| format!("{:?}", input.size())).collect();
        Error::new(kind, format!("the model rejected an input of shape {}: {reason}", shapes.join(", ")))
    }

    fn run(&self, inputs: &[Tensor], all_values: bool) -> Result<(Option<Tensor>, Vec<Option<Tensor>>)> {
        let handle = match &self.backend {
            Backend::Script(handle) => *handle,
            Backend::Exported { program, .. } => {
                let slots = if all_values { &self.graph.tensor_values } else { &program.tap_slots };
                let mut wanted: Vec<usize> = self.graph.outputs.clone();
                wanted.extend(slots);
                let mut values = program.run_slots(inputs, &wanted, None)?;
                let values_after = values.split_off(self.graph.outputs.len());
                let output = if values.len() == 1 { values.pop().flatten() } else { None };
                return Ok((output, values_after));
            }
        };
        let pointers: Vec<*mut C_tensor> = inputs.iter().map(|input| input.as_ptr() as *mut C_tensor).collect();
        let mut output: *mut C_tensor = std::ptr::null_mut();
        let count = if all_values { self.graph.tensor_values.len() } else { self.tap_paths.len() };
        let mut taps: Vec<*mut C_tensor> = vec![std::ptr::null_mut(); count];
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the input pointers are live tch tensors (at::Tensor*); the shim fills
        // `output` and `taps` with new at::Tensor* that we own from here on.
        let status = unsafe {
            layerlens_tapped_forward(
                handle,
                c_int::from(all_values),
                pointers.as_ptr(),
                inputs.len() as c_int,
                &mut output,
                taps.as_mut_ptr(),
                &mut error,
            )
        };
        if status != 0 {
            return Err(self.forward_error(inputs, take_error(error)));
        }
        let output = (!output.is_null()).then(|| unsafe { Tensor::from_ptr(output) });
        let taps = taps.into_iter().map(|tap| (!tap.is_null()).then(|| unsafe { Tensor::from_ptr(tap) })).collect();
        Ok((output, taps))
    }

    /// The model's output when tap `index` (a layer's output) is replaced by `value`,
    /// which later layers then read (layer integrated gradients). Exported programs only:
    /// the TorchScript taps are outputs of a rewritten graph, not inputs to it.
    pub fn forward_replacing(&self, inputs: &[Tensor], index: usize, value: &Tensor) -> Result<Tensor> {
        match &self.backend {
            Backend::Exported { program, .. } => program.forward_replacing(inputs, program.tap_slots[index], value),
            Backend::Script(_) => Err(Error::bad_input(
                "replacing a layer's output (layer integrated gradients over tokens) needs a torch.export archive (.pt2); this model is TorchScript",
            )),
        }
    }

    /// Every parameter and every buffer of the model this tapped copy runs, by dotted
    /// name, as tensors sharing its storage (see `LoadedModel::state_tensors`).
    pub fn state_tensors(&self) -> Result<(NamedTensors, NamedTensors)> {
        match &self.backend {
            Backend::Exported { program, .. } => Ok((
                program.parameters.iter().map(|(name, tensor)| (name.clone(), tensor.shallow_clone())).collect(),
                program.buffers.iter().map(|(name, tensor)| (name.clone(), tensor.shallow_clone())).collect(),
            )),
            Backend::Script(handle) => {
                extern "C" fn collect(user: *mut c_void, name: *const c_char, tensor: *mut C_tensor, is_buffer: c_int) {
                    // SAFETY: `user` is the `State` below, alive for the call; the shim hands
                    // a valid NUL-terminated name and a new tensor we own.
                    let state = unsafe { &mut *(user as *mut (NamedTensors, NamedTensors)) };
                    let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
                    let tensor = unsafe { Tensor::from_ptr(tensor) };
                    if is_buffer != 0 {
                        state.1.push((name, tensor))
                    } else {
                        state.0.push((name, tensor))
                    }
                }
                let mut state: (NamedTensors, NamedTensors) = (Vec::new(), Vec::new());
                let mut error: *mut c_char = std::ptr::null_mut();
                // SAFETY: the handle is live; `collect` only touches `state` during the call.
                let status = unsafe { layerlens_tapped_state(*handle, collect, &mut state as *mut _ as *mut c_void, &mut error) };
                if status != 0 {
                    return Err(Error::internal(format!("reading the model's parameters and buffers: {}", take_error(error))));
                }
                Ok(state)
            }
        }
    }

    /// Index of the tap for a module path (its last call, as Captum's hooks keep the
    /// last output); unknown paths get close matches.
    pub fn tap_index(&self, layer_path: &str) -> Result<usize> {
        if let Some(index) = self.tap_paths.iter().rposition(|path| path == layer_path) {
            return Ok(index);
        }
        let mut close: Vec<&String> = self
            .tap_paths
            .iter()
            .filter(|path| path.contains(layer_path) || layer_path.contains(path.as_str()) || edit_distance(path, layer_path) <= 3)
            .collect();
        close.truncate(8);
        let hint = if close.is_empty() {
            let mut first: Vec<&String> = self.tap_paths.iter().take(8).collect();
            first.sort();
            format!("layers include: {}", first.iter().map(|path| path.as_str()).collect::<Vec<_>>().join(", "))
        } else {
            format!("did you mean: {}", close.iter().map(|path| path.as_str()).collect::<Vec<_>>().join(", "))
        };
        Err(Error::not_found(format!("layer '{layer_path}' not found in the model; {hint}")))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
