//! Reading a `torch.export.save` archive (`.pt2`): a zip of JSON and raw tensor bytes.
//!
//! Layout written by torch 2.8 and later (DESIGN.md):
//! `<root>/archive_format` ("pt2"), `<root>/archive_version`, `<root>/models/<name>.json`
//! (the serialized `ExportedProgram`: graph, signature, range constraints, schema
//! version), `<root>/data/weights/model_weights_config.json` (per tensor: `path_name`,
//! dtype code, sizes, strides, storage offset) beside the raw `weight_N` files, and the
//! same for `data/constants/`. Nothing here executes code from the archive.

use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The serialization schema this reader understands: major 8 (torch 2.8 to 2.11),
/// minor up to what torch 2.11 writes.
pub const SCHEMA_MAJOR: i64 = 8;
pub const SCHEMA_MAX_MINOR: i64 = 17;

/// One tensor's metadata in a weights or constants config.
#[derive(Debug, Clone, Deserialize)]
pub struct TensorMeta {
    /// The export schema's dtype code (7 = float32), not c10's.
    pub dtype: i64,
    pub sizes: Vec<Value>,
    #[serde(default)]
    pub strides: Vec<Value>,
    #[serde(default)]
    pub storage_offset: Option<Value>,
    #[serde(default)]
    pub requires_grad: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoredTensor {
    pub path_name: String,
    #[serde(default)]
    pub is_param: bool,
    #[serde(default)]
    pub use_pickle: bool,
    pub tensor_meta: TensorMeta,
}

#[derive(Debug, Default, Deserialize)]
struct TensorConfig {
    #[serde(default)]
    config: HashMap<String, StoredTensor>,
}

/// Raw bytes of the files a tensor config names, by file name.
type FileBytes = HashMap<String, Vec<u8>>;

/// The parts of an archive the executor needs, read into memory.
pub struct Archive {
    /// `models/<name>.json`, parsed.
    pub program: Value,
    /// Parameters and buffers by fully qualified name (`layer1.0.conv1.weight`).
    pub weights: HashMap<String, StoredTensor>,
    /// Lifted tensor constants by name.
    pub constants: HashMap<String, StoredTensor>,
    /// Raw bytes of `data/weights/*` and `data/constants/*` by file name.
    weight_files: HashMap<String, Vec<u8>>,
    constant_files: HashMap<String, Vec<u8>>,
}

/// Whether a file looks like a `torch.export` archive rather than TorchScript: a zip
/// with an `archive_format` entry under its root folder.
pub fn is_exported_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok(zip) = zip::ZipArchive::new(file) else { return false };
    let found = zip.file_names().any(|name| name.ends_with("/archive_format") && name.matches('/').count() == 1);
    found
}

fn bad(message: impl Into<String>) -> Error {
    Error::bad_input(format!("not a torch.export archive layerlens can read: {}", message.into()))
}

