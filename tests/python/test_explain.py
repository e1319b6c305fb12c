"""Summaries and attributions from a real layerlensd, checked against PyTorch and Captum.

The reference numbers come from the same TorchScript file loaded with torch.jit.load in
this process: the module tree and parameter counts for summaries, Captum's Saliency for
attributions. Bad requests must fail with the right gRPC code and a message naming the
problem, and the daemon must keep serving after each.
"""

import base64
import re

import numpy as np
import pytest
import torch
from captum.attr import Saliency

import layerlens
from conftest import png_size


def captum_saliency(model, x, target, abs=True):
    """Captum's Saliency on the in-process TorchScript model: the reference for the daemon."""
    inputs = torch.from_numpy(x).clone().requires_grad_(True)
    return Saliency(model).attribute(inputs, target=target, abs=abs).detach().numpy()


def test_summary_rows_follow_the_module_tree(digits_model, digits_torchscript):
    summary = digits_model.summary(input_shape=[1, 1, 8, 8])
    modules = list(digits_torchscript.named_modules())
    assert [row["path"] for row in summary.rows] == [path for path, _ in modules]
    for row, (path, module) in zip(summary.rows, modules):
        assert row["depth"] == (0 if path == "" else path.count(".") + 1), path
        n_params = sum(parameter.numel() for parameter in module.parameters())
        assert row["num_params"] == n_params, path
        assert row["trainable_params"] == sum(p.numel() for p in module.parameters() if p.requires_grad), path
        # The daemon writes the qualified name for people; its last part is the class.
        assert row["type"].split(".")[-1] == module.original_name, path
    total = sum(parameter.numel() for parameter in digits_torchscript.parameters())
    assert summary.total_params == summary.trainable_params == total

    table = summary._repr_html_()
    assert "<table" in table and "features" in table and f"{total:,}" in table
    # Rows are indented by depth: a depth-2 row (features.0) sits further right than the root.
    assert "padding-left: 3.0em" in table


def test_summary_depth_leaves_out_deeper_rows(digits_model):
    summary = digits_model.summary(depth=1)
    assert {row["path"] for row in summary.rows} == {"", "features", "classifier"}


def test_summary_to_dataframe(digits_model):
    summary = digits_model.summary()
    try:
        import pandas  # noqa: F401  (optional: layerlens does not depend on it)
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            summary.to_dataframe()
    else:
        frame = summary.to_dataframe()
        assert list(frame["path"]) == [row["path"] for row in summary.rows]
        assert list(frame["num_params"]) == [row["num_params"] for row in summary.rows]


