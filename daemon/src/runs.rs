//! Training runs and checkpoints in the store's embedded database:
//! `<store>/training.db`, SQLite (bundled, WAL mode), so there is nothing to set up,
//! a crash never leaves a half-written row, replicas sharing the store see each
//! other's runs, and a teammate's `runs show` queries what `layerlens.watch` sent.
//!
//! ```text
//! checkpoints(id, model_id, step, optimizer, format, size_bytes, parameters, has_scheduler, created_unix)
//! runs(name, model, optimizer, created_unix, updated_unix)
//! run_steps(run, step, loss, learning_rates (JSON), unix_time)
//! run_records(run, step, layer, grad_norm, weight_norm, update_norm, update_weight_ratio,
//!             step_p50, step_p99, step_max)
//! ```
//! A checkpoint's bytes are a content-addressed file (`Store::checkpoint_path`); its
//! row is written after the file, so a row never names a missing file. A step or
//! record sent twice (a client retrying) replaces the first.
//!
//! All methods block; async callers use `spawn_blocking`.

use crate::error::{ApiError, ApiResult};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    step INTEGER,
    optimizer TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    parameters INTEGER NOT NULL,
    has_scheduler INTEGER NOT NULL,
    created_unix INTEGER NOT NULL,
    PRIMARY KEY (id, model_id)
);
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    updated_unix INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_steps (
    run TEXT NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    learning_rates TEXT NOT NULL,
    unix_time REAL NOT NULL,
    PRIMARY KEY (run, step)
);
CREATE TABLE IF NOT EXISTS run_records (
    run TEXT NOT NULL,
    step INTEGER NOT NULL,
    layer TEXT NOT NULL,
    grad_norm REAL,
    weight_norm REAL,
    update_norm REAL,
    update_weight_ratio REAL,
    step_p50 REAL,
    step_p99 REAL,
    step_max REAL,
    PRIMARY KEY (run, step, layer)
);
";

/// Most records one report may carry (a resnet-sized model has ~60 layers).
pub const MAX_RECORDS_PER_REPORT: usize = 100_000;

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub id: String,
    pub model_id: String,
    pub step: Option<i64>,
    /// `Adam`, ..., `unknown`, or empty when the checkpoint has no optimiser state.
    pub optimizer: String,
    pub format: String,
    pub size_bytes: u64,
    pub parameters: u32,
    pub has_scheduler: bool,
    pub created_unix: i64,
}

/// One recorded step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStep {
    pub step: i64,
    pub loss: Option<f64>,
    pub learning_rates: Vec<f64>,
    pub unix_time: f64,
}

/// One layer's statistics at one step. Missing numbers are NaN (SQLite stores them as NULL).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub step: i64,
    pub layer: String,
    pub grad_norm: f64,
    pub weight_norm: f64,
    pub update_norm: f64,
    pub update_weight_ratio: f64,
    /// |update| per coordinate: median, 99th percentile, maximum.
    pub step_size: [f64; 3],
}

/// What a client sends for a run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub run: String,
    pub model: String,
    pub optimizer: String,
    pub steps: Vec<RunStep>,
    pub records: Vec<RunRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub name: String,
    pub model: String,
    pub optimizer: String,
    pub steps: u64,
    pub first_step: i64,
    pub last_step: i64,
    /// Layers in the order of their first record.
    pub layers: Vec<String>,
    pub created_unix: i64,
    pub updated_unix: i64,
}

#[derive(Debug, Clone)]
pub struct RunData {
    pub summary: RunSummary,
    pub steps: Vec<RunStep>,
    /// Ordered by step, then by the layer's first appearance.
    pub records: Vec<RunRecord>,
}

/// The database; cheap to clone (one connection behind a mutex: SQLite serialises
/// writers anyway, and every query here is short).
#[derive(Clone)]
pub struct TrainingDb {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for TrainingDb {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TrainingDb")
    }
}

fn db_error(error: rusqlite::Error) -> ApiError {
    ApiError::internal(format!("training database: {error}"))
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// NaN travels as NULL and back (infinities are stored as they are).
fn nullable(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

fn check_run_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty() && name.len() <= 200 && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_input(format!("run name {name:?} is not valid: use 1 to 200 printable characters")))
    }
}

