//! One model as the server keeps it: the daemon's summary rows, parameter statistics
//! and last activation report, fetched once (three RPCs) and then read from memory by
//! every hover, diagnostic and inlay hint, and the lookups from source lines to rows.

use crate::config::normalize;
use crate::source::{SourceIndex, SourceRef};
use layerlens_client::Client;
use layerlens_proto as proto;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the activation statistics were computed on.
#[derive(Debug, Clone)]
pub enum ActivationInput {
    Zeros(Vec<i64>),
    Sample(String, Vec<i64>),
}

impl std::fmt::Display for ActivationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivationInput::Zeros(shape) => write!(f, "zeros of shape {shape:?}"),
            ActivationInput::Sample(path, shape) => write!(f, "`{path}`, shape {shape:?}"),
        }
    }
}

/// The daemon's answers for one model.
#[derive(Debug, Clone)]
pub struct ModelView {
    /// What the user calls it: the name in `layerlens.toml`, or a stored name or id.
    pub display_name: String,
    pub model_id: String,
    pub rows: Vec<proto::SummaryRow>,
    pub parameters: Vec<proto::ParameterStats>,
    pub layers: Vec<proto::LayerStats>,
    pub anomalies: Vec<proto::Anomaly>,
    pub activation_input: Option<ActivationInput>,
    /// What the optimiser did at the model's latest checkpoint (by step), when it has one
    /// with optimiser state.
    pub optimizer: Option<proto::OptimizerReport>,
    /// Rows by the (normalised) file of their call site: (1-based line, row index).
    call_sites: HashMap<PathBuf, Vec<(u32, usize)>>,
}

/// A row the cursor (or a diagnostic) refers to, with the source columns to highlight.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub row: usize,
    pub columns: Option<(u32, u32)>,
    pub kind: HitKind,
}

/// What on the line refers to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    /// The line calls the layer (its call site).
    Call,
    /// `self.NAME = ...` defines it.
    Definition,
    /// An entry of an `nn.Sequential(...)`.
    SequentialEntry,
}

impl ModelView {
    /// Fetches summary, parameter statistics and (when an input is known) activation
    /// statistics. `input` is the activation input; without one there are no shapes.
    pub async fn fetch(
        client: &Client,
        model: &str,
        display_name: &str,
        input: Option<(ActivationInput, proto::Tensor)>,
    ) -> layerlens_client::Result<ModelView> {
        let none = proto::FigureFormat::None as i32;
        let input_shape = input.as_ref().map(|(_, tensor)| tensor.shape.clone()).unwrap_or_default();
        let summary_request = proto::SummaryRequest { model: model.to_string(), input_shape, figure_format: none, ..Default::default() };
        let parameters_request = proto::ParametersRequest { model: model.to_string(), bins: 16, figure_format: none };
        let (summary, parameters) = tokio::try_join!(client.summary(summary_request), client.parameters(parameters_request))?;
        let (layers, anomalies, activation_input) = match input {
            Some((description, tensor)) => {
                let request =
                    proto::ActivationsRequest { model: model.to_string(), input: Some(tensor), bins: 16, figure_format: none, ..Default::default() };
                let report = client.activations(request).await?;
                (report.layers, report.anomalies, Some(description))
            }
            None => (Vec::new(), Vec::new(), None),
        };
        let mut view =
            ModelView::new(display_name.to_string(), summary.model_id, summary.rows, parameters.parameters, layers, anomalies, activation_input);
        view.optimizer = latest_optimizer_report(client, model).await;
        Ok(view)
    }

    pub fn new(
        display_name: String,
        model_id: String,
        rows: Vec<proto::SummaryRow>,
        parameters: Vec<proto::ParameterStats>,
        layers: Vec<proto::LayerStats>,
        anomalies: Vec<proto::Anomaly>,
        activation_input: Option<ActivationInput>,
    ) -> ModelView {
        let mut call_sites: HashMap<PathBuf, Vec<(u32, usize)>> = HashMap::new();
        let mut normalized: HashMap<String, PathBuf> = HashMap::new();
        for (row_index, row) in rows.iter().enumerate() {
            if let Some((file, line)) = split_call_site(&row.call_site) {
                let path = normalized.entry(file.to_string()).or_insert_with(|| normalize(Path::new(file))).clone();
                call_sites.entry(path).or_default().push((line, row_index));
            }
        }
        ModelView { display_name, model_id, rows, parameters, layers, anomalies, activation_input, optimizer: None, call_sites }
    }

