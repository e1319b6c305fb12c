//! The method table (crate `layerlens-methods`, shared with the clients) bound to the
//! functions that compute each method. Everything in the engine that depends on a
//! method — validation, options, dispatch, the layer check, caching, batching — reads
//! the table entry; no other place lists method names.

use super::{gradients, integrated, layer, noise_tunnel, perturbation, Context, MethodResult};
use crate::error::{Error, Result};
pub use layerlens_methods::{MethodInfo, Sampling, METHODS};

/// Computes a method on a prepared context (inputs on the device, targets resolved);
/// the layer path for layer methods.
pub(crate) type RunFunction = fn(&mut Context<'_>, &'static MethodInfo, Option<&str>) -> Result<MethodResult>;

/// The function that computes a method; every entry of `METHODS` has one (a test
/// checks it), so `None` only answers a name that is not in the table.
pub(crate) fn run_function(name: &str) -> Option<RunFunction> {
    Some(match name {
        "saliency" => |context, _, _| gradients::saliency(context),
        "input_x_gradient" => |context, _, _| gradients::input_x_gradient(context),
        "integrated_gradients" => |context, _, _| integrated::integrated_gradients(context),
        "smoothgrad" | "smoothgrad_sq" | "vargrad" => |context, method, _| noise_tunnel::noise_tunnel(context, method.name),
        "gradient_shap" => |context, _, _| noise_tunnel::gradient_shap(context),
        "occlusion" => |context, _, _| perturbation::occlusion(context),
        "feature_ablation" => |context, _, _| perturbation::feature_ablation(context),
        "grad_cam" | "layer_activation" | "layer_gradient_x_activation" => |context, method, layer| layer::layer_method(context, method.name, layer),
        _ => return None,
    })
}

/// The table entry of a method, or a bad-input error listing the available ones.
pub fn find(name: &str) -> Result<&'static MethodInfo> {
    layerlens_methods::find(name).map_err(Error::bad_input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_in_the_table_has_a_run_function() {
        for method in METHODS {
            assert!(run_function(method.name).is_some(), "{} is in the method table but nothing computes it", method.name);
        }
        assert!(run_function("no_such_method").is_none());
    }
}
