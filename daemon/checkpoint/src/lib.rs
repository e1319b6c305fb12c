//! layerlens-checkpoint: reads PyTorch training checkpoints as data, never as code, and
//! without libtorch.
//!
//! Two formats are read, told apart by their first bytes:
//!
//! - **`torch.save` archives** (`PK` zip magic), which hold a pickle of the saved object
//!   whose tensors point at raw storage records in the same archive (`archive.rs`).
//!   `pickle.load` would call whatever the pickle names; this crate's unpickler
//!   (`pickle.rs`) knows a short allow-list (tensor and storage rebuilding,
//!   `OrderedDict`, `torch.Size`, dtypes, sets, bytes) and refuses anything else by name
//!   with [`CheckpointError::ForbiddenGlobal`], like `torch.load(weights_only=True)`.
//!   A tensor's sizes, strides and offset are checked against its storage, and the
//!   storage against its record, before anything is copied.
//! - **safetensors** (an 8-byte header length, then a JSON header), read with the
//!   `safetensors` crate (`safetensors_file.rs`).
//!
//! [`read_value`] gives the saved object as a [`Value`] tree; [`read_checkpoint`] finds
//! the model state dict, optimizer state, LR scheduler state and step in it by the
//! names training scripts use (`checkpoint.rs`). Tensors come back as contiguous
//! row-major little-endian bytes, whatever view they were saved as.
//!
//! Not read: the legacy (pre-1.6) `torch.save` format, TorchScript archives,
//! big-endian archives, quantized/sparse/nested tensors, dtypes other than those of
//! [`Dtype`], and Python objects other than the containers above (a whole pickled
//! `nn.Module`, numpy scalars). Each gives an error that says so.

mod archive;
mod checkpoint;
mod error;
mod pickle;
mod safetensors_file;
mod value;

pub use checkpoint::{read_checkpoint, Checkpoint, OptimizerKind, OptimizerState, ParamGroup};
pub use error::CheckpointError;
pub use value::{Dtype, TensorData, Value};

/// The container a checkpoint came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    TorchSave,
    Safetensors,
}

/// The first two bytes of a pickle of protocol 2 or later; a legacy `torch.save` file is
/// a sequence of pickles.
const PICKLE_PROTOCOL_OPCODE: u8 = 0x80;

/// Reads the object a checkpoint file holds. A safetensors file reads as a dict of its
/// tensors (see [`read_checkpoint`] for what training checkpoints hold).
pub fn read_value(bytes: &[u8]) -> Result<(Format, Value), CheckpointError> {
    if bytes.starts_with(b"PK\x03\x04") {
        Ok((Format::TorchSave, archive::read_archive(bytes)?))
    } else if safetensors_file::looks_like_safetensors(bytes) {
        Ok((Format::Safetensors, safetensors_file::read_safetensors(bytes)?))
    } else if bytes.first() == Some(&PICKLE_PROTOCOL_OPCODE) {
        Err(CheckpointError::Unsupported(
            "the legacy torch.save format (a bare pickle, written before PyTorch 1.6 or with `_use_new_zipfile_serialization=False`): re-save it with a current torch.save".into(),
        ))
    } else {
        let start: Vec<String> = bytes.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
        Err(CheckpointError::UnknownFormat(format!(
            "expected a torch.save zip archive (starting `PK`) or a safetensors file (an 8-byte header length, then `{{`), found {} bytes starting {}",
            bytes.len(),
            if start.is_empty() { "with nothing".to_owned() } else { start.join(" ") }
        )))
    }
}
