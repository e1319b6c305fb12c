//! layerlens-client: a typed async client for `layerlensd`, used by the CLI, the
//! editor server and the notebook extension. It speaks only the wire API
//! (`layerlens-proto`) and links no libtorch. `npy` reads and writes the `.npy` files
//! those clients take tensors from and write them to.

pub mod npy;

use layerlens_proto as proto;
use std::path::Path;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

pub use proto::{AttributeRequest, AttributeResponse, FigureFormat, ModelInfo, SummaryRequest, SummaryResponse, Tensor};

/// Default daemon address (CONTRACT.md).
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7533";

/// Size of each upload chunk.
const CHUNK_BYTES: usize = 1 << 20;

/// Largest answer the client accepts (attributions of big inputs, figures).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to layerlensd at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The daemon answered with an error; its message names the problem.
    #[error("{}", .0.message())]
    Rpc(Status),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the token is not valid in an HTTP header")]
    BadToken,
    #[error("priority '{0}' is not one of interactive, batch")]
    BadPriority(String),
    #[error("the daemon's {0} stream ended without a result")]
    NoResult(&'static str),
}

impl From<Status> for ClientError {
    fn from(status: Status) -> ClientError {
        // A status made on this side from a transport failure carries the cause as its
        // source; the daemon's own answers have none.
        if let Some(source) = std::error::Error::source(&status) {
            let chain = source_chain(source);
            let mut reason = if chain.starts_with(status.message()) { chain } else { format!("{}: {chain}", status.message()) };
            // A plaintext HTTP/2 preface sent to a TLS port gets garbage or a closed
            // connection back; say what the likely cause is.
            if looks_like_tls_mismatch(&reason) {
                reason.push_str(" (if the daemon serves TLS, use an https:// address)");
            }
            return ClientError::Rpc(Status::new(status.code(), reason));
        }
        ClientError::Rpc(status)
    }
}

impl ClientError {
    /// The gRPC code when the daemon answered with an error.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc(status) => Some(status.code()),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Adds `authorization: Bearer <token>` to every call when a token is set, and
/// `x-layerlens-priority` when a priority is.
#[derive(Clone)]
pub struct Auth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
    priority: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        if let Some(priority) = &self.priority {
            request.metadata_mut().insert("x-layerlens-priority", priority.clone());
        }
        Ok(request)
    }
}

type AuthChannel = InterceptedService<Channel, Auth>;

/// A connection to one daemon; cheap to clone.
#[derive(Clone)]
pub struct Client {
    models: proto::models_client::ModelsClient<AuthChannel>,
    explain: proto::explain_client::ExplainClient<AuthChannel>,
    generate: proto::generate_client::GenerateClient<AuthChannel>,
    daemon: proto::daemon_client::DaemonClient<AuthChannel>,
    training: proto::training_client::TrainingClient<AuthChannel>,
    text: proto::text_client::TextClient<AuthChannel>,
}

