//! The resident-model registry: one owner task holds the map from model id to its
//! worker, fed by a closed command enum over a channel (no locks shared between
//! requests). Models load on their first request (or at start when pinned) and stay
//! resident until they are deleted or evicted.
//!
//! **Memory budget** (`--memory-budget-bytes`): the resident models' parameters and
//! buffers, counted exactly once loaded (the file size stands in while a model
//! loads), must fit. A model that does not fit makes room by evicting the least
//! recently used models that are not pinned, idle ones first; an evicted model's
//! worker finishes what is queued for it, then frees the model, and the model
//! reloads on its next request, which the answer reports (`x-layerlens-model-load:
//! reloaded`). Pins live in the store directory (`pins.json`), so they outlive
//! restarts, and pinned models load at start.

use crate::error::{ApiError, ApiResult};
use layerlens_engine::{Device, ErrorKind, ModelSpec, WorkerHandle, WorkerSettings};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How a request found its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Already resident.
    Resident,
    /// Loaded for this request (first use since the daemon started).
    Loaded,
    /// Loaded again after it was evicted to make room.
    Reloaded,
}

impl Load {
    pub fn as_str(self) -> &'static str {
        match self {
            Load::Resident => "resident",
            Load::Loaded => "loaded",
            Load::Reloaded => "reloaded",
        }
    }
}

/// A resident model as `Status` and the metrics see it.
#[derive(Clone)]
pub struct Resident {
    pub worker: WorkerHandle,
    pub pinned: bool,
    pub idle_seconds: f64,
    /// What the budget counts for it: exact once loaded, else the file size.
    pub counted_bytes: u64,
}

/// The budget's state for `Status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryUse {
    pub budget_bytes: Option<u64>,
    pub used_bytes: u64,
    pub evictions: u64,
}

enum Command {
    /// The worker of a model, started if the model is not resident yet.
    Acquire { spec: ModelSpec, file_bytes: u64, reply: oneshot::Sender<ApiResult<(WorkerHandle, Load)>> },
    /// Drops the model's worker (it finishes queued work, then frees the model) and
    /// its pin.
    Remove { model_id: String },
    /// Pins (loading it) or unpins a model.
    Pin { spec: ModelSpec, file_bytes: u64, pinned: bool, reply: oneshot::Sender<ApiResult<()>> },
    /// Ids of the resident models and of the pinned ones.
    Ids { reply: oneshot::Sender<(Vec<String>, BTreeSet<String>)> },
    /// The resident models, sorted by id, and the budget's state.
    Residents { reply: oneshot::Sender<(Vec<Resident>, MemoryUse)> },
}

#[derive(Clone)]
pub struct Registry {
    sender: mpsc::Sender<Command>,
}

/// What the registry is started with.
pub struct RegistrySettings {
    pub device: Device,
    pub worker: WorkerSettings,
    pub memory_budget_bytes: Option<u64>,
    /// Where the pins are kept (`<store>/pins.json`).
    pub pins_file: PathBuf,
}

impl Registry {
    /// Starts the owner task; returns the registry and the pinned model ids (which the
    /// caller loads, since it knows their files).
    pub fn start(settings: RegistrySettings) -> anyhow::Result<(Registry, BTreeSet<String>)> {
        let pins = read_pins(&settings.pins_file)?;
        let (sender, receiver) = mpsc::channel(256);
        let owner = Owner { settings, entries: HashMap::new(), pins: pins.clone(), evicted: HashSet::new(), evictions: 0 };
        tokio::spawn(owner.run(receiver));
        Ok((Registry { sender }, pins))
    }

