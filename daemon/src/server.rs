//! Wires the daemon together: opens the store, stores the start-up models, binds
//! the listener, serves the layerlens services plus `grpc.health.v1` and server
//! reflection behind the access layer (auth.rs), over TLS when configured, and shuts
//! down cleanly on SIGTERM/SIGINT.

use crate::auth::{AccessLayer, AccessPolicy, Tokens};
use crate::cache::ResultCache;
use crate::config::Config;
use crate::metrics::{Metrics, MetricsLayer};
use crate::model_roots::ModelRoots;
use crate::registry::{Registry, RegistrySettings};
use crate::services::daemon::DaemonService;
use crate::services::explain::ExplainService;
use crate::services::generate::GenerateService;
use crate::services::models::ModelsService;
use crate::services::text::TextService;
use crate::services::training::TrainingService;
use crate::services::State;
use crate::store::Store;
use anyhow::Context;
use layerlens_proto as proto;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Starts the daemon and serves until SIGTERM/SIGINT: reads the access settings, loads
/// custom-operator libraries, opens the store with its start-up models, starts the
/// registry, then serves.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Access settings are read first: a bad tokens file, key or root must stop the
    // daemon before it serves anything.
    let tokens = config.tokens.as_deref().map(Tokens::load).transpose()?;
    let model_roots = ModelRoots::open(&config.model_roots)?;
    let tls = tls_config(&config)?;
    // Custom operators register with the dispatcher when their library loads; models
    // that call them are checked and loaded after this.
    for library in &config.op_libraries {
        layerlens_engine::exported::load_op_library(library)
            .map_err(|error| anyhow::anyhow!("--op-library {}: {}", library.display(), error.message))?;
    }
    let store = open_store(&config)?;
    if matches!(config.device, layerlens_engine::Device::Cuda(_)) {
        layerlens_engine::Device::set_cudnn_tf32(config.allow_tf32);
    }
    let metrics = Arc::new(Metrics::new());
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let (state, pinned) = start_state(&config, store, model_roots, &metrics, &health_reporter)?;
    load_pinned_models(&state, pinned).await;
    serve(&config, state, tokens, tls, metrics, health_reporter, health).await
}

/// The TLS identity from `--tls-cert`/`--tls-key`, when configured.
fn tls_config(config: &Config) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let Some(files) = &config.tls else { return Ok(None) };
    let cert = std::fs::read(&files.cert).with_context(|| format!("reading --tls-cert {}", files.cert.display()))?;
    let key = std::fs::read(&files.key).with_context(|| format!("reading --tls-key {}", files.key.display()))?;
    Ok(Some(tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key))))
}

/// The store, with the `--add-model` models checked by libtorch and committed (an
/// exported program's own example shape is kept when the flag gives none).
fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::open(&config.store).map_err(|error| anyhow::anyhow!(error.message))?;
    for model in &config.startup_models {
        let staged = store
            .stage_file(&model.path, config.max_model_bytes)
            .and_then(|staged| {
                let example = layerlens_engine::model::validate(staged.path())?;
                let input_shape = if model.input_shape.is_empty() { example.unwrap_or_default() } else { model.input_shape.clone() };
                Ok((staged, input_shape))
            })
            .and_then(|(staged, input_shape)| store.commit(staged, Some(&model.name), &input_shape))
            .map_err(|error| anyhow::anyhow!("--add-model {}: {}", model.name, error.message))?;
        tracing::info!(name = %model.name, model_id = %staged.id, "start-up model stored");
    }
    Ok(store)
}

