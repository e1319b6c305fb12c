//! The editor server `layerlens-lsp` against a real `layerlensd` on loopback: a model
//! scripted in the test from `tests/fixtures/lsp_net.py` (so its call sites point into
//! the test's workspace), stored with the real CLI, then (1) a minimal LSP client over
//! stdio checks hover cards, diagnostics, inlay hints, call-site discovery and hover
//! latency (200 hovers, p50/p99), (2) the unreachable-daemon and unmapped-file paths
//! stay quiet, and (3) real Neovim (headless) requests a hover and the card is checked.
//! The server fetches a model off its message loop: until the fetch ends a hover gets a
//! card saying the model is loading (clients/lsp/tests/server.rs checks that part with a
//! fake daemon), so these tests hover again until the card is there.

use layerlens_e2e::{binary, cli, ensure_debian_program, python, workspace_root, Daemon};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Bound on any one answer from the server, and on the wait for a model fetch.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// A workspace holding `model.py` (the fixture) and the model scripted from it.
struct Workspace {
    _dir: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
    text: String,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace::with_model("model.pt")
    }

    /// The workspace with its model saved as `file`: `model.pt` (TorchScript) or
    /// `model.pt2` (a torch.export archive).
    fn with_model(file: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let source = root.join("model.py");
        std::fs::copy(workspace_root().join("tests/fixtures/lsp_net.py"), &source).expect("copying the fixture");
        let status = Command::new(python()).arg(&source).arg(root.join(file)).status().expect("running python");
        assert!(status.success(), "saving lsp_net.py as {file} failed");
        let text = std::fs::read_to_string(&source).expect("reading model.py");
        Workspace { _dir: dir, root, source, text }
    }

    /// 0-based line and column of the first occurrence of `needle` (column at
    /// `offset` characters into it).
    fn position(&self, needle: &str, offset: usize) -> (u32, u32) {
        for (line, text) in self.text.lines().enumerate() {
            if let Some(column) = text.find(needle) {
                return (line as u32, (column + offset) as u32);
            }
        }
        panic!("{needle:?} is not in model.py")
    }

    fn uri(&self) -> String {
        format!("file://{}", self.source.display())
    }
}

fn store_model(daemon: &Daemon, workspace: &Workspace) {
    store_model_file(daemon, workspace, "model.pt");
}

fn store_model_file(daemon: &Daemon, workspace: &Workspace, file: &str) {
    let model = workspace.root.join(file);
    let (ok, _, stderr) = cli(&daemon.url, &["models", "add", model.to_str().unwrap(), "--name", "lensnet", "--input-shape", "1,1,8,8"]);
    assert!(ok, "storing the model failed: {stderr}");
}

/// A minimal LSP client: Content-Length framing over the server's stdin/stdout.
struct LspClient {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
    /// Notifications received while waiting for responses.
    notifications: Vec<Value>,
}

impl LspClient {
    fn start(root: &Path, addr: &str) -> LspClient {
        LspClient::start_with(root, addr, json!({}))
    }