impl Archive {
    pub fn read(path: &Path) -> Result<Archive> {
        let file = std::fs::File::open(path).map_err(|error| bad(format!("cannot open {}: {error}", path.display())))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|error| bad(format!("not a zip file ({error})")))?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let format_entry = names
            .iter()
            .find(|name| name.ends_with("/archive_format") && name.matches('/').count() == 1)
            .ok_or_else(|| bad("the zip has no <root>/archive_format entry; save the program with torch.export.save"))?;
        let root = format_entry.trim_end_matches("archive_format").to_string();
        let mut read_entry = |name: &str| -> Result<Vec<u8>> {
            let mut entry = zip.by_name(name).map_err(|error| bad(format!("{name}: {error}")))?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(|error| bad(format!("{name} is truncated or corrupt ({error})")))?;
            Ok(bytes)
        };
        let format = String::from_utf8_lossy(&read_entry(format_entry)?).trim().to_string();
        if format != "pt2" {
            return Err(bad(format!("archive_format is '{format}', expected 'pt2'")));
        }
        let version_name = format!("{root}archive_version");
        if names.contains(&version_name) {
            let version = String::from_utf8_lossy(&read_entry(&version_name)?).trim().to_string();
            if version != "0" {
                return Err(bad(format!("archive_version is '{version}'; this daemon reads version 0 (torch 2.8 to 2.11)")));
            }
        }
        let models: Vec<&String> = names
            .iter()
            .filter(|name| name.starts_with(&format!("{root}models/")) && name.ends_with(".json") && !name.contains("/models/constants"))
            .collect();
        let model_name = match models.as_slice() {
            [] => {
                let aoti = names.iter().any(|name| name.contains("/data/aotinductor/"));
                return Err(bad(if aoti {
                    "this is an AOTInductor package (compiled code, no graph); export with torch.export.save(torch.export.export(model, args), path) instead".to_string()
                } else {
                    "the archive holds no models/<name>.json graph".to_string()
                }));
            }
            [one] => (*one).clone(),
            _ => models.iter().find(|name| name.ends_with("/model.json")).map(|name| (*name).clone()).unwrap_or_else(|| models[0].clone()),
        };
        let program: Value =
            serde_json::from_slice(&read_entry(&model_name)?).map_err(|error| bad(format!("{model_name} is not valid JSON ({error})")))?;
        check_schema_version(&program)?;
        let mut read_config = |folder: &str| -> Result<(HashMap<String, StoredTensor>, FileBytes)> {
            let prefix = format!("{root}data/{folder}/");
            let config_name = names.iter().find(|name| name.starts_with(&prefix) && name.ends_with("_config.json"));
            let Some(config_name) = config_name else { return Ok((HashMap::new(), HashMap::new())) };
            let config: TensorConfig =
                serde_json::from_slice(&read_entry(config_name)?).map_err(|error| bad(format!("{config_name} is not a tensor config ({error})")))?;
            let mut files = HashMap::new();
            for stored in config.config.values() {
                if stored.use_pickle {
                    return Err(bad(format!("{} is stored pickled; layerlens reads raw tensor data only", stored.path_name)));
                }
                if !files.contains_key(&stored.path_name) {
                    let bytes = read_entry(&format!("{prefix}{}", stored.path_name))?;
                    files.insert(stored.path_name.clone(), bytes);
                }
            }
            Ok((config.config, files))
        };
        let (weights, weight_files) = read_config("weights")?;
        let (constants, constant_files) = read_config("constants")?;
        Ok(Archive { program, weights, constants, weight_files, constant_files })
    }

    /// A stored tensor as a CPU tensor with its sizes, strides and offset, checked
    /// against the bytes of its file before anything is built.
    pub fn tensor(&self, name: &str, stored: &StoredTensor, constant: bool) -> Result<tch::Tensor> {
        let files = if constant { &self.constant_files } else { &self.weight_files };
        let bytes = files.get(&stored.path_name).ok_or_else(|| bad(format!("{name}: file {} is missing", stored.path_name)))?;
        let kind =
            kind_from_code(stored.tensor_meta.dtype).ok_or_else(|| bad(format!("{name}: unsupported dtype code {}", stored.tensor_meta.dtype)))?;
        let sizes = int_list(&stored.tensor_meta.sizes).ok_or_else(|| bad(format!("{name}: sizes are not plain integers")))?;
        let strides = if stored.tensor_meta.strides.is_empty() {
            contiguous_strides(&sizes)
        } else {
            int_list(&stored.tensor_meta.strides).ok_or_else(|| bad(format!("{name}: strides are not plain integers")))?
        };
        let offset = stored.tensor_meta.storage_offset.as_ref().and_then(sym_int_constant).unwrap_or(0);
        let element_size = kind.elt_size_in_bytes();
        let storage_elements = (bytes.len() / element_size) as i64;
        if sizes.iter().any(|&size| size < 0) || strides.iter().any(|&stride| stride < 0) || offset < 0 {
            return Err(bad(format!("{name}: negative sizes, strides or offset")));
        }
        let numel = sizes.iter().try_fold(1i64, |acc, &size| acc.checked_mul(size));
        let last = sizes.iter().zip(&strides).try_fold(
            offset,
            |acc, (&size, &stride)| {
                if size == 0 {
                    Some(acc)
                } else {
                    acc.checked_add((size - 1).checked_mul(stride)?)
                }
            },
        );
        match (numel, last) {
            (Some(0), _) => {}
            (Some(_), Some(last)) if last < storage_elements => {}
            _ => {
                return Err(bad(format!(
                    "{name}: shape {sizes:?} with strides {strides:?} at offset {offset} needs more than the {} bytes of {} (truncated weights?)",
                    bytes.len(),
                    stored.path_name
                )))
            }
        }
        let storage = tch::Tensor::from_data_size(&bytes[..storage_elements as usize * element_size], &[storage_elements], kind);
        Ok(storage.as_strided(&sizes, &strides, offset).contiguous())
    }
}

