//! The one error type of this crate. Every variant is bad input (a caller answers it as
//! such); each message says what was found and what was expected.

use crate::value::Dtype;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Neither a zip archive nor a safetensors header.
    #[error("not a checkpoint: {0}")]
    UnknownFormat(String),

    /// The archive or its pickle ends early or does not hold together.
    #[error("truncated or corrupt checkpoint: {0}")]
    Corrupt(String),

    /// The pickle names a Python callable or class outside the allow-list. Nothing was
    /// called: reading stops at the name.
    #[error(
        "checkpoint refused: the pickle calls `{module}.{name}`, which is not a tensor or a container (layerlens reads checkpoints as data only)"
    )]
    ForbiddenGlobal { module: String, name: String },

    /// Something PyTorch writes that this reader does not read (a legacy archive, a
    /// quantized tensor, a complex dtype, a big-endian file).
    #[error("layerlens does not read {0}")]
    Unsupported(String),

    /// A storage's record does not have the size its element count and type give.
    #[error("storage record `{record}` should hold {numel} {} elements ({expected_bytes} bytes) but has {found_bytes} bytes", dtype.name())]
    StorageSizeMismatch { record: String, dtype: Dtype, numel: u64, expected_bytes: u64, found_bytes: u64 },

    /// A tensor view reaches past the end of its storage.
    #[error(
        "tensor with sizes {sizes:?}, strides {strides:?} and storage offset {offset} reaches element {last_element} of storage `{record}`, which holds {storage_numel}"
    )]
    TensorOutOfBounds { record: String, sizes: Vec<i64>, strides: Vec<i64>, offset: i64, last_element: u64, storage_numel: u64 },

    /// A tensor's sizes, strides or offset are impossible (negative, or overflowing).
    #[error("tensor on storage `{record}` is invalid: {reason}")]
    InvalidTensor { record: String, reason: String },

    /// Reading would take more memory or nesting than a checkpoint of this size can need.
    #[error("checkpoint too large to read: {0}")]
    TooLarge(String),

    /// The file is readable but holds no model state dict and no optimizer state.
    #[error("no model state dict or optimizer state found: {0}")]
    Unrecognised(String),

    /// An optimizer state dict whose `state` or `param_groups` is not shaped as PyTorch
    /// writes it.
    /// `location` is "under `optimizer`" or "at the top level".
    #[error("optimizer state dict {location} is malformed: {reason}")]
    MalformedOptimizer { location: String, reason: String },
}