    /// `start`, announcing the client capabilities `capabilities`.
    fn start_with(root: &Path, addr: &str, capabilities: Value) -> LspClient {
        let mut child = Command::new(binary("layerlens-lsp"))
            .env_remove("LAYERLENS_ADDR")
            .env_remove("LAYERLENS_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting layerlens-lsp");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut length = None;
            loop {
                let mut header = String::new();
                if stdout.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some(value) = header.strip_prefix("Content-Length: ") {
                    length = value.parse::<usize>().ok();
                }
            }
            let mut body = vec![0; length.expect("a Content-Length header")];
            if stdout.read_exact(&mut body).is_err() {
                return;
            }
            if sender.send(serde_json::from_slice(&body).expect("a JSON message")).is_err() {
                return;
            }
        });
        let mut client = LspClient { child, stdin, messages, next_id: 0, notifications: Vec::new() };
        let root_uri = format!("file://{}", root.display());
        client.request(
            "initialize",
            json!({ "processId": null, "rootUri": root_uri, "capabilities": capabilities, "initializationOptions": { "addr": addr } }),
        );
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("writing to layerlens-lsp");
        self.stdin.flush().expect("flushing");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and waits for its response's `result`.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let message = match self.messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("no answer to {method} within {ANSWER_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("layerlens-lsp exited while answering {method}"),
            };
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.notifications.push(message);
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": text } }));
    }

    fn hover(&mut self, uri: &str, (line, character): (u32, u32)) -> Value {
        self.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }))
    }

    /// Hovers until the answer is a card, not the loading card and not `null` (a file
    /// matched by call sites has no model until the daemon's models are read).
    fn hover_when_loaded(&mut self, uri: &str, position: (u32, u32)) -> Value {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let hover = self.hover(uri, position);
            let loading = hover.is_null() || hover["contents"]["value"].as_str().is_some_and(|card| card.contains("layerlens: loading"));
            if !loading {
                return hover;
            }
            assert!(Instant::now() < deadline, "the model did not load within {ANSWER_TIMEOUT:?}: {hover}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a notification (or server request) named `method`, received already
    /// or arriving within `ANSWER_TIMEOUT`.
    fn wait_for(&mut self, method: &str) {
        if !self.notifications_named(method).is_empty() {
            return;
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let message = match self.messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("no {method} within {ANSWER_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("layerlens-lsp exited while waiting for {method}"),
            };
            let found = message["method"] == method;
            self.notifications.push(message);
            if found {
                return;
            }
        }
    }

    fn notifications_named(&self, method: &str) -> Vec<&Value> {
        self.notifications.iter().filter(|message| message["method"] == method).collect()
    }

    /// `shutdown` + `exit`; waits (bounded) for the process to end.
    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "layerlens-lsp exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("layerlens-lsp did not exit after shutdown + exit");
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// (what to hover, column offset into it, what the card must say)
const HOVER_CASES: &[(&str, usize, &[&str])] = &[
    // The call site: conv1 has 4·1·3·3 + 4 = 40 parameters and keeps the 8×8 size.
    (
        "x = self.conv1(x)",
        10,
        &["**conv1**", "Conv2d", "| parameters | 40 ", "| output | `[1, 4, 8, 8]` |", "`weight` `[4, 1, 3, 3]`", "`bias` `[4]`", "mean -100.0000"],
    ),
    // The attribute definition gives the same layer.
    ("self.conv1 = nn.Conv2d", 6, &["**conv1**", "Conv2d", "| parameters | 40 ", "| output | `[1, 4, 8, 8]` |"]),
    // The planted dead ReLU: flagged on its card.
    (
        "x = self.act1(x)",
        10,
        &["**act1**", "ReLU", "| output | `[1, 4, 8, 8]` |", "dead channels 4 of 4", "⚠ **dead_units**", "data:image/svg+xml;base64,"],
    ),
    // An nn.Sequential entry: head.1, 256·10 + 10 = 2,570 parameters.
    ("nn.Linear(4 * 8 * 8, 10)", 3, &["**head.1**", "Linear", "| parameters | 2,570 ", "| output | `[1, 10]` |"]),
];

/// Every card of HOVER_CASES, and the dead-unit warning on act1's call line (published
/// when the model's fetch ends, before the first full card's answer).
fn assert_cards_and_dead_unit_warning(lsp: &mut LspClient, workspace: &Workspace, uri: &str) {
    for (needle, offset, expected) in HOVER_CASES {
        let hover = lsp.hover_when_loaded(uri, workspace.position(needle, *offset));
        assert_card(&card_text(&hover), expected);
    }
    let diagnostics = lsp.notifications_named("textDocument/publishDiagnostics");
    let diagnostics: Vec<&Value> = diagnostics.iter().flat_map(|n| n["params"]["diagnostics"].as_array().unwrap().iter()).collect();
    let act1_line = workspace.position("x = self.act1(x)", 0).0;
    assert!(
        diagnostics.iter().any(|d| d["range"]["start"]["line"] == act1_line && d["severity"] == 2 && d["code"] == "dead_units"),
        "no dead_units warning on line {act1_line}: {diagnostics:?}"
    );
}

/// Without layerlens.toml the file is matched to the model by the call sites the daemon
/// recorded.
fn assert_discovery_by_call_sites(daemon: &Daemon, workspace: &Workspace, uri: &str) {
    std::fs::remove_file(workspace.root.join("layerlens.toml")).unwrap();
    let mut lsp = LspClient::start(&workspace.root, &daemon.url);
    lsp.open(uri, &workspace.text);
    let (needle, offset, expected) = HOVER_CASES[0];
    let card = card_text(&lsp.hover_when_loaded(uri, workspace.position(needle, offset)));
    assert_card(&card, expected);
    assert_card(&card, &["model `lensnet`"]);
    lsp.stop();
}

#[test]
fn hover_diagnostics_inlay_hints_and_latency_over_stdio() {
    let store = tempfile::tempdir().expect("temp store");
    let daemon = Daemon::start(store.path(), &[]);
    let workspace = Workspace::new();
    store_model(&daemon, &workspace);
    std::fs::write(workspace.root.join("layerlens.toml"), "[[model]]\nname = \"lensnet\"\nfiles = [\"model.py\"]\ninput_shape = [1, 1, 8, 8]\n")
        .unwrap();

    let mut lsp = LspClient::start(&workspace.root, &daemon.url);
    let uri = workspace.uri();
    lsp.open(&uri, &workspace.text);
    assert_cards_and_dead_unit_warning(&mut lsp, &workspace, &uri);
    // A line without a layer: nothing.
    assert_eq!(lsp.hover(&uri, workspace.position("super().__init__()", 2)), Value::Null);
    assert!(lsp.notifications_named("window/showMessage").is_empty(), "unexpected messages: {:?}", lsp.notifications);

    // Output shapes as inlay hints on the call lines and Sequential entries.
    let end = workspace.text.lines().count() as u32;
    let hints = lsp.request(
        "textDocument/inlayHint",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": 0, "character": 0 }, "end": { "line": end, "character": 0 } } }),
    );
    let hints: Vec<(u64, String)> =
        hints.as_array().unwrap().iter().map(|h| (h["position"]["line"].as_u64().unwrap(), h["label"].as_str().unwrap().to_string())).collect();
    for (needle, label) in [("x = self.conv1(x)", "→ [1, 4, 8, 8]"), ("return self.head(x)", "→ [1, 10]"), ("nn.Flatten()", "→ [1, 256]")] {
        let line = workspace.position(needle, 0).0 as u64;
        assert!(hints.contains(&(line, label.to_string())), "no inlay hint {label:?} on line {line}: {hints:?}");
    }

    // Latency: 200 hovers, round trip over stdio, served from the server's cache.
    let positions: Vec<(u32, u32)> = HOVER_CASES.iter().map(|(needle, offset, _)| workspace.position(needle, *offset)).collect();
    let mut latencies: Vec<Duration> = (0..200)
        .map(|i| {
            let started = Instant::now();
            let hover = lsp.hover(&uri, positions[i % positions.len()]);
            let elapsed = started.elapsed();
            assert!(!hover.is_null());
            elapsed
        })
        .collect();
    latencies.sort();
    let (p50, p99) = (latencies[99], latencies[197]);
    eprintln!("layerlens-lsp hover latency over stdio, 200 requests: p50 {p50:?}, p99 {p99:?}, max {:?}", latencies[199]);
    assert!(p99 <= Duration::from_millis(30), "hover p99 {p99:?} is over 30 ms");
    lsp.stop();
    assert_discovery_by_call_sites(&daemon, &workspace, &uri);
    assert!(daemon.stop(), "layerlensd did not stop cleanly");
}

/// The diagnostics of the last publishDiagnostics for `uri` among `notifications`.
fn last_diagnostics<'a>(notifications: &[&'a Value], uri: &str) -> Vec<&'a Value> {
    let published = notifications.iter().rev().find(|n| n["params"]["uri"] == uri).unwrap_or_else(|| panic!("no diagnostics published for {uri}"));
    published["params"]["diagnostics"].as_array().unwrap().iter().collect()
}

