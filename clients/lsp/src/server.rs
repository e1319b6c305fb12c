//! The LSP loop: one thread owns all state, reads the client's messages in order and
//! answers hovers and inlay hints from memory, so a hover is a table lookup and a
//! string format. The daemon is asked only when a document of a model not yet cached
//! is opened (summary, parameters, activations — then kept), and never on this
//! thread: a model fetch can take minutes (the activation report runs the model), so
//! every daemon call runs as a task on the tokio runtime and sends its answer back as
//! a `Fetched` over a channel that the loop selects on beside the client's messages
//! (rust-analyzer's pattern). While a model is being fetched a hover on a layer gets a
//! card saying so; when the answer arrives the loop stores it, publishes the
//! diagnostics of the model's documents and asks editors that allow it to re-request
//! inlay hints.
//!
//! Saving a document fetches its model's view again (the model may have been
//! re-exported and stored under the same name, or its sample input changed); until the
//! new view arrives hovers show the previous one.
//!
//! Quiet by design: a file that belongs to no model gets `null` hovers and no
//! diagnostics (also while the daemon's models are being matched to it by call site);
//! an unreachable daemon is reported once (where it tried, how to start one) and
//! retried at most every `RETRY_AFTER`.

use crate::card;
use crate::config::{normalize, InitializationOptions, ModelMapping, Settings};
use crate::model::{ActivationInput, HitKind, ModelView};
use crate::source::SourceIndex;
use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use layerlens_client::{Client, ClientError};
use layerlens_proto as proto;
use lsp_server::{Connection, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    Diagnostic, DiagnosticSeverity, Hover, HoverContents, InlayHint, InlayHintKind, InlayHintLabel, MarkupContent, MarkupKind, MessageType, Position,
    Range, Url,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait before asking an unreachable daemon again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one model fetch (four RPCs; the activation report runs the model once), and
/// on each RPC of a discovery.
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
    let options: InitializationOptions =
        params.initialization_options.clone().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default();
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
    let (fetched_sender, fetched_receiver) = crossbeam_channel::unbounded();
    let mut server = Server {
        connection,
        runtime,
        fetched_sender,
        fetched_receiver,
        settings: Settings::new(options, normalize(&root)),
        client: None,
        last_failure: None,
        unreachable_reported: false,
        models: HashMap::new(),
        failed_models: HashMap::new(),
        loading: HashMap::new(),
        fetches_started: 0,
        reported_models: HashSet::new(),
        discovered: None,
        discovering: false,
        documents: HashMap::new(),
        inlay_hint_refresh,
        requests_sent: 0,
    };
    if let Some(error) = server.settings.workspace_error.clone() {
        server.show_message(MessageType::WARNING, format!("layerlens: {error}"));
    }
    let result = server.main_loop();
    // A fetch may still wait on a daemon that never answers; its task is dropped, not
    // waited for.
    server.runtime.shutdown_background();
    result
}

struct Document {
    path: PathBuf,
    index: SourceIndex,
    /// Key into `Server::models` (and `Server::loading` while the model is fetched);
    /// None while the file's model is unknown.
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

/// A daemon answer, sent from a task on the runtime to the loop (boxed: answers are
/// few and large, the client's messages many and small).
struct Fetched {
    /// The client the task connected, when it had to connect.
    connected: Option<Client>,
    answer: Answer,
}

// Always inside a boxed `Fetched`, so the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// The view of `source`'s model, from the fetch numbered `fetch_number`.
    Model { source: ModelSource, fetch_number: u64, outcome: Result<ModelView, ClientError> },
    /// Source file -> models whose call sites name it, read from the daemon's models.
    Discovery { outcome: Result<HashMap<PathBuf, Vec<ModelSource>>, ClientError> },
}

/// What the loop waits for: a message from the client or an answer from the daemon.
enum Event {
    Client(Message),
    Fetched(Box<Fetched>),
}

/// A model fetch in flight.
struct Loading {
    display_name: String,
    /// Which fetch of the model's counts: a save while a fetch runs starts another, and
    /// only the answer of the last one started is kept.
    fetch_number: u64,
}