impl Client {
    /// Connects to `addr` (`http://host:port` or `https://host:port`; a bare
    /// `host:port` is accepted). An https daemon's certificate is checked against the
    /// system's root certificates; see `connect_with` for a private CA.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Client> {
        Client::connect_with(addr, token, None).await
    }

    /// Like `connect`; `tls_ca` is a PEM file with the certificate(s) of the CA that
    /// signed an https daemon's certificate (a self-signed certificate is its own CA).
    /// It is ignored for `http://` addresses.
    pub async fn connect_with(addr: &str, token: Option<&str>, tls_ca: Option<&Path>) -> Result<Client> {
        Client::connect_with_priority(addr, token, tls_ca, None).await
    }

    /// Like `connect_with`; `priority` is `interactive` (the daemon's default) or
    /// `batch`: the daemon runs a model's queued interactive requests first.
    pub async fn connect_with_priority(addr: &str, token: Option<&str>, tls_ca: Option<&Path>, priority: Option<&str>) -> Result<Client> {
        let priority = match priority {
            None => None,
            Some(text @ ("interactive" | "batch")) => Some(MetadataValue::from_static(if text == "batch" { "batch" } else { "interactive" })),
            Some(other) => return Err(ClientError::BadPriority(other.to_string())),
        };
        let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let connect_error = |reason: String| ClientError::Connect { addr: url.clone(), reason };
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|error| connect_error(error.to_string()))?;
        let https = url.starts_with("https://");
        if https {
            let tls = match tls_ca {
                Some(path) => {
                    let pem =
                        std::fs::read(path).map_err(|error| ClientError::File { path: path.display().to_string(), reason: error.to_string() })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(|error| connect_error(source_chain(&error)))?;
        }
        let channel = endpoint.connect().await.map_err(|error| {
            let mut reason = source_chain(&error);
            // A plaintext HTTP/2 preface sent to a TLS port gets garbage or a closed
            // connection back; say what the likely cause is.
            if !https && looks_like_tls_mismatch(&reason) {
                reason.push_str(" (if the daemon serves TLS, use an https:// address)");
            }
            connect_error(reason)
        })?;
        let header = match token {
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| ClientError::BadToken)?),
            None => None,
        };
        let auth = Auth { header, priority };
        Ok(Client {
            models: proto::models_client::ModelsClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            explain: proto::explain_client::ExplainClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            generate: proto::generate_client::GenerateClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            training: proto::training_client::TrainingClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            text: proto::text_client::TextClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            daemon: proto::daemon_client::DaemonClient::with_interceptor(channel, auth),
        })
    }

    /// Uploads model bytes in chunks; answers the stored model (id = sha256).
    pub async fn upload_model(&self, bytes: Vec<u8>, name: Option<&str>, input_shape: &[i64]) -> Result<ModelInfo> {
        let header = proto::UploadRequest {
            part: Some(proto::upload_request::Part::Header(proto::UploadHeader {
                name: name.unwrap_or_default().to_string(),
                input_shape: input_shape.to_vec(),
            })),
        };
        let chunks: Vec<proto::UploadRequest> =
            bytes.chunks(CHUNK_BYTES).map(|chunk| proto::UploadRequest { part: Some(proto::upload_request::Part::Chunk(chunk.to_vec())) }).collect();
        let stream = tokio_stream::iter(std::iter::once(header).chain(chunks));
        Ok(self.models.clone().upload(stream).await?.into_inner())
    }

    /// Reads a file here and uploads it.
    pub async fn upload_file(&self, path: &Path, name: Option<&str>, input_shape: &[i64]) -> Result<ModelInfo> {
        let bytes = tokio::fs::read(path).await.map_err(|error| ClientError::File { path: path.display().to_string(), reason: error.to_string() })?;
        self.upload_model(bytes, name, input_shape).await
    }

    /// Stores a file that lies on the daemon's machine.
    pub async fn add_from_path(&self, path: &str, name: Option<&str>, input_shape: &[i64]) -> Result<ModelInfo> {
        let request =
            proto::AddFromPathRequest { path: path.to_string(), name: name.unwrap_or_default().to_string(), input_shape: input_shape.to_vec() };
        Ok(self.models.clone().add_from_path(request).await?.into_inner())
    }

    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        Ok(self.models.clone().list(proto::ListModelsRequest {}).await?.into_inner().models)
    }

    /// `model`: a full id, a unique id prefix (8+ hex characters) or a name.
    pub async fn get_model(&self, model: &str) -> Result<ModelInfo> {
        let request = proto::GetModelRequest { model: model.to_string() };
        routed_call(&self.models, model, request, |mut client, request| async move { client.get(request).await }).await
    }

    /// The daemon's version, uptime, device, resident models and result cache.
    pub async fn status(&self) -> Result<proto::StatusResponse> {
        Ok(self.daemon.clone().status(proto::StatusRequest {}).await?.into_inner())
    }

    /// Deletes a model; answers its id.
    pub async fn delete_model(&self, model: &str) -> Result<String> {
        let request = routed(model, proto::DeleteModelRequest { model: model.to_string() });
        Ok(self.models.clone().delete(request).await?.into_inner().id)
    }

    /// Pins a model (admin only): it loads now and is never evicted to make room.
    pub async fn pin_model(&self, model: &str) -> Result<ModelInfo> {
        let request = proto::PinModelRequest { model: model.to_string() };
        routed_call(&self.models, model, request, |mut client, request| async move { client.pin(request).await }).await
    }

    /// Unpins a model (admin only): it may be evicted again.
    pub async fn unpin_model(&self, model: &str) -> Result<ModelInfo> {
        let request = proto::PinModelRequest { model: model.to_string() };
        routed_call(&self.models, model, request, |mut client, request| async move { client.unpin(request).await }).await
    }

    pub async fn summary(&self, request: SummaryRequest) -> Result<SummaryResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.summary(request).await }).await
    }

    pub async fn attribute(&self, request: AttributeRequest) -> Result<AttributeResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.attribute(request).await }).await
    }

    /// `attribute` with the daemon's time per phase for this request (the
    /// `x-layerlens-phases` response header; see `Phases`).
    pub async fn attribute_traced(&self, request: AttributeRequest) -> Result<(AttributeResponse, Phases)> {
        let model = request.model.clone();
        let response = routed_response(&self.explain, &model, request, |mut client, request| async move { client.attribute(request).await }).await?;
        let phases = Phases::of(response.metadata());
        Ok((response.into_inner(), phases))
    }

    /// `predict` with the daemon's time per phase for this request.
    pub async fn predict_traced(&self, request: proto::PredictRequest) -> Result<(proto::PredictResponse, Phases)> {
        let model = request.model.clone();
        let response = routed_response(&self.explain, &model, request, |mut client, request| async move { client.predict(request).await }).await?;
        let phases = Phases::of(response.metadata());
        Ok((response.into_inner(), phases))
    }

    /// Attribute with progress: `on_progress` sees each progress event; answers the
    /// result that ends the stream (the same answer `attribute` gives). Dropping the
    /// future cancels the call, and the daemon stops the work within one pass.
    pub async fn attribute_stream(&self, request: AttributeRequest, on_progress: impl FnMut(&proto::AttributeProgress)) -> Result<AttributeResponse> {
        use proto::attribute_event::Event;
        let model = request.model.clone();
        let (next, stream) =
            routed_stream(&self.explain, &model, request, |mut client, request| async move { client.attribute_stream(request).await }).await?;
        until_result(next, stream, "AttributeStream", on_progress, |event| match event.event {
            Some(Event::Progress(progress)) => StreamEvent::Progress(progress),
            Some(Event::Result(result)) => StreamEvent::Result(result),
            None => StreamEvent::Empty,
        })
        .await
    }

    pub async fn parameters(&self, request: proto::ParametersRequest) -> Result<proto::ParametersResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.parameters(request).await }).await
    }

    pub async fn activations(&self, request: proto::ActivationsRequest) -> Result<proto::ActivationsResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.activations(request).await }).await
    }

    pub async fn predict(&self, request: proto::PredictRequest) -> Result<proto::PredictResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.predict(request).await }).await
    }

    pub async fn graph(&self, request: proto::GraphRequest) -> Result<proto::GraphResponse> {
        let model = request.model.clone();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.graph(request).await }).await
    }

    pub async fn compare(&self, request: proto::CompareRequest) -> Result<proto::CompareResponse> {
        let model = request.base.as_ref().map(|base| base.model.clone()).unwrap_or_default();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.compare(request).await }).await
    }

    pub async fn evaluate(&self, request: proto::EvaluateRequest) -> Result<proto::EvaluateResponse> {
        let model = request.attribution.as_ref().map(|attribution| attribution.model.clone()).unwrap_or_default();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.evaluate(request).await }).await
    }

    pub async fn sanity_check(&self, request: proto::SanityCheckRequest) -> Result<proto::SanityCheckResponse> {
        let model = request.attribution.as_ref().map(|attribution| attribution.model.clone()).unwrap_or_default();
        routed_call(&self.explain, &model, request, |mut client, request| async move { client.sanity_check(request).await }).await
    }

    /// Uploads a training checkpoint of a stored model (`step`: None for the one it records).
    pub async fn upload_checkpoint(&self, bytes: Vec<u8>, model: &str, step: Option<i64>) -> Result<proto::CheckpointInfo> {
        let header = proto::CheckpointUploadRequest {
            part: Some(proto::checkpoint_upload_request::Part::Header(proto::CheckpointHeader { model: model.to_string(), step })),
        };
        let chunks: Vec<proto::CheckpointUploadRequest> = bytes
            .chunks(CHUNK_BYTES)
            .map(|chunk| proto::CheckpointUploadRequest { part: Some(proto::checkpoint_upload_request::Part::Chunk(chunk.to_vec())) })
            .collect();
        let stream = tokio_stream::iter(std::iter::once(header).chain(chunks));
        Ok(self.training.clone().upload_checkpoint(stream).await?.into_inner())
    }

    pub async fn list_checkpoints(&self, model: &str) -> Result<Vec<proto::CheckpointInfo>> {
        let request = proto::ListCheckpointsRequest { model: model.to_string() };
        Ok(self.training.clone().list_checkpoints(request).await?.into_inner().checkpoints)
    }

    pub async fn explain_optimizer(&self, request: proto::ExplainOptimizerRequest) -> Result<proto::OptimizerReport> {
        Ok(self.training.clone().explain_optimizer(request).await?.into_inner())
    }

    /// The loss landscape; runs on the model's replica.
    pub async fn landscape(&self, request: proto::LandscapeRequest) -> Result<proto::LandscapeResponse> {
        let model = request.model.clone();
        routed_call(&self.training, &model, request, |mut client, request| async move { client.landscape(request).await }).await
    }

    pub async fn weight_change(&self, request: proto::WeightChangeRequest) -> Result<proto::WeightChangeResponse> {
        Ok(self.training.clone().weight_change(request).await?.into_inner())
    }

    pub async fn report_run(&self, request: proto::ReportRunRequest) -> Result<u64> {
        Ok(self.training.clone().report_run(request).await?.into_inner().records)
    }

    pub async fn list_runs(&self) -> Result<Vec<proto::RunInfo>> {
        Ok(self.training.clone().list_runs(proto::ListRunsRequest {}).await?.into_inner().runs)
    }

    pub async fn get_run(&self, run: &str) -> Result<proto::Run> {
        Ok(self.training.clone().get_run(proto::GetRunRequest { run: run.to_string() }).await?.into_inner())
    }

    pub async fn run_figure(&self, request: proto::RunFigureRequest) -> Result<proto::Figure> {
        Ok(self.training.clone().run_figure(request).await?.into_inner())
    }

    /// Stores a model's tokenizer (the bytes of its tokenizer.json).
    pub async fn set_tokenizer(&self, model: &str, tokenizer_json: Vec<u8>) -> Result<proto::TokenizerInfo> {
        let request = proto::SetTokenizerRequest { model: model.to_string(), tokenizer_json };
        Ok(self.text.clone().set_tokenizer(request).await?.into_inner())
    }

    pub async fn tokenize(&self, model: &str, text: &str) -> Result<proto::TokenizeResponse> {
        let request = proto::TokenizeRequest { model: model.to_string(), text: text.to_string(), add_special_tokens: None };
        Ok(self.text.clone().tokenize(request).await?.into_inner())
    }

    /// A causal LM's continuation: `on_token` sees each token as it is generated;
    /// answers the whole text. Dropping the future cancels the generation.
    pub async fn generate_text(
        &self,
        request: proto::GenerateTextRequest,
        mut on_token: impl FnMut(&proto::GeneratedToken),
    ) -> Result<proto::GeneratedText> {
        use proto::generate_text_event::Event;
        let model = request.model.clone();
        let (first, mut stream) =
            routed_stream(&self.text, &model, request, |mut client, request| async move { client.generate(request).await }).await?;
        let mut next = first;
        loop {
            match next.and_then(|event| event.event) {
                Some(Event::Token(token)) => on_token(&token),
                Some(Event::Result(result)) => return Ok(result),
                None => return Err(ClientError::NoResult("Generate")),
            }
            next = stream.message().await?;
        }
    }

    /// Which prompt tokens drove a continuation or a class; runs on the model's replica.
    pub async fn attribute_text(&self, request: proto::AttributeTextRequest) -> Result<proto::AttributeTextResponse> {
        let model = request.model.clone();
        routed_call(&self.text, &model, request, |mut client, request| async move { client.attribute(request).await }).await
    }

    /// The attribution methods the daemon serves (its method table).
    pub async fn methods(&self) -> Result<proto::MethodsResponse> {
        routed_call(&self.explain, "", proto::MethodsRequest {}, |mut client, request| async move { client.methods(request).await }).await
    }

    /// Activation maximisation: `on_progress` sees each progress event; answers the
    /// result that ends the stream. Dropping the future cancels the job.
    pub async fn visualize(
        &self,
        request: proto::VisualizeRequest,
        on_progress: impl FnMut(&proto::VisualizeProgress),
    ) -> Result<proto::VisualizeResult> {
        use proto::visualize_event::Event;
        let model = request.model.clone();
        let (next, stream) =
            routed_stream(&self.generate, &model, request, |mut client, request| async move { client.visualize(request).await }).await?;
        until_result(next, stream, "Visualize", on_progress, |event| match event.event {
            Some(Event::Progress(progress)) => StreamEvent::Progress(progress),
            Some(Event::Result(result)) => StreamEvent::Result(result),
            None => StreamEvent::Empty,
        })
        .await
    }

    /// The smallest change that flips the prediction; streams like `visualize`.
    pub async fn counterfactual(
        &self,
        request: proto::CounterfactualRequest,
        on_progress: impl FnMut(&proto::CounterfactualProgress),
    ) -> Result<proto::CounterfactualResult> {
        use proto::counterfactual_event::Event;
        let model = request.model.clone();
        let (next, stream) =
            routed_stream(&self.generate, &model, request, |mut client, request| async move { client.counterfactual(request).await }).await?;
        until_result(next, stream, "Counterfactual", on_progress, |event| match event.event {
            Some(Event::Progress(progress)) => StreamEvent::Progress(progress),
            Some(Event::Result(result)) => StreamEvent::Result(result),
            None => StreamEvent::Empty,
        })
        .await
    }

    pub async fn traverse(&self, request: proto::TraverseRequest) -> Result<proto::TraverseResponse> {
        let model = request.model.clone();
        routed_call(&self.generate, &model, request, |mut client, request| async move { client.traverse(request).await }).await
    }
}

