//! Checkpoints written by torch 2.11 (tests/fixtures/make_checkpoints.py, run here in the
//! project's virtualenv), read back and compared with what the script says it saved:
//! every tensor bit for bit, the optimizer's kind, state and param groups, the
//! scheduler, the step and the other entries. Then the files that must be refused:
//! code in the pickle, truncation, bad tensor bounds, unsupported formats.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use layerlens_checkpoint::{
    read_checkpoint, read_value, Checkpoint, CheckpointError, Dtype, Format, OptimizerKind, OptimizerState, ParamGroup, TensorData, Value,
};
use safetensors::SafeTensors;
use serde_json::Value as Json;

/// The fixtures directory, generated once per test process (a no-op when current).
fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<PathBuf> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = root.join("tests/fixtures/out/checkpoints");
        let python = std::env::var_os("LAYERLENS_PYTHON").unwrap_or_else(|| {
            panic!("LAYERLENS_PYTHON is not set: run scripts/setup.sh (it writes the virtualenv's python into .cargo/config.toml) or point it at a python with torch 2.11 and safetensors")
        });
        let output = Command::new(&python)
            .arg(root.join("tests/fixtures/make_checkpoints.py"))
            .arg(&out)
            .output()
            .unwrap_or_else(|error| panic!("cannot run LAYERLENS_PYTHON={}: {error}", python.to_string_lossy()));
        assert!(output.status.success(), "make_checkpoints.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
        out
    })
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The checkpoints the reader must read, as the generator lists them.
const READABLE: &[&str] = &[
    "adam",
    "adamw",
    "adamw_amsgrad",
    "sgd_nesterov",
    "rmsprop_centered",
    "adagrad",
    "nadam",
    "steplr",
    "cosine",
    "protocol4",
    "protocol5",
    "bare_state_dict",
    "optimizer_only",
    "safetensors",
    "tensors",
    "tensors_deflated",
];

/// `NAME.expected.json` and its tensors as the checkpoint file's name and a [`Checkpoint`].
fn expected(name: &str) -> (String, Checkpoint) {
    let json: Json = serde_json::from_slice(&read(&format!("{name}.expected.json"))).expect("expected.json parses");
    let tensor_bytes = read(json["tensors"].as_str().expect("tensors file name"));
    let tensors = SafeTensors::deserialize(&tensor_bytes).expect("expected tensors parse");
    let checkpoint = &json["checkpoint"];
    let named = |items: &Json| -> Vec<(String, Value)> {
        items.as_array().expect("named list").iter().map(|pair| (pair[0].as_str().expect("name").to_owned(), tagged(&pair[1], &tensors))).collect()
    };
    let optimizer = match &checkpoint["optimizer"] {
        Json::Null => None,
        optimizer => Some(OptimizerState {
            kind: match optimizer["kind"].as_str() {
                Some("Adam") => OptimizerKind::Adam,
                Some("AdamW") => OptimizerKind::AdamW,
                Some("SGD") => OptimizerKind::Sgd,
                Some("RMSprop") => OptimizerKind::RmsProp,
                Some("Adagrad") => OptimizerKind::Adagrad,
                None => OptimizerKind::Unknown,
                Some(other) => panic!("unexpected optimizer kind {other}"),
            },
            state: optimizer["state"].as_array().unwrap().iter().map(|entry| (entry[0].as_i64().unwrap(), named(&entry[1]))).collect(),
            param_groups: optimizer["param_groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|group| ParamGroup {
                    params: group["params"].as_array().unwrap().iter().map(|param| param.as_i64().unwrap()).collect(),
                    options: named(&group["options"]),
                })
                .collect(),
        }),
    };
    let checkpoint = Checkpoint {
        format: match checkpoint["format"].as_str() {
            Some("TorchSave") => Format::TorchSave,
            Some("Safetensors") => Format::Safetensors,
            other => panic!("unexpected format {other:?}"),
        },
        model: named(&checkpoint["model"])
            .into_iter()
            .map(|(name, value)| match value {
                Value::Tensor(tensor) => (name, tensor),
                other => panic!("model entry {name} is {other}"),
            })
            .collect(),
        optimizer,
        scheduler: (!checkpoint["scheduler"].is_null()).then(|| named(&checkpoint["scheduler"])),
        step: checkpoint["step"].as_i64(),
        extra: named(&checkpoint["extra"]),
    };
    (json["file"].as_str().unwrap().to_owned(), checkpoint)
}