/// How a task reaches the daemon: the client already connected, else where to connect.
struct DaemonAccess {
    connected: Option<Client>,
    addr: String,
    token: Option<String>,
}

impl DaemonAccess {
    /// The connected client, and whether this call connected it (the loop keeps it).
    async fn client(self) -> Result<(Client, bool), ClientError> {
        if let Some(client) = self.connected {
            return Ok((client, false));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&self.addr, self.token.as_deref())).await {
            Ok(result) => result.map(|client| (client, true)),
            Err(_) => Err(ClientError::Connect { addr: self.addr, reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()) }),
        }
    }
}

struct Server {
    connection: Connection,
    runtime: tokio::runtime::Runtime,
    /// Cloned into every daemon task; the loop holds it too, so the channel never closes.
    fetched_sender: Sender<Box<Fetched>>,
    fetched_receiver: Receiver<Box<Fetched>>,
    settings: Settings,
    client: Option<Client>,
    last_failure: Option<Instant>,
    unreachable_reported: bool,
    models: HashMap<String, ModelView>,
    failed_models: HashMap<String, Instant>,
    /// Models being fetched, by key.
    loading: HashMap<String, Loading>,
    /// Model fetches started so far, for `Loading::fetch_number`.
    fetches_started: u64,
    reported_models: HashSet<String>,
    /// Source file -> models whose call sites name it, from the last discovery.
    discovered: Option<(Instant, HashMap<PathBuf, Vec<ModelSource>>)>,
    /// Whether a discovery is in flight.
    discovering: bool,
    documents: HashMap<Url, Document>,
    /// Whether the client takes `workspace/inlayHint/refresh` requests.
    inlay_hint_refresh: bool,
    /// Requests this server sent the client, for their ids.
    requests_sent: u64,
}

impl Server {
    fn main_loop(&mut self) -> anyhow::Result<()> {
        while let Some(event) = self.next_event() {
            match event {
                Event::Client(Message::Request(request)) => {
                    if self.connection.handle_shutdown(&request)? {
                        return Ok(());
                    }
                    let response = self.handle_request(request);
                    self.connection.sender.send(Message::Response(response))?;
                }
                Event::Client(Message::Notification(notification)) => self.handle_notification(notification),
                Event::Client(Message::Response(_)) => {}
                Event::Fetched(fetched) => self.handle_fetched(*fetched),
            }
        }
        Ok(())
    }

    /// The next client message or daemon answer, whichever comes first; None when the
    /// client's side of the connection is closed.
    fn next_event(&self) -> Option<Event> {
        crossbeam_channel::select! {
            recv(self.connection.receiver) -> message => message.ok().map(Event::Client),
            recv(self.fetched_receiver) -> fetched => fetched.ok().map(Event::Fetched),
        }
    }

    fn handle_request(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        let result = match request.method.as_str() {
            lsp_types::request::HoverRequest::METHOD => serde_json::from_value::<lsp_types::HoverParams>(request.params)
                .map(|params| serde_json::to_value(self.hover(&params)).unwrap_or(Value::Null)),
            lsp_types::request::InlayHintRequest::METHOD => serde_json::from_value::<lsp_types::InlayHintParams>(request.params)
                .map(|params| serde_json::to_value(self.inlay_hints(&params)).unwrap_or(Value::Null)),
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
        let source = self.source_for(&path);
        if let Some(source) = &source {
            self.ensure_model(source);
        }
        let model = source.map(|source| source.key);
        self.documents.insert(uri.clone(), Document { path, index, model });
        let diagnostics = self.diagnostics(&uri);
        self.publish(uri, diagnostics);
    }

    /// On save: fetches the view of the document's model again (summary, parameters
    /// and the activation report); when it arrives, `handle_fetched` republishes the
    /// diagnostics of every open document of that model and asks the editor to
    /// re-request inlay hints. Until then, and when the fetch fails, the previous view
    /// stays, so hovers keep working, and the error is reported like any failed fetch.
    fn refresh(&mut self, uri: Url, text: Option<&str>) {
        let Some(document) = self.documents.get_mut(&uri) else { return };
        if let Some(text) = text {
            document.index = SourceIndex::scan(text);
        }
        let path = document.path.clone();
        let Some(source) = self.source_for(&path) else { return };
        if let Some(document) = self.documents.get_mut(&uri) {
            document.model = Some(source.key.clone());
        }
        self.failed_models.remove(&source.key);
        self.start_fetch(&source);
    }

    /// Where the model of the file at `path` comes from: its `layerlens.toml` entry,
    /// else the daemon's call sites (None until a discovery has matched the file).
    fn source_for(&mut self, path: &Path) -> Option<ModelSource> {
        match self.settings.mapping_for(path) {
            Some(mapping) => Some(mapping_source(mapping)),
            None => self.discover(path),
        }
    }

    /// Starts fetching `source`'s model unless it is cached, already being fetched, or
    /// failed less than `RETRY_AFTER` ago.
    fn ensure_model(&mut self, source: &ModelSource) {
        if self.models.contains_key(&source.key) || self.loading.contains_key(&source.key) {
            return;
        }
        if self.failed_models.get(&source.key).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return;
        }
        self.start_fetch(source);
    }

