//! A model loaded on one device, whatever its kind (TorchScript, or an exported
//! `.pt2` program run by the executor in exported/), and the checks every request's
//! input goes through before it reaches libtorch. Every feature works through
//! `LoadedModel` and its `TappedModel`, never on a kind directly.

use crate::device::Device;
use crate::error::{Error, ErrorKind, Result};
use crate::exported::ExportedProgram;
use crate::host_tensor::HostTensor;
use crate::taps::TappedModel;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A module's path and its own parameters by short name: `("features.0", [("weight", t)])`.
pub type ParameterGroup = (String, Vec<(String, tch::Tensor)>);

/// How a model file is stored and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    TorchScript,
    /// A `torch.export` archive (`.pt2`).
    Exported,
}

impl ModelKind {
    /// The kind of a model file: a zip with `<root>/archive_format` is an exported
    /// program, anything else is treated as TorchScript.
    pub fn of_file(path: &Path) -> ModelKind {
        if crate::exported::is_exported_archive(path) {
            ModelKind::Exported
        } else {
            ModelKind::TorchScript
        }
    }

    /// The name clients see: "torchscript" or "exported".
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::TorchScript => "torchscript",
            ModelKind::Exported => "exported",
        }
    }
}

enum Backend {
    Script(tch::CModule),
    Exported(Arc<ExportedProgram>),
}

/// Tensors by fully qualified name (`layer1.0.conv1.weight`).
pub type NamedTensors = Vec<(String, tch::Tensor)>;

/// A model resident on a device, in eval mode.
pub struct LoadedModel {
    backend: Backend,
    pub device: Device,
    /// Shape of one example input when the model was stored with one, e.g. `[1, 1, 8, 8]`;
    /// the batch dimension is not checked.
    pub input_shape: Option<Vec<i64>>,
    path: PathBuf,
    /// The tapped copy, loaded on first need (layer methods, chunk sizing).
    tapped: OnceCell<Result<TappedModel>>,
    /// Measured bytes per row by input row shapes.
    bytes_per_row: RefCell<HashMap<Vec<Vec<i64>>, u64>>,
}

/// Loads a model file of either kind on `device`.
pub fn load(path: &Path, device: Device, input_shape: Option<Vec<i64>>) -> Result<LoadedModel> {
    match ModelKind::of_file(path) {
        ModelKind::TorchScript => load_torchscript(path, device, input_shape),
        ModelKind::Exported => {
            let program = Arc::new(ExportedProgram::load(path, device)?);
            Ok(LoadedModel {
                backend: Backend::Exported(program),
                device,
                input_shape,
                path: path.to_path_buf(),
                tapped: OnceCell::new(),
                bytes_per_row: RefCell::new(HashMap::new()),
            })
        }
    }
}

/// Checks that a file loads as a model (on the CPU), so the store only ever accepts
/// loadable models. Returns the example input shape an exported program records
/// (its first input; a dynamic size at the example's value). Runs on a thread of its
/// own, so the caller's thread keeps no OpenMP pool (threads.rs).
pub fn validate(path: &Path) -> Result<Option<Vec<i64>>> {
    crate::threads::apart("validate", || {
        let model = load(path, Device::Cpu, None)?;
        Ok(match &model.backend {
            Backend::Script(_) => None,
            Backend::Exported(program) => program.example_shapes.first().cloned(),
        })
    })?
}

/// The module tree of a model file of either kind, read on a thread of its own (as
/// `validate`).
pub fn module_tree(path: &Path) -> Result<Vec<crate::structure::ModuleInfo>> {
    crate::threads::apart("module-tree", || match ModelKind::of_file(path) {
        ModelKind::TorchScript => crate::structure::module_tree(path),
        ModelKind::Exported => crate::exported::module_tree(path),
    })?
}