impl TrainingDb {
    /// Opens (creating if needed) the database file in WAL mode.
    pub fn open(path: &Path) -> ApiResult<TrainingDb> {
        let connection = Connection::open(path).map_err(|error| ApiError::internal(format!("cannot open {}: {error}", path.display())))?;
        connection.busy_timeout(Duration::from_secs(10)).map_err(db_error)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(db_error)?;
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(db_error)?;
        connection.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(TrainingDb { connection: Arc::new(Mutex::new(connection)) })
    }

    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> ApiResult<T> {
        let mut connection = self.connection.lock().map_err(|_| ApiError::internal("training database lock poisoned"))?;
        work(&mut connection).map_err(db_error)
    }

    pub fn add_checkpoint(&self, record: &CheckpointRecord) -> ApiResult<()> {
        self.with(|connection| {
            connection.execute(
                "INSERT OR REPLACE INTO checkpoints (id, model_id, step, optimizer, format, size_bytes, parameters, has_scheduler, created_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.id,
                    record.model_id,
                    record.step,
                    record.optimizer,
                    record.format,
                    record.size_bytes as i64,
                    record.parameters,
                    record.has_scheduler,
                    record.created_unix
                ],
            )
        })?;
        Ok(())
    }

    /// A model's checkpoints by step (those without a step last), then creation.
    pub fn checkpoints(&self, model_id: &str) -> ApiResult<Vec<CheckpointRecord>> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT id, model_id, step, optimizer, format, size_bytes, parameters, has_scheduler, created_unix FROM checkpoints
                 WHERE model_id = ?1 ORDER BY step IS NULL, step, created_unix, id",
            )?;
            let rows = statement.query_map([model_id], |row| {
                Ok(CheckpointRecord {
                    id: row.get(0)?,
                    model_id: row.get(1)?,
                    step: row.get(2)?,
                    optimizer: row.get(3)?,
                    format: row.get(4)?,
                    size_bytes: row.get::<_, i64>(5)? as u64,
                    parameters: row.get(6)?,
                    has_scheduler: row.get(7)?,
                    created_unix: row.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    /// A model's checkpoint by full id or a unique prefix of at least 8 hex characters.
    pub fn resolve_checkpoint(&self, model_id: &str, reference: &str) -> ApiResult<CheckpointRecord> {
        let reference = reference.trim().to_ascii_lowercase();
        if reference.len() < 8 || !reference.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::bad_input(format!(
                "checkpoint {reference:?} is not a checkpoint id: give the id `checkpoints add` printed, or at least its first 8 hex characters"
            )));
        }
        let matches: Vec<CheckpointRecord> = self.checkpoints(model_id)?.into_iter().filter(|record| record.id.starts_with(&reference)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(ApiError::not_found(format!(
                "model {model_id} has no checkpoint {reference}; `layerlens checkpoints list` shows its checkpoints"
            ))),
            count => Err(ApiError::bad_input(format!("checkpoint prefix {reference} is ambiguous: {count} checkpoints start with it"))),
        }
    }

    /// Forgets a deleted model's checkpoints; answers the ids no other model refers to
    /// (their files can go).
    pub fn forget_model(&self, model_id: &str) -> ApiResult<Vec<String>> {
        self.with(|connection| {
            let transaction = connection.transaction()?;
            let ids: Vec<String> = {
                let mut statement = transaction.prepare("SELECT id FROM checkpoints WHERE model_id = ?1")?;
                let ids = statement.query_map([model_id], |row| row.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
                ids
            };
            transaction.execute("DELETE FROM checkpoints WHERE model_id = ?1", [model_id])?;
            let mut orphans = Vec::new();
            for id in ids {
                let others: i64 = transaction.query_row("SELECT COUNT(*) FROM checkpoints WHERE id = ?1", [&id], |row| row.get(0))?;
                if others == 0 {
                    orphans.push(id);
                }
            }
            transaction.commit()?;
            Ok(orphans)
        })
    }

    /// Appends a report to its run (created on first report), in one transaction.
    pub fn append_run(&self, report: &RunReport) -> ApiResult<u64> {
        check_run_name(&report.run)?;
        if report.records.len() > MAX_RECORDS_PER_REPORT {
            return Err(ApiError::bad_input(format!(
                "a run report carries {} records; at most {MAX_RECORDS_PER_REPORT} are accepted at once",
                report.records.len()
            )));
        }
        if let Some(record) = report.records.iter().find(|record| record.layer.is_empty()) {
            return Err(ApiError::bad_input(format!("a record of step {} names no layer", record.step)));
        }
        let now = now_unix();
        self.with(|connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "INSERT INTO runs (name, model, optimizer, created_unix, updated_unix) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET updated_unix = ?4,
                   model = CASE WHEN ?2 = '' THEN model ELSE ?2 END,
                   optimizer = CASE WHEN ?3 = '' THEN optimizer ELSE ?3 END",
                params![report.run, report.model, report.optimizer, now],
            )?;
            for step in &report.steps {
                let learning_rates = serde_json::to_string(&step.learning_rates).unwrap_or_else(|_| "[]".to_string());
                transaction.execute(
                    "INSERT OR REPLACE INTO run_steps (run, step, loss, learning_rates, unix_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![report.run, step.step, step.loss.and_then(nullable), learning_rates, step.unix_time],
                )?;
            }
            {
                let mut insert = transaction.prepare(
                    "INSERT OR REPLACE INTO run_records (run, step, layer, grad_norm, weight_norm, update_norm, update_weight_ratio, step_p50, step_p99, step_max)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for record in &report.records {
                    insert.execute(params![
                        report.run,
                        record.step,
                        record.layer,
                        nullable(record.grad_norm),
                        nullable(record.weight_norm),
                        nullable(record.update_norm),
                        nullable(record.update_weight_ratio),
                        nullable(record.step_size[0]),
                        nullable(record.step_size[1]),
                        nullable(record.step_size[2]),
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(report.records.len() as u64)
        })
    }

    pub fn runs(&self) -> ApiResult<Vec<RunSummary>> {
        let names: Vec<String> = self.with(|connection| {
            let mut statement = connection.prepare("SELECT name FROM runs ORDER BY created_unix, name")?;
            let names = statement.query_map([], |row| row.get(0))?.collect();
            names
        })?;
        names.iter().map(|name| self.summary(name)).collect()
    }

    fn summary(&self, name: &str) -> ApiResult<RunSummary> {
        self.with(|connection| {
            let (model, optimizer, created_unix, updated_unix) = connection
                .query_row("SELECT model, optimizer, created_unix, updated_unix FROM runs WHERE name = ?1", [name], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
                })
                .optional()?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let (steps, first_step, last_step) = connection.query_row(
                "SELECT COUNT(*), COALESCE(MIN(step), 0), COALESCE(MAX(step), 0) FROM
                   (SELECT step FROM run_steps WHERE run = ?1 UNION SELECT step FROM run_records WHERE run = ?1)",
                [name],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)),
            )?;
            let mut statement = connection.prepare("SELECT layer FROM run_records WHERE run = ?1 GROUP BY layer ORDER BY MIN(rowid)")?;
            let layers = statement.query_map([name], |row| row.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(RunSummary { name: name.to_string(), model, optimizer, steps, first_step, last_step, layers, created_unix, updated_unix })
        })
    }

    /// A run with every step and record.
    pub fn run(&self, name: &str) -> ApiResult<RunData> {
        let summary = self.summary(name).map_err(|error| {
            if error.message.contains("Query returned no rows") {
                ApiError::not_found(format!("no run named {name:?}; `layerlens runs list` shows the runs"))
            } else {
                error
            }
        })?;
        let order: std::collections::HashMap<&str, usize> = summary.layers.iter().enumerate().map(|(index, layer)| (layer.as_str(), index)).collect();
        let (steps, mut records) = self.with(|connection| {
            let mut statement = connection.prepare("SELECT step, loss, learning_rates, unix_time FROM run_steps WHERE run = ?1 ORDER BY step")?;
            let steps = statement
                .query_map([name], |row| {
                    let learning_rates: String = row.get(2)?;
                    Ok(RunStep {
                        step: row.get(0)?,
                        loss: row.get(1)?,
                        learning_rates: serde_json::from_str(&learning_rates).unwrap_or_default(),
                        unix_time: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<RunStep>>>()?;
            let mut statement = connection.prepare(
                "SELECT step, layer, grad_norm, weight_norm, update_norm, update_weight_ratio, step_p50, step_p99, step_max
                 FROM run_records WHERE run = ?1 ORDER BY step",
            )?;
            let number =
                |row: &rusqlite::Row<'_>, index: usize| -> rusqlite::Result<f64> { Ok(row.get::<_, Option<f64>>(index)?.unwrap_or(f64::NAN)) };
            let records = statement
                .query_map([name], |row| {
                    Ok(RunRecord {
                        step: row.get(0)?,
                        layer: row.get(1)?,
                        grad_norm: number(row, 2)?,
                        weight_norm: number(row, 3)?,
                        update_norm: number(row, 4)?,
                        update_weight_ratio: number(row, 5)?,
                        step_size: [number(row, 6)?, number(row, 7)?, number(row, 8)?],
                    })
                })?
                .collect::<rusqlite::Result<Vec<RunRecord>>>()?;
            Ok((steps, records))
        })?;
        records.sort_by_key(|record| (record.step, order.get(record.layer.as_str()).copied().unwrap_or(usize::MAX)));
        Ok(RunData { summary, steps, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: i64, layer: &str, ratio: f64) -> RunRecord {
        RunRecord {
            step,
            layer: layer.to_string(),
            grad_norm: 1.0,
            weight_norm: 2.0,
            update_norm: ratio * 2.0,
            update_weight_ratio: ratio,
            step_size: [0.1, 0.2, f64::NAN],
        }
    }

    #[test]
    fn a_run_survives_reopening_and_keeps_layer_order_and_missing_numbers() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("training.db");
        let db = TrainingDb::open(&path).unwrap();
        let report = RunReport {
            run: "exp1".to_string(),
            model: "digits".to_string(),
            optimizer: "Adam".to_string(),
            steps: vec![RunStep { step: 10, loss: Some(0.5), learning_rates: vec![1e-3], unix_time: 1.0 }],
            records: vec![record(10, "features.0", 1e-3), record(10, "classifier", 2e-3)],
        };
        assert_eq!(db.append_run(&report).unwrap(), 2);
        let second = RunReport {
            run: "exp1".to_string(),
            steps: vec![RunStep { step: 20, loss: None, learning_rates: vec![5e-4], unix_time: 2.0 }],
            records: vec![record(20, "classifier", 3e-3), record(20, "features.0", 4e-3)],
            ..RunReport::default()
        };
        db.append_run(&second).unwrap();
        drop(db);
        let db = TrainingDb::open(&path).unwrap();
        let run = db.run("exp1").unwrap();
        assert_eq!(run.summary.layers, vec!["features.0", "classifier"]);
        assert_eq!((run.summary.steps, run.summary.first_step, run.summary.last_step), (2, 10, 20));
        assert_eq!(run.summary.model, "digits", "a later report without a model keeps the first one's");
        let layers: Vec<(i64, &str)> = run.records.iter().map(|record| (record.step, record.layer.as_str())).collect();
        assert_eq!(layers, vec![(10, "features.0"), (10, "classifier"), (20, "features.0"), (20, "classifier")]);
        assert!(run.records[0].step_size[2].is_nan(), "NaN is stored as NULL and read back as NaN");
        assert_eq!(run.steps[1].loss, None);
        assert_eq!(run.steps[1].learning_rates, vec![5e-4]);
        assert_eq!(db.run("nope").unwrap_err().kind, layerlens_engine::ErrorKind::NotFound);
    }

    #[test]
    fn checkpoints_resolve_by_prefix_and_go_with_their_model() {
        let directory = tempfile::tempdir().unwrap();
        let db = TrainingDb::open(&directory.path().join("training.db")).unwrap();
        let checkpoint = |id: &str, model: &str, step: Option<i64>| CheckpointRecord {
            id: id.to_string(),
            model_id: model.to_string(),
            step,
            optimizer: "Adam".to_string(),
            format: "torch.save".to_string(),
            size_bytes: 10,
            parameters: 4,
            has_scheduler: false,
            created_unix: 1,
        };
        db.add_checkpoint(&checkpoint("aaaaaaaa11", "m1", Some(20))).unwrap();
        db.add_checkpoint(&checkpoint("aaaaaaaa22", "m1", Some(10))).unwrap();
        db.add_checkpoint(&checkpoint("bbbbbbbb33", "m1", None)).unwrap();
        db.add_checkpoint(&checkpoint("bbbbbbbb33", "m2", None)).unwrap();
        let steps: Vec<Option<i64>> = db.checkpoints("m1").unwrap().iter().map(|record| record.step).collect();
        assert_eq!(steps, vec![Some(10), Some(20), None]);
        assert_eq!(db.resolve_checkpoint("m1", "aaaaaaaa2").unwrap().step, Some(10));
        assert_eq!(db.resolve_checkpoint("m1", "aaaaaaaa").unwrap_err().kind, layerlens_engine::ErrorKind::BadInput);
        assert_eq!(db.resolve_checkpoint("m1", "cccccccc").unwrap_err().kind, layerlens_engine::ErrorKind::NotFound);
        assert_eq!(db.forget_model("m1").unwrap(), vec!["aaaaaaaa11".to_string(), "aaaaaaaa22".to_string()], "bbbbbbbb33 still belongs to m2");
        assert!(db.checkpoints("m1").unwrap().is_empty());
    }
}
