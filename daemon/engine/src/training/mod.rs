//! Training explained: a checkpoint's weights and optimiser state tied to a stored
//! model (`bind`), what the optimiser does to each parameter (`optimizer`), how far
//! weights moved between two checkpoints (`change`), and the loss surface around a
//! checkpoint (`landscape`). Checkpoints are read as data by `layerlens-checkpoint`;
//! only the landscape runs the model.

pub mod bind;
pub mod change;
pub mod landscape;
pub mod optimizer;
mod stats;

pub use bind::{bind, model_parameters, BoundCheckpoint, ModelParameters, ParameterSpec};
pub use change::{weight_change, WeightChange, WeightChangeReport};
pub use landscape::{landscape, Directions, Landscape, LandscapeRequest, LossKind, TrajectoryCheckpoint, TrajectoryPoint};
pub use optimizer::{explain_optimizer, Finding, LayerUpdate, OptimizerReport, ParamGroupInfo, ParameterUpdate, Quantiles, Schedule};