/// Loads a TorchScript file on `device` and switches it to eval mode.
pub fn load_torchscript(path: &Path, device: Device, input_shape: Option<Vec<i64>>) -> Result<LoadedModel> {
    device.check_available()?;
    let mut module = tch::CModule::load_on_device(path, device.to_tch()).map_err(|error| {
        let reason = crate::error::torch_reason(&error.to_string());
        // libtorch's zip reader appends several sentences of advice about corrupted
        // checkpoints; the first sentence says what failed.
        let reason = reason.split(". ").next().unwrap_or(&reason).to_string();
        let kind = if crate::error::is_out_of_memory(&reason) { ErrorKind::OutOfMemory } else { ErrorKind::BadInput };
        Error::new(
            kind,
            format!(
                "not a TorchScript model libtorch can load ({reason}), nor a torch.export archive; save the model with \
                 torch.export.save(torch.export.export(model, (example,)), path), or as TorchScript with \
                 torch.jit.script(model).save(path), not torch.save"
            ),
        )
    })?;
    module.set_eval();
    Ok(LoadedModel {
        backend: Backend::Script(module),
        device,
        input_shape,
        path: path.to_path_buf(),
        tapped: OnceCell::new(),
        bytes_per_row: RefCell::new(HashMap::new()),
    })
}

impl LoadedModel {
    /// Runs `forward` on the inputs (one tensor per argument). An error from inside
    /// the model is reported as bad input: the model rejected what it was given.
    pub fn forward(&self, inputs: &[tch::Tensor]) -> Result<tch::Tensor> {
        let module = match &self.backend {
            Backend::Script(module) => module,
            Backend::Exported(program) => {
                let shapes: Vec<Vec<i64>> = inputs.iter().map(|input| input.size()).collect();
                program.check_shapes(&shapes, true)?;
                return program.forward(inputs).map_err(|mut error| {
                    if error.kind == ErrorKind::BadInput {
                        let shapes: Vec<String> = shapes.iter().map(|shape| crate::error::shape_text(shape)).collect();
                        error.message = format!("the model rejected an input of shape {}: {}", shapes.join(", "), error.message);
                    }
                    error
                });
            }
        };
        let arguments: Vec<tch::IValue> = inputs.iter().map(|input| tch::IValue::Tensor(input.shallow_clone())).collect();
        let output = module.forward_is(&arguments).map_err(|error| {
            let shapes: Vec<String> = inputs.iter().map(|input| crate::error::shape_text(&input.size())).collect();
            let what = if inputs.len() == 1 {
                format!("the model rejected an input of shape {}", shapes[0])
            } else {
                format!("the model rejected inputs of shapes {}", shapes.join(", "))
            };
            let mut error = Error::from_torch(error, ErrorKind::BadInput, &what);
            if error.kind == ErrorKind::OutOfMemory {
                let shapes = shapes.join(", ");
                return Error::new(
                    ErrorKind::OutOfMemory,
                    error.message.replacen(&what, &format!("running the model on {shapes} ran out of memory"), 1),
                );
            }
            if error.kind == ErrorKind::BadInput {
                if let Some(hint) = self.first_layer_hint() {
                    error.message = format!("{}; {hint}", error.message);
                }
            }
            if error.message.contains("'indices'") || error.message.contains("Expected tensor for argument #1 'indices'") {
                // An embedding lookup got float inputs: the model takes token ids.
                return Error::bad_input(format!(
                    "{}; this model takes integer inputs (token ids), which have no gradient: attribute to its \
                     embedding layer with a layer method (--layer PATH) instead",
                    error.message
                ));
            }
            error
        })?;
        match output {
            tch::IValue::Tensor(tensor) => Ok(tensor),
            other => Err(Error::bad_input(format!("the model returns {}; this explanation needs a single tensor output", ivalue_kind(&other)))),
        }
    }

    /// Checks a request's inputs before they reach libtorch: well formed, finite, one
    /// batch size, and the first of the model's input shape when that is known.
    pub fn check_inputs(&self, inputs: &[HostTensor]) -> Result<()> {
        for (index, input) in inputs.iter().enumerate() {
            let what = if index == 0 { "input".to_string() } else { format!("input {index}") };
            input.validate(&what)?;
            if input.shape[0] != inputs[0].shape[0] {
                return Err(Error::bad_input(format!(
                    "{what} has batch size {} but input 0 has {}; every input needs the same batch size",
                    input.shape[0], inputs[0].shape[0]
                )));
            }
        }
        self.check_input(&inputs[0])?;
        for input in &inputs[1..] {
            check_finite(input)?;
        }
        if let Backend::Exported(program) = &self.backend {
            let shapes: Vec<Vec<i64>> = inputs.iter().map(|input| input.shape.clone()).collect();
            program.check_shapes(&shapes, false)?;
        }
        Ok(())
    }

