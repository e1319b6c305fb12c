//! The content-addressed model store: a plain directory, embedded, zero set-up.
//!
//! ```text
//! <store>/models/<sha256>        the TorchScript file, named by the sha256 of its bytes
//! <store>/meta/<sha256>.json     size, creation time, format, example input shape
//! <store>/names/<name>           a name: the id it refers to
//! <store>/staging/               uploads being received; never read as models
//! ```
//! Every write is a temp file in the same directory followed by a rename, so a crash
//! never leaves a half-written model, record or name. A model is committed only after
//! libtorch loaded it (the caller validates before `commit`).
//!
//! All methods block on file-system calls; async callers use `spawn_blocking`.

use crate::error::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tempfile::NamedTempFile;

/// What the store knows about a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRecord {
    pub id: String,
    pub size_bytes: u64,
    pub created_unix: i64,
    pub format: String,
    #[serde(default)]
    pub input_shape: Vec<i64>,
    /// Names referring to this model (filled in when listing, not stored).
    #[serde(skip)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A file received into the staging area, hashed but not yet committed. Dropping it
/// deletes the file.
pub struct StagedModel {
    file: NamedTempFile,
    pub id: String,
    pub size_bytes: u64,
}

impl StagedModel {
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Streams bytes into a staged file while hashing them.
pub struct StagingWriter {
    file: NamedTempFile,
    hasher: Sha256,
    size_bytes: u64,
}

impl StagingWriter {
    pub fn write(&mut self, chunk: &[u8]) -> ApiResult<()> {
        self.file.write_all(chunk)?;
        self.hasher.update(chunk);
        self.size_bytes += chunk.len() as u64;
        Ok(())
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn finish(mut self) -> ApiResult<StagedModel> {
        self.file.as_file_mut().sync_all()?;
        Ok(StagedModel { file: self.file, id: hex::encode(self.hasher.finalize()), size_bytes: self.size_bytes })
    }
}

impl Store {
    /// Opens (creating if needed) a store directory and clears stale staging files.
    pub fn open(root: &Path) -> ApiResult<Store> {
        for directory in ["models", "meta", "names", "staging"] {
            fs::create_dir_all(root.join(directory)).map_err(|error| {
                ApiError::internal(format!("cannot create store directory {}: {error}", root.join(directory).display()))
            })?;
        }
        // Uploads interrupted by a crash leave files here; they were never models.
        for entry in fs::read_dir(root.join("staging"))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn model_path(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    pub fn staging_writer(&self) -> ApiResult<StagingWriter> {
        Ok(StagingWriter { file: NamedTempFile::new_in(self.root.join("staging"))?, hasher: Sha256::new(), size_bytes: 0 })
    }

    /// Copies a file on the daemon's machine into staging, hashing it.
    pub fn stage_file(&self, source: &Path, max_bytes: u64) -> ApiResult<StagedModel> {
        let metadata = fs::metadata(source).map_err(|error| {
            let message = format!("cannot read model file {}: {error}", source.display());
            if error.kind() == std::io::ErrorKind::NotFound {
                ApiError::not_found(message)
            } else {
                ApiError::bad_input(message)
            }
        })?;
        if !metadata.is_file() {
            return Err(ApiError::bad_input(format!("{} is not a regular file", source.display())));
        }
        if metadata.len() > max_bytes {
            return Err(ApiError::too_large(format!(
                "model file {} is {} bytes, over the limit of {max_bytes} bytes",
                source.display(),
                metadata.len()
            )));
        }
        let mut reader = fs::File::open(source)
            .map_err(|error| ApiError::bad_input(format!("cannot read model file {}: {error}", source.display())))?;
        let mut writer = self.staging_writer()?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let count = std::io::Read::read(&mut reader, &mut buffer)?;
            if count == 0 {
                break;
            }
            writer.write(&buffer[..count])?;
        }
        if writer.size_bytes() == 0 {
            return Err(ApiError::bad_input(format!("model file {} is empty", source.display())));
        }
        writer.finish()
    }

    /// Moves a validated staged model into the store (a no-op for the bytes when the
    /// id is already there) and points `name`, if any, at it.
    pub fn commit(&self, staged: StagedModel, name: Option<&str>, input_shape: &[i64]) -> ApiResult<ModelRecord> {
        if let Some(name) = name {
            check_name(name)?;
        }
        let id = staged.id.clone();
        let record = match self.record(&id)? {
            Some(mut existing) => {
                // Same bytes again: keep the stored file, learn the input shape if new.
                if existing.input_shape.is_empty() && !input_shape.is_empty() {
                    existing.input_shape = input_shape.to_vec();
                    self.write_record(&existing)?;
                }
                existing
            }
            None => {
                let record = ModelRecord {
                    id: id.clone(),
                    size_bytes: staged.size_bytes,
                    created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
                    format: "torchscript".to_string(),
                    input_shape: input_shape.to_vec(),
                    names: Vec::new(),
                };
                // The record first: a model file without a record would be listed with
                // unknown metadata, a record without a model file is never listed.
                self.write_record(&record)?;
                staged.file.persist(self.model_path(&id)).map_err(|error| ApiError::from(error.error))?;
                sync_directory(&self.root.join("models"))?;
                record
            }
        };
        if let Some(name) = name {
            write_atomically(&self.root.join("names"), name, id.as_bytes())?;
        }
        Ok(self.get(&id)?.unwrap_or(record))
    }

    /// The record of a stored model, with its names; `None` when not stored.
    pub fn get(&self, id: &str) -> ApiResult<Option<ModelRecord>> {
        let Some(mut record) = self.record(id)? else { return Ok(None) };
        record.names = self.names()?.remove(id).unwrap_or_default();
        Ok(Some(record))
    }

    /// Every stored model, ordered by id.
    pub fn list(&self) -> ApiResult<Vec<ModelRecord>> {
        let mut names = self.names()?;
        let mut records = Vec::new();
        for entry in fs::read_dir(self.root.join("models"))?.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Some(mut record) = self.record(&id)? {
                record.names = names.remove(&id).unwrap_or_default();
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// Resolves a full id, a unique id prefix of 8+ hex characters, or a name.
    pub fn resolve(&self, reference: &str) -> ApiResult<ModelRecord> {
        if reference.is_empty() {
            return Err(ApiError::bad_input("no model given; pass an id, an id prefix or a name"));
        }
        let is_hex = reference.chars().all(|c| c.is_ascii_hexdigit());
        if is_hex && reference.len() == 64 {
            if let Some(record) = self.get(&reference.to_ascii_lowercase())? {
                return Ok(record);
            }
        }
        if check_name(reference).is_ok() {
            if let Ok(id) = fs::read_to_string(self.root.join("names").join(reference)) {
                if let Some(record) = self.get(id.trim())? {
                    return Ok(record);
                }
            }
        }
        if is_hex && reference.len() >= 8 {
            let prefix = reference.to_ascii_lowercase();
            let matches: Vec<ModelRecord> = self.list()?.into_iter().filter(|record| record.id.starts_with(&prefix)).collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().expect("one match")),
                0 => {}
                count => {
                    return Err(ApiError::bad_input(format!(
                        "model id prefix '{reference}' is ambiguous: {count} models start with it; give more characters"
                    )))
                }
            }
        }
        Err(ApiError::not_found(format!("no model with name, id or id prefix '{reference}'")))
    }

    /// Deletes a model and every name referring to it.
    pub fn delete(&self, id: &str) -> ApiResult<()> {
        // Names first, then the file, then the record: a crash in between leaves at
        // worst a nameless model or an unlisted record, never a name that dangles.
        for (name_id, names) in self.names()? {
            if name_id == id {
                for name in names {
                    remove_if_present(&self.root.join("names").join(name))?;
                }
            }
        }
        remove_if_present(&self.model_path(id))?;
        remove_if_present(&self.root.join("meta").join(format!("{id}.json")))?;
        Ok(())
    }

    fn record(&self, id: &str) -> ApiResult<Option<ModelRecord>> {
        if !is_model_id(id) || !self.model_path(id).is_file() {
            return Ok(None);
        }
        let path = self.root.join("meta").join(format!("{id}.json"));
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| ApiError::internal(format!("store record {} is corrupt: {error}", path.display())))
    }

