//! The LSP loop (`layerlens_lsp::server::run`) over an in-memory connection, against
//! fake daemons on loopback: one that answers only when the test lets it, and one that
//! accepts connections and never answers. They check what the workspace's end-to-end
//! tests (tests/tests/lsp.rs, with a real daemon and libtorch) cannot check cheaply: a
//! hover is answered at once while the daemon is slow — with a card saying the model is
//! loading — and once the daemon answers, the diagnostics and the full card follow; a
//! `layerlens.toml` sample input is read from its `.npy` file, and a damaged one is
//! reported naming the file.

use layerlens_proto as proto;
use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::{Request as RpcRequest, Response as RpcResponse, Status};

/// How long a hover may take while the daemon is busy: the loop must not wait for it.
const HOVER_BOUND: Duration = Duration::from_secs(2);
/// Bound on anything that waits for the fake daemon's answers to reach the client.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The model source the hovers point into: the layers of a small CNN, as in
/// tests/fixtures/lsp_net.py.
const MODEL_SOURCE: &str = "\
import torch
from torch import nn


class LensNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.act1 = nn.ReLU()

    def forward(self, x):
        x = self.conv1(x)
        return self.act1(x)
";

/// A workspace holding `model.py` and a `layerlens.toml` that maps it to `lensnet`.
struct Workspace {
    _dir: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
}

impl Workspace {
    /// The mapping gives the model's input shape.
    fn new() -> Workspace {
        Workspace::with_mapping("input_shape = [1, 1, 8, 8]")
    }

    /// `setting` is one more line of the `[[model]]` entry.
    fn with_mapping(setting: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let source = root.join("model.py");
        std::fs::write(&source, MODEL_SOURCE).expect("writing model.py");
        let mapping = format!("[[model]]\nname = \"lensnet\"\nfiles = [\"model.py\"]\n{setting}\n");
        std::fs::write(root.join("layerlens.toml"), mapping).expect("writing layerlens.toml");
        Workspace { _dir: dir, root, source }
    }

    fn uri(&self) -> String {
        format!("file://{}", self.source.display())
    }
}

/// 0-based line and column of `offset` characters into the first occurrence of `needle`.
fn position(needle: &str, offset: usize) -> (u32, u32) {
    for (line, text) in MODEL_SOURCE.lines().enumerate() {
        if let Some(column) = text.find(needle) {
            return (line as u32, (column + offset) as u32);
        }
    }
    panic!("{needle:?} is not in the model source")
}

/// `file:line` (1-based) of `needle` in `source`, as TorchScript records call sites.
fn call_site(source: &Path, needle: &str) -> String {
    format!("{}:{}", source.display(), position(needle, 0).0 + 1)
}

// --- A fake daemon ------------------------------------------------------------------

/// Answers Models.Get, Summary, Parameters and Activations for `lensnet` once `gate` has
/// permits; every other call is unimplemented.
#[derive(Clone)]
struct FakeDaemon {
    gate: std::sync::Arc<tokio::sync::Semaphore>,
    source: PathBuf,
}

const MODEL_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl FakeDaemon {
    async fn pass_gate(&self) {
        let _permit = self.gate.acquire().await.expect("the gate is never closed");
    }

    fn rows(&self) -> Vec<proto::SummaryRow> {
        let shape = |dims: &[i64]| proto::Shape { dims: dims.to_vec() };
        vec![
            proto::SummaryRow {
                path: String::new(),
                type_name: "LensNet".into(),
                num_params: 40,
                output_shapes: vec![shape(&[1, 4, 8, 8])],
                ..Default::default()
            },
            proto::SummaryRow {
                path: "conv1".into(),
                type_name: "torch.nn.Conv2d".into(),
                depth: 1,
                num_params: 40,
                params_percent: 100.0,
                output_shapes: vec![shape(&[1, 4, 8, 8])],
                input_shapes: vec![shape(&[1, 1, 8, 8])],
                call_site: call_site(&self.source, "x = self.conv1(x)"),
                ..Default::default()
            },
            proto::SummaryRow {
                path: "act1".into(),
                type_name: "torch.nn.ReLU".into(),
                depth: 1,
                output_shapes: vec![shape(&[1, 4, 8, 8])],
                call_site: call_site(&self.source, "return self.act1(x)"),
                ..Default::default()
            },
        ]
    }
}