/// One event of a progress-then-result stream (Visualize, Counterfactual,
/// AttributeStream), as `until_result` sees it.
enum StreamEvent<P, R> {
    Progress(P),
    Result(R),
    Empty,
}

/// Reads a progress-then-result stream from its first event on: each progress event
/// goes to `on_progress`, the result ends it; a stream that ends without one is an
/// error naming the call.
async fn until_result<E, P, R>(
    mut next: Option<E>,
    mut stream: tonic::Streaming<E>,
    call: &'static str,
    mut on_progress: impl FnMut(&P),
    split: impl Fn(E) -> StreamEvent<P, R>,
) -> Result<R> {
    while let Some(event) = next.take() {
        match split(event) {
            StreamEvent::Progress(progress) => on_progress(&progress),
            StreamEvent::Result(result) => return Ok(result),
            StreamEvent::Empty => {}
        }
        next = stream.message().await?;
    }
    Err(ClientError::NoResult(call))
}

fn looks_like_tls_mismatch(reason: &str) -> bool {
    ["frame with invalid size", "connection closed", "connection reset", "broken pipe", "invalid HTTP version", "protocol error"]
        .iter()
        .any(|sign| reason.contains(sign))
}

/// tonic's transport errors hide the useful part ("connection refused") in sources.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// --- Routing and retries (scale-out behind a proxy; deploy/README.md) -----------------

