//! layerlens in the evcxr Jupyter kernel (Rust notebooks).
//!
//! Blocking wrappers over the async `layerlens-client`: a [`Session`] owns a small
//! tokio runtime and blocks on each call, because evcxr runs every cell as plain
//! synchronous code. Every answer is a type with an inherent `evcxr_display` method, so
//! the last expression of a cell shows inline: summaries and predictions as HTML
//! tables, attributions and generated images as the daemon's PNG/SVG figures (see
//! `display` for the protocol). The raw numbers stay in public fields.
//!
//! ```no_run
//! let m = layerlens_kernel_ext::connect()?.model("digits")?;
//! let x = layerlens_kernel_ext::Tensor::from_npy("digit_sample.npy")?;
//! m.summary(&[1, 1, 8, 8])?;                              // HTML table
//! m.attribute(&x, "saliency", 3)?;                         // heat map (PNG)
//! m.visualize("class_vs_rest:3", &[1, 1, 8, 8], 64)?;      // contact sheet
//! m.predict(&x)?;                                          // top classes (HTML)
//! # Ok::<(), layerlens_kernel_ext::Error>(())
//! ```
//!
//! Like every client, this crate speaks only the wire API and links no libtorch, so a
//! notebook compiles it in a few minutes the first time and never pays for PyTorch.

pub mod display;
mod results;
mod tensor;

pub use layerlens_client::DEFAULT_ADDR;
pub use layerlens_proto as proto;
pub use results::{Attribution, Figure, ModelList, Prediction, Summary, Visualization};
pub use tensor::Tensor;

use display::{escape_html, Bundle};
use layerlens_client::{Client, ClientError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong. `Debug` prints the message alone, because evcxr reports an error
/// that a cell's `?` returns with `{:?}`.
#[derive(thiserror::Error)]
pub enum Error {
    /// The daemon could not be reached or answered with an error (its message names
    /// the problem; `ClientError::code` gives the gRPC code).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An argument that cannot be sent: a shape that does not match the values, an
    /// objective that does not parse.
    #[error("{0}")]
    BadInput(String),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    /// The daemon's answer lacks something it always sends.
    #[error("{0}")]
    BadAnswer(String),
    #[error("cannot start the runtime that drives the client: {0}")]
    Runtime(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, formatter)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to the daemon at `LAYERLENS_ADDR` (default `http://127.0.0.1:7533`) with
/// the bearer token in `LAYERLENS_TOKEN` and, for an https daemon with a private CA, the
/// CA certificate in `LAYERLENS_TLS_CA`: the variables the CLI and the Python client read.
pub fn connect() -> Result<Session> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let addr = variable("LAYERLENS_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let tls_ca = variable("LAYERLENS_TLS_CA").map(PathBuf::from);
    connect_with(&addr, variable("LAYERLENS_TOKEN").as_deref(), tls_ca.as_deref())
}

/// Connects to `addr` (`http://host:port`, `https://host:port` or `host:port`).
pub fn connect_to(addr: &str, token: Option<&str>) -> Result<Session> {
    connect_with(addr, token, None)
}

/// Like `connect_to`; `tls_ca` is a PEM file with the CA certificate(s) of an https
/// daemon whose certificate the system's roots do not cover.
pub fn connect_with(addr: &str, token: Option<&str>, tls_ca: Option<&Path>) -> Result<Session> {
    // One worker thread drives the connection between calls (HTTP/2 keep-alive and
    // flow control); the cell's thread blocks on each request.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("layerlens-kernel-ext")
        .enable_all()
        .build()
        .map_err(|error| Error::Runtime(error.to_string()))?;
    let client = runtime.block_on(Client::connect_with(addr, token, tls_ca))?;
    Ok(Session { inner: Arc::new(SessionInner { runtime, client, addr: addr.to_string() }) })
}

struct SessionInner {
    // Declared before the runtime so the client's channel is dropped first.
    client: Client,
    runtime: tokio::runtime::Runtime,
    addr: String,
}

/// A connection to one daemon; cheap to clone, and every [`Model`] holds one.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl Session {
    /// The async client, for calls this crate does not wrap; run them with `block_on`.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Runs a future of the async client to completion on this session's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.inner.runtime.block_on(future)
    }

    /// The daemon's address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// A stored model by name, full id or unique id prefix (8+ hex characters).
    pub fn model(&self, model: &str) -> Result<Model> {
        let info = self.block_on(self.client().get_model(model))?;
        Ok(Model { session: self.clone(), info })
    }

    /// Every stored model.
    pub fn models(&self) -> Result<ModelList> {
        Ok(ModelList { models: self.block_on(self.client().list_models())? })
    }

    pub fn evcxr_display(&self) {
        Bundle::new().text("text/plain", format!("layerlens session with {}", self.addr())).print();
    }
}