#[tonic::async_trait]
impl proto::models_server::Models for FakeDaemon {
    async fn upload(&self, _: RpcRequest<tonic::Streaming<proto::UploadRequest>>) -> Result<RpcResponse<proto::ModelInfo>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn add_from_path(&self, _: RpcRequest<proto::AddFromPathRequest>) -> Result<RpcResponse<proto::ModelInfo>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn list(&self, _: RpcRequest<proto::ListModelsRequest>) -> Result<RpcResponse<proto::ListModelsResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn get(&self, request: RpcRequest<proto::GetModelRequest>) -> Result<RpcResponse<proto::ModelInfo>, Status> {
        self.pass_gate().await;
        if request.get_ref().model != "lensnet" {
            return Err(Status::not_found(format!("no model '{}'", request.get_ref().model)));
        }
        Ok(RpcResponse::new(proto::ModelInfo {
            id: MODEL_ID.into(),
            names: vec!["lensnet".into()],
            input_shape: vec![1, 1, 8, 8],
            ..Default::default()
        }))
    }

    async fn delete(&self, _: RpcRequest<proto::DeleteModelRequest>) -> Result<RpcResponse<proto::DeleteModelResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn pin(&self, _: RpcRequest<proto::PinModelRequest>) -> Result<RpcResponse<proto::ModelInfo>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn unpin(&self, _: RpcRequest<proto::PinModelRequest>) -> Result<RpcResponse<proto::ModelInfo>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }
}

#[tonic::async_trait]
impl proto::explain_server::Explain for FakeDaemon {
    async fn summary(&self, _: RpcRequest<proto::SummaryRequest>) -> Result<RpcResponse<proto::SummaryResponse>, Status> {
        self.pass_gate().await;
        Ok(RpcResponse::new(proto::SummaryResponse { model_id: MODEL_ID.into(), rows: self.rows(), ..Default::default() }))
    }

    async fn attribute(&self, _: RpcRequest<proto::AttributeRequest>) -> Result<RpcResponse<proto::AttributeResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    type AttributeStreamStream = tokio_stream::Empty<Result<proto::AttributeEvent, Status>>;

    async fn attribute_stream(&self, _: RpcRequest<proto::AttributeRequest>) -> Result<RpcResponse<Self::AttributeStreamStream>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn parameters(&self, _: RpcRequest<proto::ParametersRequest>) -> Result<RpcResponse<proto::ParametersResponse>, Status> {
        self.pass_gate().await;
        let parameter = |name: &str, shape: &[i64]| proto::ParameterStats {
            name: name.into(),
            module_path: "conv1".into(),
            shape: shape.to_vec(),
            ..Default::default()
        };
        let parameters = vec![parameter("conv1.weight", &[4, 1, 3, 3]), parameter("conv1.bias", &[4])];
        Ok(RpcResponse::new(proto::ParametersResponse { model_id: MODEL_ID.into(), parameters, ..Default::default() }))
    }

    async fn activations(&self, _: RpcRequest<proto::ActivationsRequest>) -> Result<RpcResponse<proto::ActivationsResponse>, Status> {
        self.pass_gate().await;
        let act1 = proto::LayerStats { path: "act1".into(), dead_channels: Some(4), channels: Some(4), ..Default::default() };
        let dead = proto::Anomaly {
            severity: proto::anomaly::Severity::Warning as i32,
            kind: "dead_units".into(),
            path: "act1".into(),
            message: "all 4 channels are never positive".into(),
            ..Default::default()
        };
        Ok(RpcResponse::new(proto::ActivationsResponse {
            model_id: MODEL_ID.into(),
            layers: vec![act1],
            anomalies: vec![dead],
            ..Default::default()
        }))
    }

    async fn predict(&self, _: RpcRequest<proto::PredictRequest>) -> Result<RpcResponse<proto::PredictResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn graph(&self, _: RpcRequest<proto::GraphRequest>) -> Result<RpcResponse<proto::GraphResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn compare(&self, _: RpcRequest<proto::CompareRequest>) -> Result<RpcResponse<proto::CompareResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn evaluate(&self, _: RpcRequest<proto::EvaluateRequest>) -> Result<RpcResponse<proto::EvaluateResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn sanity_check(&self, _: RpcRequest<proto::SanityCheckRequest>) -> Result<RpcResponse<proto::SanityCheckResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }

    async fn methods(&self, _: RpcRequest<proto::MethodsRequest>) -> Result<RpcResponse<proto::MethodsResponse>, Status> {
        Err(Status::unimplemented("fake daemon"))
    }
}