    /// The optimiser's numbers for the layer at `path`, with its findings.
    pub fn optimizer_of<'a>(&'a self, path: &str) -> Option<(&'a proto::OptimizerReport, &'a proto::LayerUpdate, Vec<&'a proto::OptimizerFinding>)> {
        let report = self.optimizer.as_ref()?;
        let layer = report.layers.iter().find(|layer| layer.layer == path)?;
        Some((report, layer, report.findings.iter().filter(|finding| finding.layer == path).collect()))
    }

    /// The source files the daemon recorded call sites in.
    pub fn call_site_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.call_sites.keys()
    }

    /// Rows called on `line` (0-based) of `file`.
    fn rows_called_at(&self, file: &Path, line: u32) -> Vec<usize> {
        self.call_sites.get(file).map(|sites| sites.iter().filter(|(l, _)| *l == line + 1).map(|(_, row)| *row).collect()).unwrap_or_default()
    }

    fn called_in(&self, file: &Path, row: usize) -> bool {
        self.call_sites.get(file).is_some_and(|sites| sites.iter().any(|(_, r)| *r == row))
    }

    /// First-call rows whose last path component is `name`; those called from `file`
    /// first (the attribute is most likely defined in the class whose forward is there).
    fn rows_named(&self, file: &Path, name: &str) -> Vec<usize> {
        let named: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].call_index == 0 && last_component(&self.rows[i].path) == name && !self.rows[i].path.is_empty())
            .collect();
        let local: Vec<usize> = named.iter().copied().filter(|&i| self.called_in(file, i)).collect();
        let mut chosen = if local.is_empty() { named } else { local };
        chosen.dedup_by_key(|i| self.rows[*i].path.clone());
        chosen
    }

    fn row_by_path(&self, path: &str) -> Option<usize> {
        self.rows.iter().position(|row| row.path == path && row.call_index == 0)
    }

    /// Every row referred to on `line` of the document, in source order.
    pub fn hits_on_line(&self, file: &Path, index: &SourceIndex, line: u32) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let called = self.rows_called_at(file, line);
        let mut claimed = vec![false; called.len()];
        for reference in index.refs(line) {
            match reference {
                SourceRef::Call { name, start, end } => {
                    for (k, &row) in called.iter().enumerate() {
                        if !claimed[k] && last_component(&self.rows[row].path) == name {
                            claimed[k] = true;
                            hits.push(Hit { row, columns: Some((*start, *end)), kind: HitKind::Call });
                        }
                    }
                }
                SourceRef::Definition { name, start, end } => {
                    hits.extend(self.rows_named(file, name).into_iter().map(|row| Hit {
                        row,
                        columns: Some((*start, *end)),
                        kind: HitKind::Definition,
                    }));
                }
                SourceRef::SequentialEntry { name, index } => {
                    for container in self.rows_named(file, name) {
                        if let Some(row) = self.row_by_path(&format!("{}.{index}", self.rows[container].path)) {
                            hits.push(Hit { row, columns: None, kind: HitKind::SequentialEntry });
                        }
                    }
                }
            }
        }
        // Calls the text scan cannot name (`layer(x)` in a loop over a ModuleList).
        hits.extend(called.iter().zip(&claimed).filter(|(_, claimed)| !**claimed).map(|(&row, _)| Hit { row, columns: None, kind: HitKind::Call }));
        hits
    }

    /// The rows under the cursor: those whose name the cursor is on, else the line's.
    pub fn hits_at(&self, file: &Path, index: &SourceIndex, line: u32, column: u32) -> Vec<Hit> {
        let hits = self.hits_on_line(file, index, line);
        let under_cursor: Vec<Hit> =
            hits.iter().copied().filter(|hit| hit.columns.is_some_and(|(start, end)| start <= column && column <= end)).collect();
        if under_cursor.is_empty() {
            hits
        } else {
            under_cursor
        }
    }

    /// Lines (0-based) of the document where the layer at `path` shows: its call
    /// sites in this file, else its definition or Sequential entry line.
    pub fn lines_of(&self, file: &Path, index: &SourceIndex, path: &str) -> Vec<u32> {
        let mut lines: Vec<u32> = self
            .call_sites
            .get(file)
            .map(|sites| sites.iter().filter(|(_, row)| self.rows[*row].path == path).map(|(line, _)| line.saturating_sub(1)).collect())
            .unwrap_or_default();
        if lines.is_empty() {
            for line in 0..index.lines.len() as u32 {
                if self.hits_on_line(file, index, line).iter().any(|hit| hit.kind != HitKind::Call && self.rows[hit.row].path == path) {
                    lines.push(line);
                }
            }
        }
        lines.sort_unstable();
        lines.dedup();
        lines
    }

    /// Activation statistics of a row's call.
    pub fn layer_stats(&self, row: &proto::SummaryRow) -> Option<&proto::LayerStats> {
        self.layers.iter().find(|layer| layer.path == row.path && layer.call_index == row.call_index)
    }

    /// Parameter tensors owned by the module at `path` or below it.
    pub fn parameters_under<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a proto::ParameterStats> + 'a {
        self.parameters.iter().filter(move |parameter| {
            path.is_empty() || parameter.module_path == path || parameter.module_path.strip_prefix(path).is_some_and(|rest| rest.starts_with('.'))
        })
    }

    pub fn anomalies_of<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a proto::Anomaly> + 'a {
        self.anomalies.iter().filter(move |anomaly| anomaly.path == path)
    }

    /// How many times the module at `path` is called.
    pub fn call_count(&self, path: &str) -> usize {
        self.rows.iter().filter(|row| row.path == path).count()
    }
}

/// `"/a/b.py:12"` -> (`/a/b.py`, 12).
pub fn split_call_site(call_site: &str) -> Option<(&str, u32)> {
    let (file, line) = call_site.rsplit_once(':')?;
    Some((file, line.parse().ok()?))
}

pub fn last_component(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The optimiser report of a model's latest checkpoint with optimiser state; `None`
/// when it has none or the daemon cannot answer (the card then has no optimiser part).
async fn latest_optimizer_report(client: &Client, model: &str) -> Option<proto::OptimizerReport> {
    let checkpoints = client.list_checkpoints(model).await.ok()?;
    let latest =
        checkpoints.iter().filter(|checkpoint| !checkpoint.optimizer.is_empty()).max_by_key(|checkpoint| checkpoint.step.unwrap_or(i64::MIN))?;
    let request = proto::ExplainOptimizerRequest {
        model: model.to_string(),
        checkpoint: latest.id.clone(),
        figure_format: proto::FigureFormat::None as i32,
        ..Default::default()
    };
    client.explain_optimizer(request).await.ok()
}
