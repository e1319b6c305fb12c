//! What a request learns about itself while it runs: who made it (the access layer
//! names the user), which model it is about (handlers name it once resolved) and the
//! response headers handlers ask for (`x-layerlens-model-load`). A task-local slot keeps
//! them, so handlers keep their signatures. `RequestContextLayer`, the outermost layer
//! of the server, opens the slot and writes the headers, so the headers exist whatever
//! other layers are installed; the metrics layer reads the user and model from it.
//!
//! A leaf module: the access layer, the metrics layer and the services all use it, and
//! it uses none of them.

use layerlens_engine::trace::{Phase, RequestTrace};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;
use tonic::codegen::http;

/// What a request learns about itself while it runs.
#[derive(Debug, Default)]
pub struct RequestLabels {
    user: Mutex<Option<String>>,
    model: Mutex<Option<String>>,
    /// Response headers the handler asked for (how the model was found, ...).
    headers: Mutex<Vec<(&'static str, String)>>,
    /// Where the request's time goes, returned as `x-layerlens-phases`.
    pub trace: Arc<RequestTrace>,
}

impl RequestLabels {
    /// The user, or "" when the request never got that far (refused early).
    pub fn user(&self) -> String {
        self.user.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().unwrap_or_default()
    }

    /// The model's label, or "" for requests about no model.
    pub fn model(&self) -> String {
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().unwrap_or_default()
    }
}

tokio::task_local! {
    static CURRENT_REQUEST: Arc<RequestLabels>;
}

/// The current request's labels, inside a call of the server.
pub fn current() -> Option<Arc<RequestLabels>> {
    CURRENT_REQUEST.try_with(Arc::clone).ok()
}

/// Names the user of the current request (the access layer calls this).
pub fn note_user(user: &str) {
    let _ = CURRENT_REQUEST.try_with(|labels| *labels.user.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(user.to_string()));
}

/// Names the model of the current request (handlers call this once resolved).
pub fn note_model(model: &str) {
    let _ = CURRENT_REQUEST.try_with(|labels| *labels.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(model.to_string()));
}

/// Adds a header to the current request's response, e.g. `x-layerlens-model-load:
/// reloaded`.
pub fn note_header(name: &'static str, value: impl Into<String>) {
    let _ = CURRENT_REQUEST.try_with(|labels| labels.headers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name, value.into())));
}

/// Times `work` as `phase` of the current request (outside a request it only runs it).
pub fn time<T>(phase: Phase, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    let _ = CURRENT_REQUEST.try_with(|labels| labels.trace.record(phase, started.elapsed()));
    result
}

/// Times an async `work` as `phase` of the current request.
pub async fn time_async<T>(phase: Phase, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = work.await;
    let _ = CURRENT_REQUEST.try_with(|labels| labels.trace.record(phase, started.elapsed()));
    result
}

/// `/layerlens.v1.Models/Delete` → `Models.Delete`.
pub fn display_method(method: &str) -> String {
    let trimmed = method.trim_start_matches('/');
    let service_and_method = trimmed.rsplit_once('/').map(|(service, name)| {
        let service = service.rsplit('.').next().unwrap_or(service);
        format!("{service}.{name}")
    });
    service_and_method.unwrap_or_else(|| trimmed.to_string())
}

/// Tower layer that opens each call's slot and writes the headers noted in it.
#[derive(Clone, Default)]
pub struct RequestContextLayer;

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> RequestContextService<S> {
        RequestContextService { inner }
    }
}

#[derive(Clone)]
pub struct RequestContextService<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for RequestContextService<S>
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
        let labels = Arc::new(RequestLabels::default());
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(CURRENT_REQUEST.scope(labels.clone(), async move {
            let started = Instant::now();
            let mut result = inner.call(request).await;
            // For a unary call the response message exists by now: the handler's time
            // (the request message's decoding included) is known. A stream's headers
            // leave before its work, so they carry only what happened before.
            labels.trace.record(Phase::Handler, started.elapsed());
            if let Ok(response) = &mut result {
                if let Ok(value) = http::HeaderValue::from_str(&labels.trace.header_value()) {
                    response.headers_mut().insert("x-layerlens-phases", value);
                }
                for (name, value) in labels.headers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
                    if let Ok(value) = http::HeaderValue::from_str(&value) {
                        response.headers_mut().insert(name, value);
                    }
                }
            }
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_display_as_service_and_method() {
        assert_eq!(display_method("/layerlens.v1.Models/Delete"), "Models.Delete");
        assert_eq!(display_method("/grpc.health.v1.Health/Check"), "Health.Check");
        assert_eq!(display_method("odd"), "odd");
    }

    #[tokio::test]
    async fn notes_reach_the_slot_only_inside_a_request() {
        note_user("nobody");
        assert!(current().is_none());
        let labels = Arc::new(RequestLabels::default());
        CURRENT_REQUEST
            .scope(labels.clone(), async {
                note_user("alice");
                note_model("digits");
                note_header("x-layerlens-model-load", "loaded");
            })
            .await;
        assert_eq!((labels.user(), labels.model()), ("alice".to_string(), "digits".to_string()));
        assert_eq!(labels.headers.lock().unwrap().len(), 1);
    }
}
