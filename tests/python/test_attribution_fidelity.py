"""Every attribution method of a real layerlensd, checked number by number against Captum 0.9.

Each case of CASES names a fixture model, a method, a target and the request's options;
the daemon answers through the Python client, and Captum computes the reference in this
process on the same TorchScript file and the same inputs (tests/reference/
captum_attributions.py translates the options). The bar is

    max |daemon - Captum| <= 1e-5 * (1 + max |Captum|)

for deterministic methods, and for sampled ones given the same random draws: a `seed`
(the daemon seeds libtorch's default CPU generator and draws as Captum does, so
torch.manual_seed(seed) before Captum must give the same noise), or explicit `noise`,
`baseline_indices` and `rand_coefficients`, which the reference forces on Captum. The
daemon's own sampler is also checked statistically against Captum's.

The models are the digits CNN, the tabular MLP and a two-input model (image branch plus
tabular branch), each as scripted and traced TorchScript, all from
tests/fixtures/make_fixtures.py. Layer methods are compared with Captum run on the eager
module of the fixture's class carrying the TorchScript file's weights, because Captum
reads layers through forward hooks, which TorchScript modules never run.

Bad requests must fail with INVALID_ARGUMENT (NOT_FOUND for an unknown layer) and a
message naming the problem, and the daemon must keep serving after each.
"""

import dataclasses
import importlib.util
import re
import sys

import numpy as np
import pytest
import torch
from captum.attr import NoiseTunnel, Saliency

import layerlens
from conftest import FIXTURE_SCRIPT, REPO_ROOT, load_torchscript

sys.path.insert(0, str(REPO_ROOT / "tests" / "reference"))
from captum_attributions import captum_attribution, integrated_gradients_baselines  # noqa: E402

RELATIVE_TOLERANCE = 1e-5

# Captum's gradient methods warn when they set requires_grad on the inputs themselves.
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients:UserWarning")


def _fixture_classes():
    """make_fixtures.py as a module, for the eager classes of the fixture models."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the models and their inputs ----------------------------------------------------------


def _digits_inputs(fixtures_dir):
    # Three held-out digits of different classes.
    images = np.load(fixtures_dir / "digits_test_images.npy")
    return (images[:3],)


def _mlp_inputs(fixtures_dir):
    return (np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32),)


def _two_input_inputs(fixtures_dir):
    rng = np.random.default_rng(1)
    image = rng.uniform(0.0, 1.0, size=(3, 1, 6, 6)).astype(np.float32)
    features = rng.normal(size=(3, 3)).astype(np.float32)
    return (image, features)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    file: str
    eager_class: str
    inputs: object  # fixtures_dir -> tuple of float32 arrays, (batch, ...) each


MODELS = {
    "digits": ModelSpec("digits_cnn.pt", "DigitsCNN", _digits_inputs),
    "digits_traced": ModelSpec("digits_cnn_traced.pt", "DigitsCNN", _digits_inputs),
    "mlp": ModelSpec("tiny_mlp_scripted.pt", "TinyMLP", _mlp_inputs),
    "mlp_traced": ModelSpec("tiny_mlp_traced.pt", "TinyMLP", _mlp_inputs),
    "two_input": ModelSpec("two_input_scripted.pt", "TwoInputNet", _two_input_inputs),
    "two_input_traced": ModelSpec("two_input_traced.pt", "TwoInputNet", _two_input_inputs),
    # The same modules as torch.export archives, run by the daemon's executor.
    "digits_pt2": ModelSpec("digits_cnn.pt2", "DigitsCNN", _digits_inputs),
    "mlp_pt2": ModelSpec("tiny_mlp.pt2", "TinyMLP", _mlp_inputs),
    "two_input_pt2": ModelSpec("two_input.pt2", "TwoInputNet", _two_input_inputs),
}


@dataclasses.dataclass
class LoadedModel:
    handle: object  # layerlens.Model
    torchscript: object
    eager: object
    inputs: tuple  # float32 numpy arrays

    def tensors(self):
        return tuple(torch.from_numpy(array.copy()) for array in self.inputs)


class FidelityModels:
    """The fixture models, stored in the daemon and loaded here on first use."""

    def __init__(self, client, fixtures_dir):
        self.client = client
        self.fixtures_dir = fixtures_dir
        self.classes = _fixture_classes()
        self.loaded = {}

    def __getitem__(self, key):
        if key not in self.loaded:
            spec = MODELS[key]
            path = self.fixtures_dir / spec.file
            if path.suffix == ".pt2":
                # PyTorch's own module for the archive: the reference runs what the file holds.
                torchscript = torch.export.load(str(path)).module()
            else:
                torchscript = load_torchscript(path).eval()
            eager = getattr(self.classes, spec.eager_class)()
            eager.load_state_dict(torchscript.state_dict())
            eager.eval()
            inputs = spec.inputs(self.fixtures_dir)
            tensors = tuple(torch.from_numpy(array) for array in inputs)
            with torch.no_grad():
                # The eager copy is the layer methods' reference only if it computes the same function.
                torch.testing.assert_close(eager(*tensors), torchscript(*tensors), rtol=0, atol=1e-6)
            handle = self.client.add_model(path, name=f"fidelity-{key}")
            self.loaded[key] = LoadedModel(handle, torchscript, eager, inputs)
        return self.loaded[key]


@pytest.fixture(scope="session")
def models(client, fixtures_dir):
    return FidelityModels(client, fixtures_dir)


# --- comparing ----------------------------------------------------------------------------


def assert_matches_captum(actual, expected, what, scale=None):
    """max |actual - expected| <= 1e-5 * (1 + scale), with both numbers on failure; scale
    is max |expected| unless the caller knows the size of what `expected` was computed from."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, the reference's {expected.shape}"
    assert np.isfinite(actual).all(), f"{what}: the daemon answered non-finite values"
    error = np.abs(actual - expected)
    bound = RELATIVE_TOLERANCE * (1.0 + (np.abs(expected).max(initial=0.0) if scale is None else scale))
    if error.max(initial=0.0) > bound:
        where = np.unravel_index(np.argmax(error), error.shape)
        raise AssertionError(
            f"{what}: max |daemon - reference| = {error.max():.3g} > {bound:.3g} at {where}: "
            f"daemon {actual[where]!r}, reference {expected[where]!r}"
        )


