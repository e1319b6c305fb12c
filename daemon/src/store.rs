//! The content-addressed model store: a plain directory, embedded, zero set-up.
//!
//! ```text
//! <store>/models/<sha256>        the TorchScript file, named by the sha256 of its bytes
//! <store>/meta/<sha256>.json     size, creation time, format, example input shape
//! <store>/names/<name>           a name: the id it refers to
//! <store>/staging/<owner>.<random>.part   uploads being received; never read as models
//! <store>/locks/<owner>.lock     one per open store (per daemon), locked (flock) while open
//! <store>/tokenizers/<sha256>.json  a model's tokenizer (Hugging Face tokenizer.json)
//! <store>/checkpoints/<sha256>   training checkpoints, by the sha256 of their bytes
//! <store>/training.db            checkpoint records and training runs (runs.rs)
//! ```
//! Every write is a temp file in the same directory followed by a rename, so a crash
//! never leaves a half-written model, record or name. A model is committed only after
//! libtorch loaded it (the caller validates before `commit`).
//!
//! Several daemons may share one store directory (replicas behind a proxy). Renames
//! make their commits safe against each other: the same bytes committed twice replace
//! a file by an identical one, and a name points at whichever id was written last.
//! What they must not do is delete each other's uploads: each open store takes an
//! owner id, holds the lock on `locks/<owner>.lock` and names its staged files after
//! it; at start a daemon removes only staged files whose owner's lock is gone or free
//! (the kernel drops a lock when its process dies, even by `kill -9`).
//!
//! All methods block on file-system calls; async callers use `spawn_blocking`.

use crate::error::{ApiError, ApiResult};
use crate::resolved::Resolved;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::NamedTempFile;

/// Temp files in `meta/` and `names/` (a record or name being written) and unfinished
/// lock claims older than this belong to a process that died while writing them: a
/// live writer renames them within milliseconds.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

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
    /// Whether a tokenizer is stored with the model (filled in when read, not stored).
    #[serde(skip)]
    pub has_tokenizer: bool,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    owner: Arc<OwnerLock>,
    /// References the serving path resolved a moment ago (resolved.rs); every change
    /// below forgets them.
    resolved: Arc<Resolved>,
}

