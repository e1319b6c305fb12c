//! Prometheus metrics: what every request did (a tower layer outside the access layer,
//! so refused calls count too), what the result cache did, and, read at scrape time,
//! what is resident. Served as `GET /metrics` in the text format on its own port
//! (`--metrics-listen`), apart from gRPC, so a scraper needs no gRPC and no token.
//!
//! A request's labels are learnt on the way: the access layer names the user and the
//! handler names the model once it has resolved it, in the request's slot
//! (request_context.rs), which this layer reads when the call ends.

use crate::request_context::RequestLabels;
use crate::services::SharedState;
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;
use tokio::net::TcpListener;
use tonic::codegen::http;

/// Every metric of the daemon, registered in one registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    rejections: IntCounterVec,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGauge,
    cache_entries: IntGauge,
    resident_models: IntGauge,
    resident_bytes: IntGaugeVec,
    in_flight: IntGaugeVec,
    queue_depth: IntGaugeVec,
    queue_seconds: HistogramVec,
    run_seconds: HistogramVec,
    batch_size: HistogramVec,
    evictions: IntGauge,
    memory_budget_bytes: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("layerlens_requests_total", "gRPC requests by method, model, user and result code"),
            &["method", "model", "user", "code"],
        )
        .expect("valid metric");
        // From 1 ms to about 2.5 minutes: a summary from the cache is a millisecond,
        // integrated gradients on a large model is minutes.
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("layerlens_request_duration_seconds", "Time from a request's arrival to its response's start, by method and model")
                .buckets(prometheus::exponential_buckets(0.001, 2.5, 14).expect("valid buckets")),
            &["method", "model"],
        )
        .expect("valid metric");
        let rejections = IntCounterVec::new(
            Opts::new("layerlens_rejections_total", "Requests refused, by reason (unauthenticated, permission_denied, invalid_argument, ...)"),
            &["reason", "method"],
        )
        .expect("valid metric");
        let cache_lookups = IntCounterVec::new(
            Opts::new("layerlens_cache_lookups_total", "Result cache lookups of cacheable requests, by method and result (hit or miss)"),
            &["method", "result"],
        )
        .expect("valid metric");
        let cache_bytes = IntGauge::new("layerlens_cache_bytes", "Encoded size of the answers in the result cache").expect("valid metric");
        let cache_entries = IntGauge::new("layerlens_cache_entries", "Answers in the result cache").expect("valid metric");
        let resident_models = IntGauge::new("layerlens_resident_models", "Models loaded on the device").expect("valid metric");
        let resident_bytes =
            IntGaugeVec::new(Opts::new("layerlens_resident_bytes", "Bytes of a resident model's parameters and buffers"), &["model", "model_id"])
                .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new("layerlens_in_flight_requests", "Commands handed to a model's worker and not yet answered (its queue depth)"),
            &["model", "model_id"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("layerlens_queue_depth", "Requests waiting in a model's queue (the running one not counted)"),
            &["model", "model_id"],
        )
        .expect("valid metric");
        let job_buckets = prometheus::exponential_buckets(0.0005, 2.5, 16).expect("valid buckets");
        let queue_seconds = HistogramVec::new(
            HistogramOpts::new("layerlens_queue_seconds", "Time a request waited in its model's queue, by model id and work")
                .buckets(job_buckets.clone()),
            &["model_id", "work"],
        )
        .expect("valid metric");
        let run_seconds = HistogramVec::new(
            HistogramOpts::new("layerlens_run_seconds", "Time a model's worker spent on one job (a batch counts once), by model id and work")
                .buckets(job_buckets),
            &["model_id", "work"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("layerlens_batch_size", "Requests run as one pass (1: alone), by work")
                .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0]),
            &["work"],
        )
        .expect("valid metric");
        let evictions = IntGauge::new("layerlens_evictions_total", "Models evicted to make room under the memory budget").expect("valid metric");
        let memory_budget_bytes =
            IntGauge::new("layerlens_memory_budget_bytes", "The memory budget for resident models (0: none)").expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(rejections.clone()),
            Box::new(cache_lookups.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_entries.clone()),
            Box::new(resident_models.clone()),
            Box::new(resident_bytes.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_seconds.clone()),
            Box::new(run_seconds.clone()),
            Box::new(batch_size.clone()),
            Box::new(evictions.clone()),
            Box::new(memory_budget_bytes.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            rejections,
            cache_lookups,
            cache_bytes,
            cache_entries,
            resident_models,
            resident_bytes,
            in_flight,
            queue_depth,
            queue_seconds,
            run_seconds,
            batch_size,
            evictions,
            memory_budget_bytes,
        }
    }

    /// A job a worker finished (WorkerObserver, through server.rs).
    pub fn job_finished(&self, model_id: &str, work: &str, waited: std::time::Duration, ran: std::time::Duration, batch_size: usize) {
        let model_id = &model_id[..12.min(model_id.len())];
        self.queue_seconds.with_label_values(&[model_id, work]).observe(waited.as_secs_f64());
        self.run_seconds.with_label_values(&[model_id, work]).observe(ran.as_secs_f64());
        self.batch_size.with_label_values(&[work]).observe(batch_size as f64);
    }

    /// Counts one lookup of the result cache.
    pub fn cache_lookup(&self, method: &str, hit: bool) {
        self.cache_lookups.with_label_values(&[method, if hit { "hit" } else { "miss" }]).inc();
    }

    fn finish_request(&self, method: &str, labels: &RequestLabels, code: tonic::Code, seconds: f64) {
        let (model, user) = (labels.model(), labels.user());
        self.requests.with_label_values(&[method, &model, &user, code_name(code)]).inc();
        self.request_seconds.with_label_values(&[method, &model]).observe(seconds);
        if let Some(reason) = rejection_reason(code) {
            self.rejections.with_label_values(&[reason, method]).inc();
        }
    }

    /// The text exposition, after reading the gauges that live elsewhere (resident
    /// models, their queues, the cache's size).
    async fn render(&self, state: &SharedState) -> String {
        let (residents, memory) = state.registry.residents().await.unwrap_or_default();
        let workers: Vec<_> = residents.into_iter().map(|resident| resident.worker).collect();
        let records = state.with_store(|store| store.list()).await.unwrap_or_default();
        self.resident_bytes.reset();
        self.in_flight.reset();
        self.queue_depth.reset();
        self.resident_models.set(workers.len() as i64);
        self.evictions.set(memory.evictions as i64);
        self.memory_budget_bytes.set(memory.budget_bytes.unwrap_or(0) as i64);
        for worker in &workers {
            let model = records
                .iter()
                .find(|record| record.id == worker.model_id)
                .map(crate::services::model_label)
                .unwrap_or_else(|| worker.model_id[..12.min(worker.model_id.len())].to_string());
            let labels = [model.as_str(), worker.model_id.as_str()];
            self.resident_bytes.with_label_values(&labels).set(worker.resident_bytes() as i64);
            self.in_flight.with_label_values(&labels).set(worker.in_flight() as i64);
            self.queue_depth.with_label_values(&labels).set(worker.queued() as i64);
        }
        let cache = state.cache.stats();
        self.cache_bytes.set(cache.size_bytes as i64);
        self.cache_entries.set(cache.entries as i64);
        let mut text = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("text encoding cannot fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// `Code::InvalidArgument` → `invalid_argument`, the spelling of grpc-status names.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Codes that mean the daemon refused the request (the caller's side), as opposed
/// to success, cancellation or the daemon's own failure.
fn rejection_reason(code: tonic::Code) -> Option<&'static str> {
    use tonic::Code::*;
    match code {
        Unauthenticated | PermissionDenied | InvalidArgument | ResourceExhausted | NotFound | FailedPrecondition | OutOfRange | Unimplemented
        | AlreadyExists => Some(code_name(code)),
        _ => None,
    }
}

/// The method label of a gRPC path: `Explain.Summary` for the daemon's own and the
/// standard services, `other` for anything else, so made-up paths cannot create
/// unbounded label values.
fn method_label(path: &str) -> String {
    const KNOWN: &[&str] = &["/layerlens.v1.", "/grpc.health.v1.", "/grpc.reflection.v1."];
    if KNOWN.iter().any(|prefix| path.starts_with(prefix)) {
        crate::request_context::display_method(path)
    } else {
        "other".to_string()
    }
}

/// Tower layer that counts and times every call of the gRPC server.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for MetricsService<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RequestBody: Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let metrics = self.metrics.clone();
        // The slot the request-context layer (outside this one) opened; a server built
        // without it still counts its calls, unlabelled.
        let labels = crate::request_context::current().unwrap_or_default();
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let started = Instant::now();
        Box::pin(async move {
            let result = inner.call(request).await;
            // An error before the response (a refusal, a handler's Status) travels as
            // a grpc-status header; a successful unary answer has none until its
            // trailers, which carry OK.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map(tonic::Code::from)
                    .unwrap_or(tonic::Code::Ok),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.finish_request(&method, &labels, code, started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Serves `GET /metrics` (HTTP/1.1) on `listener` until the process ends; any other
/// path answers 404.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, state: SharedState) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "metrics: accepting a connection failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                let state = state.clone();
                async move {
                    let response = if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
                            .body(Full::new(Bytes::from(metrics.render(&state).await)))
                    } else {
                        http::Response::builder()
                            .status(http::StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"layerlensd serves only GET /metrics here\n")))
                    };
                    Ok::<_, std::convert::Infallible>(response.expect("a valid response"))
                }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        let cases = [
            ("/layerlens.v1.Explain/Summary", "Explain.Summary"),
            ("/grpc.health.v1.Health/Check", "Health.Check"),
            ("/evil.Service/Random123", "other"),
            ("/", "other"),
        ];
        for (path, expected) in cases {
            assert_eq!(method_label(path), expected, "{path}");
        }
    }
}