/// The daemon's account of where one request's time went, from the
/// `x-layerlens-phases` response header: milliseconds per phase (`decode`, `queue`,
/// `batch_wait`, `run` with its parts `to_device` and `to_host`, `render`, `encode`, and
/// `handler`, everything from the request's arrival to its response message) and how
/// many requests shared the pass (`batch`). Phases that did not happen are absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases {
    pub millis: Vec<(String, f64)>,
    pub batch_size: Option<u64>,
}

/// The response header the daemon writes a request's phases to.
pub const PHASES_HEADER: &str = "x-layerlens-phases";

impl Phases {
    pub fn of(metadata: &tonic::metadata::MetadataMap) -> Phases {
        metadata.get(PHASES_HEADER).and_then(|value| value.to_str().ok()).map(Phases::parse).unwrap_or_default()
    }

    /// `decode=0.012,queue=0.003,run=1.500,batch=2` (unknown parts are skipped).
    pub fn parse(value: &str) -> Phases {
        let mut phases = Phases::default();
        for part in value.split(',') {
            let Some((name, number)) = part.split_once('=') else { continue };
            let Ok(number) = number.trim().parse::<f64>() else { continue };
            match name.trim() {
                "batch" => phases.batch_size = Some(number as u64),
                name => phases.millis.push((name.to_string(), number)),
            }
        }
        phases
    }