/// The state every service shares: the store, the registry of resident models (its
/// workers report to the metrics and per-model health) and the result cache; and the
/// ids of the pinned models.
fn start_state(
    config: &Config,
    store: Store,
    model_roots: ModelRoots,
    metrics: &Arc<Metrics>,
    health_reporter: &tonic_health::server::HealthReporter,
) -> anyhow::Result<(Arc<State>, Vec<String>)> {
    let observer = Arc::new(Observer { metrics: metrics.clone(), health: health_reporter.clone(), runtime: tokio::runtime::Handle::current() });
    let (registry, pinned) = Registry::start(RegistrySettings {
        device: config.device,
        worker: layerlens_engine::WorkerSettings {
            pass_budget: config.pass_budget,
            max_generation_steps: config.max_generation_steps,
            queue: config.queue,
            observer: Some(observer),
        },
        memory_budget_bytes: config.memory_budget_bytes,
        pins_file: config.store.join("pins.json"),
    })?;
    let metrics = metrics.clone();
    let training = crate::runs::TrainingDb::open(&store.training_db_path()).map_err(|error| anyhow::anyhow!(error.message))?;
    let state = Arc::new(State {
        training,
        store,
        registry,
        max_model_bytes: config.max_model_bytes,
        model_roots,
        cache: Arc::new(ResultCache::new(config.cache_bytes, Box::new(move |method, hit| metrics.cache_lookup(method, hit)))),
        device: config.device,
        started: std::time::Instant::now(),
        queue: config.queue,
    });
    Ok((state, pinned.into_iter().collect()))
}

/// Pinned models load at start, so their first request finds them warm.
async fn load_pinned_models(state: &Arc<State>, pinned: Vec<String>) {
    for model_id in pinned {
        let reference = model_id.clone();
        match state.with_store(move |store| store.resolve(&reference)).await {
            Ok(record) => {
                if let Err(error) = state.registry.acquire(state.spec_for(&record), record.size_bytes).await {
                    tracing::warn!(%model_id, message = %error.message, "a pinned model did not load");
                }
            }
            Err(error) => tracing::warn!(%model_id, message = %error.message, "a pinned model is no longer in the store"),
        }
    }
}

