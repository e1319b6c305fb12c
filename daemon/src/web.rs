//! The web explorer: a single page embedded in the binary, served on `--web-listen`
//! next to the daemon's own API through gRPC-Web (tonic-web), so the page calls the
//! same RPCs with the same tokens and roles as every other client: no second API.
//!
//! `WebAssetsLayer` answers `GET` for the page's files (index.html, its script and
//! style, the vendored protobuf.js, and the .proto files the page reads the messages
//! from); every other request goes on to gRPC-Web and the services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http;

/// One embedded file: its path on the web, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const TEXT: &str = "text/plain; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";

/// A .proto file of the API, which the page parses at run time.
macro_rules! proto_file {
    ($name:literal) => {
        Asset {
            path: concat!("/proto/", $name, ".proto"),
            content_type: TEXT,
            body: include_bytes!(concat!("../../proto/proto/layerlens/v1/", $name, ".proto")),
        }
    };
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("../web/index.html") },
    Asset { path: "/app.js", content_type: SCRIPT, body: include_bytes!("../web/app.js") },
    Asset { path: "/style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../web/style.css") },
    Asset { path: "/vendor/protobuf.min.js", content_type: SCRIPT, body: include_bytes!("../web/vendor/protobuf.min.js") },
    proto_file!("common"),
    proto_file!("models"),
    proto_file!("explain"),
    proto_file!("daemon"),
    proto_file!("generate"),
    proto_file!("training"),
    proto_file!("text"),
];

fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// Tower layer answering the page's files (see the module docs).
#[derive(Clone, Default)]
pub struct WebAssetsLayer;

impl<S> tower::Layer<S> for WebAssetsLayer {
    type Service = WebAssets<S>;

    fn layer(&self, inner: S) -> WebAssets<S> {
        WebAssets { inner }
    }
}

#[derive(Clone)]
pub struct WebAssets<S> {
    inner: S,
}

impl<S, RequestBody> tower::Service<http::Request<RequestBody>> for WebAssets<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RequestBody: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        if request.method() == http::Method::GET || request.method() == http::Method::HEAD {
            let response = match asset(request.uri().path()) {
                Some(asset) => http::Response::builder()
                    .header(http::header::CONTENT_TYPE, asset.content_type)
                    .header(http::header::CACHE_CONTROL, "no-cache")
                    .header("x-content-type-options", "nosniff")
                    .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from_static(asset.body))))
                    .expect("a valid response"),
                None => http::Response::builder()
                    .status(http::StatusCode::NOT_FOUND)
                    .header(http::header::CONTENT_TYPE, TEXT)
                    .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from_static(b"not found"))))
                    .expect("a valid response"),
            };
            return Box::pin(async move { Ok(response) });
        }
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move { inner.call(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_embedded() {
        assert!(std::str::from_utf8(asset("/").unwrap().body).unwrap().contains("<script src=\"/app.js\""));
        assert_eq!(asset("/index.html").map(|asset| asset.path), Some("/"));
        assert!(asset("/proto/explain.proto").is_some() && asset("/etc/passwd").is_none());
    }
}