/// The same cards and the dead-unit diagnostic for the module saved with torch.export:
/// the executor's module calls carry the call sites from the nodes' stack traces.
#[test]
fn hover_cards_and_diagnostics_for_an_exported_program() {
    let store = tempfile::tempdir().expect("temp store");
    let daemon = Daemon::start(store.path(), &[]);
    let workspace = Workspace::with_model("model.pt2");
    store_model_file(&daemon, &workspace, "model.pt2");
    // A training checkpoint: the cards then say what the optimiser does to each layer.
    let checkpoint = workspace.root.join("ckpt.pt");
    let status =
        Command::new(python()).arg(&workspace.source).arg(workspace.root.join("again.pt2")).arg(&checkpoint).status().expect("running python");
    assert!(status.success(), "saving the checkpoint failed");
    let (ok, _, stderr) = cli(&daemon.url, &["checkpoints", "add", "lensnet", checkpoint.to_str().unwrap()]);
    assert!(ok, "storing the checkpoint failed: {stderr}");
    std::fs::write(workspace.root.join("layerlens.toml"), "[[model]]\nname = \"lensnet\"\nfiles = [\"model.py\"]\ninput_shape = [1, 1, 8, 8]\n")
        .unwrap();
    let mut lsp = LspClient::start(&workspace.root, &daemon.url);
    let uri = workspace.uri();
    lsp.open(&uri, &workspace.text);
    assert_cards_and_dead_unit_warning(&mut lsp, &workspace, &uri);
    // The optimiser's part of the cards: head.1 learns, conv1 (dead) never had a gradient.
    let head = card_text(&lsp.hover_when_loaded(&uri, workspace.position("nn.Linear(4 * 8 * 8, 10)", 3)));
    assert_card(&head, &["**Optimiser** (Adam, step 3)", "update:weight "]);
    let conv = card_text(&lsp.hover_when_loaded(&uri, workspace.position("x = self.conv1(x)", 10)));
    assert_card(&conv, &["**Optimiser** (Adam, step 3)", "⚠ **never_updated**", "100% of coordinates have a zero second moment"]);
    lsp.stop();
    assert_discovery_by_call_sites(&daemon, &workspace, &uri);
    assert!(daemon.stop(), "layerlensd did not stop cleanly");
}