    /// What the first layer expects, for error messages: "the first layer, conv1
    /// (torch.nn.Conv2d), takes 3 input channels: (N, 3, H, W)".
    fn first_layer_hint(&self) -> Option<String> {
        let tapped = self.tapped().ok()?;
        let tree = self.module_tree().ok()?;
        let first = tapped.graph.calls.iter().find(|call| {
            let prefix = format!("{}.", call.path);
            !tree.iter().any(|module| module.path.starts_with(&prefix))
        })?;
        let module = tree.iter().find(|module| module.path == first.path)?;
        let type_name = crate::structure::readable_type_name(&module.qualified_type);
        let attribute = |name: &str| module.attributes.get(name).and_then(|value| value.as_i64());
        let weight_dim = |index: usize| module.params.iter().find(|param| param.name == "weight").and_then(|weight| weight.shape.get(index).copied());
        let expects = if type_name.contains("Conv") {
            let channels = attribute("in_channels").or_else(|| weight_dim(1).map(|per_group| per_group * attribute("groups").unwrap_or(1)))?;
            let spatial = module.params.iter().find(|param| param.name == "weight").map(|weight| weight.shape.len().saturating_sub(2)).unwrap_or(2);
            let dims = ["L", "H, W", "D, H, W"].get(spatial.saturating_sub(1)).copied().unwrap_or("...");
            format!("takes {channels} input channels: (N, {channels}, {dims})")
        } else if type_name.ends_with("Linear") {
            let features = attribute("in_features").or_else(|| weight_dim(1))?;
            format!("takes {features} input features: (N, ..., {features})")
        } else if type_name.ends_with("Embedding") {
            "takes integer token ids (int64): (N, L)".to_string()
        } else {
            return None;
        };
        Some(format!("the first layer, {} ({type_name}), {expects}", first.path))
    }

    /// A second, independent copy of the model from its file (for experiments that
    /// change parameters, such as the sanity check).
    pub fn fresh_copy(&self) -> Result<LoadedModel> {
        match &self.backend {
            Backend::Script(_) => load_torchscript(&self.path, self.device, self.input_shape.clone()),
            Backend::Exported(_) => load(&self.path, self.device, self.input_shape.clone()),
        }
    }

    /// Zero tensors for a structure run (summary, op graph). An exported program
    /// records its inputs' dtypes, so token-id inputs are int64 there even when the
    /// request did not say so.
    pub fn sample_tensors(&self, inputs: &[SampleInput]) -> Result<Vec<tch::Tensor>> {
        let tensors = SampleInput::zeros(inputs, self.device.to_tch())?;
        Ok(match &self.backend {
            Backend::Exported(program) => tensors
                .into_iter()
                .zip(&program.input_kinds)
                .map(|(tensor, kind)| if tensor.kind() == *kind { tensor } else { tensor.to_kind(*kind) })
                .collect(),
            Backend::Script(_) => tensors,
        })
    }

    /// The longest sequence (second dimension of the first input) an exported program
    /// accepts, when its export bounded it (a language model's context); `None` when
    /// unbounded or unknown (TorchScript).
    pub fn max_sequence_length(&self) -> Option<i64> {
        match &self.backend {
            Backend::Exported(program) => match program.input_dims.first()?.get(1)? {
                crate::exported::Dimension::Static(size) => Some(*size),
                crate::exported::Dimension::Symbolic { max, .. } => *max,
                crate::exported::Dimension::Derived => None,
            },
            Backend::Script(_) => None,
        }
    }

    /// The model's kind.
    pub fn kind(&self) -> ModelKind {
        match self.backend {
            Backend::Script(_) => ModelKind::TorchScript,
            Backend::Exported(_) => ModelKind::Exported,
        }
    }

