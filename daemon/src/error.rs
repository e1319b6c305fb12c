//! The daemon's error types and their conversions to `tonic::Status`. Engine and
//! store errors arrive here with a kind; the kind alone decides the gRPC code. Refusals
//! of the access rules (no token, wrong role, a path outside the model roots) are
//! `AccessError`s: the engine's kinds know nothing of access, so they get their own.

use layerlens_engine::ErrorKind;

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_input(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::BadInput, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::NotFound, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::Internal, message: message.into() }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::OutOfMemory, message: message.into() }
    }
}

impl From<layerlens_engine::Error> for ApiError {
    fn from(error: layerlens_engine::Error) -> ApiError {
        ApiError { kind: error.kind, message: error.message }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> ApiError {
        ApiError::internal(format!("store i/o failed: {error}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a background task failed: {error}"))
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> tonic::Status {
        let code = match error.kind {
            ErrorKind::BadInput => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::OutOfMemory => tonic::Code::ResourceExhausted,
            ErrorKind::Internal => tonic::Code::Internal,
            ErrorKind::Cancelled => tonic::Code::Cancelled,
            ErrorKind::Busy { .. } => tonic::Code::ResourceExhausted,
            ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        };
        if code == tonic::Code::Internal {
            tracing::error!(message = %error.message, "internal error");
        }
        // The message travels in the `grpc-message` trailer, which clients cap (8 KiB by
        // default in gRPC core): a message echoing a long request value is cut here, once.
        let mut status = tonic::Status::new(code, shorten_message(error.message));
        if let ErrorKind::Busy { retry_after_ms } = error.kind {
            // The machine-readable retry hint; the message says it in words too.
            if let Ok(value) = retry_after_ms.to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
        }
        status
    }
}

/// The one mapping of figure errors: options the caller chose badly are bad input, any
/// other failure to draw is ours. A figure the caller asked for that cannot be drawn
/// fails the call, as any other part of the answer would.
impl From<layerlens_render::RenderError> for ApiError {
    fn from(error: layerlens_render::RenderError) -> ApiError {
        match error {
            layerlens_render::RenderError::BadOptions(message) => ApiError::bad_input(message),
            other => ApiError::internal(format!("drawing the figure: {other}")),
        }
    }
}

/// Messages longer than this are cut (with the full text in the log).
const MAX_MESSAGE_CHARS: usize = 1000;

fn shorten_message(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    tracing::info!(%message, "error message shortened for the client");
    let kept: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{kept}... (message cut at {MAX_MESSAGE_CHARS} characters)")
}

/// A call refused by the access rules (auth.rs, model_roots.rs), or an ordinary error
/// met while checking them.
#[derive(Debug)]
pub enum AccessError {
    /// No token, or a token no user holds.
    Unauthenticated(String),
    /// A known caller who may not do this: a role without the right, or a file outside
    /// the model roots.
    PermissionDenied(String),
    Api(ApiError),
}

impl From<ApiError> for AccessError {
    fn from(error: ApiError) -> AccessError {
        AccessError::Api(error)
    }
}

impl From<AccessError> for tonic::Status {
    fn from(error: AccessError) -> tonic::Status {
        match error {
            AccessError::Unauthenticated(message) => tonic::Status::unauthenticated(message),
            AccessError::PermissionDenied(message) => tonic::Status::permission_denied(message),
            AccessError::Api(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_before_they_reach_the_trailer() {
        let status = tonic::Status::from(ApiError::bad_input("x".repeat(20_000)));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 1100, "{} characters", status.message().len());
        assert!(status.message().ends_with("(message cut at 1000 characters)"));
        let short = tonic::Status::from(ApiError::bad_input("input shape [1, 3] is wrong"));
        assert_eq!(short.message(), "input shape [1, 3] is wrong");
    }
}