/// Binds the listeners, prints the ready line and serves the services behind the
/// request-context, metrics and access layers until the shutdown signal.
async fn serve(
    config: &Config,
    state: Arc<State>,
    tokens: Option<Tokens>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    metrics: Arc<Metrics>,
    health_reporter: tonic_health::server::HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) -> anyhow::Result<()> {
    let limit = config.max_message_bytes;
    let models = proto::models_server::ModelsServer::new(ModelsService { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let explain = proto::explain_server::ExplainServer::new(ExplainService { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let generate = proto::generate_server::GenerateServer::new(GenerateService { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let daemon = proto::daemon_server::DaemonServer::new(DaemonService { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let training = proto::training_server::TrainingServer::new(TrainingService { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let text =
        proto::text_server::TextServer::new(TextService { state: state.clone() }).max_decoding_message_size(limit).max_encoding_message_size(limit);
    health_reporter.set_serving::<proto::models_server::ModelsServer<ModelsService>>().await;
    health_reporter.set_serving::<proto::explain_server::ExplainServer<ExplainService>>().await;
    health_reporter.set_serving::<proto::generate_server::GenerateServer<GenerateService>>().await;
    health_reporter.set_serving::<proto::daemon_server::DaemonServer<DaemonService>>().await;
    health_reporter.set_serving::<proto::training_server::TrainingServer<TrainingService>>().await;
    health_reporter.set_serving::<proto::text_server::TextServer<TextService>>().await;
    // The daemon's own services, served on --listen (with health and reflection) and on
    // --web-listen (through gRPC-Web) alike.
    let api =
        tonic::service::Routes::new(models).add_service(explain).add_service(generate).add_service(daemon).add_service(training).add_service(text);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let mut builder = tonic::transport::Server::builder();
    let serves_tls = tls.is_some();
    let web_tls = tls.clone();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("--tls-cert/--tls-key: not a usable certificate and private key")?;
    }

    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    match &tokens {
        Some(tokens) => tracing::info!(users = tokens.len(), "authentication on: every call but health needs a token"),
        None if address.ip().is_loopback() => tracing::info!("no --tokens file: open to this machine only"),
        None => tracing::warn!("no --tokens file (--insecure): every caller that reaches {address} may use and delete models"),
    }
    if tokens.is_some() && !serves_tls && !address.ip().is_loopback() {
        tracing::warn!("tokens travel in clear text on {address}: add --tls-cert and --tls-key");
    }
    // The metrics port is bound before the gRPC line is printed, so whoever waits for
    // that line finds both ports ready.
    let metrics_server = match config.metrics_listen {
        Some(metrics_address) => {
            let metrics_listener = TcpListener::bind(metrics_address).await.with_context(|| format!("cannot serve metrics on {metrics_address}"))?;
            let bound = metrics_listener.local_addr()?;
            println!("layerlensd metrics on {bound}");
            tracing::info!(%bound, "Prometheus metrics at GET /metrics");
            Some(tokio::spawn(crate::metrics::serve(metrics_listener, metrics.clone(), state.clone())))
        }
        None => None,
    };
    // The web explorer: the same services behind the same layers, through gRPC-Web,
    // and the page's files (web.rs). Bound before the ready line too.
    let web_server = match config.web_listen {
        Some(web_address) => {
            let web_listener = TcpListener::bind(web_address).await.with_context(|| format!("cannot serve the web explorer on {web_address}"))?;
            let bound = web_listener.local_addr()?;
            let mut web_builder = tonic::transport::Server::builder().accept_http1(true);
            if let Some(tls) = web_tls {
                web_builder = web_builder.tls_config(tls).context("--tls-cert/--tls-key: not a usable certificate and private key")?;
            }
            let router = web_builder
                .layer(crate::web::WebAssetsLayer)
                .layer(tonic_web::GrpcWebLayer::new())
                .layer(crate::request_context::RequestContextLayer)
                .layer(MetricsLayer::new(metrics.clone()))
                .layer(AccessLayer::new(AccessPolicy::new(tokens.clone())))
                .add_routes(api.clone());
            let scheme = if serves_tls { "https" } else { "http" };
            println!("layerlensd web explorer on {scheme}://{bound}/");
            tracing::info!(%bound, "web explorer and gRPC-Web");
            let incoming = tonic::transport::server::TcpIncoming::from(web_listener).with_nodelay(Some(true));
            Some(tokio::spawn(async move { router.serve_with_incoming_shutdown(incoming, shutdown_signal()).await }))
        }
        None => None,
    };
    let roots = state.model_roots.roots().iter().map(|root| root.display().to_string()).collect::<Vec<_>>();
    tracing::info!(store = %config.store.display(), device = %config.device, tls = serves_tls, model_roots = ?roots, "layerlensd ready");
    // Scripts and tests wait for this exact line (CONTRACT.md).
    println!("layerlensd listening on {address}");

    let served = builder
        // The request's slot outermost (its headers are written whatever else runs),
        // metrics outside access, so refused calls are counted too.
        .layer(crate::request_context::RequestContextLayer)
        .layer(MetricsLayer::new(metrics))
        .layer(AccessLayer::new(AccessPolicy::new(tokens)))
        .add_routes(api.add_service(health).add_service(reflection))
        // TCP_NODELAY: without it a response's trailers wait for the client's delayed
        // ACK, adding ~40 ms to every small answer.
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown_signal())
        .await
        .context("serving gRPC");
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    if let Some(web_server) = web_server {
        web_server.abort();
    }
    served?;
    tracing::info!("layerlensd stopped");
    Ok(())
}

/// What the daemon does with news from the model workers: metrics, and per-model
/// health (`grpc.health.v1` service `layerlens.model/<id>` is SERVING once the model
/// has loaded and run its warm-up pass, unknown before and after it is resident).
struct Observer {
    metrics: Arc<Metrics>,
    health: tonic_health::server::HealthReporter,
    runtime: tokio::runtime::Handle,
}

/// The health service name of a model.
pub fn model_health_service(model_id: &str) -> String {
    format!("layerlens.model/{model_id}")
}

impl layerlens_engine::WorkerObserver for Observer {
    fn model_ready(&self, model_id: &str, outcome: &layerlens_engine::Result<()>) {
        let status = if outcome.is_ok() { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
        let health = self.health.clone();
        let service = model_health_service(model_id);
        self.runtime.spawn(async move { health.set_service_status(service, status).await });
    }

    fn job_finished(&self, model_id: &str, command: &'static str, waited: std::time::Duration, ran: std::time::Duration, batch_size: usize) {
        self.metrics.job_finished(model_id, command, waited, ran, batch_size);
    }

    fn model_unloaded(&self, model_id: &str) {
        let mut health = self.health.clone();
        let service = model_health_service(model_id);
        self.runtime.spawn(async move { health.clear_service_status(&service).await });
    }
}

/// Resolves on SIGTERM or SIGINT; tonic then stops accepting and lets in-flight
/// requests finish.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}