/// A value in the generator's tagged encoding.
fn tagged(json: &Json, tensors: &SafeTensors) -> Value {
    let (tag, content) = json.as_object().and_then(|object| object.iter().next()).expect("a tagged value");
    let items = || content.as_array().expect("a JSON array").iter().map(|item| tagged(item, tensors)).collect();
    match tag.as_str() {
        "none" => Value::None,
        "bool" => Value::Bool(content.as_bool().unwrap()),
        "int" => Value::Int(content.as_i64().unwrap()),
        "float" => Value::Float(f64::from_bits(u64::from_str_radix(content.as_str().unwrap(), 16).unwrap())),
        "str" => Value::Str(content.as_str().unwrap().to_owned()),
        "bytes" => Value::Bytes(hex(content.as_str().unwrap())),
        "list" => Value::List(items()),
        "tuple" => Value::Tuple(items()),
        "dict" => Value::Dict(content.as_array().unwrap().iter().map(|pair| (tagged(&pair[0], tensors), tagged(&pair[1], tensors))).collect()),
        "tensor" => {
            let view = tensors.tensor(content.as_str().unwrap()).unwrap();
            let dtype = match view.dtype() {
                safetensors::Dtype::F32 => Dtype::F32,
                safetensors::Dtype::F64 => Dtype::F64,
                safetensors::Dtype::F16 => Dtype::F16,
                safetensors::Dtype::BF16 => Dtype::BF16,
                safetensors::Dtype::I64 => Dtype::I64,
                safetensors::Dtype::I32 => Dtype::I32,
                safetensors::Dtype::I16 => Dtype::I16,
                safetensors::Dtype::I8 => Dtype::I8,
                safetensors::Dtype::U8 => Dtype::U8,
                safetensors::Dtype::BOOL => Dtype::Bool,
                other => panic!("unexpected dtype {other:?}"),
            };
            Value::Tensor(TensorData { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() })
        }
        other => panic!("unknown tag {other}"),
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
}

#[test]
fn every_readable_checkpoint_holds_what_torch_saved() {
    let manifest: Json = serde_json::from_slice(&read("manifest.json")).unwrap();
    let listed: Vec<&str> = manifest["readable"].as_array().unwrap().iter().map(|name| name.as_str().unwrap()).collect();
    assert_eq!(listed, READABLE, "the generator's list of readable checkpoints changed: update READABLE");
    for name in READABLE {
        let (file, expected) = expected(name);
        let checkpoint = read_checkpoint(&read(&file)).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert_eq!(checkpoint.format, expected.format, "{file}: format");
        let names = |model: &[(String, TensorData)]| model.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&checkpoint.model), names(&expected.model), "{file}: model keys in file order");
        for ((key, tensor), (_, expected_tensor)) in checkpoint.model.iter().zip(&expected.model) {
            assert_eq!(tensor, expected_tensor, "{file}: model tensor {key}");
        }
        match (&checkpoint.optimizer, &expected.optimizer) {
            (Some(optimizer), Some(expected_optimizer)) => {
                assert_eq!(optimizer.kind, expected_optimizer.kind, "{file}: optimizer kind");
                assert_eq!(optimizer.param_groups, expected_optimizer.param_groups, "{file}: param groups");
                assert_eq!(optimizer.state, expected_optimizer.state, "{file}: optimizer state");
            }
            (found, wanted) => assert_eq!(found.is_some(), wanted.is_some(), "{file}: optimizer found"),
        }
        assert_eq!(checkpoint.scheduler, expected.scheduler, "{file}: scheduler");
        assert_eq!(checkpoint.step, expected.step, "{file}: step");
        assert_eq!(checkpoint.extra, expected.extra, "{file}: extra entries");
        assert_eq!(checkpoint, expected, "{file}");
    }
}