    /// The model's worker, loading the model (after making room) if needed.
    pub async fn acquire(&self, spec: ModelSpec, file_bytes: u64) -> ApiResult<(WorkerHandle, Load)> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Acquire { spec, file_bytes, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Forgets a model (it is being deleted): its worker stops after its queue, and its
    /// pin goes.
    pub async fn remove(&self, model_id: &str) -> ApiResult<()> {
        self.send(Command::Remove { model_id: model_id.to_string() }).await
    }

    pub async fn set_pinned(&self, spec: ModelSpec, file_bytes: u64, pinned: bool) -> ApiResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Pin { spec, file_bytes, pinned, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Ids of the resident models, and of the pinned ones.
    pub async fn ids(&self) -> ApiResult<(Vec<String>, BTreeSet<String>)> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ids { reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    /// The resident models, sorted by model id, and the memory budget's state.
    pub async fn residents(&self) -> ApiResult<(Vec<Resident>, MemoryUse)> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Residents { reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    async fn send(&self, command: Command) -> ApiResult<()> {
        self.sender.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> ApiError {
    ApiError::internal("the model registry stopped")
}

struct Entry {
    worker: WorkerHandle,
    file_bytes: u64,
    last_used: Instant,
}

impl Entry {
    /// Exact once the worker has measured the model, the file size until then.
    fn counted_bytes(&self) -> u64 {
        match self.worker.resident_bytes() {
            0 => self.file_bytes,
            exact => exact,
        }
    }
}

struct Owner {
    settings: RegistrySettings,
    entries: HashMap<String, Entry>,
    pins: BTreeSet<String>,
    /// Models evicted to make room and not loaded since.
    evicted: HashSet<String>,
    evictions: u64,
}

impl Owner {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Acquire { spec, file_bytes, reply } => {
                    let _ = reply.send(self.acquire(spec, file_bytes));
                }
                Command::Remove { model_id } => {
                    self.entries.remove(&model_id);
                    if self.pins.remove(&model_id) {
                        self.save_pins();
                    }
                }
                Command::Pin { spec, file_bytes, pinned, reply } => {
                    let answer = if pinned {
                        self.acquire(spec.clone(), file_bytes).map(|_| {
                            if self.pins.insert(spec.model_id.clone()) {
                                self.save_pins();
                            }
                        })
                    } else {
                        if self.pins.remove(&spec.model_id) {
                            self.save_pins();
                        }
                        Ok(())
                    };
                    let _ = reply.send(answer);
                }
                Command::Ids { reply } => {
                    let _ = reply.send((self.entries.keys().cloned().collect(), self.pins.clone()));
                }
                Command::Residents { reply } => {
                    let now = Instant::now();
                    let mut residents: Vec<Resident> = self
                        .entries
                        .iter()
                        .map(|(id, entry)| Resident {
                            worker: entry.worker.clone(),
                            pinned: self.pins.contains(id),
                            idle_seconds: now.duration_since(entry.last_used).as_secs_f64(),
                            counted_bytes: entry.counted_bytes(),
                        })
                        .collect();
                    residents.sort_by(|a, b| a.worker.model_id.cmp(&b.worker.model_id));
                    let memory = MemoryUse {
                        budget_bytes: self.settings.memory_budget_bytes,
                        used_bytes: residents.iter().map(|resident| resident.counted_bytes).sum(),
                        evictions: self.evictions,
                    };
                    let _ = reply.send((residents, memory));
                }
            }
        }
    }

    fn acquire(&mut self, spec: ModelSpec, file_bytes: u64) -> ApiResult<(WorkerHandle, Load)> {
        if let Some(entry) = self.entries.get_mut(&spec.model_id) {
            entry.last_used = Instant::now();
            return Ok((entry.worker.clone(), Load::Resident));
        }
        if let Some(budget) = self.settings.memory_budget_bytes {
            self.make_room(&spec.model_id, file_bytes, budget)?;
        }
        let model_id = spec.model_id.clone();
        let worker = WorkerHandle::spawn(spec, self.settings.device, self.settings.worker.clone()).map_err(ApiError::from)?;
        self.entries.insert(model_id.clone(), Entry { worker: worker.clone(), file_bytes, last_used: Instant::now() });
        let load = if self.evicted.remove(&model_id) { Load::Reloaded } else { Load::Loaded };
        Ok((worker, load))
    }

    /// Evicts unpinned models, idle before busy and least recently used first, until
    /// `needed` more bytes fit in the budget.
    fn make_room(&mut self, model_id: &str, needed: u64, budget: u64) -> ApiResult<()> {
        let short = |message: String| ApiError { kind: ErrorKind::OutOfMemory, message };
        if needed > budget {
            return Err(short(format!(
                "model {} needs about {needed} bytes, more than the whole memory budget of {budget} bytes (--memory-budget-bytes)",
                &model_id[..12.min(model_id.len())]
            )));
        }
        let mut used: u64 = self.entries.values().map(Entry::counted_bytes).sum();
        while used + needed > budget {
            let victim = self
                .entries
                .iter()
                .filter(|(id, _)| !self.pins.contains(*id))
                .min_by_key(|(_, entry)| (entry.worker.in_flight() > 0, entry.last_used))
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else {
                return Err(short(format!(
                    "no room for model {} (about {needed} bytes): pinned models hold {used} of the {budget}-byte memory budget; \
                     unpin one (layerlens models unpin) or raise --memory-budget-bytes",
                    &model_id[..12.min(model_id.len())]
                )));
            };
            let entry = self.entries.remove(&victim).expect("the victim is resident");
            used -= entry.counted_bytes();
            tracing::info!(model_id = %victim, freed_bytes = entry.counted_bytes(), for_model = %model_id, "evicted to make room");
            self.evicted.insert(victim);
            self.evictions += 1;
        }
        Ok(())
    }

    fn save_pins(&self) {
        if let Err(error) = write_pins(&self.settings.pins_file, &self.pins) {
            tracing::error!(%error, file = %self.settings.pins_file.display(), "saving the pinned models failed");
        }
    }
}

fn read_pins(path: &std::path::Path) -> anyhow::Result<BTreeSet<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: not a JSON list of model ids: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(anyhow::anyhow!("reading {}: {error}", path.display())),
    }
}

/// Written to a temp file and renamed, like every store file, so a crash leaves the
/// old list or the new one.
fn write_pins(path: &std::path::Path, pins: &BTreeSet<String>) -> anyhow::Result<()> {
    let directory = path.parent().ok_or_else(|| anyhow::anyhow!("{} has no directory", path.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(directory)?;
    serde_json::to_writer(&mut file, pins)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_through_their_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pins.json");
        assert!(read_pins(&path).unwrap().is_empty());
        let pins: BTreeSet<String> = ["a".repeat(64), "b".repeat(64)].into_iter().collect();
        write_pins(&path, &pins).unwrap();
        assert_eq!(read_pins(&path).unwrap(), pins);
        std::fs::write(&path, "not json").unwrap();
        assert!(read_pins(&path).unwrap_err().to_string().contains("not a JSON list"));
    }
}