def assert_deltas_match_captum(actual, expected, attributions, what):
    """Convergence deltas against Captum's. A delta is sum(attributions of a row) -
    (F(x) - F(baseline)): a small difference of sums whose terms are each within the bar
    of assert_matches_captum, so its rounding scales with the row's sum of |attributions|
    (tens, for a digit) rather than with the delta itself; the bar takes that scale."""
    row_sums = sum(np.abs(np.asarray(value, dtype=np.float64)).reshape(len(value), -1).sum(1) for value in attributions)
    assert_matches_captum(actual, expected, what, scale=float(row_sums.max()))


def output_gaps(model, targets, params):
    """F(x) - F(baseline) per row for integrated gradients' baselines, and the largest
    |F| involved; float64."""
    inputs = model.tensors()
    if params.get("seed") is not None:
        torch.manual_seed(int(params["seed"]))
    baselines = [
        baseline.expand_as(x) if isinstance(baseline, torch.Tensor) else torch.full_like(x, baseline)
        for baseline, x in zip(integrated_gradients_baselines(inputs, params), inputs)
    ]
    with torch.no_grad():
        rows = torch.arange(len(targets))
        at_inputs = model.torchscript(*inputs)[rows, targets].double().numpy()
        at_baselines = model.torchscript(*baselines)[rows, targets].double().numpy()
    return at_inputs - at_baselines, float(max(np.abs(at_inputs).max(), np.abs(at_baselines).max()))


def resolved_targets(model, target):
    """One target per row, as the daemon must resolve `target` (None: the predicted class)."""
    batch = model.inputs[0].shape[0]
    if target is None:
        with torch.no_grad():
            return model.torchscript(*model.tensors()).argmax(1).tolist()
    if isinstance(target, int):
        return [target] * batch
    return list(target)


# --- the cases ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    model: str
    method: str
    # An int for every row, a list with one per row, or None (the predicted class).
    target: object = None
    # Keyword options of Model.attribute: text and numbers under Captum's names, arrays
    # for tensors, a tuple of arrays for one per input.
    params: dict = dataclasses.field(default_factory=dict)
    layer: str = None