/// The same facts as the expected files, spelled out: what torch 2.11 writes for each
/// optimizer and where the step comes from.
#[test]
fn optimizer_kinds_and_steps() {
    let cases: &[(&str, Option<&str>, Option<i64>)] = &[
        ("adam.pt", Some("Adam"), Some(5)),
        ("adamw.pt", Some("AdamW"), Some(4)),
        ("adamw_amsgrad.pt", Some("AdamW"), Some(3)),
        ("sgd_nesterov.pt", Some("SGD"), Some(3)),
        ("rmsprop_centered.pt", Some("RMSprop"), Some(4)),
        ("adagrad.pt", Some("Adagrad"), Some(2)),
        // NAdam has betas and decoupled_weight_decay but no amsgrad: not Adam. Its file
        // has no step key, so the step is the optimizer's own (a 0-d float32 tensor).
        ("nadam.pt", None, Some(6)),
        ("optimizer_only.pt", Some("RMSprop"), Some(2)),
    ];
    for &(file, kind, step) in cases {
        let checkpoint = read_checkpoint(&read(file)).unwrap();
        let optimizer = checkpoint.optimizer.as_ref().unwrap_or_else(|| panic!("{file}: no optimizer"));
        assert_eq!(optimizer.kind.name(), kind, "{file}");
        assert_eq!(checkpoint.step, step, "{file}");
    }
    let adamw = read_checkpoint(&read("adamw_amsgrad.pt")).unwrap();
    let group = &adamw.optimizer.as_ref().unwrap().param_groups[0];
    assert_eq!(group.option("decoupled_weight_decay"), Some(&Value::Bool(true)));
    assert_eq!(group.option("amsgrad"), Some(&Value::Bool(true)));
    assert_eq!(group.option("betas"), Some(&Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)])));
    let state = &adamw.optimizer.as_ref().unwrap().state[0].1;
    let state_keys: Vec<&str> = state.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(state_keys, ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    let Some((_, Value::Tensor(step))) = state.first() else { panic!("step is not a tensor") };
    assert_eq!((step.dtype, step.shape.as_slice(), step.to_f32()), (Dtype::F32, &[][..], vec![3.0]));
}

