//! The LSP loop: one thread reads messages in order and answers hovers and inlay
//! hints from memory. The daemon is asked only when a document of a model not yet
//! cached is opened (summary, parameters, activations — then kept), so a hover is a
//! table lookup and a string format.
//!
//! Saving a document fetches its model's view again (the model may have been
//! re-exported and stored under the same name, or its sample input changed) and
//! republishes diagnostics; editors that allow it are asked to re-request inlay hints.
//!
//! Quiet by design: a file that belongs to no model gets `null` hovers and no
//! diagnostics; an unreachable daemon is reported once (where it tried, how to start
//! one) and retried at most every `RETRY_AFTER`.

use crate::card;
use crate::config::{normalize, InitializationOptions, ModelMapping, Settings};
use crate::model::{ActivationInput, HitKind, ModelView};
use crate::source::SourceIndex;
use anyhow::Context;
use layerlens_client::{Client, ClientError};
use layerlens_proto as proto;
use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    Diagnostic, DiagnosticSeverity, Hover, HoverContents, InlayHint, InlayHintKind, InlayHintLabel, MarkupContent, MarkupKind, MessageType, Position, Range, Url,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait before asking an unreachable daemon again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one model fetch (three RPCs; the activation report runs the model once).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Most models whose summaries are read to match files by call site.
const MAX_DISCOVERED_MODELS: usize = 32;

pub fn run_stdio() -> anyhow::Result<()> {
    let (connection, io_threads) = Connection::stdio();
    run(connection)?;
    io_threads.join().context("joining the stdio threads")?;
    Ok(())
}

/// Serves one client on `connection` until it sends `shutdown` and `exit`.
pub fn run(connection: Connection) -> anyhow::Result<()> {
    let (id, params) = connection.initialize_start().context("waiting for initialize")?;
    let params: lsp_types::InitializeParams = serde_json::from_value(params).context("reading initialize params")?;
    let options: InitializationOptions = params.initialization_options.clone().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default();
    #[allow(deprecated)] // root_uri is what older clients (Neovim 0.7) send
    let root = params
        .workspace_folders
        .as_ref()
        .and_then(|folders| folders.first())
        .and_then(|folder| folder.uri.to_file_path().ok())
        .or_else(|| params.root_uri.as_ref().and_then(|uri| uri.to_file_path().ok()))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let capabilities = json!({
        "textDocumentSync": { "openClose": true, "change": 1, "save": true },
        "hoverProvider": true,
        "inlayHintProvider": true,
    });
    let result = json!({ "capabilities": capabilities, "serverInfo": { "name": "layerlens-lsp", "version": env!("CARGO_PKG_VERSION") } });
    connection.initialize_finish(id, result).context("answering initialize")?;
    // Only a client that says it handles `workspace/inlayHint/refresh` may be sent it.
    let inlay_hint_refresh = params
        .capabilities
        .workspace
        .as_ref()
        .and_then(|workspace| workspace.inlay_hint.as_ref())
        .and_then(|inlay_hint| inlay_hint.refresh_support)
        .unwrap_or(false);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")?;
    let mut server = Server {
        connection,
        runtime,
        settings: Settings::new(options, normalize(&root)),
        client: None,
        last_failure: None,
        unreachable_reported: false,
        models: HashMap::new(),
        failed_models: HashMap::new(),
        reported_models: HashSet::new(),
        discovered: None,
        documents: HashMap::new(),
        inlay_hint_refresh,
        requests_sent: 0,
    };
    if let Some(error) = server.settings.workspace_error.clone() {
        server.show_message(MessageType::WARNING, format!("layerlens: {error}"));
    }
    server.main_loop()
}

struct Document {
    path: PathBuf,
    index: SourceIndex,
    /// Key into `Server::models`.
    model: Option<String>,
}

/// Where a model comes from: a `layerlens.toml` entry, or the daemon's call sites.
#[derive(Clone)]
struct ModelSource {
    key: String,
    reference: String,
    display_name: String,
    input_shape: Option<Vec<i64>>,
    sample: Option<String>,
}

