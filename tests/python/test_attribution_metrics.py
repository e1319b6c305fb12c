"""Faithfulness metrics, the sanity check and method comparison, through the real daemon.

infidelity and sensitivity_max are checked against Captum 0.9's own functions on the same
TorchScript model and input, with the perturbations drawn from the same seeded torch
generator (the daemon draws them as Captum's documented perturbation functions do). The
sanity check (Adebayo et al. 2018) is checked on the trained digits CNN: attributions of
a trained model must decorrelate as its layers are randomised from the output down.
"""

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from captum.metrics import infidelity, sensitivity_max

import layerlens

TARGETS = [1, 2, 3]


@pytest.fixture(scope="module")
def batch(digits_images):
    return digits_images[:3]


def close(actual, expected, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    tolerance = 1e-5 * (1.0 + np.abs(expected).max())
    assert np.abs(actual - expected).max() <= tolerance, f"{what}: daemon {actual} vs captum {expected}"


def gaussian_perturbation(std):
    """Captum's documented infidelity perturbation: Gaussian noise, input minus noise."""

    def perturb(inputs):
        noise = torch.empty_like(inputs).normal_(0.0, 1.0) * std
        return noise, inputs - noise

    return perturb


@pytest.mark.parametrize(
    "method, params, captum_attribution",
    [
        ("saliency", {}, lambda model, x: Saliency(model).attribute(x, target=TARGETS)),
        (
            "integrated_gradients",
            {"n_steps": 16},
            lambda model, x: IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=16),
        ),
    ],
)
@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum(digits_model, digits_torchscript, batch, method, params, captum_attribution, normalize):
    answer = digits_model.evaluate(
        batch, method, TARGETS, metrics=["infidelity"],
        metric_params={"seed": 11, "n_perturb_samples": 7, "noise_std": 0.01, "normalize": normalize}, **params,
    )
    x = torch.from_numpy(batch)
    attribution = captum_attribution(digits_torchscript, x)
    torch.manual_seed(11)
    expected = infidelity(
        digits_torchscript, gaussian_perturbation(0.01), x, attribution, target=TARGETS,
        n_perturb_samples=7, normalize=normalize,
    )
    close(answer.infidelity, expected.numpy(), f"infidelity of {method} (normalize={normalize})")
    assert answer.sensitivity_max is None


def test_sensitivity_max_matches_captum(digits_model, digits_torchscript, batch):
    answer = digits_model.evaluate(
        batch, "saliency", TARGETS, metrics=["sensitivity_max"],
        metric_params={"seed": 4, "n_perturb_samples": 5, "perturb_radius": 0.05},
    )
    torch.manual_seed(4)
    expected = sensitivity_max(
        Saliency(digits_torchscript).attribute, torch.from_numpy(batch), target=TARGETS,
        n_perturb_samples=5, perturb_radius=0.05,
    )
    close(answer.sensitivity_max, expected.numpy(), "sensitivity_max of saliency")


@pytest.mark.parametrize(
    "metrics, metric_params, code, needle",
    [
        ([], {}, "INVALID_ARGUMENT", "no metric given"),
        (["fidelity"], {}, "INVALID_ARGUMENT", "unknown metric 'fidelity'"),
        (["infidelity"], {"n_perturb_samples": 0}, "INVALID_ARGUMENT", "n_perturb_samples=0"),
        (["infidelity"], {"radius": 1}, "INVALID_ARGUMENT", "unknown parameter 'radius'"),
    ],
)
def test_evaluate_bad_input(digits_model, batch, metrics, metric_params, code, needle):
    with pytest.raises(layerlens.LayerlensError) as raised:
        digits_model.evaluate(batch, "saliency", TARGETS, metrics=metrics, metric_params=metric_params)
    assert raised.value.code == code
    assert needle in str(raised.value)