    /// Milliseconds spent in `phase` (0 when it did not happen).
    pub fn get(&self, phase: &str) -> f64 {
        self.millis.iter().find(|(name, _)| name == phase).map(|(_, millis)| *millis).unwrap_or(0.0)
    }
}

/// The header a proxy hashes to keep each model on one replica (nginx: `hash
/// $http_x_layerlens_model consistent`). It carries the model reference as the caller
/// gave it: a name and the id of the same model may hash to different replicas, so
/// callers that share a model should refer to it the same way (best: by its full id).
pub const MODEL_HEADER: &str = "x-layerlens-model";

/// Pauses before the second and third try of a call answered UNAVAILABLE (a replica
/// that died, a proxy with no replica to send to yet). Three tries within about half a
/// second cover a proxy moving a model to another replica without hiding a daemon that
/// is really gone.
const RETRY_PAUSES: [std::time::Duration; 2] = [std::time::Duration::from_millis(100), std::time::Duration::from_millis(300)];

/// A request carrying the model header (none for an empty reference, or one that is not
/// valid header text: the daemon then answers the bad reference itself).
fn routed<M>(model: &str, message: M) -> Request<M> {
    let mut request = Request::new(message);
    if let Ok(value) = MetadataValue::try_from(model) {
        if !model.is_empty() {
            request.metadata_mut().insert(MODEL_HEADER, value);
        }
    }
    request
}