    /// Every module with the parameters and buffers it owns.
    pub fn module_tree(&self) -> Result<Vec<crate::structure::ModuleInfo>> {
        match &self.backend {
            Backend::Script(_) => crate::structure::module_tree(&self.path),
            Backend::Exported(program) => Ok(program.modules.clone()),
        }
    }

    /// Parameters by fully qualified name (`layer1.0.conv1.weight`), in definition order.
    fn named_parameters(&self) -> Result<Vec<(String, tch::Tensor)>> {
        match &self.backend {
            Backend::Script(module) => {
                module.named_parameters().map_err(|error| Error::from_torch(error, ErrorKind::Internal, "reading the model's parameters"))
            }
            Backend::Exported(program) => Ok(program.parameters.iter().map(|(name, tensor)| (name.clone(), tensor.shallow_clone())).collect()),
        }
    }

    /// Parameters grouped by the module that owns them, in definition order:
    /// `[("features.0", [weight, bias]), ...]`.
    pub fn parameter_groups(&self) -> Result<Vec<(String, Vec<tch::Tensor>)>> {
        let named = self.named_parameters()?;
        let mut groups: Vec<(String, Vec<tch::Tensor>)> = Vec::new();
        for (name, tensor) in named {
            let owner = name.rsplit_once('.').map(|(owner, _)| owner.to_string()).unwrap_or_default();
            match groups.last_mut() {
                Some((last, tensors)) if *last == owner => tensors.push(tensor),
                _ => groups.push((owner, vec![tensor])),
            }
        }
        Ok(groups)
    }

    /// Parameter tensors by owning module: `[("features.0", [("weight", t), ("bias", t)])]`.
    pub fn named_parameter_tensors(&self) -> Result<Vec<ParameterGroup>> {
        let named = self.named_parameters()?;
        let mut groups: Vec<ParameterGroup> = Vec::new();
        for (name, tensor) in named {
            let (owner, short) =
                name.rsplit_once('.').map(|(owner, short)| (owner.to_string(), short.to_string())).unwrap_or((String::new(), name.clone()));
            match groups.last_mut() {
                Some((last, tensors)) if *last == owner => tensors.push((short, tensor)),
                _ => groups.push((owner, vec![(short, tensor)])),
            }
        }
        Ok(groups)
    }

