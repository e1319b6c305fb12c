//! safetensors files: an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the bytes. There is no code to refuse;
//! the `safetensors` crate checks the header and the ranges.

use safetensors::{Dtype as FileDtype, SafeTensors};

use crate::error::CheckpointError;
use crate::value::{Dtype, TensorData, Value};

/// Whether the bytes start like a safetensors file: a header length, then a JSON object.
pub(crate) fn looks_like_safetensors(file: &[u8]) -> bool {
    file.len() > 8 && file[8] == b'{'
}

/// The tensors as a dict from name to tensor in the order of their bytes in the file,
/// then the header's `__metadata__` (string to string, sorted by key) if it has one.
pub(crate) fn read_safetensors(file: &[u8]) -> Result<Value, CheckpointError> {
    let corrupt = |error: safetensors::SafeTensorError| CheckpointError::Corrupt(format!("safetensors: {error}"));
    let (_, metadata) = SafeTensors::read_metadata(file).map_err(corrupt)?;
    let tensors = SafeTensors::deserialize(file).map_err(corrupt)?;
    let mut items = Vec::new();
    for name in metadata.offset_keys() {
        let view = tensors.tensor(&name).map_err(corrupt)?;
        let dtype = dtype(view.dtype())?;
        items.push((Value::Str(name), Value::Tensor(TensorData { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() })));
    }
    if let Some(extra) = metadata.metadata() {
        let mut extra: Vec<(&String, &String)> = extra.iter().collect();
        extra.sort();
        let extra = extra.into_iter().map(|(key, value)| (Value::Str(key.clone()), Value::Str(value.clone()))).collect();
        items.push((Value::Str("__metadata__".into()), Value::Dict(extra)));
    }
    Ok(Value::Dict(items))
}

fn dtype(dtype: FileDtype) -> Result<Dtype, CheckpointError> {
    Ok(match dtype {
        FileDtype::F32 => Dtype::F32,
        FileDtype::F64 => Dtype::F64,
        FileDtype::F16 => Dtype::F16,
        FileDtype::BF16 => Dtype::BF16,
        FileDtype::I64 => Dtype::I64,
        FileDtype::I32 => Dtype::I32,
        FileDtype::I16 => Dtype::I16,
        FileDtype::I8 => Dtype::I8,
        FileDtype::U8 => Dtype::U8,
        FileDtype::BOOL => Dtype::Bool,
        other => return Err(CheckpointError::Unsupported(format!("a safetensors tensor of dtype {other:?}"))),
    })
}