    /// Fetches `source`'s model on the runtime; the answer comes back to the loop as
    /// `Fetched::Model`. A view already cached stays until then.
    fn start_fetch(&mut self, source: &ModelSource) {
        let Some(access) = self.daemon_access() else { return };
        self.fetches_started += 1;
        let fetch_number = self.fetches_started;
        self.loading.insert(source.key.clone(), Loading { display_name: source.display_name.clone(), fetch_number });
        let (source, workspace_root, sender) = (source.clone(), self.settings.workspace_root.clone(), self.fetched_sender.clone());
        self.runtime.spawn(async move {
            let (connected, outcome) = match access.client().await {
                Ok((client, newly_connected)) => {
                    let outcome = match tokio::time::timeout(FETCH_TIMEOUT, fetch_model(&client, &source, &workspace_root)).await {
                        Ok(result) => result,
                        Err(_) => Err(ClientError::NoResult("model fetch (timed out)")),
                    };
                    (newly_connected.then_some(client), outcome)
                }
                Err(error) => (None, Err(error)),
            };
            // The receiver is gone only when the server is shutting down.
            let _ = sender.send(Box::new(Fetched { connected, answer: Answer::Model { source, fetch_number, outcome } }));
        });
    }

    /// The stored model whose call sites name `path`, from the last discovery. A
    /// discovery (answered as `Fetched::Discovery`) starts when none was made yet, and
    /// again when an unmatched file is opened after `RETRY_AFTER` (a model may have been
    /// stored since).
    fn discover(&mut self, path: &Path) -> Option<ModelSource> {
        let stale = self.discovered.as_ref().is_none_or(|(at, files)| !files.contains_key(path) && at.elapsed() > RETRY_AFTER);
        if stale && !self.discovering {
            self.start_discovery();
        }
        discovered_source(self.discovered.as_ref()?, path)
    }

    /// Reads the daemon's models on the runtime; the answer comes back to the loop as
    /// `Fetched::Discovery`.
    fn start_discovery(&mut self) {
        let Some(access) = self.daemon_access() else { return };
        self.discovering = true;
        let sender = self.fetched_sender.clone();
        self.runtime.spawn(async move {
            let (connected, outcome) = match access.client().await {
                Ok((client, newly_connected)) => {
                    let outcome = discover_call_sites(&client).await;
                    (newly_connected.then_some(client), outcome)
                }
                Err(error) => (None, Err(error)),
            };
            // The receiver is gone only when the server is shutting down.
            let _ = sender.send(Box::new(Fetched { connected, answer: Answer::Discovery { outcome } }));
        });
    }