@pytest.mark.parametrize(
    "method, params, signed",
    [
        ("saliency", {}, False),
        # Integrated gradients multiplies by (input - baseline): the zero background of a
        # digit is zero in every map, so ranks of |attribution| keep the digit's shape
        # whatever the weights (Adebayo et al. report the same for gradient x input).
        # Signed ranks show the decorrelation.
        ("integrated_gradients", {"n_steps": 16}, True),
    ],
)
def test_sanity_check_decorrelates_a_trained_model(digits_model, digits_images, method, params, signed):
    answer = digits_model.sanity_check(digits_images[:8], method, target=None, seed=3, signed=signed, **params)
    layers = [layer for layer, _, _ in answer.steps]
    # Cascading from the output layer towards the input.
    assert layers == ["classifier.3", "classifier.1", "features.2", "features.0"]
    spearman = answer.spearman
    assert all(len(per_row) == 8 for _, _, per_row in answer.steps)
    assert spearman[-1] < 0.3, f"{method}: still correlated after randomising every layer: {spearman}"
    # Randomising the same model twice with the same seed gives the same answer.
    again = digits_model.sanity_check(digits_images[:8], method, target=None, seed=3, signed=signed, **params)
    assert again.spearman == spearman
    assert answer.figure_mime == "image/png" and answer.figure[:8] == b"\x89PNG\r\n\x1a\n"
    # The resident model was not touched: its attribution is unchanged afterwards.
    before = answer.attribution.values
    after = digits_model.attribute(digits_images[:8], method, target=answer.attribution.targets, figure_format=None, **params).values
    np.testing.assert_array_equal(before, after)


def test_sanity_check_of_an_input_only_method_stays_correlated(client, fixtures_dir, digits_images):
    """The control of the sanity check: a map dominated by the input (input x gradient
    is zero wherever the digit is, whatever the weights) stays rank-correlated under
    |.|, so the check can tell such maps from ones that explain the model."""
    model = client.model("digits")
    answer = model.sanity_check(digits_images[:4], "input_x_gradient", target=None, seed=1)
    # input × gradient keeps the input's zero pattern: |ranks| stay correlated.
    assert answer.spearman[-1] > 0.5, answer.spearman


def test_compare_runs_each_method_with_its_options(digits_model, digits_torchscript, batch):
    comparison = digits_model.compare(
        batch[:1], ["saliency", ("integrated_gradients", {"n_steps": 8}), ("occlusion", {"sliding_window_shapes": (1, 2, 2)}), "grad_cam"],
        target=4, layer="features.2",
    )
    assert [attribution.method for attribution in comparison.attributions] == ["saliency", "integrated_gradients", "occlusion", "grad_cam"]
    x = torch.from_numpy(batch[:1])
    close(comparison["saliency"].values, Saliency(digits_torchscript).attribute(x, target=4).numpy(), "saliency in a comparison")
    close(
        comparison["integrated_gradients"].values,
        IntegratedGradients(digits_torchscript).attribute(x, target=4, n_steps=8).numpy(),
        "integrated gradients in a comparison",
    )
    assert comparison["grad_cam"].values.shape == (1, 1, 8, 8)
    assert comparison.figure_mime == "image/png"
    width, height = np.frombuffer(comparison.figure[16:24], dtype=">u4")
    assert width > 4 * height / 2, "input and four methods side by side"
    with pytest.raises(layerlens.LayerlensError) as raised:
        digits_model.compare(batch[:1], ["saliency", "occlusion"], target=4)
    assert "sliding_window_shapes" in str(raised.value)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right"])
def test_adaptive_integrated_gradients(digits_model, digits_torchscript, batch, rule):
    """n_steps="auto" stops once max |delta| / |F(x) - F(baseline)| is within tolerance,
    and its answer is the fixed-step rule's answer at the step count it settled on (the
    nested Riemann rules reuse earlier gradients, which must not change the result)."""
    tolerance = 0.02
    adaptive = digits_model.attribute(
        batch, "integrated_gradients", TARGETS, n_steps="auto", tolerance=tolerance, figure_format=None, params={"method": rule},
    )
    x = torch.from_numpy(batch)
    with torch.no_grad():
        outputs = digits_torchscript(x)[range(3), TARGETS] - digits_torchscript(torch.zeros_like(x))[range(3), TARGETS]
    relative = np.abs(adaptive.convergence_deltas) / np.abs(outputs.numpy())
    assert relative.max() <= tolerance, relative
    expected = IntegratedGradients(digits_torchscript).attribute(x, target=TARGETS, n_steps=adaptive.n_steps, method=rule)
    close(adaptive.values, expected.numpy(), f"adaptive {rule} at {adaptive.n_steps} steps")
    fixed = digits_model.attribute(batch, "integrated_gradients", TARGETS, n_steps=adaptive.n_steps, figure_format=None, params={"method": rule})
    if rule != "gausslegendre":
        # Reuse: the adaptive run evaluated about as many rows as one fixed run at its
        # final step count (plus the forward passes of each round's delta), not their sum.
        assert adaptive.rows_evaluated < 1.3 * fixed.rows_evaluated, (adaptive.rows_evaluated, fixed.rows_evaluated)