#[test]
fn saving_fetches_the_activation_report_again() {
    let store = tempfile::tempdir().expect("temp store");
    let daemon = Daemon::start(store.path(), &[]);
    let workspace = Workspace::new();
    store_model(&daemon, &workspace);
    std::fs::write(workspace.root.join("layerlens.toml"), "[[model]]\nname = \"lensnet\"\nfiles = [\"model.py\"]\ninput_shape = [1, 1, 8, 8]\n")
        .unwrap();
    let capabilities = json!({ "workspace": { "inlayHint": { "refreshSupport": true } } });
    let mut lsp = LspClient::start_with(&workspace.root, &daemon.url, capabilities);
    let uri = workspace.uri();
    lsp.open(&uri, &workspace.text);
    let conv1 = workspace.position("x = self.conv1(x)", 10);
    // On the zero input conv1 outputs its bias, -100, and act1 is dead.
    assert_card(&card_text(&lsp.hover_when_loaded(&uri, conv1)), &["**conv1**", "mean -100.0000"]);
    let act1_line = workspace.position("x = self.act1(x)", 0).0;
    let diagnostics = last_diagnostics(&lsp.notifications_named("textDocument/publishDiagnostics"), &uri);
    assert!(diagnostics.iter().any(|d| d["range"]["start"]["line"] == act1_line && d["code"] == "dead_units"), "{diagnostics:?}");

    // The model is fixed (bias +100: act1 passes everything on the zero input),
    // scripted again and stored under the same name; then the file is saved.
    let fixed = workspace.text.replace("fill_(-100.0)", "fill_(100.0)");
    assert_ne!(fixed, workspace.text, "the fixture no longer sets conv1's bias to -100");
    std::fs::write(&workspace.source, &fixed).unwrap();
    let status = Command::new(python()).arg(&workspace.source).arg(workspace.root.join("model.pt")).status().expect("running python");
    assert!(status.success(), "scripting the fixed model failed");
    store_model(&daemon, &workspace);
    lsp.notifications.clear();
    lsp.notify("textDocument/didSave", json!({ "textDocument": { "uri": uri } }));

    // Hovers show the previous view until the save's fetch ends; then the server
    // republishes the diagnostics, asks for inlay hints again, and the card shows the
    // new activations.
    lsp.wait_for("workspace/inlayHint/refresh");
    assert_card(&card_text(&lsp.hover(&uri, conv1)), &["**conv1**", "mean 100.0000"]);
    let diagnostics = last_diagnostics(&lsp.notifications_named("textDocument/publishDiagnostics"), &uri);
    assert!(diagnostics.iter().all(|d| d["code"] != "dead_units"), "act1 is still reported dead after the save: {diagnostics:?}");
    assert_eq!(lsp.notifications_named("workspace/inlayHint/refresh").len(), 1, "{:?}", lsp.notifications);
    assert!(lsp.notifications_named("window/showMessage").is_empty(), "unexpected messages: {:?}", lsp.notifications);
    lsp.stop();
    assert!(daemon.stop(), "layerlensd did not stop cleanly");
}