struct Server {
    connection: Connection,
    runtime: tokio::runtime::Runtime,
    settings: Settings,
    client: Option<Client>,
    last_failure: Option<Instant>,
    unreachable_reported: bool,
    models: HashMap<String, ModelView>,
    failed_models: HashMap<String, Instant>,
    reported_models: HashSet<String>,
    /// Source file -> models whose call sites name it, from the last discovery.
    discovered: Option<(Instant, HashMap<PathBuf, Vec<ModelSource>>)>,
    documents: HashMap<Url, Document>,
    /// Whether the client takes `workspace/inlayHint/refresh` requests.
    inlay_hint_refresh: bool,
    /// Requests this server sent the client, for their ids.
    requests_sent: u64,
}

impl Server {
    fn main_loop(&mut self) -> anyhow::Result<()> {
        while let Ok(message) = self.connection.receiver.recv() {
            match message {
                Message::Request(request) => {
                    if self.connection.handle_shutdown(&request)? {
                        return Ok(());
                    }
                    let response = self.handle_request(request);
                    self.connection.sender.send(Message::Response(response))?;
                }
                Message::Notification(notification) => self.handle_notification(notification),
                Message::Response(_) => {}
            }
        }
        Ok(())
    }

    fn handle_request(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        let result = match request.method.as_str() {
            lsp_types::request::HoverRequest::METHOD => {
                serde_json::from_value::<lsp_types::HoverParams>(request.params).map(|params| serde_json::to_value(self.hover(&params)).unwrap_or(Value::Null))
            }
            lsp_types::request::InlayHintRequest::METHOD => {
                serde_json::from_value::<lsp_types::InlayHintParams>(request.params).map(|params| serde_json::to_value(self.inlay_hints(&params)).unwrap_or(Value::Null))
            }
            _ => return method_not_found(id, &request.method),
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err(error) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, error.to_string()),
        }
    }

    fn handle_notification(&mut self, notification: Notification) {
        match notification.method.as_str() {
            lsp_types::notification::DidOpenTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(notification.params) {
                    self.open(params.text_document.uri, &params.text_document.text);
                }
            }
            lsp_types::notification::DidChangeTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(notification.params) {
                    // Full sync: the last change holds the whole text.
                    if let Some(change) = params.content_changes.last() {
                        self.open(params.text_document.uri, &change.text);
                    }
                }
            }
            lsp_types::notification::DidSaveTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidSaveTextDocumentParams>(notification.params) {
                    self.refresh(params.text_document.uri, params.text.as_deref());
                }
            }
            lsp_types::notification::DidCloseTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(notification.params) {
                    self.documents.remove(&params.text_document.uri);
                    self.publish(params.text_document.uri, Vec::new());
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, uri: Url, text: &str) {
        let Ok(path) = uri.to_file_path() else { return };
        let path = normalize(&path);
        let index = SourceIndex::scan(text);
        let model = self.model_for(&path);
        self.documents.insert(uri.clone(), Document { path, index, model });
        let diagnostics = self.diagnostics(&uri);
        self.publish(uri, diagnostics);
    }

    /// On save: fetches the view of the document's model again (summary, parameters
    /// and the activation report), republishes the diagnostics of every open document
    /// of that model and asks the editor to re-request inlay hints. When the fetch
    /// fails the previous view stays, so hovers keep working, and the error is reported
    /// like any failed fetch.
    fn refresh(&mut self, uri: Url, text: Option<&str>) {
        let Some(document) = self.documents.get_mut(&uri) else { return };
        if let Some(text) = text {
            document.index = SourceIndex::scan(text);
        }
        let path = document.path.clone();
        let source = match self.settings.mapping_for(&path) {
            Some(mapping) => Some(mapping_source(mapping)),
            None => self.discover(&path),
        };
        let Some(source) = source else { return };
        let previous = self.models.remove(&source.key);
        self.failed_models.remove(&source.key);
        if !self.ensure_model(&source) {
            match previous {
                Some(previous) => {
                    self.models.insert(source.key.clone(), previous);
                }
                None => return,
            }
        }
        if let Some(document) = self.documents.get_mut(&uri) {
            document.model = Some(source.key.clone());
        }
        let affected: Vec<Url> = self.documents.iter().filter(|(_, document)| document.model.as_deref() == Some(source.key.as_str())).map(|(uri, _)| uri.clone()).collect();
        for uri in affected {
            let diagnostics = self.diagnostics(&uri);
            self.publish(uri, diagnostics);
        }
        if self.inlay_hint_refresh {
            self.requests_sent += 1;
            let request = Request::new(RequestId::from(format!("layerlens-{}", self.requests_sent)), lsp_types::request::InlayHintRefreshRequest::METHOD.into(), Value::Null);
            let _ = self.connection.sender.send(Message::Request(request));
        }
    }

    /// The model a file belongs to (fetched and cached), if any.
    fn model_for(&mut self, path: &Path) -> Option<String> {
        let source = match self.settings.mapping_for(path) {
            Some(mapping) => mapping_source(mapping),
            None => self.discover(path)?,
        };
        self.ensure_model(&source).then_some(source.key)
    }

    fn ensure_model(&mut self, source: &ModelSource) -> bool {
        if self.models.contains_key(&source.key) {
            return true;
        }
        if self.failed_models.get(&source.key).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return false;
        }
        let Some(client) = self.client() else { return false };
        let root = self.settings.workspace_root.clone();
        let outcome = self.runtime.block_on(async {
            let info = client.get_model(&source.reference).await?;
            let input_shape = source.input_shape.clone().or_else(|| Some(info.input_shape.clone()).filter(|shape| !shape.is_empty()));
            let input = match (&source.sample, input_shape) {
                (Some(sample), _) => {
                    let (shape, values) = read_npy(&root.join(sample)).map_err(|reason| ClientError::File { path: sample.clone(), reason })?;
                    Some((ActivationInput::Sample(sample.clone(), shape.clone()), proto::Tensor::from_f32(&shape, &values)))
                }
                (None, Some(shape)) => {
                    let count = shape.iter().product::<i64>().max(0) as usize;
                    Some((ActivationInput::Zeros(shape.clone()), proto::Tensor::from_f32(&shape, &vec![0.0; count])))
                }
                (None, None) => None,
            };
            match tokio::time::timeout(FETCH_TIMEOUT, ModelView::fetch(&client, &info.id, &source.display_name, input)).await {
                Ok(result) => result,
                Err(_) => Err(ClientError::NoResult("model fetch (timed out)")),
            }
        });
        match outcome {
            Ok(view) => {
                self.failed_models.remove(&source.key);
                self.models.insert(source.key.clone(), view);
                true
            }
            Err(error) => {
                self.failed_models.insert(source.key.clone(), Instant::now());
                self.report_error(&source.display_name, error);
                false
            }
        }
    }

    /// Matches `path` to stored models by the call sites their summaries recorded.
    /// The daemon's models are read once, and again when an unmatched file is opened
    /// after `RETRY_AFTER` (a model may have been stored since).
    fn discover(&mut self, path: &Path) -> Option<ModelSource> {
        let stale = self.discovered.as_ref().is_none_or(|(at, files)| !files.contains_key(path) && at.elapsed() > RETRY_AFTER);
        if stale {
            let client = self.client()?;
            let found = self.runtime.block_on(async {
                let mut files: HashMap<PathBuf, Vec<ModelSource>> = HashMap::new();
                for info in client.list_models().await?.into_iter().filter(|info| !info.input_shape.is_empty()).take(MAX_DISCOVERED_MODELS) {
                    let request = proto::SummaryRequest {
                        model: info.id.clone(),
                        input_shape: info.input_shape.clone(),
                        figure_format: proto::FigureFormat::None as i32,
                        ..Default::default()
                    };
                    // A model that cannot run on its stored shape is simply not matched.
                    let Ok(Ok(summary)) = tokio::time::timeout(FETCH_TIMEOUT, client.summary(request)).await else { continue };
                    let display_name = info.names.first().cloned().unwrap_or_else(|| info.id[..12.min(info.id.len())].to_string());
                    let view = ModelView::new(display_name.clone(), info.id.clone(), summary.rows, Vec::new(), Vec::new(), Vec::new(), None);
                    for file in view.call_site_files() {
                        let source = ModelSource { key: info.id.clone(), reference: info.id.clone(), display_name: display_name.clone(), input_shape: None, sample: None };
                        files.entry(file.clone()).or_default().push(source);
                    }
                }
                Ok::<_, ClientError>(files)
            });
            match found {
                Ok(files) => self.discovered = Some((Instant::now(), files)),
                Err(error) => {
                    self.report_error("(listing models)", error);
                    return None;
                }
            }
        }
        // Where several stored models come from one file, the first listed wins;
        // `layerlens.toml` pins the choice.
        self.discovered.as_ref()?.1.get(path)?.first().cloned()
    }

    /// A connected client, connecting first when needed; None (reported once) when the
    /// daemon cannot be reached.
    fn client(&mut self) -> Option<Client> {
        if let Some(client) = &self.client {
            return Some(client.clone());
        }
        if self.last_failure.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        let (addr, token) = (self.settings.addr.clone(), self.settings.token.clone());
        let connected = self.runtime.block_on(async {
            match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&addr, token.as_deref())).await {
                Ok(result) => result,
                Err(_) => Err(ClientError::Connect { addr: addr.clone(), reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()) }),
            }
        });
        match connected {
            Ok(client) => {
                self.client = Some(client.clone());
                self.last_failure = None;
                Some(client)
            }
            Err(error) => {
                self.report_unreachable(&error.to_string());
                None
            }
        }
    }

    fn report_unreachable(&mut self, reason: &str) {
        self.client = None;
        self.last_failure = Some(Instant::now());
        if self.unreachable_reported {
            return;
        }
        self.unreachable_reported = true;
        let message = format!(
            "layerlens: {reason}. Start a daemon with `layerlensd --listen 127.0.0.1:7533`, or point the editor at a running one with \
             LAYERLENS_ADDR or initializationOptions.addr; hover cards stay empty until then"
        );
        self.show_message(MessageType::WARNING, message);
    }

    /// Reports a failed request once per model; connection failures once in all.
    fn report_error(&mut self, model: &str, error: ClientError) {
        match error.code() {
            Some(tonic::Code::Unavailable) | None if matches!(error, ClientError::Rpc(_) | ClientError::Connect { .. }) => {
                self.report_unreachable(&format!("cannot reach layerlensd at {}: {error}", self.settings.addr));
            }
            Some(tonic::Code::Unauthenticated) | Some(tonic::Code::PermissionDenied) => {
                if self.reported_models.insert("(token)".into()) {
                    self.show_message(
                        MessageType::WARNING,
                        format!("layerlens: layerlensd at {} refused the token: {error}. Set LAYERLENS_TOKEN or initializationOptions.token", self.settings.addr),
                    );
                }
            }
            _ => {
                if self.reported_models.insert(model.to_string()) {
                    self.show_message(MessageType::WARNING, format!("layerlens: model `{model}`: {error}"));
                }
            }
        }
    }

    fn show_message(&self, typ: MessageType, message: String) {
        eprintln!("{message}");
        let params = lsp_types::ShowMessageParams { typ, message };
        let _ = self.connection.sender.send(Message::Notification(Notification::new(lsp_types::notification::ShowMessage::METHOD.into(), params)));
    }

    fn publish(&self, uri: Url, diagnostics: Vec<Diagnostic>) {
        let params = lsp_types::PublishDiagnosticsParams { uri, diagnostics, version: None };
        let _ = self.connection.sender.send(Message::Notification(Notification::new(lsp_types::notification::PublishDiagnostics::METHOD.into(), params)));
    }

    fn document_and_model(&self, uri: &Url) -> Option<(&Document, &ModelView)> {
        let document = self.documents.get(uri)?;
        let model = self.models.get(document.model.as_ref()?)?;
        Some((document, model))
    }

    fn hover(&self, params: &lsp_types::HoverParams) -> Option<Hover> {
        let position = params.text_document_position_params.position;
        let (document, model) = self.document_and_model(&params.text_document_position_params.text_document.uri)?;
        let hits = model.hits_at(&document.path, &document.index, position.line, position.character);
        if hits.is_empty() {
            return None;
        }
        let rows: Vec<usize> = hits.iter().map(|hit| hit.row).take(4).collect();
        let range = hits.first().and_then(|hit| hit.columns).map(|(start, end)| Range::new(Position::new(position.line, start), Position::new(position.line, end)));
        Some(Hover { contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: card::render_all(model, &rows) }), range })
    }

    /// Each anomaly as a diagnostic on the lines where its layer shows.
    fn diagnostics(&self, uri: &Url) -> Vec<Diagnostic> {
        let Some((document, model)) = self.document_and_model(uri) else { return Vec::new() };
        let mut diagnostics = Vec::new();
        for anomaly in &model.anomalies {
            // Every anomaly is at least a warning: the daemon marks dead units seen on a
            // batch of one as info (unconfirmed), but in the editor a layer that
            // produced nothing on the configured input is worth a squiggle.
            let severity = match proto::anomaly::Severity::try_from(anomaly.severity) {
                Ok(proto::anomaly::Severity::Error) => DiagnosticSeverity::ERROR,
                _ => DiagnosticSeverity::WARNING,
            };
            for line in model.lines_of(&document.path, &document.index, &anomaly.path) {
                diagnostics.push(Diagnostic {
                    range: Range::new(Position::new(line, 0), Position::new(line, u32::MAX / 2)),
                    severity: Some(severity),
                    code: Some(lsp_types::NumberOrString::String(anomaly.kind.clone())),
                    source: Some("layerlens".into()),
                    message: format!("{}: {}", anomaly.path, anomaly.message),
                    ..Default::default()
                });
            }
        }
        diagnostics
    }

    /// The output shape at the end of every line that calls a layer or holds a
    /// Sequential entry.
    fn inlay_hints(&self, params: &lsp_types::InlayHintParams) -> Option<Vec<InlayHint>> {
        let (document, model) = self.document_and_model(&params.text_document.uri)?;
        let mut hints = Vec::new();
        for line in params.range.start.line..=params.range.end.line.min(document.index.lines.len().saturating_sub(1) as u32) {
            let hits = model.hits_on_line(&document.path, &document.index, line);
            let shapes: Vec<String> = hits
                .iter()
                .filter(|hit| hit.kind != HitKind::Definition)
                .filter_map(|hit| model.rows[hit.row].output_shapes.first().map(|shape| card::format_shape(&shape.dims)))
                .collect();
            if shapes.is_empty() {
                continue;
            }
            hints.push(InlayHint {
                position: Position::new(line, u32::MAX / 2),
                label: InlayHintLabel::String(format!("→ {}", shapes.join(", "))),
                kind: Some(InlayHintKind::TYPE),
                text_edits: None,
                tooltip: None,
                padding_left: Some(true),
                padding_right: None,
                data: None,
            });
        }
        Some(hints)
    }
}