    /// Takes in a daemon answer: a fetched model is stored and its documents'
    /// diagnostics published; a discovery gives documents opened before it ended their
    /// model (fetching it where needed).
    fn handle_fetched(&mut self, fetched: Fetched) {
        if let Some(client) = fetched.connected {
            self.client = Some(client);
            self.last_failure = None;
        }
        match fetched.answer {
            Answer::Model { source, fetch_number, outcome } => {
                // A save while this fetch ran started a later one; only its answer counts.
                if self.loading.get(&source.key).is_none_or(|loading| loading.fetch_number != fetch_number) {
                    return;
                }
                self.loading.remove(&source.key);
                match outcome {
                    Ok(view) => {
                        self.failed_models.remove(&source.key);
                        self.models.insert(source.key.clone(), view);
                        self.show_model(&source.key);
                    }
                    Err(error) => {
                        self.failed_models.insert(source.key.clone(), Instant::now());
                        self.report_error(&source.display_name, error);
                    }
                }
            }
            Answer::Discovery { outcome } => {
                self.discovering = false;
                match outcome {
                    Ok(files) => self.discovered = Some((Instant::now(), files)),
                    Err(error) => {
                        self.report_error("(listing models)", error);
                        return;
                    }
                }
                let unmatched: Vec<(Url, PathBuf)> = self
                    .documents
                    .iter()
                    .filter(|(_, document)| document.model.is_none())
                    .map(|(uri, document)| (uri.clone(), document.path.clone()))
                    .collect();
                let mut cached_keys = HashSet::new();
                for (uri, path) in unmatched {
                    let Some(source) = self.discovered.as_ref().and_then(|discovered| discovered_source(discovered, &path)) else { continue };
                    if let Some(document) = self.documents.get_mut(&uri) {
                        document.model = Some(source.key.clone());
                    }
                    if self.models.contains_key(&source.key) {
                        cached_keys.insert(source.key);
                    } else {
                        self.ensure_model(&source);
                    }
                }
                for key in cached_keys {
                    self.show_model(&key);
                }
            }
        }
    }

    /// Publishes the diagnostics of every open document of model `key` and asks the
    /// editor to re-request inlay hints: the view they were computed from has changed.
    fn show_model(&mut self, key: &str) {
        let affected: Vec<Url> =
            self.documents.iter().filter(|(_, document)| document.model.as_deref() == Some(key)).map(|(uri, _)| uri.clone()).collect();
        for uri in affected {
            let diagnostics = self.diagnostics(&uri);
            self.publish(uri, diagnostics);
        }
        if self.inlay_hint_refresh {
            self.requests_sent += 1;
            let request = Request::new(
                RequestId::from(format!("layerlens-{}", self.requests_sent)),
                lsp_types::request::InlayHintRefreshRequest::METHOD.into(),
                Value::Null,
            );
            let _ = self.connection.sender.send(Message::Request(request));
        }
    }

    /// How a daemon task reaches the daemon: the connected client, else where to
    /// connect; None while the daemon was unreachable less than `RETRY_AFTER` ago.
    fn daemon_access(&self) -> Option<DaemonAccess> {
        if self.client.is_none() && self.last_failure.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        Some(DaemonAccess { connected: self.client.clone(), addr: self.settings.addr.clone(), token: self.settings.token.clone() })
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
        if matches!(error, ClientError::Connect { .. }) {
            self.report_unreachable(&error.to_string());
            return;
        }
        match error.code() {
            Some(tonic::Code::Unavailable) | None if matches!(error, ClientError::Rpc(_)) => {
                self.report_unreachable(&format!("cannot reach layerlensd at {}: {error}", self.settings.addr));
            }
            Some(tonic::Code::Unauthenticated) | Some(tonic::Code::PermissionDenied) => {
                if self.reported_models.insert("(token)".into()) {
                    self.show_message(
                        MessageType::WARNING,
                        format!(
                            "layerlens: layerlensd at {} refused the token: {error}. Set LAYERLENS_TOKEN or initializationOptions.token",
                            self.settings.addr
                        ),
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
        let _ =
            self.connection.sender.send(Message::Notification(Notification::new(lsp_types::notification::PublishDiagnostics::METHOD.into(), params)));
    }

    fn document_and_model(&self, uri: &Url) -> Option<(&Document, &ModelView)> {
        let document = self.documents.get(uri)?;
        let model = self.models.get(document.model.as_ref()?)?;
        Some((document, model))
    }

    fn hover(&self, params: &lsp_types::HoverParams) -> Option<Hover> {
        let position = params.text_document_position_params.position;
        let uri = &params.text_document_position_params.text_document.uri;
        let Some((document, model)) = self.document_and_model(uri) else { return self.loading_hover(uri, position.line) };
        let hits = model.hits_at(&document.path, &document.index, position.line, position.character);
        if hits.is_empty() {
            return None;
        }
        let rows: Vec<usize> = hits.iter().map(|hit| hit.row).take(4).collect();
        let range = hits
            .first()
            .and_then(|hit| hit.columns)
            .map(|(start, end)| Range::new(Position::new(position.line, start), Position::new(position.line, end)));
        Some(Hover { contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: card::render_all(model, &rows) }), range })
    }

    /// While the document's model is being fetched (and none is cached), a hover on a
    /// line that names a layer says so instead of showing nothing; other lines stay
    /// quiet, as a card on every word of the file would be noise.
    fn loading_hover(&self, uri: &Url, line: u32) -> Option<Hover> {
        let document = self.documents.get(uri)?;
        let loading = self.loading.get(document.model.as_ref()?)?;
        if document.index.lines.get(line as usize).is_none_or(|references| references.is_empty()) {
            return None;
        }
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: card::render_loading(&loading.display_name) }),
            range: None,
        })
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

