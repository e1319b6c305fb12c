//! Generation: inputs synthesized to show what a model responds to.
//!
//! - [`visualize`]: activation maximisation (class models, feature visualisation);
//! - [`counterfactual`]: the smallest change to an input that flips the prediction;
//! - [`traverse`]: latent traversals and interpolations of generator models.
//!
//! Long jobs report progress through a [`Report`] callback, which they also call with
//! `None` once per step to ask whether to go on: a job whose client went away stops
//! within one step and frees its worker.

pub mod counterfactual;
pub mod image;
pub mod objective;
pub mod traverse;
pub mod visualize;

pub use counterfactual::{counterfactual, Counterfactual, CounterfactualProgress, CounterfactualRequest, CounterfactualRow, Norm};
pub use image::{Parameterization, Transforms};
pub use objective::{Objective, Term};
pub use traverse::{traverse, Traversal, TraverseRequest};
pub use visualize::{visualize, Visualization, VisualizeProgress, VisualizeRequest};

use crate::error::{Error, Result};

/// Progress callback: `Some(progress)` to report, `None` to ask whether to go on;
/// returns false when the job should stop (its client went away).
pub type Report<'a, P> = &'a mut dyn FnMut(Option<P>) -> bool;

/// The step count to run: `requested`, or `default` for 0; refused above `max`.
pub(crate) fn check_steps(requested: u32, default: u32, max: u32) -> Result<u32> {
    let steps = if requested == 0 { default.min(max) } else { requested };
    if steps > max {
        return Err(Error::bad_input(format!("{steps} steps is more than this daemon allows ({max}, --max-generation-steps)")));
    }
    Ok(steps)
}
