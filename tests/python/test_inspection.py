"""Parameters, activations with the anomaly report, and predictions, through a real daemon.

Parameter statistics are checked against numpy on the same TorchScript weights; the
anomaly report must find problems planted in small models (tests/python/
inspection_models.py): dead ReLU channels, the first layer where NaN appears,
sigmoid saturation and an exploding scale, each with its layer path and source line.
"""

import numpy as np
import pytest
import torch

import inspection_models
from conftest import load_torchscript


@pytest.fixture(scope="module")
def planted(client, tmp_path_factory):
    """The planted-problem models, scripted and uploaded; name -> (handle, eager model)."""
    directory = tmp_path_factory.mktemp("planted")
    torch.manual_seed(0)
    models = {}
    for name, cls in [("dead", inspection_models.DeadReluNet), ("nan", inspection_models.NanNet), ("saturated", inspection_models.SaturatedNet)]:
        model = cls().eval()
        path = directory / f"{name}.pt"
        torch.jit.script(model).save(str(path))
        models[name] = (client.add_model(path, name=f"planted-{name}"), model)
    return models


def test_parameter_statistics_match_numpy(digits_model, fixtures_dir):
    report = digits_model.parameters(bins=20)
    weights = dict(load_torchscript(fixtures_dir / "digits_cnn.pt").named_parameters())
    assert [p["name"] for p in report.parameters] == list(weights)
    for parameter in report.parameters:
        values = weights[parameter["name"]].detach().numpy().astype(np.float64)
        stats = parameter["stats"]
        assert parameter["shape"] == list(values.shape)
        assert stats["count"] == values.size
        for key, expected in [("mean", values.mean()), ("std", values.std(ddof=1) if values.size > 1 else 0.0),
                              ("min", values.min()), ("max", values.max()), ("l2_norm", np.sqrt((values ** 2).sum())),
                              ("zero_fraction", (values == 0).mean())]:
            assert stats[key] == pytest.approx(expected, rel=1e-5, abs=1e-7), (parameter["name"], key)
        assert sum(stats["histogram_counts"]) == values.size
        assert len(stats["histogram_edges"]) == 21
    assert report.histograms[:8] == b"\x89PNG\r\n\x1a\n"
    # The digits CNN's first layer is a convolution: its filters come as an image grid.
    assert report.filters[:8] == b"\x89PNG\r\n\x1a\n"
    assert "features.0" in report._alt[1]


def test_dead_relu_channels_are_reported(planted):
    handle, _ = planted["dead"]
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    report = handle.activations(x)
    act = next(layer for layer in report.layers if layer["path"] == "act")
    assert (act["dead_channels"], act["channels"]) == (5, 8)
    dead = [a for a in report.anomalies if a["kind"] == "dead_units"]
    assert len(dead) == 1 and dead[0]["path"] == "act"
    assert dead[0]["severity"] == "error"  # 5 of 8 channels: most of the layer
    assert dead[0]["call_site"].endswith(":" + str(_line_of(inspection_models.DeadReluNet, "self.act(")))
    assert not [a for a in report.anomalies if a["kind"] == "nan"]
    assert report.chart[:8] == b"\x89PNG\r\n\x1a\n"
    # Over a batch of 2 a silent channel is only a hint, not a verdict.
    small = handle.activations(x[:2])
    hint = next(a for a in small.anomalies if a["kind"] == "dead_units")
    assert hint["severity"] == "info" and "batch of 2" in hint["message"]


def test_first_nan_layer_is_reported(planted):
    handle, _ = planted["nan"]
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    report = handle.activations(x)
    nan = [a for a in report.anomalies if a["kind"] == "nan"]
    assert len(nan) == 1, report.anomalies
    assert nan[0]["path"] == "log" and nan[0]["severity"] == "error"
    assert report.anomalies[0]["severity"] == "error"  # most severe first
    body = next(layer for layer in report.layers if layer["path"] == "body")
    assert body["stats"]["nan_count"] == 0


def test_saturation_and_exploding_scale(planted):
    handle, model = planted["saturated"]
    x = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    report = handle.activations(x)
    kinds = {a["kind"]: a for a in report.anomalies}
    assert kinds["saturation"]["path"] == "squash"
    assert kinds["exploding_scale"]["path"] == "blow_up"
    squash = next(layer for layer in report.layers if layer["path"] == "squash")
    with torch.no_grad():
        y = model.squash(model.body(torch.from_numpy(x))).numpy()
    expected = ((y < 0.01) | (y > 0.99)).mean()
    assert squash["saturated_fraction"] == pytest.approx(expected)
    assert squash["stats"]["mean"] == pytest.approx(float(y.mean()), rel=1e-5)


def test_predict_top_k(digits_model, digits_torchscript, digits_images):
    x = digits_images[:3]
    prediction = digits_model.predict(x, top_k=3)
    with torch.no_grad():
        logits = digits_torchscript(torch.from_numpy(x))
    probabilities = torch.softmax(logits.double(), 1)
    expected = torch.topk(probabilities, 3, 1)
    assert prediction.classes == logits.argmax(1).tolist()
    for row, (values, indices) in enumerate(zip(expected.values, expected.indices)):
        assert [c for c, _, _ in prediction.top_k[row]] == indices.tolist()
        assert [p for _, _, p in prediction.top_k[row]] == pytest.approx(values.tolist(), rel=1e-9)
    np.testing.assert_allclose(prediction.output, logits.numpy(), rtol=1e-6, atol=1e-6)


def _line_of(cls, needle):
    """Line number of the first source line of cls containing needle."""
    import inspect

    lines, start = inspect.getsourcelines(cls)
    return start + next(index for index, line in enumerate(lines) if needle in line)
