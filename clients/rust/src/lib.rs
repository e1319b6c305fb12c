//! layerlens-client: a typed async client for `layerlensd`, used by the CLI, the
//! editor server and the notebook extension. It speaks only the wire API
//! (`layerlens-proto`) and links no libtorch.

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

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub struct Auth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
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
        let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let connect_error = |reason: String| ClientError::Connect { addr: url.clone(), reason };
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|error| connect_error(error.to_string()))?;
        let https = url.starts_with("https://");
        if https {
            let tls = match tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|error| ClientError::File { path: path.display().to_string(), reason: error.to_string() })?;
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
        let auth = Auth { header };
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
        let chunks: Vec<proto::UploadRequest> = bytes
            .chunks(CHUNK_BYTES)
            .map(|chunk| proto::UploadRequest { part: Some(proto::upload_request::Part::Chunk(chunk.to_vec())) })
            .collect();
        let stream = tokio_stream::iter(std::iter::once(header).chain(chunks));
        Ok(self.models.clone().upload(stream).await?.into_inner())
    }

    /// Reads a file here and uploads it.
    pub async fn upload_file(&self, path: &Path, name: Option<&str>, input_shape: &[i64]) -> Result<ModelInfo> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|error| ClientError::File { path: path.display().to_string(), reason: error.to_string() })?;
        self.upload_model(bytes, name, input_shape).await
    }

    /// Stores a file that lies on the daemon's machine.
    pub async fn add_from_path(&self, path: &str, name: Option<&str>, input_shape: &[i64]) -> Result<ModelInfo> {
        let request = proto::AddFromPathRequest {
            path: path.to_string(),
            name: name.unwrap_or_default().to_string(),
            input_shape: input_shape.to_vec(),
        };
        Ok(self.models.clone().add_from_path(request).await?.into_inner())
    }

    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        Ok(self.models.clone().list(proto::ListModelsRequest {}).await?.into_inner().models)
    }

    /// `model`: a full id, a unique id prefix (8+ hex characters) or a name.
    pub async fn get_model(&self, model: &str) -> Result<ModelInfo> {
        Ok(self.models.clone().get(proto::GetModelRequest { model: model.to_string() }).await?.into_inner())
    }

    /// The daemon's version, uptime, device, resident models and result cache.
    pub async fn status(&self) -> Result<proto::StatusResponse> {
        Ok(self.daemon.clone().status(proto::StatusRequest {}).await?.into_inner())
    }

    /// Deletes a model; answers its id.
    pub async fn delete_model(&self, model: &str) -> Result<String> {
        Ok(self.models.clone().delete(proto::DeleteModelRequest { model: model.to_string() }).await?.into_inner().id)
    }

    pub async fn summary(&self, request: SummaryRequest) -> Result<SummaryResponse> {
        Ok(self.explain.clone().summary(request).await?.into_inner())
    }

    pub async fn attribute(&self, request: AttributeRequest) -> Result<AttributeResponse> {
        Ok(self.explain.clone().attribute(request).await?.into_inner())
    }

    pub async fn parameters(&self, request: proto::ParametersRequest) -> Result<proto::ParametersResponse> {
        Ok(self.explain.clone().parameters(request).await?.into_inner())
    }

    pub async fn activations(&self, request: proto::ActivationsRequest) -> Result<proto::ActivationsResponse> {
        Ok(self.explain.clone().activations(request).await?.into_inner())
    }

    pub async fn predict(&self, request: proto::PredictRequest) -> Result<proto::PredictResponse> {
        Ok(self.explain.clone().predict(request).await?.into_inner())
    }

    pub async fn graph(&self, request: proto::GraphRequest) -> Result<proto::GraphResponse> {
        Ok(self.explain.clone().graph(request).await?.into_inner())
    }

    pub async fn compare(&self, request: proto::CompareRequest) -> Result<proto::CompareResponse> {
        Ok(self.explain.clone().compare(request).await?.into_inner())
    }

    pub async fn evaluate(&self, request: proto::EvaluateRequest) -> Result<proto::EvaluateResponse> {
        Ok(self.explain.clone().evaluate(request).await?.into_inner())
    }

    pub async fn sanity_check(&self, request: proto::SanityCheckRequest) -> Result<proto::SanityCheckResponse> {
        Ok(self.explain.clone().sanity_check(request).await?.into_inner())
    }

    /// Activation maximisation: `on_progress` sees each progress event; answers the
    /// result that ends the stream. Dropping the future cancels the job.
    pub async fn visualize(
        &self,
        request: proto::VisualizeRequest,
        mut on_progress: impl FnMut(&proto::VisualizeProgress),
    ) -> Result<proto::VisualizeResult> {
        use proto::visualize_event::Event;
        let mut stream = self.generate.clone().visualize(request).await?.into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(Event::Progress(progress)) => on_progress(&progress),
                Some(Event::Result(result)) => return Ok(result),
                None => {}
            }
        }
        Err(ClientError::NoResult("Visualize"))
    }

    /// The smallest change that flips the prediction; streams like `visualize`.
    pub async fn counterfactual(
        &self,
        request: proto::CounterfactualRequest,
        mut on_progress: impl FnMut(&proto::CounterfactualProgress),
    ) -> Result<proto::CounterfactualResult> {
        use proto::counterfactual_event::Event;
        let mut stream = self.generate.clone().counterfactual(request).await?.into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(Event::Progress(progress)) => on_progress(&progress),
                Some(Event::Result(result)) => return Ok(result),
                None => {}
            }
        }
        Err(ClientError::NoResult("Counterfactual"))
    }

    pub async fn traverse(&self, request: proto::TraverseRequest) -> Result<proto::TraverseResponse> {
        Ok(self.generate.clone().traverse(request).await?.into_inner())
    }
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