fn check_schema_version(program: &Value) -> Result<()> {
    let version = &program["schema_version"];
    let (major, minor) = (version["major"].as_i64(), version["minor"].as_i64());
    match (major, minor) {
        (Some(SCHEMA_MAJOR), Some(minor)) if minor <= SCHEMA_MAX_MINOR => Ok(()),
        (Some(major), Some(minor)) => Err(bad(format!(
            "schema version {major}.{minor}; this daemon reads {SCHEMA_MAJOR}.0 to {SCHEMA_MAJOR}.{SCHEMA_MAX_MINOR} (torch 2.8 to 2.11)"
        ))),
        _ => Err(bad("the program has no schema_version")),
    }
}

/// The export schema's dtype codes (torch/_export/serde/schema.py `ScalarType`).
pub fn kind_from_code(code: i64) -> Option<tch::Kind> {
    use tch::Kind::*;
    Some(match code {
        1 => Uint8,
        2 => Int8,
        3 => Int16,
        4 => Int,
        5 => Int64,
        6 => Half,
        7 => Float,
        8 => Double,
        9 => ComplexHalf,
        10 => ComplexFloat,
        11 => ComplexDouble,
        12 => Bool,
        13 => BFloat16,
        _ => return None,
    })
}

/// c10's `ScalarType` number for an export dtype code (what a boxed call takes).
pub fn c10_scalar_type(code: i64) -> Option<i64> {
    match code {
        1..=12 => Some(code - 1),
        13 => Some(15),
        _ => None,
    }
}

/// `{"as_int": 3}` → 3; a symbolic size gives None.
pub fn sym_int_constant(value: &Value) -> Option<i64> {
    value.get("as_int").and_then(Value::as_i64)
}

fn int_list(values: &[Value]) -> Option<Vec<i64>> {
    values.iter().map(sym_int_constant).collect()
}

fn contiguous_strides(sizes: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; sizes.len()];
    for index in (0..sizes.len().saturating_sub(1)).rev() {
        strides[index] = strides[index + 1] * sizes[index + 1].max(1);
    }
    strides
}

/// The symbol a symbolic size stands for: `Symbol('s77', positive=True, integer=True)`
/// or plain `s77` → `s77`; compound expressions (`2*s77`) give None.
pub fn symbol_name(expression: &str) -> Option<String> {
    let text = expression.trim();
    let inner = if let Some(rest) = text.strip_prefix("Symbol(") {
        let rest = rest.trim_start_matches(['\'', '"']);
        rest.split(['\'', '"']).next()?
    } else {
        text
    };
    (!inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !inner.chars().next()?.is_ascii_digit())
        .then(|| inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_names() {
        let cases = [("Symbol('s77', positive=True, integer=True)", Some("s77")), ("s0", Some("s0")), ("2*s0", None), ("", None)];
        for (expression, expected) in cases {
            assert_eq!(symbol_name(expression).as_deref(), expected, "{expression}");
        }
    }

    #[test]
    fn dtype_codes_map_to_c10() {
        assert_eq!(c10_scalar_type(7), Some(6)); // float32
        assert_eq!(c10_scalar_type(5), Some(4)); // int64
        assert_eq!(c10_scalar_type(13), Some(15)); // bfloat16
        assert_eq!(kind_from_code(7), Some(tch::Kind::Float));
    }
}