/// The first model a discovery matched to the file at `path`. Where several stored
/// models come from one file, the first listed wins; `layerlens.toml` pins the choice.
fn discovered_source(discovered: &(Instant, HashMap<PathBuf, Vec<ModelSource>>), path: &Path) -> Option<ModelSource> {
    discovered.1.get(path)?.first().cloned()
}

/// Reads `source`'s model from the daemon: its stored record, then summary, parameters
/// and — when an input is known (the sample file, else zeros of the configured or
/// stored shape) — the activation report.
async fn fetch_model(client: &Client, source: &ModelSource, workspace_root: &Path) -> Result<ModelView, ClientError> {
    let info = client.get_model(&source.reference).await?;
    let input_shape = source.input_shape.clone().or_else(|| Some(info.input_shape.clone()).filter(|shape| !shape.is_empty()));
    let input = match (&source.sample, input_shape) {
        (Some(sample), _) => {
            let (shape, values) = layerlens_client::npy::read_f32(workspace_root.join(sample))
                .map_err(|error| ClientError::File { path: sample.clone(), reason: error.reason().to_string() })?;
            Some((ActivationInput::Sample(sample.clone(), shape.clone()), proto::Tensor::from_f32(&shape, &values)))
        }
        (None, Some(shape)) => {
            let count = shape.iter().product::<i64>().max(0) as usize;
            Some((ActivationInput::Zeros(shape.clone()), proto::Tensor::from_f32(&shape, &vec![0.0; count])))
        }
        (None, None) => None,
    };
    ModelView::fetch(client, &info.id, &source.display_name, input).await
}

/// Matches source files to the daemon's stored models by the call sites their
/// summaries recorded: source file -> models called from it. At most
/// `MAX_DISCOVERED_MODELS` models are read.
async fn discover_call_sites(client: &Client) -> Result<HashMap<PathBuf, Vec<ModelSource>>, ClientError> {
    let models = match tokio::time::timeout(FETCH_TIMEOUT, client.list_models()).await {
        Ok(result) => result?,
        Err(_) => return Err(ClientError::NoResult("model list (timed out)")),
    };
    let mut files: HashMap<PathBuf, Vec<ModelSource>> = HashMap::new();
    for info in models.into_iter().filter(|info| !info.input_shape.is_empty()).take(MAX_DISCOVERED_MODELS) {
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
            let source =
                ModelSource { key: info.id.clone(), reference: info.id.clone(), display_name: display_name.clone(), input_shape: None, sample: None };
            files.entry(file.clone()).or_default().push(source);
        }
    }
    Ok(files)
}

fn method_not_found(id: RequestId, method: &str) -> Response {
    Response::new_err(id, lsp_server::ErrorCode::MethodNotFound as i32, format!("layerlens-lsp does not handle {method}"))
}
