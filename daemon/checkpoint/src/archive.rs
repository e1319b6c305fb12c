//! The `torch.save` zip archive (PyTorch 1.6 and later). Its entries sit under one
//! root directory, which torch names after the file's stem:
//!
//! ```text
//! <root>/data.pkl        the pickled object (see `pickle.rs`)
//! <root>/byteorder       "little" or "big" (absent in archives older than PyTorch 2.1)
//! <root>/data/<key>      one record per storage: its raw elements
//! <root>/version, <root>/.format_version, <root>/.storage_alignment, ...
//! ```
//!
//! torch writes records uncompressed, so their bytes are borrowed from the file rather
//! than copied; a compressed record (an archive rewritten by another tool) is inflated.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::error::CheckpointError;
use crate::pickle::{unpickle, Storage};
use crate::value::{Dtype, Value};

/// How far deflate can expand data at best; a record claiming more is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// Reads the object a `torch.save` archive holds.
pub(crate) fn read_archive(file: &[u8]) -> Result<Value, CheckpointError> {
    let mut archive =
        ZipArchive::new(Cursor::new(file)).map_err(|error| CheckpointError::Corrupt(format!("the zip archive cannot be read ({error})")))?;
    let Some(root) = archive_root(&archive) else {
        let names: Vec<&str> = archive.file_names().take(8).collect();
        return Err(CheckpointError::UnknownFormat(format!("a zip archive without a `<root>/data.pkl` (it holds {names:?})")));
    };
    if archive.index_for_name(&format!("{root}/constants.pkl")).is_some() {
        return Err(CheckpointError::Unsupported("a TorchScript module (torch.jit.save) as a checkpoint: it is a model to load".into()));
    }
    let byteorder = format!("{root}/byteorder");
    if archive.index_for_name(&byteorder).is_some() {
        match &*read_record(&mut archive, file, &byteorder)? {
            b"little" => {}
            b"big" => return Err(CheckpointError::Unsupported("a big-endian checkpoint (its byteorder record says `big`)".into())),
            other => return Err(CheckpointError::Corrupt(format!("the byteorder record says {:?}", String::from_utf8_lossy(other)))),
        }
    }
    let pickle = read_record(&mut archive, file, &format!("{root}/data.pkl"))?;
    unpickle(&pickle, |key, dtype, numel| load_storage(&mut archive, file, &root, key, dtype, numel))
}

/// The directory holding `data.pkl`: the first entry's top-level directory, as
/// PyTorch's own reader takes it, when `data.pkl` is there.
fn archive_root(archive: &ZipArchive<Cursor<&[u8]>>) -> Option<String> {
    let first = archive.file_names().next()?;
    let root = first.split_once('/')?.0;
    archive.index_for_name(&format!("{root}/data.pkl")).map(|_| root.to_owned())
}

/// The record `<root>/data/<key>`, after checking that it holds exactly `numel`
/// elements of `dtype`.
fn load_storage<'a>(
    archive: &mut ZipArchive<Cursor<&'a [u8]>>,
    file: &'a [u8],
    root: &str,
    key: &str,
    dtype: Dtype,
    numel: u64,
) -> Result<Storage<'a>, CheckpointError> {
    let record = format!("{root}/data/{key}");
    let expected_bytes =
        numel.checked_mul(dtype.size() as u64).ok_or_else(|| CheckpointError::Corrupt(format!("storage `{record}` claims {numel} elements")))?;
    let found_bytes = open(archive, &record)?.size();
    if found_bytes != expected_bytes {
        return Err(CheckpointError::StorageSizeMismatch { record, dtype, numel, expected_bytes, found_bytes });
    }
    let bytes = read_record(archive, file, &record)?;
    Ok(Storage { dtype, numel, record, bytes })
}

fn open<'z, 'a>(archive: &'z mut ZipArchive<Cursor<&'a [u8]>>, name: &str) -> Result<zip::read::ZipFile<'z, Cursor<&'a [u8]>>, CheckpointError> {
    archive.by_name(name).map_err(|error| match error {
        ZipError::FileNotFound => CheckpointError::Corrupt(format!("the archive has no record `{name}`")),
        other => CheckpointError::Corrupt(format!("record `{name}` cannot be read ({other})")),
    })
}

/// A record's bytes: borrowed from `file` when stored uncompressed, inflated otherwise.
fn read_record<'a>(archive: &mut ZipArchive<Cursor<&'a [u8]>>, file: &'a [u8], name: &str) -> Result<Cow<'a, [u8]>, CheckpointError> {
    let mut entry = open(archive, name)?;
    let size = entry.size();
    let unreadable = || CheckpointError::Corrupt(format!("record `{name}` runs past the end of the file"));
    if entry.compression() == CompressionMethod::Stored && !entry.encrypted() {
        let start = usize::try_from(entry.data_start()).map_err(|_| unreadable())?;
        let end = usize::try_from(size).ok().and_then(|size| start.checked_add(size)).ok_or_else(unreadable)?;
        return file.get(start..end).map(Cow::Borrowed).ok_or_else(unreadable);
    }
    if size > entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO) {
        return Err(CheckpointError::Corrupt(format!("record `{name}` claims to inflate {} bytes to {size}", entry.compressed_size())));
    }
    let mut bytes = Vec::new();
    entry
        .by_ref()
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|error| CheckpointError::Corrupt(format!("record `{name}` cannot be inflated ({error})")))?;
    if bytes.len() as u64 != size {
        return Err(CheckpointError::Corrupt(format!("record `{name}` inflates to {} bytes, not the {size} its header says", bytes.len())));
    }
    Ok(Cow::Owned(bytes))
}