    /// The tapped copy of this model (every module's output on the autograd path).
    pub fn tapped(&self) -> Result<&TappedModel> {
        self.tapped
            .get_or_init(|| match &self.backend {
                Backend::Script(_) => TappedModel::load(&self.path, self.device),
                Backend::Exported(program) => Ok(TappedModel::from_exported(program.clone())),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Estimated working memory of one input row's forward and backward pass, used
    /// to size chunks: one tapped forward pass on a single row measures every
    /// module's output; a backward pass needs about as much again for gradients, plus
    /// the inputs. Measured once per input row shape. If the model cannot be tapped,
    /// 64 times the row's input bytes is assumed.
    pub fn estimate_bytes_per_row(&self, inputs: &[HostTensor]) -> u64 {
        let row_shapes: Vec<Vec<i64>> = inputs.iter().map(|input| input.shape[1..].to_vec()).collect();
        if let Some(&known) = self.bytes_per_row.borrow().get(&row_shapes) {
            return known;
        }
        let input_bytes: u64 = inputs.iter().map(|input| (input.values.len() as u64 / input.shape[0].max(1) as u64) * 4).sum();
        let measured = self.measure_activation_bytes(inputs).map(|activations| 2 * activations + 2 * input_bytes);
        let estimate = measured.unwrap_or(input_bytes * 64).max(1);
        self.bytes_per_row.borrow_mut().insert(row_shapes, estimate);
        estimate
    }

    fn measure_activation_bytes(&self, inputs: &[HostTensor]) -> Option<u64> {
        let tapped = self.tapped().ok()?;
        let rows: Vec<tch::Tensor> =
            inputs.iter().map(|input| input.to_tch(self.device.to_tch()).map(|tensor| tensor.narrow(0, 0, 1))).collect::<Result<_>>().ok()?;
        let _no_grad = tch::no_grad_guard();
        let (output, taps) = tapped.forward(&rows).ok()?;
        let bytes = |tensor: &tch::Tensor| tensor.numel() as u64 * tensor.kind().elt_size_in_bytes() as u64;
        // A block's output is often its last layer's output too: count each tensor once.
        let mut seen = std::collections::HashSet::new();
        let activations: u64 = taps.iter().flatten().filter(|tap| seen.insert(tap.data_ptr() as usize)).map(bytes).sum();
        Some(bytes(&output) + activations)
    }

    fn check_input(&self, input: &HostTensor) -> Result<()> {
        input.validate("input")?;
        check_finite(input)?;
        // An exported program knows which of its dimensions are dynamic and checks them
        // itself (`check_shapes`): its stored example shape (a sequence length of 8, say)
        // is a default for summaries, not a constraint.
        let stored = match self.backend {
            Backend::Script(_) => self.input_shape.as_ref(),
            Backend::Exported(_) => None,
        };
        if let Some(expected) = stored {
            let matches = expected.len() == input.shape.len() && expected[1..] == input.shape[1..];
            if !matches {
                let mut expected_text: Vec<String> = expected.iter().map(i64::to_string).collect();
                if let Some(batch) = expected_text.first_mut() {
                    *batch = "N".to_string();
                }
                // What the first layer expects, as when the model itself refuses a shape,
                // so the answer does not depend on whether a shape was stored.
                let mut message = format!(
                    "input shape {} does not match the model's input shape [{}]",
                    crate::error::shape_text(&input.shape),
                    expected_text.join(", ")
                );
                if let Some(hint) = self.first_layer_hint() {
                    message = format!("{message}; {hint}");
                }
                return Err(Error::bad_input(message));
            }
        }
        Ok(())
    }
}

fn check_finite(input: &HostTensor) -> Result<()> {
    let nan_count = input.values.iter().filter(|value| value.is_nan()).count();
    let infinite_count = input.values.iter().filter(|value| value.is_infinite()).count();
    if nan_count + infinite_count > 0 {
        return Err(Error::bad_input(format!(
            "input contains {nan_count} NaN and {infinite_count} infinite values; explanations need finite inputs"
        )));
    }
    Ok(())
}

fn ivalue_kind(value: &tch::IValue) -> &'static str {
    match value {
        tch::IValue::Tuple(_) => "a tuple",
        tch::IValue::GenericList(_) | tch::IValue::TensorList(_) => "a list",
        tch::IValue::GenericDict(_) => "a dict",
        tch::IValue::None => "None",
        _ => "a non-tensor value",
    }
}

/// A sample input for a structure run (summary, op graph): zeros of `shape`, int64
/// when `integer` (token ids), float32 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SampleInput {
    pub shape: Vec<i64>,
    pub integer: bool,
}

impl SampleInput {
    /// Checks every shape and builds the zero tensors on `device`.
    pub fn zeros(inputs: &[SampleInput], device: tch::Device) -> Result<Vec<tch::Tensor>> {
        if inputs.is_empty() {
            return Err(Error::bad_input("no input shape was given"));
        }
        for (index, input) in inputs.iter().enumerate() {
            let which = if inputs.len() > 1 { format!("input {index}: shape") } else { "input shape".to_string() };
            if input.shape.is_empty() || input.shape.iter().any(|&dim| dim <= 0) {
                return Err(Error::bad_input(format!(
                    "{which} {} needs at least one dimension, all positive",
                    crate::error::shape_text(&input.shape)
                )));
            }
            if input.shape.iter().try_fold(1i64, |count, &dim| count.checked_mul(dim)).is_none_or(|count| count > 1 << 31) {
                return Err(Error::bad_input(format!("{which} {} is too large for a structure run", crate::error::shape_text(&input.shape))));
            }
        }
        Ok(inputs.iter().map(|input| tch::Tensor::zeros(&input.shape[..], (input.kind(), device))).collect())
    }

    pub fn kind(&self) -> tch::Kind {
        if self.integer {
            tch::Kind::Int64
        } else {
            tch::Kind::Float
        }
    }

    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<i64>().max(0) as u64 * if self.integer { 8 } else { 4 }
    }
}
