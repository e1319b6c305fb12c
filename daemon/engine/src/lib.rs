//! layerlens-engine: everything that touches libtorch. Loads `torch.export` programs
//! (its own executor in `exported/`) and TorchScript through tch (plus a small C++ shim
//! in `csrc/` for what tch cannot see), keeps models resident on worker threads and
//! computes explanations. Plain Rust types in and out; nothing here knows about gRPC or
//! the network.

// `x = x - y` on tch tensors builds a new tensor on the autograd path; the `x -= y`
// clippy suggests runs in place on a tensor another name may share (and that autograd
// may need), so the long form is the right one here.
#![allow(clippy::assign_op_pattern)]

pub mod attribution;
mod batching;
pub mod device;
pub mod error;
pub mod exported;
pub mod generation;
pub mod host_tensor;
pub mod inspection;
pub mod model;
pub mod op_graph;
pub mod scheduler;
pub mod seeded;
pub mod structure;
pub mod summary;
pub mod surrogate;
pub mod taps;
pub mod text;
pub mod threads;
pub mod trace;
pub mod training;
pub mod worker;

pub use attribution::{
    Attribution, AttributionRequest, Evaluation, EvaluationRequest, MethodInfo, Sampling, SanityCheck, SanityStep, Targets, METHODS, METRICS,
};
pub use device::{Device, DeviceMemory, PassBudget};
pub use error::{Error, ErrorKind, Result};
pub use host_tensor::HostTensor;
pub use scheduler::{Priority, QueueSettings, Ticket};
pub use structure::{ModuleInfo, Summary, SummaryRow};
pub use worker::{ModelSpec, WorkerHandle, WorkerObserver, WorkerSettings};