/// One stored model; its methods ask the daemon and answer displayable results.
#[derive(Clone)]
pub struct Model {
    session: Session,
    pub info: proto::ModelInfo,
}

impl Model {
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The full model id (sha256); requests use it so a renamed model cannot change
    /// between calls.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// torchinfo's summary for an input of `input_shape`, e.g. `(1, 1, 8, 8)`: every
    /// module call with its output shape, parameters and mult-adds.
    pub fn summary(&self, input_shape: &[i64]) -> Result<Summary> {
        self.summary_with(proto::SummaryRequest { input_shape: input_shape.to_vec(), ..Default::default() })
    }

    /// The summary for a full request (depth limit, extra inputs); the model is filled in.
    pub fn summary_with(&self, mut request: proto::SummaryRequest) -> Result<Summary> {
        request.model = self.id().to_string();
        if request.figure_format == 0 {
            request.figure_format = proto::FigureFormat::None as i32;
        }
        Ok(Summary { response: self.session.block_on(self.session.client().summary(request))? })
    }

    /// Attribution of output `target` to `input` by a Captum method (`saliency`,
    /// `integrated_gradients`, `occlusion`, ...), with the daemon's heat map.
    pub fn attribute(&self, input: &Tensor, method: &str, target: i64) -> Result<Attribution> {
        self.attribute_with(proto::AttributeRequest {
            input: Some(input.to_wire()),
            method: method.to_string(),
            target: Some(target),
            ..Default::default()
        })
    }

    /// Like `attribute`, with Captum's options by name (`n_steps` = `64`,
    /// `sliding_window_shapes` = `1,3,3`, ...).
    pub fn attribute_params(&self, input: &Tensor, method: &str, target: i64, params: &[(&str, &str)]) -> Result<Attribution> {
        self.attribute_with(proto::AttributeRequest {
            input: Some(input.to_wire()),
            method: method.to_string(),
            target: Some(target),
            params: params.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect::<HashMap<_, _>>(),
            ..Default::default()
        })
    }

    /// An attribution for a full request (layer methods, tensor options, figure
    /// options); the model is filled in.
    pub fn attribute_with(&self, mut request: proto::AttributeRequest) -> Result<Attribution> {
        request.model = self.id().to_string();
        let response = self.session.block_on(self.session.client().attribute(request))?;
        let attribution = Tensor::from_wire(response.attribution.as_ref().ok_or_else(|| missing("Attribute", "attribution"))?)?;
        Ok(Attribution { response, attribution })
    }

    /// Activation maximisation: `steps` optimisation steps of an input of `input_shape`
    /// that maximises `objective` (`class:3`, `class_vs_rest:3`, `channel:features.0:2`,
    /// weighted sums such as `class:3+0.5*channel:features.0:2`), shown as a contact sheet.
    pub fn visualize(&self, objective: &str, input_shape: &[i64], steps: u32) -> Result<Visualization> {
        self.visualize_with(proto::VisualizeRequest {
            objectives: vec![parse_objective(objective)?],
            input_shape: input_shape.to_vec(),
            steps,
            ..Default::default()
        })
    }

    /// Activation maximisation for a full request (several objectives, regularisers,
    /// parameterisation); the model is filled in.
    pub fn visualize_with(&self, mut request: proto::VisualizeRequest) -> Result<Visualization> {
        request.model = self.id().to_string();
        let result = self.session.block_on(self.session.client().visualize(request, |_progress| {}))?;
        let images = Tensor::from_wire(result.images.as_ref().ok_or_else(|| missing("Visualize", "images"))?)?;
        Ok(Visualization { result, images })
    }