fn mapping_source(mapping: &ModelMapping) -> ModelSource {
    ModelSource {
        key: format!("toml:{}", mapping.name),
        reference: mapping.name.clone(),
        display_name: mapping.name.clone(),
        input_shape: mapping.input_shape.clone(),
        sample: mapping.sample.clone(),
    }
}

fn method_not_found(id: RequestId, method: &str) -> Response {
    Response::new_err(id, lsp_server::ErrorCode::MethodNotFound as i32, format!("layerlens-lsp does not handle {method}"))
}

/// A float32 (or float64, converted) `.npy` file: (shape, values).
fn read_npy(path: &Path) -> Result<(Vec<i64>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let file = npyz::NpyFile::new(&bytes[..]).map_err(|error| error.to_string())?;
    let shape: Vec<i64> = file.shape().iter().map(|&dim| dim as i64).collect();
    let values = match file.dtype() {
        npyz::DType::Plain(ty) if ty.size_field() == 8 => {
            npyz::NpyFile::new(&bytes[..]).and_then(|file| file.into_vec::<f64>()).map_err(|error| error.to_string())?.into_iter().map(|v| v as f32).collect()
        }
        _ => file.into_vec::<f32>().map_err(|error| format!("expected float32 values: {error}"))?,
    };
    Ok((shape, values))
}
