"""`layerlens.explain`, the raw numbers behind displayed results (records, DataFrames)
and their HTML, against a real layerlensd with PyTorch as the reference."""

import numpy as np
import pytest
import torch
from torch import nn

import layerlens
from layerlens import _export
from test_models import NeitherNet


@pytest.fixture
def env_client(daemon, monkeypatch):
    """explain()'s default client, made from LAYERLENS_ADDR for this test and dropped after."""
    monkeypatch.setenv("LAYERLENS_ADDR", f"http://{daemon.address}")
    monkeypatch.delenv("LAYERLENS_TOKEN", raising=False)
    layerlens.set_default_client(None)
    yield
    layerlens.default_client().close()
    layerlens.set_default_client(None)


def test_explain_exports_a_live_module_once_and_matches_the_gradient(env_client, daemon, monkeypatch):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    exports = []
    real_export = _export.export_module
    monkeypatch.setattr(_export, "export_module", lambda *args: exports.append(1) or real_export(*args))
    x = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)

    first = layerlens.explain(module, x, target=2)
    second = layerlens.explain(module, x, method="input_x_gradient", target=2)
    assert len(exports) == 1, "the second call reuses the first export"
    assert layerlens.default_client().address == f"http://{daemon.address}", "the default client follows LAYERLENS_ADDR"

    inputs = torch.from_numpy(x).requires_grad_(True)
    module(inputs)[:, 2].sum().backward()
    gradient = inputs.grad.numpy()
    np.testing.assert_allclose(first.values, np.abs(gradient), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second.values, gradient * x, rtol=1e-5, atol=1e-6)
    assert first.caption == "saliency, target 2" and "<figcaption>saliency, target 2</figcaption>" in first._repr_html_()


def test_explain_takes_stored_models_and_files(client, digits_model, digits_images, fixtures_dir):
    x = digits_images[:1]
    by_name = layerlens.explain("digits", x, target=4, client=client)
    by_file = layerlens.explain(fixtures_dir / "digits_cnn.pt", x, target=4, client=client)
    by_handle = layerlens.explain(digits_model, x, target=4, client=client)
    assert by_name.model_id == by_file.model_id == by_handle.model_id == digits_model.id
    np.testing.assert_array_equal(by_name.values, by_file.values)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_explain_says_why_a_module_cannot_be_exported(client):
    with pytest.raises(layerlens.ExportError) as caught:
        layerlens.explain(NeitherNet(), np.zeros((1, 4), dtype=np.float32), client=client)
    message = str(caught.value)
    assert message.startswith("layerlens.explain: cannot export NeitherNet")
    assert "torch.jit.script failed" in message and "torch.jit.trace" in message


def test_reports_expose_flat_records_and_dataframes(digits_model, digits_images, digits_torchscript):
    parameters = digits_model.parameters(figure_format=None)
    records = parameters.records()
    assert [record["name"] for record in records] == [name for name, _ in digits_torchscript.named_parameters()]
    assert sum(record["count"] for record in records) == sum(p.numel() for p in digits_torchscript.parameters())
    weight = dict(digits_torchscript.named_parameters())["features.0.weight"].detach().numpy()
    first = records[0]
    assert first["mean"] == pytest.approx(weight.mean(), rel=1e-5) and first["max"] == pytest.approx(weight.max())
    assert not any(key.startswith("histogram") for key in first)

    activations = digits_model.activations(digits_images[:16], figure_format=None)
    layer_records = activations.records()
    assert [record["path"] for record in layer_records] == [layer["path"] for layer in activations.layers]
    flagged = {anomaly["path"] for anomaly in activations.anomalies}
    assert {record["path"] for record in layer_records if record["anomalies"]} == flagged
    page = activations._repr_html_()
    assert "per-layer statistics" in page and "features.0" in page

    summary = digits_model.summary(input_shape=[1, 1, 8, 8])
    for result, name in [(parameters, "ParameterReport"), (activations, "ActivationReport"), (summary, "Summary")]:
        try:
            import pandas  # noqa: F401  (optional: layerlens does not depend on it)
        except ImportError:
            with pytest.raises(ImportError, match=rf"{name}\.to_dataframe\(\) needs pandas.*pip install pandas"):
                result.to_dataframe()
        else:
            frame = result.to_dataframe()
            assert len(frame) == len(result.rows if name == "Summary" else result.records())


def test_summary_html_collapses_by_top_level_module(digits_model):
    summary = digits_model.summary(input_shape=[1, 1, 8, 8])
    page = summary._repr_html_()
    # The root row, then features and classifier each in a <details> (open: a small model).
    assert page.count("<details open") == 2
    features_section = page[page.index("<details"):page.index("</details>")]
    assert "features.0" in features_section and "classifier" not in features_section.split("</summary>")[1]
    # The column widths are the same in every part, so the columns line up.
    assert page.count("<colgroup>") == page.count("<table")