#[test]
fn unreachable_daemon_and_unmapped_files_stay_quiet() {
    let workspace = tempfile::tempdir().expect("temp dir");
    let root = std::fs::canonicalize(workspace.path()).unwrap();
    // Nothing listens on port 1.
    let mut lsp = LspClient::start(&root, "http://127.0.0.1:1");
    for name in ["a.py", "b.py"] {
        let uri = format!("file://{}", root.join(name).display());
        lsp.open(&uri, "class Net:\n    def forward(self, x):\n        return self.conv1(x)\n");
        assert_eq!(lsp.hover(&uri, (2, 20)), Value::Null);
    }
    // The failed connection is reported when the connect attempt, made off the message
    // loop, comes back.
    lsp.wait_for("window/showMessage");
    let messages = lsp.notifications_named("window/showMessage");
    assert_eq!(messages.len(), 1, "one message about the daemon, got {messages:?}");
    let message = messages[0]["params"]["message"].as_str().unwrap();
    assert_card(message, &["127.0.0.1:1", "layerlensd --listen", "LAYERLENS_ADDR"]);
    let diagnostics = lsp.notifications_named("textDocument/publishDiagnostics");
    assert!(diagnostics.iter().all(|n| n["params"]["diagnostics"] == json!([])), "diagnostics for unmapped files: {diagnostics:?}");
    lsp.stop();
}

/// Neovim's Lua side: start layerlens-lsp on the buffer, wait until it is attached,
/// ask for a hover, write the answer as JSON, quit. Works with Neovim 0.7 (Debian 12:
/// `vim.lsp.start_client` + `buf_attach_client`) and later (`vim.lsp.start`).
const NVIM_SCRIPT: &str = r#"
local env = vim.env
local function finish(text)
  local file = io.open(env.LAYERLENS_TEST_OUT, 'w')
  file:write(text)
  file:close()
  vim.cmd('qa!')