/// Views come out contiguous whatever their strides and offsets; the safetensors file
/// holds the same weights as the bare state dict saved beside it.
#[test]
fn views_are_materialised_and_formats_agree() {
    let (format, value) = read_value(&read("tensors.pt")).unwrap();
    assert_eq!(format, Format::TorchSave);
    let tensor = |name: &str| match value.get(name) {
        Some(Value::Tensor(tensor)) => tensor.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let base: Vec<f32> = (0..24).map(|value| value as f32).collect();
    assert_eq!(tensor("base").to_f32(), base);
    assert_eq!(tensor("rows_from_1_every_2nd_column").to_f32(), [6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0]);
    assert_eq!(tensor("transposed").shape, [6, 4]);
    assert_eq!(tensor("transposed").to_f32()[..4], [0.0, 6.0, 12.0, 18.0]);
    assert_eq!(tensor("broadcast").to_f32(), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    assert_eq!((tensor("scalar").shape, tensor("scalar").to_f32()), (vec![], vec![7.0]));
    assert_eq!((tensor("empty").shape, tensor("empty").data.len()), (vec![0, 6], 0));

    let safetensors = read_checkpoint(&read("model.safetensors")).unwrap();
    let torch_save = read_checkpoint(&read("bare_state_dict.pt")).unwrap();
    assert_eq!(safetensors.format, Format::Safetensors);
    let mut from_safetensors = safetensors.model.clone();
    let mut from_torch_save = torch_save.model.clone();
    from_safetensors.sort_by(|a, b| a.0.cmp(&b.0));
    from_torch_save.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(from_safetensors, from_torch_save);
}

#[test]
fn refused_checkpoints_say_why() {
    let pwned = fixtures().join("PWNED");
    let _ = std::fs::remove_file(&pwned);
    type Check = fn(&CheckpointError) -> bool;
    let cases: &[(&str, Check, &str)] = &[
        (
            "malicious.pt",
            |error| matches!(error, CheckpointError::ForbiddenGlobal { name, .. } if name == "system"),
            "the pickle calls `posix.system`",
        ),
        (
            "full_module.pt",
            |error| matches!(error, CheckpointError::ForbiddenGlobal { module, name } if module == "__main__" && name == "TinyNet"),
            "`__main__.TinyNet`",
        ),
        (
            "numpy_scalar.pt",
            |error| matches!(error, CheckpointError::ForbiddenGlobal { module, name } if module.starts_with("numpy") && name == "scalar"),
            "which is not a tensor or a container",
        ),
        ("truncated.pt", |error| matches!(error, CheckpointError::Corrupt(_)), "truncated or corrupt checkpoint: the zip archive cannot be read"),
        ("legacy.pt", |error| matches!(error, CheckpointError::Unsupported(_)), "does not read the legacy torch.save format"),
        ("torchscript.pt", |error| matches!(error, CheckpointError::Unsupported(_)), "does not read a TorchScript module"),
        ("big_endian.pt", |error| matches!(error, CheckpointError::Unsupported(_)), "does not read a big-endian checkpoint"),
        (
            "storage_short.pt",
            |error| matches!(error, CheckpointError::StorageSizeMismatch { record, expected_bytes, found_bytes, .. } if record == "adam/data/0" && *expected_bytes == *found_bytes + 4),
            "storage record `adam/data/0` should hold 32 float32 elements (128 bytes) but has 124 bytes",
        ),
        (
            "out_of_bounds.pt",
            |error| matches!(error, CheckpointError::TensorOutOfBounds { last_element: 99, storage_numel: 4, .. }),
            "tensor with sizes [100], strides [1] and storage offset 0 reaches element 99 of storage `crafted/data/0`, which holds 4",
        ),
        ("negative_size.pt", |error| matches!(error, CheckpointError::InvalidTensor { .. }), "sizes [-1] include a negative value"),
        ("unrecognised.pt", |error| matches!(error, CheckpointError::Unrecognised(_)), "the top-level keys are 'weights' (list), 'config' (dict)"),
        (
            "malformed_optimizer.pt",
            |error| matches!(error, CheckpointError::MalformedOptimizer { .. }),
            "under `optimizer` is malformed: `state` is keyed by a str",
        ),
    ];
    for &(file, check, message) in cases {
        let error = read_checkpoint(&read(file)).expect_err(file);
        assert!(check(&error), "{file}: unexpected error {error:?}");
        assert!(error.to_string().contains(message), "{file}: {error}");
    }
    assert!(!pwned.exists(), "reading malicious.pt ran its payload");
    let error = read_checkpoint(b"hello").unwrap_err();
    assert_eq!(
        error.to_string(),
        "not a checkpoint: expected a torch.save zip archive (starting `PK`) or a safetensors file (an 8-byte header length, then `{`), found 5 bytes starting 68 65 6c 6c 6f"
    );
}

/// Every prefix of a checkpoint is an error, never a panic.
#[test]
fn every_truncation_is_an_error() {
    for file in ["adam.pt", "model.safetensors"] {
        let bytes = read(file);
        for length in (0..bytes.len()).step_by(97) {
            assert!(read_checkpoint(&bytes[..length]).is_err(), "{file} cut to {length} bytes");
        }
    }
}

/// A byte changed anywhere (pickle opcodes and lengths, zip headers, storage bytes) is
/// an error or a different reading, never a panic. Stored records have no checksum
/// check here, so changes inside `data.pkl` (the first record torch writes, so the start
/// of the file, where every byte is tried) reach the unpickler.
#[test]
fn changed_bytes_never_panic() {
    for file in ["adam.pt", "protocol4.pt"] {
        let original = read(file);
        let mut bytes = original.clone();
        for position in (0..bytes.len()).filter(|&position| position < 3200 || position % 7 == 0) {
            // A large length, a neighbouring opcode, a zero, another opcode family.
            let byte = original[position];
            bytes[position] = [0xff, byte ^ 0x01, 0x00, byte.wrapping_add(0x80)][position % 4];
            let _ = read_checkpoint(&bytes);
            bytes[position] = byte;
        }
    }
}