/// Serves `daemon` on a loopback port on `runtime`; answers its address.
fn serve(runtime: &tokio::runtime::Runtime, daemon: FakeDaemon) -> String {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binding a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(proto::models_server::ModelsServer::new(daemon.clone()))
            .add_service(proto::explain_server::ExplainServer::new(daemon))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

// --- A minimal LSP client -------------------------------------------------------------

/// The client's side of an in-memory connection to `server::run` on its own thread.
struct LspClient {
    connection: Connection,
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    next_id: i32,
    /// Notifications and server requests received while waiting for something else.
    received: Vec<Value>,
}

impl LspClient {
    /// Starts the server and initializes it for `root`, announcing inlay hint refresh
    /// support, with the daemon at `addr`.
    fn start(root: &Path, addr: &str) -> LspClient {
        let (server_side, connection) = Connection::memory();
        let server = std::thread::spawn(move || layerlens_lsp::server::run(server_side));
        let mut client = LspClient { connection, server: Some(server), next_id: 0, received: Vec::new() };
        let capabilities = json!({ "workspace": { "inlayHint": { "refreshSupport": true } } });
        let root_uri = format!("file://{}", root.display());
        client.request(
            "initialize",
            json!({ "processId": null, "rootUri": root_uri, "capabilities": capabilities, "initializationOptions": { "addr": addr } }),
            ANSWER_TIMEOUT,
        );
        client.notify("initialized", json!({}));
        client
    }

    fn notify(&self, method: &str, params: Value) {
        self.connection.sender.send(Message::Notification(Notification::new(method.into(), params))).expect("the server is running");
    }

    /// Sends a request and answers its result, or panics when none comes within `bound`.
    fn request(&mut self, method: &str, params: Value, bound: Duration) -> Value {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.connection.sender.send(Message::Request(Request::new(id.clone(), method.into(), params))).expect("the server is running");
        let deadline = Instant::now() + bound;
        loop {
            let message = self
                .connection
                .receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no answer to {method} within {bound:?}"));
            match message {
                Message::Response(response) if response.id == id => {
                    assert!(response.error.is_none(), "{method} failed: {:?}", response.error);
                    return response.result.unwrap_or(Value::Null);
                }
                other => self.received.push(serde_json::to_value(other).expect("a JSON message")),
            }
        }
    }

    fn hover(&mut self, uri: &str, (line, character): (u32, u32), bound: Duration) -> Value {
        self.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }), bound)
    }

    /// Waits for a notification or server request named `method` whose params satisfy
    /// `accept`; answers its params.
    fn wait_for(&mut self, method: &str, accept: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.received.iter().find(|message| message["method"] == method && accept(&message["params"])) {
            return found["params"].clone();
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let message = self
                .connection
                .receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {method} within {ANSWER_TIMEOUT:?}; received {:?}", self.received));
            let message = serde_json::to_value(message).expect("a JSON message");
            self.received.push(message.clone());
            if message["method"] == method && accept(&message["params"]) {
                return message["params"].clone();
            }
        }
    }

    fn received_named(&self, method: &str) -> Vec<&Value> {
        self.received.iter().filter(|message| message["method"] == method).collect()
    }

    /// `shutdown` + `exit`; the server must return promptly, even with a daemon call
    /// still waiting for an answer.
    fn stop(mut self) {
        self.request("shutdown", Value::Null, ANSWER_TIMEOUT);
        self.notify("exit", Value::Null);
        let server = self.server.take().expect("stopped once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.is_finished() {
            assert!(Instant::now() < deadline, "the server did not return within 10 s of exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        server.join().expect("the server thread panicked").expect("the server failed");
    }
}

fn card_text(hover: &Value) -> String {
    hover["contents"]["value"].as_str().unwrap_or_else(|| panic!("a Markdown hover, got {hover}")).to_string()
}

fn assert_card(card: &str, expected: &[&str]) {
    for text in expected {
        assert!(card.contains(text), "the card lacks {text:?}:\n{card}");
    }
}

// --- Tests -------------------------------------------------------------------------------

#[test]
fn hover_says_loading_while_the_daemon_is_slow_then_shows_the_card() {
    let workspace = Workspace::new();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime for the fake daemon");
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let addr = serve(&runtime, FakeDaemon { gate: gate.clone(), source: workspace.source.clone() });
    let mut lsp = LspClient::start(&workspace.root, &addr);
    let uri = workspace.uri();
    lsp.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": MODEL_SOURCE } }));

    // The daemon holds every answer: the hover is answered at once, saying so.
    let started = Instant::now();
    let hover = lsp.hover(&uri, position("x = self.conv1(x)", 10), HOVER_BOUND);
    eprintln!("hover while the daemon is busy answered in {:?}", started.elapsed());
    assert_card(&card_text(&hover), &["loading", "`lensnet`", "daemon"]);
    // A line without a layer stays quiet, loading or not.
    assert_eq!(lsp.hover(&uri, position("super().__init__()", 2), HOVER_BOUND), Value::Null);

    // Once the daemon answers, the dead ReLU is published as a warning on its call line,
    // the editor is asked for inlay hints again, and hovers show the full card.
    gate.add_permits(1000);
    let act1_line = position("return self.act1(x)", 0).0;
    let published = lsp.wait_for("textDocument/publishDiagnostics", |params| params["diagnostics"].as_array().is_some_and(|list| !list.is_empty()));
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().any(|d| d["range"]["start"]["line"] == act1_line && d["severity"] == 2 && d["code"] == "dead_units"),
        "{diagnostics:?}"
    );
    lsp.wait_for("workspace/inlayHint/refresh", |_| true);
    let card = card_text(&lsp.hover(&uri, position("x = self.conv1(x)", 10), HOVER_BOUND));
    assert_card(&card, &["**conv1**", "Conv2d", "| parameters | 40 ", "| output | `[1, 4, 8, 8]` |", "`weight` `[4, 1, 3, 3]`", "`bias` `[4]`"]);
    let card = card_text(&lsp.hover(&uri, position("return self.act1(x)", 16), HOVER_BOUND));
    assert_card(&card, &["**act1**", "⚠ **dead_units**"]);
    assert!(lsp.received_named("window/showMessage").is_empty(), "unexpected messages: {:?}", lsp.received);
    lsp.stop();
}