end
local ok, error = pcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(env.LAYERLENS_TEST_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  local config = {
    name = 'layerlens',
    cmd = { env.LAYERLENS_LSP_BIN },
    root_dir = env.LAYERLENS_TEST_ROOT,
    init_options = { addr = env.LAYERLENS_TEST_ADDR },
  }
  local client_id
  if vim.lsp.start then
    client_id = vim.lsp.start(config)
  else
    client_id = vim.lsp.start_client(config)
    vim.lsp.buf_attach_client(bufnr, client_id)
  end
  local ready = vim.wait(60000, function()
    local client = vim.lsp.get_client_by_id(client_id)
    return client ~= nil and (client.server_capabilities ~= nil or client.resolved_capabilities ~= nil) and client.initialized ~= false
  end, 50)
  if not ready then error('layerlens-lsp did not initialize') end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = tonumber(env.LAYERLENS_TEST_LINE), character = tonumber(env.LAYERLENS_TEST_COLUMN) },
  }
  -- Until the model's fetch ends the server answers a card saying it is loading.
  local hovers
  local deadline = vim.loop.now() + 90000
  repeat
    local results, request_error = vim.lsp.buf_request_sync(bufnr, 'textDocument/hover', params, 90000)
    if not results then error('hover failed: ' .. tostring(request_error)) end
    hovers = {}
    local loading = false
    for _, answer in pairs(results) do
      table.insert(hovers, answer.result or vim.NIL)
      local value = answer.result and answer.result.contents and answer.result.contents.value
      if type(value) == 'string' and value:find('layerlens: loading', 1, true) then loading = true end
    end
    if loading then vim.wait(100) end
  until not loading or vim.loop.now() > deadline
  finish(vim.fn.json_encode(hovers))
end)
if not ok then finish(vim.fn.json_encode({ error = tostring(error) })) end
"#;

#[test]
fn neovim_hover_shows_the_layer_card() {
    if !ensure_debian_program("nvim", "--version", "neovim", "neovim_hover_shows_the_layer_card") {
        return;
    }
    let store = tempfile::tempdir().expect("temp store");
    let daemon = Daemon::start(store.path(), &[]);
    let workspace = Workspace::new();
    store_model(&daemon, &workspace);
    std::fs::write(workspace.root.join("layerlens.toml"), "[[model]]\nname = \"lensnet\"\nfiles = [\"model.py\"]\ninput_shape = [1, 1, 8, 8]\n")
        .unwrap();
    let script = workspace.root.join("hover.lua");
    std::fs::write(&script, NVIM_SCRIPT).unwrap();
    let out = workspace.root.join("hover.json");
    let (line, column) = workspace.position("x = self.conv1(x)", 10);

    let mut nvim = Command::new("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script.display()))
        .env("LAYERLENS_TEST_OUT", &out)
        .env("LAYERLENS_TEST_FILE", &workspace.source)
        .env("LAYERLENS_TEST_ROOT", &workspace.root)
        .env("LAYERLENS_TEST_ADDR", &daemon.url)
        .env("LAYERLENS_TEST_LINE", line.to_string())
        .env("LAYERLENS_TEST_COLUMN", column.to_string())
        .env("LAYERLENS_LSP_BIN", binary("layerlens-lsp"))
        .env("HOME", &workspace.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting nvim");
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        if nvim.try_wait().expect("waiting for nvim").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = nvim.kill();
            let _ = nvim.wait();
            panic!("nvim did not finish within 150 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("nvim wrote no answer")).expect("JSON from nvim");
    assert!(answer.get("error").is_none(), "nvim: {answer}");
    let card = card_text(&answer[0]);
    assert_card(&card, HOVER_CASES[0].2);
    assert!(daemon.stop(), "layerlensd did not stop cleanly");
}
