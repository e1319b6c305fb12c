//! The attribution methods layerlens serves, declared once.
//!
//! Every decision that depends on which method a request names reads this table: the
//! engine's validation, dispatch (`layerlens_engine::attribution::methods` binds each
//! entry to its run function), caching (is the answer reusable?) and cross-request
//! batching; the daemon's `Explain.Methods` RPC, from which the Python client learns
//! them; the CLI's `--method` values, help and shell completions. The crate has no
//! dependencies so that clients, which must not link libtorch, can share it with the
//! engine.
//!
//! Adding a method: write its run function in the engine's `attribution/` (one file),
//! add one entry here and bind it in `attribution/methods.rs`; a test in the engine
//! fails while an entry has no run function, and the CLI and Python tests fail while
//! either does not offer it.

/// Whether a method draws random numbers, which decides whether its answer may be
/// reused from the result cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// A pure function of the inputs and options.
    Never,
    /// Draws noise unless the request gives it (`noise` tensor) or a `seed`.
    UnlessNoiseGiven,
    /// Draws (baselines, interpolation points) on every run unless a `seed` is given.
    Always,
}

/// One attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Captum's name in snake case: `integrated_gradients`.
    pub name: &'static str,
    /// One line for help texts.
    pub summary: &'static str,
    /// The options it accepts, under Captum's argument names.
    pub options: &'static [&'static str],
    /// Explains a layer's output (`--layer PATH` required) instead of the inputs.
    pub layer: bool,
    pub sampling: Sampling,
    /// Rows are independent, so compatible requests from different callers may share
    /// one pass and be split back exactly (a noise tunnel's draws are made per caller).
    pub batchable: bool,
    /// With explicit targets its gradient passes compute the model's output anyway,
    /// so no separate forward pass is needed to return it.
    pub output_from_gradient_passes: bool,
}

const INTEGRATED_GRADIENTS_OPTIONS: &[&str] =
    &["n_steps", "method", "baselines", "blur_sigma", "baseline_low", "baseline_high", "seed", "multiply_by_inputs", "tolerance", "max_steps"];

const NOISE_TUNNEL_OPTIONS: &[&str] = &[
    "nt_samples",
    "nt_samples_batch_size",
    "stdevs",
    "seed",
    "base_method",
    "abs",
    // Options of integrated gradients as the base method.
    "n_steps",
    "method",
    "baselines",
    "blur_sigma",
    "baseline_low",
    "baseline_high",
    "multiply_by_inputs",
    "tolerance",
    "max_steps",
];

const fn method(name: &'static str, summary: &'static str, options: &'static [&'static str]) -> MethodInfo {
    MethodInfo { name, summary, options, layer: false, sampling: Sampling::Never, batchable: false, output_from_gradient_passes: false }
}

/// Every method, in the order help texts list them.
pub const METHODS: &[MethodInfo] = &[
    MethodInfo {
        batchable: true,
        output_from_gradient_passes: true,
        ..method("saliency", "|d output / d input| (Captum's Saliency, abs=True by default)", &["abs"])
    },
    MethodInfo {
        batchable: true,
        output_from_gradient_passes: true,
        ..method("input_x_gradient", "input × d output / d input (InputXGradient)", &[])
    },
    MethodInfo {
        batchable: true,
        ..method("integrated_gradients", "path integral of gradients from a baseline (IntegratedGradients)", INTEGRATED_GRADIENTS_OPTIONS)
    },
    MethodInfo {
        sampling: Sampling::UnlessNoiseGiven,
        batchable: true,
        ..method("smoothgrad", "mean gradient over noisy copies (NoiseTunnel smoothgrad)", NOISE_TUNNEL_OPTIONS)
    },
    MethodInfo {
        sampling: Sampling::UnlessNoiseGiven,
        batchable: true,
        ..method("smoothgrad_sq", "mean squared gradient over noisy copies (NoiseTunnel smoothgrad_sq)", NOISE_TUNNEL_OPTIONS)
    },
    MethodInfo {
        sampling: Sampling::UnlessNoiseGiven,
        batchable: true,
        ..method("vargrad", "variance of gradients over noisy copies (NoiseTunnel vargrad)", NOISE_TUNNEL_OPTIONS)
    },
    MethodInfo {
        sampling: Sampling::Always,
        ..method("gradient_shap", "expected gradients over a baseline distribution (GradientShap)", &["n_samples", "stdevs", "seed"])
    },
    method(
        "occlusion",
        "output change when sliding windows are replaced by a baseline (Occlusion)",
        &["sliding_window_shapes", "strides", "baselines", "perturbations_per_eval"],
    ),
    method(
        "feature_ablation",
        "output change when each feature is replaced by a baseline (FeatureAblation)",
        &["baselines", "perturbations_per_eval"],
    ),
    MethodInfo {
        layer: true,
        batchable: true,
        ..method(
            "grad_cam",
            "channel-weighted layer activations (LayerGradCam)",
            &["relu_attributions", "attr_dim_summation", "upsample", "interpolate_mode"],
        )
    },
    MethodInfo { layer: true, batchable: true, ..method("layer_activation", "a layer's output (LayerActivation)", &[]) },
    MethodInfo {
        layer: true,
        batchable: true,
        ..method("layer_gradient_x_activation", "a layer's output × its gradient (LayerGradientXActivation)", &["multiply_by_inputs"])
    },
];

/// The method of this name, or an error text listing the available ones.
pub fn find(name: &str) -> Result<&'static MethodInfo, String> {
    METHODS.iter().find(|method| method.name == name).ok_or_else(|| format!("unknown attribution method '{name}'; available: {}", names().join(", ")))
}

/// Every method's name.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|method| method.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_name_the_alternatives() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
        assert_eq!(find("grad_cam").map(|method| method.layer), Ok(true));
        let error = find("no_such_method").unwrap_err();
        assert!(error.contains("no_such_method") && error.contains("integrated_gradients"), "{error}");
    }

    #[test]
    fn only_row_independent_methods_without_shared_draws_are_batchable() {
        // A noise tunnel's joined run draws each caller's noise apart (the engine's
        // draw groups); a method that draws for the whole batch cannot share a pass.
        for method in METHODS {
            if method.batchable {
                assert!(matches!(method.sampling, Sampling::Never | Sampling::UnlessNoiseGiven), "{}", method.name);
            }
        }
    }
}