/// This store's owner id and its lock, held while the store is open; the lock file
/// is removed when the last clone of the store is dropped.
#[derive(Debug)]
struct OwnerLock {
    /// `<pid>-<random>`: the prefix of this store's staged files.
    id: String,
    lock_path: PathBuf,
    /// Holds the exclusive lock on `lock_path`; closing it releases the lock.
    _lock: fs::File,
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock_path);
    }
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
    /// Opens (creating if needed) a store directory, clears what crashed processes left
    /// behind (their uploads, half-written records and names) and takes an owner id
    /// and its lock for this store's uploads.
    pub fn open(root: &Path) -> ApiResult<Store> {
        for directory in ["models", "meta", "names", "staging", "locks", "checkpoints", "tokenizers"] {
            fs::create_dir_all(root.join(directory))
                .map_err(|error| ApiError::internal(format!("cannot create store directory {}: {error}", root.join(directory).display())))?;
        }
        // Leftovers are never read as models, names or records, so failing to remove
        // one is worth a warning, not a refusal to start.
        if let Err(error) = clean_staging(root) {
            tracing::warn!(store = %root.display(), "cannot clear leftover uploads: {}", error.message);
        }
        for directory in ["meta", "names"] {
            if let Err(error) = remove_stale_temp_files(&root.join(directory)) {
                tracing::warn!(directory = %root.join(directory).display(), "cannot clear leftover temp files: {}", error.message);
            }
        }
        let owner = claim_owner(&root.join("locks"))?;
        Ok(Store { root: root.to_path_buf(), owner: Arc::new(owner), resolved: Arc::new(Resolved::new(crate::resolved::KEPT_FOR)) })
    }

    pub fn model_path(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    pub fn tokenizer_path(&self, model_id: &str) -> PathBuf {
        self.root.join("tokenizers").join(format!("{model_id}.json"))
    }

    /// Stores (or replaces) a model's tokenizer.json, atomically.
    pub fn set_tokenizer(&self, model_id: &str, bytes: &[u8]) -> ApiResult<()> {
        let written = write_atomically(&self.root.join("tokenizers"), &format!("{model_id}.json"), bytes);
        self.resolved.changed();
        written
    }

    pub fn checkpoint_path(&self, id: &str) -> PathBuf {
        self.root.join("checkpoints").join(id)
    }

    /// The embedded database of checkpoints and runs.
    pub fn training_db_path(&self) -> PathBuf {
        self.root.join("training.db")
    }

    /// Moves a validated staged checkpoint to its content address (the same bytes
    /// again replace an identical file).
    pub fn commit_checkpoint(&self, staged: StagedModel) -> ApiResult<()> {
        let path = self.checkpoint_path(&staged.id);
        staged.file.persist(path).map_err(|error| ApiError::from(error.error))?;
        sync_directory(&self.root.join("checkpoints"))
    }

    pub fn delete_checkpoint(&self, id: &str) -> ApiResult<()> {
        if is_model_id(id) {
            remove_if_present(&self.checkpoint_path(id))?;
        }
        Ok(())
    }

    pub fn staging_writer(&self) -> ApiResult<StagingWriter> {
        let file = tempfile::Builder::new().prefix(&format!("{}.", self.owner.id)).suffix(".part").tempfile_in(self.root.join("staging"))?;
        Ok(StagingWriter { file, hasher: Sha256::new(), size_bytes: 0 })
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
        let mut reader =
            fs::File::open(source).map_err(|error| ApiError::bad_input(format!("cannot read model file {}: {error}", source.display())))?;
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
        let committed = self.commit_files(staged, name, input_shape);
        self.resolved.changed();
        committed
    }

    fn commit_files(&self, staged: StagedModel, name: Option<&str>, input_shape: &[i64]) -> ApiResult<ModelRecord> {
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
                    format: layerlens_engine::model::ModelKind::of_file(staged.path()).name().to_string(),
                    input_shape: input_shape.to_vec(),
                    names: Vec::new(),
                    has_tokenizer: false,
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
        record.has_tokenizer = self.tokenizer_path(id).is_file();
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
                record.has_tokenizer = self.tokenizer_path(&id).is_file();
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// The record `reference` resolved to through [`Store::resolve_kept`] a moment ago,
    /// if this store has not changed since: no file-system call (resolved.rs).
    pub fn kept(&self, reference: &str) -> Option<ModelRecord> {
        self.resolved.get(reference)
    }

    /// [`Store::resolve`], keeping the answer for [`Store::kept`].
    pub fn resolve_kept(&self, reference: &str) -> ApiResult<ModelRecord> {
        let before = self.resolved.changes();
        let record = self.resolve(reference)?;
        self.resolved.remember(reference, &record, before);
        Ok(record)
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
        let deleted = self.delete_files(id);
        self.resolved.changed();
        deleted
    }

    fn delete_files(&self, id: &str) -> ApiResult<()> {
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
        remove_if_present(&self.tokenizer_path(id))?;
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
        serde_json::from_str(&text).map(Some).map_err(|error| ApiError::internal(format!("store record {} is corrupt: {error}", path.display())))
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

/// Whether the owner of staged files still runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OwnerState {
    Alive,
    /// Gone; its lock file, if there still is one, is removed after its files.
    Gone,
}

/// Removes what dead processes left in `staging/` (files whose owner's lock is gone or
/// can be taken, and files of the layout before owners) and in `locks/` (their lock
/// files, and claims older than `STALE_TEMP_AGE` that were never renamed). Files of
/// live daemons sharing the store are left alone.
fn clean_staging(root: &Path) -> ApiResult<()> {
    let locks = root.join("locks");
    let mut owners: BTreeMap<String, (OwnerState, Option<fs::File>)> = BTreeMap::new();
    for entry in fs::read_dir(root.join("staging"))?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let owner = file_name.split('.').next().unwrap_or_default().to_string();
        if !owners.contains_key(&owner) {
            let checked = check_owner(&locks, &owner)?;
            owners.insert(owner.clone(), checked);
        }
        if owners[&owner].0 == OwnerState::Gone {
            tracing::info!(file = %entry.path().display(), "removing an upload left by a daemon that stopped");
            remove_if_present(&entry.path())?;
        }
    }
    for entry in fs::read_dir(&locks)?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            if is_older_than(&entry.path(), STALE_TEMP_AGE) {
                remove_if_present(&entry.path())?;
            }
            continue;
        }
        let Some(owner) = file_name.strip_suffix(".lock") else { continue };
        if !owners.contains_key(owner) {
            let checked = check_owner(&locks, owner)?;
            owners.insert(owner.to_string(), checked);
        }
        // Removed while its lock is held here, so no other daemon mistakes it for live.
        if owners[owner].0 == OwnerState::Gone {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Whether `owner` runs: its lock file exists and its lock is held. A live owner's
/// lock file exists before its first staged file (`claim_owner`), so a staged file
/// without one is debris. A lock taken here is returned, to be held until its file
/// is removed.
fn check_owner(locks: &Path, owner: &str) -> ApiResult<(OwnerState, Option<fs::File>)> {
    if owner.is_empty() {
        return Ok((OwnerState::Gone, None));
    }
    let lock = match fs::File::open(locks.join(format!("{owner}.lock"))) {
        Ok(lock) => lock,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((OwnerState::Gone, None)),
        Err(error) => return Err(error.into()),
    };
    match lock.try_lock() {
        Ok(()) => Ok((OwnerState::Gone, Some(lock))),
        Err(fs::TryLockError::WouldBlock) => Ok((OwnerState::Alive, None)),
        Err(fs::TryLockError::Error(error)) => {
            Err(ApiError::internal(format!("cannot lock {}: {error}", locks.join(format!("{owner}.lock")).display())))
        }
    }
}

/// Takes an owner id and its lock. The lock file is made under a dot name and renamed
/// into place with the lock already held, so no other daemon ever sees a live owner's
/// lock file free.
fn claim_owner(locks: &Path) -> ApiResult<OwnerLock> {
    let claim = tempfile::Builder::new().prefix(".claim").tempfile_in(locks)?;
    claim.as_file().try_lock().map_err(|error| ApiError::internal(format!("cannot lock a new owner file in {}: {error}", locks.display())))?;
    let random = claim.path().file_name().unwrap_or_default().to_string_lossy().trim_start_matches(".claim").to_string();
    let owner = format!("{}-{}", std::process::id(), random.replace('.', ""));
    let lock_path = locks.join(format!("{owner}.lock"));
    let lock = claim.persist(&lock_path).map_err(|error| ApiError::from(error.error))?;
    Ok(OwnerLock { id: owner, lock_path, _lock: lock })
}

/// Removes `.tmp*` files (tempfile's names, never a model id or an allowed name) that
/// are older than `STALE_TEMP_AGE`: a record or name whose writer died before its rename.
fn remove_stale_temp_files(directory: &Path) -> ApiResult<()> {
    for entry in fs::read_dir(directory)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp") && is_older_than(&entry.path(), STALE_TEMP_AGE) {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

fn is_older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
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
        Err(ApiError::bad_input(format!("model name '{name}' is not allowed; use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'")))
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

#[cfg(test)]
mod tests {
    //! Crash and sharing safety at the file level: what a killed process or a second
    //! daemon on the same directory leaves behind must never show up as a model or a
    //! name, and must never take away another daemon's upload.

    use super::*;

    fn stage(store: &Store, bytes: &[u8]) -> StagedModel {
        let mut writer = store.staging_writer().unwrap();
        writer.write(bytes).unwrap();
        writer.finish().unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn files_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(directory).unwrap().flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn backdate(path: &Path) {
        let old = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    }

    fn lock_file_name(store: &Store) -> String {
        format!("{}.lock", store.owner.id)
    }

    #[test]
    fn leftovers_of_a_crash_are_never_models_or_names_and_are_cleared_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let kept_id = {
            let store = Store::open(root).unwrap();
            store.commit(stage(&store, b"the kept model"), Some("kept"), &[1, 4]).unwrap().id
        };
        let orphan_record_id = sha256_hex(b"a record whose model file never arrived");
        let orphan_model_id = sha256_hex(b"a model file whose record never arrived");
        let record = |id: &str| format!("{{\"id\":\"{id}\",\"size_bytes\":3,\"created_unix\":0,\"format\":\"torchscript\"}}");
        // A crash between writing a record and renaming the model file into place, and
        // a model file without a record (written by hand: the store never does that).
        fs::write(root.join("meta").join(format!("{orphan_record_id}.json")), record(&orphan_record_id)).unwrap();
        fs::write(root.join("models").join(&orphan_model_id), b"abc").unwrap();
        // Records and names killed before their rename: one old, one that a live
        // writer could still be about to rename.
        for (directory, contents) in [("meta", record(&orphan_model_id)), ("names", kept_id.clone())] {
            fs::write(root.join(directory).join(".tmpOLD123"), &contents).unwrap();
            backdate(&root.join(directory).join(".tmpOLD123"));
            fs::write(root.join(directory).join(".tmpNEW456"), &contents).unwrap();
        }
        // A daemon killed mid-upload: its lock file, never locked again, and its
        // half-written upload; an upload whose owner's lock file is gone; a claim
        // that never got renamed; a file of the layout before owners.
        fs::write(root.join("locks").join("4242-dead.lock"), b"").unwrap();
        fs::write(root.join("staging").join("4242-dead.abc123.part"), vec![7u8; 4096]).unwrap();
        fs::write(root.join("staging").join("4343-gone.def456.part"), vec![7u8; 4096]).unwrap();
        fs::write(root.join("locks").join(".claimDEAD"), b"").unwrap();
        backdate(&root.join("locks").join(".claimDEAD"));
        fs::write(root.join("staging").join(".tmpFLAT"), b"partial").unwrap();

        let store = Store::open(root).unwrap();
        let listed: Vec<(String, Vec<String>)> = store.list().unwrap().into_iter().map(|record| (record.id, record.names)).collect();
        assert_eq!(listed, vec![(kept_id.clone(), vec!["kept".to_string()])]);
        assert!(store.get(&orphan_record_id).unwrap().is_none());
        assert!(store.get(&orphan_model_id).unwrap().is_none());
        for reference in [".tmpOLD123", ".tmpNEW456", &orphan_model_id[..12], &orphan_record_id[..12]] {
            let error = store.resolve(reference).unwrap_err();
            assert_eq!(error.kind, layerlens_engine::ErrorKind::NotFound, "{reference}: {}", error.message);
        }
        assert_eq!(store.resolve("kept").unwrap().input_shape, vec![1, 4]);
        // Old temp files are gone; fresh ones are left to their (possibly live) writers.
        assert_eq!(files_in(&root.join("names")), vec![".tmpNEW456", "kept"]);
        let mut expected_meta = vec![".tmpNEW456".to_string(), format!("{kept_id}.json"), format!("{orphan_record_id}.json")];
        expected_meta.sort();
        assert_eq!(files_in(&root.join("meta")), expected_meta);
        // Every staged leftover is gone, and only this store's own lock is left.
        assert_eq!(files_in(&root.join("staging")), Vec::<String>::new());
        assert_eq!(files_in(&root.join("locks")), vec![lock_file_name(&store)]);
        drop(store);
        assert_eq!(files_in(&root.join("locks")), Vec::<String>::new(), "a closed store left its lock file");
    }

    #[test]
    fn a_second_store_on_the_same_directory_keeps_the_first_ones_upload() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let mut writer = first.staging_writer().unwrap();
        writer.write(b"half of a model, ").unwrap();
        // A second daemon starts on the store while the first is receiving bytes.
        let second = Store::open(dir.path()).unwrap();
        assert_ne!(first.owner.id, second.owner.id);
        assert_eq!(files_in(&dir.path().join("staging")).len(), 1, "the second store removed the first one's upload");
        writer.write(b"and the other half").unwrap();
        let staged = writer.finish().unwrap();
        let record = first.commit(staged, Some("shared"), &[]).unwrap();
        assert_eq!(record.id, sha256_hex(b"half of a model, and the other half"));
        assert_eq!(fs::read(second.model_path(&record.id)).unwrap(), b"half of a model, and the other half");
        assert_eq!(second.resolve("shared").unwrap().id, record.id);
        assert_eq!(files_in(&dir.path().join("staging")), Vec::<String>::new());
        // A store whose owner died (its lock released, the file left) loses its upload
        // at the next open; a live one does not.
        let mut live_writer = second.staging_writer().unwrap();
        live_writer.write(b"live").unwrap();
        let mut dead_writer = first.staging_writer().unwrap();
        dead_writer.write(b"dead").unwrap();
        let dead_path = dead_writer.file.path().to_path_buf();
        let dead_lock = dir.path().join("locks").join(lock_file_name(&first));
        std::mem::forget(dead_writer);
        // As if its process had died: the kernel releases the lock, the files stay.
        first.owner._lock.unlock().unwrap();
        assert!(dead_path.is_file() && dead_lock.is_file());
        let third = Store::open(dir.path()).unwrap();
        assert!(!dead_path.exists(), "an upload of a stopped store was kept");
        assert!(!dead_lock.exists(), "a stopped store's lock file was kept");
        assert!(live_writer.file.path().is_file(), "a live store's upload was removed");
        assert_eq!(files_in(&dir.path().join("locks")), {
            let mut expected = vec![lock_file_name(&second), lock_file_name(&third)];
            expected.sort();
            expected
        });
        let staged = live_writer.finish().unwrap();
        assert_eq!(second.commit(staged, None, &[]).unwrap().id, sha256_hex(b"live"));
    }

    #[test]
    fn a_kept_reference_follows_every_change_made_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.commit(stage(&store, b"first model"), Some("digits"), &[]).unwrap();
        assert_eq!(store.kept("digits"), None, "nothing is kept before a lookup");
        assert_eq!(store.resolve_kept("digits").unwrap().id, first.id);
        assert_eq!(store.kept("digits").map(|record| record.id), Some(first.id.clone()));
        // The name moved to another model: forgotten, and the next lookup finds the new one.
        let second = store.commit(stage(&store, b"second model"), Some("digits"), &[]).unwrap();
        assert_eq!(store.kept("digits"), None);
        assert_eq!(store.resolve_kept("digits").unwrap().id, second.id);
        // A tokenizer added and the model deleted: each forgets.
        store.set_tokenizer(&second.id, b"{}").unwrap();
        assert_eq!(store.kept("digits"), None);
        assert!(store.resolve_kept("digits").unwrap().has_tokenizer);
        store.delete(&second.id).unwrap();
        assert_eq!(store.kept("digits"), None);
        assert_eq!(store.resolve_kept("digits").unwrap_err().kind, layerlens_engine::ErrorKind::NotFound);
        assert_eq!(store.kept("digits"), None, "a failed lookup is not kept");
        assert_eq!(store.resolve_kept(&first.id).unwrap().id, first.id, "the first model is still stored");
    }

    #[test]
    fn concurrent_commits_from_two_stores_on_one_directory_are_safe() {
        let dir = tempfile::tempdir().unwrap();
        let stores = [Store::open(dir.path()).unwrap(), Store::open(dir.path()).unwrap()];
        let shared_bytes = vec![42u8; 300_000];
        let rounds = 20;
        std::thread::scope(|scope| {
            for (index, store) in stores.iter().enumerate() {
                let shared_bytes = &shared_bytes;
                scope.spawn(move || {
                    for round in 0..rounds {
                        // The same model under the same name from both stores at once...
                        let shared = store.commit(stage(store, shared_bytes), Some("shared"), &[1, 2]).unwrap();
                        assert_eq!(shared.id, sha256_hex(shared_bytes));
                        // ...and a model of each store's own.
                        let own = format!("store {index} round {round}").into_bytes();
                        let record = store.commit(stage(store, &own), Some(&format!("own-{index}-{round}")), &[]).unwrap();
                        assert_eq!(record.id, sha256_hex(&own));
                        // Every read in between sees whole models only.
                        for listed in store.list().unwrap() {
                            let bytes = fs::read(store.model_path(&listed.id)).unwrap();
                            assert_eq!(bytes.len() as u64, listed.size_bytes);
                            assert_eq!(sha256_hex(&bytes), listed.id);
                        }
                    }
                });
            }
        });
        let store = &stores[0];
        assert_eq!(store.list().unwrap().len(), 1 + 2 * rounds);
        let shared = store.resolve("shared").unwrap();
        assert_eq!(shared.input_shape, vec![1, 2]);
        assert_eq!(fs::read(store.model_path(&shared.id)).unwrap(), shared_bytes);
        for index in 0..2 {
            for round in 0..rounds {
                let record = store.resolve(&format!("own-{index}-{round}")).unwrap();
                assert_eq!(record.id, sha256_hex(format!("store {index} round {round}").as_bytes()));
            }
        }
        // Nothing staged is left over, and every file in models/ is a listed model.
        assert_eq!(files_in(&dir.path().join("staging")), Vec::<String>::new());
        let listed: Vec<String> = store.list().unwrap().into_iter().map(|record| record.id).collect();
        assert_eq!(files_in(&dir.path().join("models")), listed);
    }
}