    /// The five most likely classes of each input row.
    pub fn predict(&self, input: &Tensor) -> Result<Prediction> {
        self.predict_top(input, 5)
    }

    /// The `top_k` most likely classes of each input row.
    pub fn predict_top(&self, input: &Tensor, top_k: u32) -> Result<Prediction> {
        let request = proto::PredictRequest { model: self.id().to_string(), input: Some(input.to_wire()), top_k, ..Default::default() };
        let response = self.session.block_on(self.session.client().predict(request))?;
        let output = Tensor::from_wire(response.output.as_ref().ok_or_else(|| missing("Predict", "output"))?)?;
        Ok(Prediction { response, output })
    }

    pub fn evcxr_display(&self) {
        let name = self.info.names.join(", ");
        let text = format!("model {} ({}), {} bytes, input shape {:?}", name, &self.info.id, self.info.size_bytes, self.info.input_shape);
        Bundle::new()
            .text("text/html", format!("<p>model <b>{}</b> <code>{}</code></p>", escape_html(&name), escape_html(&self.info.id)))
            .text("text/plain", text)
            .print();
    }
}

fn missing(rpc: &str, field: &str) -> Error {
    Error::BadAnswer(format!("the daemon's {rpc} answer has no {field}"))
}

/// `class:3+0.5*channel:features.0:2` as weighted terms, as the CLI reads `--objective`.
pub fn parse_objective(text: &str) -> Result<proto::Objective> {
    let terms = text
        .split('+')
        .map(|piece| {
            let piece = piece.trim();
            if piece.is_empty() {
                return Err(Error::BadInput(format!("objective '{text}' has an empty term")));
            }
            // A `*` is a weight's unless it is the wildcard ending `channel:LAYER:*`.
            let weighted = piece.strip_suffix(":*").unwrap_or(piece).contains('*');
            match piece.split_once('*').filter(|_| weighted) {
                Some((weight, term)) => match weight.trim().parse::<f32>() {
                    Ok(weight) => Ok(proto::ObjectiveTerm { term: term.trim().to_string(), weight, direction: Vec::new() }),
                    Err(_) => Err(Error::BadInput(format!("objective '{text}': '{piece}' has a weight that is not a number"))),
                },
                None => Ok(proto::ObjectiveTerm { term: piece.to_string(), weight: 0.0, direction: Vec::new() }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(proto::Objective { terms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &[(&str, f32)]) {
        let objective = parse_objective(text).unwrap();
        let terms: Vec<(&str, f32)> = objective.terms.iter().map(|term| (term.term.as_str(), term.weight)).collect();
        assert_eq!(terms, expect, "{text}");
    }

    #[test]
    fn objectives() {
        check("class_vs_rest:3", &[("class_vs_rest:3", 0.0)]);
        check("class:3 + 0.5*channel:features.0:2", &[("class:3", 0.0), ("channel:features.0:2", 0.5)]);
        check("channel:features.0:*", &[("channel:features.0:*", 0.0)]);
        assert_eq!(parse_objective("x*class:3").unwrap_err().to_string(), "objective 'x*class:3': 'x*class:3' has a weight that is not a number");
        assert!(parse_objective("class:3+").is_err());
    }

    #[test]
    fn errors_debug_as_their_message() {
        // evcxr prints a cell's `?` error with `{:?}`: it must read like the message.
        let error = Error::BadInput("shape [1] needs 1 values but 2 were given".to_string());
        assert_eq!(format!("{error:?}"), error.to_string());
    }

    #[test]
    fn unreachable_daemon_says_where() {
        // Port 1 on loopback refuses connections.
        let error = connect_to("http://127.0.0.1:1", None).err().expect("nothing listens on port 1");
        let message = error.to_string();
        assert!(message.starts_with("cannot connect to layerlensd at http://127.0.0.1:1"), "{message}");
    }
}