def test_saliency_equals_captum(digits_model, digits_torchscript, digits_images):
    x = digits_images[:4]
    attribution = digits_model.attribute(x, method="saliency", target=3)
    expected = captum_saliency(digits_torchscript, x, target=3)
    assert attribution.values.dtype == np.float32
    assert attribution.values.shape == x.shape
    assert np.abs(attribution.values - expected).max() <= 1e-5
    assert attribution.targets == [3, 3, 3, 3]
    assert attribution.method == "saliency"
    with torch.no_grad():
        logits = digits_torchscript(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(attribution.output, logits, rtol=0, atol=1e-5)


def test_saliency_without_target_explains_the_predicted_class(digits_model, digits_torchscript, digits_images):
    x = digits_images[10:16]
    attribution = digits_model.attribute(torch.from_numpy(x))
    with torch.no_grad():
        predicted = digits_torchscript(torch.from_numpy(x)).argmax(1).tolist()
    assert attribution.targets == predicted
    assert len(set(predicted)) > 1, "the check needs rows with different predicted classes"
    assert attribution.caption == "saliency, targets " + ", ".join(str(target) for target in predicted)
    expected = captum_saliency(digits_torchscript, x, target=predicted)
    assert np.abs(attribution.values - expected).max() <= 1e-5


def test_params_reach_the_daemon(digits_model, digits_torchscript, digits_images):
    x = digits_images[:2]
    attribution = digits_model.attribute(x, method="saliency", target=5, abs=False)
    expected = captum_saliency(digits_torchscript, x, target=5, abs=False)
    assert (expected < 0).any(), "the check needs signed gradients to mean anything"
    assert np.abs(attribution.values - expected).max() <= 1e-5


def test_an_attribution_displays_as_the_daemons_png(digits_model, digits_images):
    attribution = digits_model.attribute(digits_images[:1], target=3)
    assert attribution.figure_mime == "image/png"
    width, height = png_size(attribution.figure)
    assert width > 0 and height > 0
    assert attribution._repr_png_() == attribution.figure
    assert attribution.alt_text
    page = attribution._repr_html_()
    assert "saliency, target 3" in page
    assert base64.b64encode(attribution.figure).decode("ascii") in page


def test_no_figure_when_none_is_asked_for(digits_model, digits_images):
    attribution = digits_model.attribute(digits_images[:1], target=3, figure_format=None)
    assert attribution.figure is None and attribution._repr_png_() is None
    assert attribution.values.shape == (1, 1, 8, 8)


def nan_digit(images):
    x = images[:1].copy()
    x[0, 0, 4, 4] = np.nan
    return x


# (what is wrong, call on (client, digits model, fixtures dir, images), gRPC code, message pattern)
BAD_REQUESTS = [
    ("unknown model", lambda ll, m, fx, im: ll.model("no-such-model"), "NOT_FOUND", r"no-such-model"),
    (
        "unknown model in a request",
        lambda ll, m, fx, im: ll.attribute("0123456789abcdef", im[:1]),
        "NOT_FOUND",
        r"0123456789abcdef",
    ),
    (
        "wrong shape",
        lambda ll, m, fx, im: m.attribute(np.zeros((1, 3, 8, 8), np.float32)),
        "INVALID_ARGUMENT",
        r"(?i)shape|channel",
    ),
    (
        "target out of range",
        lambda ll, m, fx, im: m.attribute(im[:1], target=10),
        "INVALID_ARGUMENT",
        r"(?is)target.*\b10\b|\b10\b.*target",
    ),
    ("NaN input", lambda ll, m, fx, im: m.attribute(nan_digit(im)), "INVALID_ARGUMENT", r"(?i)nan|finite"),
    ("unknown method", lambda ll, m, fx, im: m.attribute(im[:1], method="telepathy"), "INVALID_ARGUMENT", r"telepathy"),
    (
        "not TorchScript",
        lambda ll, m, fx, im: ll.add_model(fx / "not_torchscript.pt"),
        "INVALID_ARGUMENT",
        r"(?i)torchscript",
    ),
]


@pytest.mark.parametrize("problem, call, code, message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_fail_clearly_and_the_daemon_keeps_serving(
    client, digits_model, fixtures_dir, digits_images, problem, call, code, message
):
    with pytest.raises(layerlens.LayerlensError) as caught:
        call(client, digits_model, fixtures_dir, digits_images)
    assert caught.value.code == code, f"{problem}: {caught.value!r}"
    assert re.search(message, str(caught.value)), f"{problem}: the message does not name the problem: {caught.value}"
    # Still serving, and still right.
    assert digits_model.id in {info.id for info in client.models()}
    assert digits_model.attribute(digits_images[:1], target=3, figure_format=None).values.shape == (1, 1, 8, 8)


def test_every_method_the_daemon_serves_runs_from_python(client, digits_model, digits_images):
    """The daemon's method table (Explain.Methods) is the Python client's only list of
    methods: every entry runs through Model.attribute, layer methods with `layer=`, and
    compare() sends the layer once for the daemon to give to the layer methods."""
    methods = client.methods()
    names = [method["name"] for method in methods]
    assert {"saliency", "integrated_gradients", "grad_cam"} <= set(names)
    assert len(names) == len(set(names))
    x = digits_images[:2]
    needs = {
        "gradient_shap": {"baselines": np.zeros((2, 1, 8, 8), dtype=np.float32), "seed": 0},
        "occlusion": {"sliding_window_shapes": (1, 2, 2)},
    }
    for method in methods:
        layer = "features.2" if method["layer"] else None
        answer = digits_model.attribute(x, method=method["name"], target=3, layer=layer, figure_format=None, **needs.get(method["name"], {}))
        assert answer.method == method["name"]
        assert np.isfinite(answer.values).all(), method["name"]
        assert all(option for option in method["options"]), method["name"]
    comparison = digits_model.compare(x, ["saliency", "grad_cam"], target=3, layer="features.2", figure_format=None)
    assert [item.method for item in comparison.attributions] == ["saliency", "grad_cam"]