/// Sends an idempotent unary call about `model` with the model header, again after a
/// pause (RETRY_PAUSES) while the answer is UNAVAILABLE. Only for calls that change
/// nothing or change it to the same state twice: never Upload, AddFromPath or Delete.
async fn routed_call<C, M, R, Fut>(client: &C, model: &str, message: M, send: impl FnMut(C, Request<M>) -> Fut) -> Result<R>
where
    C: Clone,
    M: Clone,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
{
    Ok(routed_response(client, model, message, send).await?.into_inner())
}

/// `routed_call`, answering the whole response (its metadata too).
async fn routed_response<C, M, R, Fut>(client: &C, model: &str, message: M, mut send: impl FnMut(C, Request<M>) -> Fut) -> Result<tonic::Response<R>>
where
    C: Clone,
    M: Clone,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
{
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        match send(client.clone(), routed(model, message.clone())).await {
            Ok(response) => return Ok(response),
            Err(status) => match pauses.next() {
                Some(pause) if status.code() == tonic::Code::Unavailable => tokio::time::sleep(*pause).await,
                _ => return Err(status.into()),
            },
        }
    }
}

/// Opens a server stream about `model` with the model header and waits for its first
/// message, opening it again (RETRY_PAUSES) while that fails with UNAVAILABLE. Once a
/// message has arrived the job runs on a replica and is never started twice; a later
/// failure is the caller's. Answers the first message (None: the stream ended at once)
/// and the stream.
async fn routed_stream<C, M, E, Fut>(
    client: &C,
    model: &str,
    message: M,
    mut open: impl FnMut(C, Request<M>) -> Fut,
) -> Result<(Option<E>, tonic::Streaming<E>)>
where
    C: Clone,
    M: Clone,
    Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<E>>, Status>>,
{
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let attempt = async {
            let mut stream = open(client.clone(), routed(model, message.clone())).await?.into_inner();
            let first = stream.message().await?;
            Ok::<_, Status>((first, stream))
        };
        match attempt.await {
            Ok(opened) => return Ok(opened),
            Err(status) => match pauses.next() {
                Some(pause) if status.code() == tonic::Code::Unavailable => tokio::time::sleep(*pause).await,
                _ => return Err(status.into()),
            },
        }
    }
}

#[cfg(test)]
mod phase_tests {
    use super::Phases;

    #[test]
    fn the_phases_header_reads_back() {
        let phases = Phases::parse("decode=0.012,queue=1.5,run=3.250,batch=2,odd,x=y");
        assert_eq!(phases.get("queue"), 1.5);
        assert_eq!(phases.get("render"), 0.0);
        assert_eq!(phases.batch_size, Some(2));
        assert_eq!(phases.millis.len(), 3);
    }
}