def _random(shape, seed, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def _normal(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _quadrant_mask():
    """(1, 8, 8) feature ids: 16 blocks of 2x2 pixels."""
    rows, cols = np.indices((8, 8))
    return ((rows // 2) * 4 + cols // 2)[None].astype(np.float32)


def _six_by_six_quadrants():
    """(1, 6, 6) feature ids 0..3: the four 3x3 quadrants of the two-input model's image."""
    rows, cols = np.indices((6, 6))
    return ((rows // 3) * 2 + cols // 3)[None].astype(np.float32)


# Per-row targets differ from row to row wherever a list is given. The three digits are a
# 7, a 6 and a 3, so DIGITS_TARGETS mixes other classes with the true one.
DIGITS_TARGETS = [6, 9, 3]
MLP_TARGETS = [0, 2, 1]
TWO_INPUT_TARGETS = [3, 0, 1]

CASES = [
    # Gradients.
    Case("saliency-digits", "digits", "saliency", DIGITS_TARGETS),
    Case("saliency-digits-traced-one-target", "digits_traced", "saliency", 4),
    Case("saliency-mlp-signed", "mlp", "saliency", MLP_TARGETS, {"abs": False}),
    Case("saliency-mlp-traced-predicted", "mlp_traced", "saliency", None),
    Case("saliency-two-input", "two_input", "saliency", TWO_INPUT_TARGETS),
    Case("saliency-two-input-traced-predicted", "two_input_traced", "saliency", None, {"abs": False}),
    Case("input-x-gradient-digits-predicted", "digits", "input_x_gradient", None),
    Case("input-x-gradient-mlp-traced", "mlp_traced", "input_x_gradient", MLP_TARGETS),
    Case("input-x-gradient-two-input-traced", "two_input_traced", "input_x_gradient", TWO_INPUT_TARGETS),
    # Integrated gradients: every quadrature rule, every kind of baseline.
    Case("ig-digits-default-steps", "digits", "integrated_gradients", DIGITS_TARGETS),
    Case("ig-digits-gausslegendre", "digits", "integrated_gradients", DIGITS_TARGETS, {"n_steps": 16}),
    Case("ig-digits-traced-riemann-left", "digits_traced", "integrated_gradients", 5,
         {"n_steps": 8, "method": "riemann_left"}),
    Case("ig-digits-riemann-trapezoid-number-baseline", "digits", "integrated_gradients", DIGITS_TARGETS,
         {"n_steps": 12, "method": "riemann_trapezoid", "baselines": 0.25}),
    Case("ig-digits-one-value-baseline", "digits", "integrated_gradients", None,
         {"n_steps": 10, "baselines": np.array([0.1], dtype=np.float32)}),
    Case("ig-digits-blur-baseline", "digits", "integrated_gradients", DIGITS_TARGETS,
         {"n_steps": 10, "baselines": "blur", "blur_sigma": 1.0}),
    Case("ig-digits-traced-uniform-baseline", "digits_traced", "integrated_gradients", DIGITS_TARGETS,
         {"n_steps": 10, "baselines": "uniform", "baseline_low": 0.0, "baseline_high": 0.5, "seed": 3}),
    Case("ig-mlp-riemann-right-row-baseline", "mlp", "integrated_gradients", MLP_TARGETS,
         {"n_steps": 10, "method": "riemann_right", "baselines": _normal((4,), 11, 0.3)}),
    Case("ig-mlp-traced-riemann-middle-full-baseline", "mlp_traced", "integrated_gradients", MLP_TARGETS,
         {"n_steps": 9, "method": "riemann_middle", "baselines": _normal((3, 4), 12, 0.3)}),
    Case("ig-mlp-not-multiplied-by-inputs", "mlp", "integrated_gradients", 1,
         {"n_steps": 8, "multiply_by_inputs": False}),
    Case("ig-two-input-row-baselines", "two_input", "integrated_gradients", TWO_INPUT_TARGETS,
         {"n_steps": 16, "baselines": (_random((1, 6, 6), 13, 0.0, 0.2), _normal((3,), 14, 0.2))}),
    Case("ig-two-input-traced-uniform-trapezoid", "two_input_traced", "integrated_gradients", TWO_INPUT_TARGETS,
         {"n_steps": 6, "method": "riemann_trapezoid", "baselines": "uniform", "seed": 5}),
    # internal_batch_size splits the 3 x 10 path points into passes of 7 rows, which cut
    # steps apart; the answer must not change.
    Case("ig-digits-internal-batch-size", "digits", "integrated_gradients", DIGITS_TARGETS,
         {"n_steps": 10, "internal_batch_size": 7}),
    # Noise tunnel with the daemon's seeded sampler or explicit noise.
    Case("smoothgrad-digits-seeded", "digits", "smoothgrad", DIGITS_TARGETS,
         {"nt_samples": 4, "stdevs": 0.15, "seed": 7}),
    Case("smoothgrad-digits-defaults-seeded", "digits", "smoothgrad", None, {"seed": 1}),
    Case("smoothgrad-sq-digits-traced-partitions", "digits_traced", "smoothgrad_sq", DIGITS_TARGETS,
         {"nt_samples": 5, "nt_samples_batch_size": 2, "stdevs": 0.2, "seed": 8}),
    Case("vargrad-mlp-partitions", "mlp", "vargrad", MLP_TARGETS,
         {"nt_samples": 6, "nt_samples_batch_size": 4, "stdevs": 0.5, "seed": 9}),
    Case("smoothgrad-mlp-traced-input-x-gradient", "mlp_traced", "smoothgrad", MLP_TARGETS,
         {"base_method": "input_x_gradient", "nt_samples": 4, "stdevs": 0.3, "seed": 10}),
    Case("smoothgrad-digits-integrated-gradients", "digits", "smoothgrad", DIGITS_TARGETS,
         {"base_method": "integrated_gradients", "n_steps": 8, "baselines": 0.1, "nt_samples": 3, "stdevs": 0.1,
          "seed": 11}),
    Case("vargrad-two-input-integrated-gradients-uniform", "two_input", "vargrad", TWO_INPUT_TARGETS,
         {"base_method": "integrated_gradients", "n_steps": 6, "method": "riemann_middle", "baselines": "uniform",
          "nt_samples": 3, "stdevs": 0.2, "seed": 12}),
    Case("smoothgrad-two-input-stdev-per-input", "two_input", "smoothgrad", TWO_INPUT_TARGETS,
         {"nt_samples": 4, "stdevs": "0.2,0.5", "abs": False, "seed": 13}),
    Case("smoothgrad-sq-digits-internal-batch-size", "digits", "smoothgrad_sq", DIGITS_TARGETS,
         {"nt_samples": 4, "stdevs": 0.2, "seed": 14, "internal_batch_size": 5}),
    Case("smoothgrad-digits-explicit-noise", "digits", "smoothgrad", DIGITS_TARGETS,
         {"nt_samples": 3, "noise": _normal((9, 1, 8, 8), 15, 0.2)}),
    Case("smoothgrad-sq-mlp-explicit-noise", "mlp", "smoothgrad_sq", MLP_TARGETS,
         {"nt_samples": 2, "noise": _normal((6, 4), 16, 0.5)}),
    Case("vargrad-two-input-traced-explicit-noise", "two_input_traced", "vargrad", TWO_INPUT_TARGETS,
         {"nt_samples": 3, "noise": (_normal((9, 1, 6, 6), 17, 0.2), _normal((9, 3), 18, 0.5))}),
    # GradientSHAP with explicit baseline draws and coefficients, noise seeded or explicit.
    Case("gradient-shap-digits", "digits", "gradient_shap", DIGITS_TARGETS,
         {"baselines": _random((4, 1, 8, 8), 19, 0.0, 0.3), "n_samples": 3,
          "baseline_indices": np.array([0, 3, 1, 2, 2, 0, 3, 1, 0], dtype=np.float32),
          "rand_coefficients": _random((9,), 20)}),
    Case("gradient-shap-mlp-traced-seeded-noise", "mlp_traced", "gradient_shap", MLP_TARGETS,
         {"baselines": _normal((5, 4), 21, 0.5), "n_samples": 4, "stdevs": 0.3, "seed": 22,
          "baseline_indices": np.array([4, 0, 1, 1, 2, 3, 0, 4, 2, 2, 1, 0], dtype=np.float32),
          "rand_coefficients": _random((12,), 23)}),
    Case("gradient-shap-digits-traced-explicit-noise", "digits_traced", "gradient_shap", None,
         {"baselines": _random((2, 1, 8, 8), 24, 0.0, 0.3), "n_samples": 2,
          "noise": _normal((6, 1, 8, 8), 25, 0.1),
          "baseline_indices": np.array([1, 0, 0, 1, 1, 1], dtype=np.float32),
          "rand_coefficients": _random((6,), 26)}),
    Case("gradient-shap-two-input-explicit-noise", "two_input", "gradient_shap", TWO_INPUT_TARGETS,
         {"baselines": (_random((3, 1, 6, 6), 27, 0.0, 0.3), _normal((3, 3), 28, 0.3)),
          "n_samples": 2,
          "noise": (_normal((6, 1, 6, 6), 29, 0.1), _normal((6, 3), 30, 0.1)),
          "baseline_indices": np.array([2, 0, 1, 1, 0, 2], dtype=np.float32),
          "rand_coefficients": _random((6,), 31)}),
    # Occlusion: overlapping windows, strides that leave a cut window at the edge.
    Case("occlusion-digits", "digits", "occlusion", DIGITS_TARGETS, {"sliding_window_shapes": "1,3,3"}),
    Case("occlusion-digits-traced-uneven-strides", "digits_traced", "occlusion", DIGITS_TARGETS,
         {"sliding_window_shapes": "1,3,3", "strides": "1,2,2", "baselines": 0.5}),
    Case("occlusion-digits-disjoint-windows", "digits", "occlusion", None,
         {"sliding_window_shapes": (1, 4, 4), "strides": 4}),
    Case("occlusion-mlp-array-baseline", "mlp", "occlusion", MLP_TARGETS,
         {"sliding_window_shapes": "2", "baselines": _normal((4,), 32, 0.5)}),
    Case("occlusion-digits-internal-batch-size", "digits_traced", "occlusion", DIGITS_TARGETS,
         {"sliding_window_shapes": "1,2,3", "strides": "1,2,1", "internal_batch_size": 5}),
    Case("occlusion-two-input", "two_input", "occlusion", TWO_INPUT_TARGETS,
         {"sliding_window_shapes": "1,2,2", "sliding_window_shapes.1": "2", "strides": "1,2,2", "strides.1": 1}),
    # Feature ablation: default per-element features, shared and per-row masks.
    Case("feature-ablation-digits-predicted", "digits", "feature_ablation", None),
    Case("feature-ablation-digits-quadrants", "digits", "feature_ablation", DIGITS_TARGETS,
         {"feature_mask": _quadrant_mask(), "baselines": 0.3}),
    Case("feature-ablation-digits-traced-row-masks", "digits_traced", "feature_ablation", DIGITS_TARGETS,
         {"feature_mask": np.stack([_quadrant_mask(), _quadrant_mask() // 4, _quadrant_mask() % 3])}),
    Case("feature-ablation-mlp-array-baseline", "mlp", "feature_ablation", MLP_TARGETS,
         {"feature_mask": np.array([0, 0, 1, 2], dtype=np.float32), "baselines": _normal((4,), 33)}),
    Case("feature-ablation-two-input-default", "two_input", "feature_ablation", TWO_INPUT_TARGETS),
    Case("feature-ablation-two-input-traced-disjoint-ids", "two_input_traced", "feature_ablation", TWO_INPUT_TARGETS,
         {"feature_mask": (_six_by_six_quadrants(), np.array([4, 5, 5], dtype=np.float32))}),
    # Captum 0.9 ablates a feature id in every input that holds it, at once
    # (FeatureAblation._attribute_with_cross_tensor_feature_masks).
    Case("feature-ablation-two-input-shared-ids", "two_input", "feature_ablation", TWO_INPUT_TARGETS,
         {"feature_mask": (_six_by_six_quadrants(), np.array([0, 1, 1], dtype=np.float32))}),
    # Layer methods.
    Case("grad-cam-digits", "digits", "grad_cam", DIGITS_TARGETS, layer="features.2"),
    Case("grad-cam-digits-traced", "digits_traced", "grad_cam", DIGITS_TARGETS, layer="features.2"),
    Case("grad-cam-digits-relu-per-channel", "digits", "grad_cam", None,
         {"relu_attributions": True, "attr_dim_summation": False}, layer="features.0"),
    Case("grad-cam-digits-dense-layer", "digits", "grad_cam", DIGITS_TARGETS, layer="classifier.2"),
    Case("grad-cam-two-input", "two_input", "grad_cam", TWO_INPUT_TARGETS, layer="image.0"),
    Case("layer-activation-digits", "digits", "layer_activation", DIGITS_TARGETS, layer="features.4"),
    Case("layer-activation-mlp-traced", "mlp_traced", "layer_activation", None, layer="fc1"),
    Case("layer-gradient-x-activation-digits", "digits", "layer_gradient_x_activation", DIGITS_TARGETS,
         layer="features.1"),
    Case("layer-gradient-x-activation-mlp-traced-gradient-only", "mlp_traced", "layer_gradient_x_activation",
         MLP_TARGETS, {"multiply_by_inputs": False}, layer="fc1"),
    Case("layer-gradient-x-activation-two-input-traced", "two_input_traced", "layer_gradient_x_activation",
         TWO_INPUT_TARGETS, layer="tabular.1"),
]


# Every case on a scripted model runs again on the same module exported with torch.export.
_EXPORTED_TWINS = {"digits": "digits_pt2", "mlp": "mlp_pt2", "two_input": "two_input_pt2"}
CASES += [
    dataclasses.replace(case, id=f"{case.id}-pt2", model=_EXPORTED_TWINS[case.model])
    for case in list(CASES)
    if case.model in _EXPORTED_TWINS
]


# Options whose Captum name is also an argument of Model.attribute: integrated gradients'
# quadrature rule is Captum's `method`, which attribute() takes as the attribution method,
# so the Python client has no way to send it (the CLI does: --param method=riemann_left).
_SHADOWED_OPTIONS = {"method"}


def attribute(model, x, method, target, layer, params):
    """Model.attribute(x, method=..., target=..., layer=..., **params) without a figure.

    A shadowed option (`method`) cannot be passed that way, so such requests are built
    the way Client.attribute builds them, with the option added to the text params.
    """
    if not _SHADOWED_OPTIONS & params.keys():
        return model.attribute(x, method=method, target=target, layer=layer, figure_format=None, **params)
    from layerlens import _wire
    from layerlens._results import Attribution
    from layerlens.v1 import explain_pb2

    client = model.client
    inputs = list(x) if isinstance(x, tuple) else [x]
    tensors = [_wire.array_to_tensor(_wire.as_float32_array(item)) for item in inputs]
    shadowed = {key: params[key] for key in _SHADOWED_OPTIONS & params.keys()}
    text_params, tensor_params = _wire.split_params({key: value for key, value in params.items() if key not in shadowed})
    text_params.update({key: _wire.param_to_string(key, value) for key, value in shadowed.items()})
    request = explain_pb2.AttributeRequest(
        model=model.id, input=tensors[0], extra_inputs=tensors[1:], method=method, params=text_params,
        tensor_params=tensor_params, layer=layer or "", figure_format=_wire.figure_format(None),
    )
    if isinstance(target, list):
        request.targets.extend(target)
    elif target is not None:
        request.target = target
    return Attribution.from_proto(client._call(client._explain.Attribute, request), _wire.tensor_to_array)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_attribution_matches_captum(models, case):
    model = models[case.model]
    params = case.params
    x = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    answer = attribute(model.handle, x, case.method, case.target, case.layer, params)

    targets = resolved_targets(model, case.target)
    assert answer.targets == targets
    assert answer.method == case.method
    expected, expected_deltas = captum_attribution(
        case.method, model.torchscript, model.tensors(), targets, params, eager_model=model.eager, layer=case.layer
    )
    assert len(answer.all_values) == len(expected), f"{len(answer.all_values)} attributions for {len(expected)} inputs"
    for index, (actual, reference) in enumerate(zip(answer.all_values, expected)):
        assert actual.dtype == np.float32
        assert_matches_captum(actual, reference, f"{case.id}: input {index}")

    if case.method == "integrated_gradients":
        assert answer.n_steps == int(params.get("n_steps", 50))
        assert_deltas_match_captum(answer.convergence_deltas, expected_deltas, expected, f"{case.id}: convergence deltas")
        # And each delta is exactly what it claims: the row's own attributions summed,
        # minus F(x) - F(baseline) as PyTorch computes it here.
        gaps, output_scale = output_gaps(model, targets, params)
        own_sums = sum(np.asarray(value, dtype=np.float64).reshape(len(value), -1).sum(1) for value in answer.all_values)
        assert_matches_captum(answer.convergence_deltas, own_sums - gaps, f"{case.id}: deltas from its own sums",
                              scale=output_scale)


def test_convergence_delta_is_the_largest_absolute_delta(models):
    model = models["digits"]
    answer = model.handle.attribute(model.inputs[0], method="integrated_gradients", target=DIGITS_TARGETS, figure_format=None)
    deltas = np.asarray(answer.convergence_deltas)
    assert len(deltas) == 3 and (deltas < 0).any(), "the check needs a negative delta to tell |delta| from delta"
    assert answer.convergence_delta == pytest.approx(np.abs(deltas).max(), rel=1e-12), (
        f"convergence_delta {answer.convergence_delta} for per-row deltas {deltas.tolist()}"
    )


# --- integrated gradients with n_steps="auto" ----------------------------------------------

AUTO_CASES = [
    # An explicit rule keeps Captum's nodes (without one the daemon adapts with
    # Clenshaw-Curtis, checked in test_attribution_metrics.py).
    ("digits", DIGITS_TARGETS, {"n_steps": "auto", "method": "gausslegendre"}),
    # Captum's trapezoid weights sum to (n - 1) / n, so its error shrinks only as 1 / n.
    ("digits_traced", 2, {"n_steps": "auto", "tolerance": 0.02, "method": "riemann_trapezoid", "baselines": 0.2}),
    # Targets whose F(x) - F(0) is not near 0, which would make any relative error huge.
    ("two_input", [2, 0, 1], {"n_steps": "auto", "tolerance": 0.005, "method": "riemann_left"}),
    # A tolerance no step count meets: max_steps ends the doubling.
    ("mlp", MLP_TARGETS, {"n_steps": "auto", "tolerance": 1e-12, "max_steps": 16, "method": "riemann_right"}),
]


def _relative_completeness_error(model, targets, params, n_steps):
    """Captum's IG at n_steps: (attributions, deltas, max |delta| / |F(x) - F(baseline)|)."""
    fixed = dict(params, n_steps=n_steps)
    attributions, deltas = captum_attribution("integrated_gradients", model.torchscript, model.tensors(), targets, fixed)
    gaps, _ = output_gaps(model, targets, params)
    return attributions, deltas, float(np.max(np.abs(deltas) / np.maximum(np.abs(gaps), 1e-12)))


@pytest.mark.parametrize(
    "key, target, params", AUTO_CASES, ids=[f"{key}-{params.get('method', 'gausslegendre')}" for key, _, params in AUTO_CASES]
)
def test_integrated_gradients_auto_steps_double_until_the_tolerance(models, key, target, params):
    model = models[key]
    answer = attribute(model.handle, model.inputs if len(model.inputs) > 1 else model.inputs[0],
                       "integrated_gradients", target, None, params)
    targets = resolved_targets(model, target)
    n_steps = answer.n_steps
    tolerance = float(params.get("tolerance", 0.01))
    max_steps = int(params.get("max_steps", 512))
    assert n_steps is not None and n_steps <= max_steps

    attributions, deltas, error = _relative_completeness_error(model, targets, params, n_steps)
    for index, (actual, expected) in enumerate(zip(answer.all_values, attributions)):
        assert_matches_captum(actual, expected, f"auto steps ({n_steps}): input {index}")
    assert_deltas_match_captum(answer.convergence_deltas, deltas, attributions, f"auto steps ({n_steps}): convergence deltas")
    if error > tolerance:
        # Only the case with a low max_steps is meant to stop short of its tolerance, and
        # only when one more doubling would pass max_steps.
        assert "max_steps" in params and 2 * n_steps > max_steps, (
            f"stopped at {n_steps} steps (max_steps {max_steps}) with relative error {error:.3g} > {tolerance}"
        )
    # The doubling stops at the first count that meets the tolerance: half of it (the
    # nested trapezoid grows n -> 2n - 1, so ceil(n / 2)) must have missed. The daemon
    # starts from a handful of steps (at most 9), so every count from 17 up had one before.
    if n_steps >= 17:
        previous = (n_steps + 1) // 2
        _, _, previous_error = _relative_completeness_error(model, targets, params, previous)
        assert previous_error > tolerance, f"{previous} steps already met the tolerance ({previous_error:.3g})"


# --- the daemon's own sampler, statistically ----------------------------------------------

STATISTICAL_SAMPLES = 256
STATISTICAL_STDEV = 0.1


def _captum_noise_tunnel(model, targets, nt_type, seed, stdev):
    torch.manual_seed(seed)
    return NoiseTunnel(Saliency(model.torchscript)).attribute(
        model.tensors()[0], nt_type=nt_type, nt_samples=STATISTICAL_SAMPLES, stdevs=stdev, target=targets
    ).numpy()


def _sampling_statistics(mean, variance_sum, reference_mean, reference_variance):
    """(mean z^2, max |z|, ratio of summed variances) of a SmoothGrad/VarGrad pair
    against Captum's, z being the difference of two independent means of
    STATISTICAL_SAMPLES draws over its standard error sqrt(2 var / n)."""
    standard_error = np.sqrt(2.0 * reference_variance / STATISTICAL_SAMPLES)
    # Elements whose gradient no noise changes have no variance; a float32-sized floor
    # keeps their z finite (they must agree to rounding anyway).
    z = (mean - reference_mean) / (standard_error + 1e-6 * (1.0 + np.abs(reference_mean).max()))
    return float(np.mean(z * z)), float(np.abs(z).max()), float(variance_sum / reference_variance.sum())


def test_smoothgrad_with_the_daemons_own_draws_estimates_captums_mean(models):
    """SmoothGrad from the daemon's sampler (its seed 21) and Captum's (torch seed 22) are
    two independent 256-sample means of the same distribution: their difference over its
    standard error, element by element, is about N(0, 1). Captum's VarGrad gives each
    element's variance. Thresholds, from 100 Captum-vs-Captum seeds on these digits: mean
    z^2 was at most 1.25 (bound 2), max |z| over the 192 elements at most 4.3 (bound 6),
    and the ratio of summed VarGrads within 0.93..1.02 (bounds 0.9..1.1). A sampler 20%
    off in stdev already gives mean z^2 2.6 and a variance ratio 1.2; the test shows its
    own power on Captum at stdev 0.15 below."""
    model = models["digits"]
    common = {"nt_samples": STATISTICAL_SAMPLES, "stdevs": STATISTICAL_STDEV, "seed": 21}
    smoothgrad = model.handle.attribute(model.inputs[0], method="smoothgrad", target=DIGITS_TARGETS,
                                        figure_format=None, **common).values
    vargrad = model.handle.attribute(model.inputs[0], method="vargrad", target=DIGITS_TARGETS,
                                     figure_format=None, **common).values
    reference_mean = _captum_noise_tunnel(model, DIGITS_TARGETS, "smoothgrad", 22, STATISTICAL_STDEV)
    reference_variance = _captum_noise_tunnel(model, DIGITS_TARGETS, "vargrad", 22, STATISTICAL_STDEV)

    mean_z2, max_z, variance_ratio = _sampling_statistics(smoothgrad, vargrad.sum(), reference_mean, reference_variance)
    assert mean_z2 <= 2.0 and max_z <= 6.0, f"daemon SmoothGrad vs Captum's: mean z^2 {mean_z2:.3g}, max |z| {max_z:.3g}"
    assert 0.9 <= variance_ratio <= 1.1, f"daemon VarGrad sums to {variance_ratio:.3g} x Captum's"

    wrong_mean = _captum_noise_tunnel(model, DIGITS_TARGETS, "smoothgrad", 23, 1.5 * STATISTICAL_STDEV)
    wrong_variance = _captum_noise_tunnel(model, DIGITS_TARGETS, "vargrad", 23, 1.5 * STATISTICAL_STDEV)
    wrong = _sampling_statistics(wrong_mean, wrong_variance.sum(), reference_mean, reference_variance)
    assert wrong[0] > 2.0 and not 0.9 <= wrong[2] <= 1.1, f"the statistic cannot tell stdev 0.15 from 0.1: {wrong}"


def test_seeded_sampling_repeats_and_unseeded_sampling_varies(models):
    model = models["mlp"]
    x = model.inputs[0]

    def smoothgrad(**params):
        return model.handle.attribute(x, method="smoothgrad", target=MLP_TARGETS, figure_format=None,
                                      nt_samples=3, stdevs=0.5, **params).values

    np.testing.assert_array_equal(smoothgrad(seed=4), smoothgrad(seed=4))
    assert not np.array_equal(smoothgrad(seed=4), smoothgrad(seed=5))
    assert not np.array_equal(smoothgrad(), smoothgrad())


# --- bad requests -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BadRequest:
    id: str
    model: str
    method: str
    code: str
    # Every pattern must be found in the message (case-insensitive).
    patterns: tuple
    target: object = 0
    params: dict = dataclasses.field(default_factory=dict)
    layer: str = None


BAD_REQUESTS = [
    BadRequest("unknown-method", "digits", "integrated_gradient", "INVALID_ARGUMENT",
               ("integrated_gradient", "saliency", "integrated_gradients", "occlusion", "grad_cam")),
    BadRequest("occlusion-without-window", "digits", "occlusion", "INVALID_ARGUMENT", ("sliding_window_shapes",)),
    BadRequest("baseline-shape-mismatch", "digits", "integrated_gradients", "INVALID_ARGUMENT",
               ("baselines", r"\[2, 1, 8, 8\]", r"\[3, 1, 8, 8\]"),
               params={"n_steps": 4, "baselines": np.zeros((2, 1, 8, 8), dtype=np.float32)}),
    BadRequest("two-input-baseline-shape-mismatch", "two_input", "integrated_gradients", "INVALID_ARGUMENT",
               (r"baselines\.1", r"\[4\]"),
               params={"n_steps": 4, "baselines": (np.zeros((1, 6, 6), np.float32), np.zeros((4,), np.float32))}),
    BadRequest("zero-steps", "digits", "integrated_gradients", "INVALID_ARGUMENT", ("n_steps", r"\b0\b"),
               params={"n_steps": 0}),
    BadRequest("a-billion-steps", "digits", "integrated_gradients", "INVALID_ARGUMENT", ("n_steps", "1000000000"),
               params={"n_steps": 10**9}),
    BadRequest("unknown-parameter", "digits", "saliency", "INVALID_ARGUMENT", ("n_stepz", "abs"),
               params={"n_stepz": 3}),
    BadRequest("target-out-of-range", "digits", "saliency", "INVALID_ARGUMENT", ("target", r"\b10\b"), target=10),
    BadRequest("negative-target", "mlp", "input_x_gradient", "INVALID_ARGUMENT", ("target", "-1"), target=-1),
    BadRequest("per-row-targets-for-another-batch", "digits", "saliency", "INVALID_ARGUMENT",
               (r"\b2 targets", r"\b3\b"), target=[1, 2]),
    BadRequest("unknown-layer", "digits", "grad_cam", "NOT_FOUND", ("feature.2", "features.2"), layer="feature.2"),
    BadRequest("gradient-shap-without-baselines", "digits", "gradient_shap", "INVALID_ARGUMENT", ("baselines",)),
    BadRequest("noise-of-the-wrong-shape", "digits", "smoothgrad", "INVALID_ARGUMENT", ("noise", r"\[3, 1, 8, 8\]"),
               params={"nt_samples": 2, "noise": np.zeros((3, 1, 8, 8), np.float32)}),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.id for bad in BAD_REQUESTS])
def test_bad_request_is_refused_and_the_daemon_keeps_serving(models, bad):
    model = models[bad.model]
    x = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    with pytest.raises(layerlens.LayerlensError) as raised:
        model.handle.attribute(x, method=bad.method, target=bad.target, layer=bad.layer, figure_format=None, **bad.params)
    error = raised.value
    assert error.code == bad.code, f"{bad.id}: {error.code}: {error.message}"
    for pattern in bad.patterns:
        assert re.search(pattern, error.message, re.IGNORECASE), f"{bad.id}: {pattern!r} not in {error.message!r}"

    # The daemon still answers, and still right.
    answer = model.handle.attribute(x, method="saliency", target=0, figure_format=None)
    expected, _ = captum_attribution("saliency", model.torchscript, model.tensors(), [0] * len(model.inputs[0]), {})
    for actual, reference in zip(answer.all_values, expected):
        assert_matches_captum(actual, reference, f"saliency after {bad.id}")


def test_seeded_smoothgrad_holds_while_two_models_draw_at_once(models, fixtures_dir, tmp_path_factory):
    """Each model has its own worker thread and libtorch's generator is one per process:
    a seeded SmoothGrad's noise is drawn under the daemon's generator lock, so twelve
    requests on two models at once give each seed's answer. (Drawn partition by
    partition between passes, one request's noise could take draws of the other's: one
    sample per partition makes many chances.) A daemon without a result cache, so every
    request runs."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import running_daemon

    digits_x, mlp_x = models["digits"].inputs[0], models["mlp"].inputs[0]
    with running_daemon(tmp_path_factory, ["--cache-bytes", "0"]) as running:
        client = layerlens.connect(f"http://{running.address}", timeout=120)
        digits = client.add_model(fixtures_dir / "digits_cnn.pt", np.zeros((1, 1, 8, 8), np.float32))
        mlp = client.add_model(fixtures_dir / "tiny_mlp_scripted.pt", np.zeros((1, 4), np.float32))
        jobs = [
            lambda: digits.attribute(digits_x, method="smoothgrad", target=DIGITS_TARGETS, figure_format=None,
                                     nt_samples=30, nt_samples_batch_size=1, stdevs=0.2, seed=5).values,
            lambda: mlp.attribute(mlp_x, method="vargrad", target=0, figure_format=None,
                                  nt_samples=40, nt_samples_batch_size=1, stdevs=0.5, seed=6).values,
            lambda: digits.attribute(digits_x, method="smoothgrad_sq", target=DIGITS_TARGETS, figure_format=None,
                                     nt_samples=30, nt_samples_batch_size=2, stdevs=0.3, seed=7).values,
        ]
        alone = [job() for job in jobs]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(lambda index: jobs[index % 3](), range(12)))
        client.close()
    for index, answer in enumerate(together):
        np.testing.assert_allclose(answer, alone[index % 3], rtol=1e-6, atol=1e-7)
