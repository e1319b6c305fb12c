//! The engine's one error type: a kind that decides how callers react (and which
//! gRPC code the daemon answers) plus a message that names what was wrong.

use std::fmt;

/// What went wrong, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: shape, dtype, target, method, parameter, file format.
    BadInput,
    /// A model or layer the request names does not exist.
    NotFound,
    /// The device ran out of memory.
    OutOfMemory,
    /// A bug or an unexpected libtorch failure.
    Internal,
    /// The client went away and the job stopped.
    Cancelled,
    /// The model's queue is full; the caller may retry after about this long.
    Busy { retry_after_ms: u64 },
    /// The caller's deadline passed before the work was done; work not yet started
    /// is dropped.
    DeadlineExceeded,
}

/// An engine error: kind plus a human-readable message with its context
/// (model, layer, shapes). Messages have no trailing full stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// Prefixes the message with context, e.g. the model id.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Classifies a libtorch failure. `when_rejected` is the kind to use when libtorch
    /// refused the work itself (a forward pass that rejects the input is the caller's
    /// mistake; a failing backward pass is ours). Out-of-memory is always recognised.
    pub fn from_torch(error: tch::TchError, when_rejected: ErrorKind, doing: &str) -> Error {
        let full = error.to_string();
        let reason = torch_reason(&full);
        let kind = if is_out_of_memory(&reason) { ErrorKind::OutOfMemory } else { when_rejected };
        Error::new(kind, format!("{doing}: {reason}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A shape for messages, shortened when long (`[1, 1, 1, 1, 1, 1, 1, 1, ... (1000
/// dimensions)]`): requests' shapes are echoed in errors, which must stay one line.
pub fn shape_text(shape: &[i64]) -> String {
    const SHOWN: usize = 8;
    let dims: Vec<String> = shape.iter().take(SHOWN).map(i64::to_string).collect();
    if shape.len() > SHOWN {
        format!("[{}, ... ({} dimensions)]", dims.join(", "), shape.len())
    } else {
        format!("[{}]", dims.join(", "))
    }
}

/// Whether a libtorch message reports an exhausted allocator: CUDA's caching
/// allocator says "out of memory", the CPU allocator "can't allocate memory".
pub fn is_out_of_memory(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    lower.contains("out of memory") || lower.contains("can't allocate memory") || lower.contains("cannot allocate memory")
}

/// libtorch messages carry a C++ backtrace and, from the TorchScript interpreter, a
/// TorchScript traceback; people need the one line that says what failed.
pub fn torch_reason(full: &str) -> String {
    let without_backtrace = full.split("\nException raised from").next().unwrap_or(full);
    let lines: Vec<&str> = without_backtrace.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    // The TorchScript interpreter ends its traceback with `RuntimeError: <what>`.
    if let Some(line) = lines.iter().rev().find(|line| line.contains("Error: ")) {
        let what = line.split_once("Error: ").map(|(_, what)| what).unwrap_or(line);
        return what.trim_end_matches('.').to_string();
    }
    let first = lines.first().copied().unwrap_or("unknown libtorch error");
    let first = first.strip_prefix("Internal torch error: ").unwrap_or(first);
    first.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::torch_reason;

    #[test]
    fn torch_reason_keeps_the_line_that_says_what_failed() {
        let cases = [
            (
                "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, serialized code (most recent call last):\n  File \"code/__torch__.py\", line 9, in forward\nRuntimeError: Given groups=1, weight of size [8, 1, 3, 3], expected input[1, 3, 8, 8] to have 1 channels, but got 3 channels instead\n",
                "Given groups=1, weight of size [8, 1, 3, 3], expected input[1, 3, 8, 8] to have 1 channels, but got 3 channels instead",
            ),
            (
                "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory\nException raised from valid at ../caffe2/serialize/inline_container.cc:320 (most recent call first):\nframe #0: c10::Error::Error",
                "PytorchStreamReader failed reading zip archive: failed finding central directory",
            ),
        ];
        for (full, expected) in cases {
            assert_eq!(torch_reason(full), expected);
        }
    }
}
