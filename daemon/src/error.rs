//! The daemon's error type and its one conversion to `tonic::Status`. Engine and
//! store errors arrive here with a kind; the kind alone decides the gRPC code.

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
        };
        if code == tonic::Code::Internal {
            tracing::error!(message = %error.message, "internal error");
        }
        tonic::Status::new(code, error.message)
    }
}