class TokenClassifier(torch.nn.Module):
    """Token ids (batch, length) -> embedding -> mean over positions -> 3 logits."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.embedding(ids).mean(1))


def test_token_ids_attribute_through_the_embedding_layer(client, tmp_path):
    """Integer inputs travel as int64; they have no gradient, so input methods refuse them
    with a hint, and layer methods on the embedding match Captum's."""
    from captum.attr import LayerGradientXActivation

    torch.manual_seed(0)
    model = TokenClassifier().eval()
    path = tmp_path / "tokens.pt"
    torch.jit.script(model).save(str(path))
    handle = client.add_model(path, name="tokens")
    ids = np.array([[1, 5, 7, 9], [3, 3, 2, 49]], dtype=np.int64)
    answer = handle.attribute(ids, "layer_gradient_x_activation", target=[0, 2], layer="embedding", figure_format=None)
    assert answer.values.shape == (2, 4, 8)
    expected = LayerGradientXActivation(model, model.embedding).attribute(torch.from_numpy(ids), target=[0, 2])
    close(answer.values, expected.detach().numpy(), "layer_gradient_x_activation on token ids")
    with pytest.raises(layerlens.LayerlensError) as raised:
        handle.attribute(ids, "saliency", target=0)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "integer inputs (token ids)" in str(raised.value) and "--layer" in str(raised.value)
    # Float ids reach the embedding lookup, which says why it fails.
    with pytest.raises(layerlens.LayerlensError) as raised:
        handle.attribute(ids.astype(np.float32), "saliency", target=0)
    assert "token ids" in str(raised.value)


def test_default_adaptive_integrated_gradients_uses_nested_clenshaw_curtis(digits_model, digits_torchscript, batch):
    """Without a rule, n_steps="auto" doubles Clenshaw-Curtis grids (N = 8, 16, ...: N + 1
    nodes, nested, so every gradient is computed once), stops within the tolerance, and
    lands near the integral (Captum's Gauss-Legendre at 256 steps)."""
    # A ReLU network's gradient jumps along the path, so no rule converges fast; this
    # tolerance is met well before max_steps.
    tolerance = 0.02
    answer = digits_model.attribute(batch, "integrated_gradients", TARGETS, n_steps="auto", tolerance=tolerance, figure_format=None)
    assert answer.n_steps in (9, 17, 33, 65, 129, 257)
    x = torch.from_numpy(batch)
    with torch.no_grad():
        gaps = (digits_torchscript(x)[range(3), TARGETS] - digits_torchscript(torch.zeros_like(x))[range(3), TARGETS]).double().numpy()
    # The deltas are the daemon's own completeness errors: sum of attributions - gap.
    sums = answer.values.reshape(3, -1).astype(np.float64).sum(1)
    np.testing.assert_allclose(answer.convergence_deltas, sums - gaps, rtol=1e-4, atol=1e-5)
    assert (np.abs(answer.convergence_deltas) / np.abs(gaps)).max() <= tolerance
    reference = IntegratedGradients(digits_torchscript).attribute(x, target=TARGETS, n_steps=256).numpy()
    assert np.abs(answer.values - reference).max() <= 0.05 * np.abs(reference).max()
    # Nested nodes: rows evaluated = (N + 1) nodes x 3 rows, plus the forward passes
    # for the targets and the baseline, with no node evaluated twice.
    assert answer.rows_evaluated == answer.n_steps * 3 + 3 + 3