#[test]
fn hover_says_loading_while_the_daemon_never_answers() {
    let workspace = Workspace::new();
    // Accepts connections and never reads or writes: a daemon stuck for good.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut lsp = LspClient::start(&workspace.root, &addr);
    let uri = workspace.uri();
    lsp.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": MODEL_SOURCE } }));
    let started = Instant::now();
    let hover = lsp.hover(&uri, position("x = self.conv1(x)", 10), HOVER_BOUND);
    eprintln!("hover while the daemon never answers answered in {:?}", started.elapsed());
    assert_card(&card_text(&hover), &["loading", "`lensnet`"]);
    lsp.stop();
}

#[test]
fn the_sample_input_is_read_from_its_npy_file() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime for the fake daemon");
    let open_gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1000));

    // A float32 sample: the activation statistics say they were computed on it.
    let workspace = Workspace::with_mapping("sample = \"x.npy\"");
    layerlens_client::npy::write_f32(workspace.root.join("x.npy"), &[1, 1, 8, 8], &[0.5; 64]).expect("writing x.npy");
    let addr = serve(&runtime, FakeDaemon { gate: open_gate.clone(), source: workspace.source.clone() });
    let mut lsp = LspClient::start(&workspace.root, &addr);
    let uri = workspace.uri();
    lsp.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": MODEL_SOURCE } }));
    lsp.wait_for("workspace/inlayHint/refresh", |_| true);
    let card = card_text(&lsp.hover(&uri, position("return self.act1(x)", 16), HOVER_BOUND));
    assert_card(&card, &["**act1**", "**Activation** (input: `x.npy`, shape [1, 1, 8, 8])"]);
    lsp.stop();

    // A damaged sample (an interrupted copy): the user is told which file and why.
    let workspace = Workspace::with_mapping("sample = \"x.npy\"");
    let sample = workspace.root.join("x.npy");
    layerlens_client::npy::write_f32(&sample, &[1, 1, 8, 8], &[0.5; 64]).expect("writing x.npy");
    let bytes = std::fs::read(&sample).expect("reading x.npy");
    std::fs::write(&sample, &bytes[..bytes.len() - 10]).expect("truncating x.npy");
    let addr = serve(&runtime, FakeDaemon { gate: open_gate, source: workspace.source.clone() });
    let mut lsp = LspClient::start(&workspace.root, &addr);
    let uri = workspace.uri();
    lsp.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": MODEL_SOURCE } }));
    let message = lsp.wait_for("window/showMessage", |_| true);
    assert_card(
        message["message"].as_str().unwrap(),
        &["model `lensnet`", "cannot read x.npy: truncated: shape [1, 1, 8, 8] needs 256 bytes of values"],
    );
    lsp.stop();
}