    fn write_record(&self, record: &ModelRecord) -> ApiResult<()> {
        let json = serde_json::to_vec_pretty(record).map_err(|error| ApiError::internal(error.to_string()))?;
        write_atomically(&self.root.join("meta"), &format!("{}.json", record.id), &json)
    }

    /// id -> names referring to it, names sorted.
    fn names(&self) -> ApiResult<BTreeMap<String, Vec<String>>> {
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in fs::read_dir(self.root.join("names"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(id) = fs::read_to_string(entry.path()) {
                by_id.entry(id.trim().to_string()).or_default().push(name);
            }
        }
        for names in by_id.values_mut() {
            names.sort();
        }
        Ok(by_id)
    }
}

fn is_model_id(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Names are file names in `names/`: letters, digits, `.`, `_`, `-`, at most 128,
/// not starting with `.`.
fn check_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_input(format!(
            "model name '{name}' is not allowed; use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

fn write_atomically(directory: &Path, file_name: &str, bytes: &[u8]) -> ApiResult<()> {
    let mut file = NamedTempFile::new_in(directory)?;
    file.write_all(bytes)?;
    file.as_file_mut().sync_all()?;
    file.persist(directory.join(file_name)).map_err(|error| ApiError::from(error.error))?;
    sync_directory(directory)
}

fn sync_directory(directory: &Path) -> ApiResult<()> {
    fs::File::open(directory)?.sync_all()?;
    Ok(())
}

fn remove_if_present(path: &Path) -> ApiResult<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}
