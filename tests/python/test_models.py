"""Adding, finding and deleting models through the Python client and a real layerlensd.

Covers both ways in: a TorchScript file, and a live nn.Module that the client scripts or
traces itself, including what it says when it can do neither, and that a module already
sent is neither exported nor uploaded a second time.
"""

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

import layerlens
from conftest import load_torchscript
from layerlens import _export


class ScriptableNet(nn.Module):
    """Plain layers: torch.jit.script compiles it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class TraceOnlyNet(nn.Module):
    """A generator expression in forward: TorchScript cannot compile it, tracing records it."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])

    def forward(self, x):
        return sum(branch(x) for branch in self.branches)


class NeitherNet(nn.Module):
    """Calls a lambda (not scriptable) and returns a string in a dict (not traceable)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.describe = lambda tensor: f"{tuple(tensor.shape)}"

    def forward(self, x):
        logits = self.fc(x)
        return {"logits": logits, "note": self.describe(logits)}


class UploadCounter:
    """Wraps the client's Upload stub to count the uploads it makes."""

    def __init__(self, client, monkeypatch):
        self.calls = 0
        upload = client._models.Upload

        def counting_upload(*args, **kwargs):
            self.calls += 1
            return upload(*args, **kwargs)

        monkeypatch.setattr(client._models, "Upload", counting_upload)


class ExportCounter:
    """Wraps the module exporter to count how often a live module is scripted or traced."""

    def __init__(self, monkeypatch):
        self.calls = 0
        export = _export.export_module

        def counting_export(*args, **kwargs):
            self.calls += 1
            return export(*args, **kwargs)

        monkeypatch.setattr(_export, "export_module", counting_export)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_add_a_file_and_find_it_by_id_prefix_and_name(client, fixtures_dir):
    path = fixtures_dir / "tiny_mlp_scripted.pt"
    model = client.add_model(path, example_input=np.zeros((1, 4), np.float32), name="mlp")
    assert model.id == sha256_of(path)
    assert "mlp" in model.names
    assert model.size_bytes == path.stat().st_size
    for reference in ("mlp", model.id, model.id[:8]):
        assert client.model(reference).id == model.id
    listed = {info.id: info for info in client.models()}
    assert listed[model.id].names == model.names
    assert listed[model.id].size_bytes == path.stat().st_size
    assert "mlp" in listed[model.id].names


def test_a_stored_file_is_not_uploaded_again(client, fixtures_dir, monkeypatch):
    path = fixtures_dir / "tiny_cnn_scripted.pt"
    first = client.add_model(path, name="tiny-cnn")
    uploads = UploadCounter(client, monkeypatch)
    again = client.add_model(path, name="tiny-cnn")
    unnamed = client.add_model(path)
    assert again.id == unnamed.id == first.id
    assert uploads.calls == 0


def test_delete_a_model(client, fixtures_dir):
    model = client.add_model(fixtures_dir / "tiny_cnn_traced.pt", name="to-delete")
    assert client.delete(model) == model.id
    assert model.id not in {info.id for info in client.models()}
    for reference in (model.id, "to-delete"):
        with pytest.raises(layerlens.LayerlensError) as caught:
            client.model(reference)
        assert caught.value.code == "NOT_FOUND"
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.delete(model.id)
    assert caught.value.code == "NOT_FOUND"


def test_a_live_module_is_scripted_and_runs_like_the_original(client, tmp_path):
    torch.manual_seed(1)
    module = ScriptableNet()
    module.train()
    x = torch.randn(2, 4)
    model = client.add_model(module, example_input=x, name="live-scripted")
    assert module.training and module.drop.training, "exporting must leave the module's mode as it was"
    assert list(client.model(model.id).info.input_shape) == [2, 4]
    attribution = model.attribute(x, target=1)
    module.eval()
    with torch.no_grad():
        expected = module(x).numpy()
    # Dropout would make these differ if the model ran in training mode.
    np.testing.assert_allclose(attribution.output, expected, rtol=0, atol=1e-5)

    # The daemon may switch models to eval mode itself; the export must not rely on it.
    module.train()
    data, how = _export.export_module(module)
    assert how == "scripted"
    exported_path = tmp_path / "exported.pt"
    exported_path.write_bytes(data)
    exported = load_torchscript(exported_path)
    assert not exported.training and not exported.drop.training
    assert module.training and module.drop.training


def test_a_module_is_exported_and_uploaded_once_until_its_weights_change(client, monkeypatch):
    torch.manual_seed(2)
    module = ScriptableNet()
    exports = ExportCounter(monkeypatch)
    uploads = UploadCounter(client, monkeypatch)
    first = client.add_model(module)
    assert (exports.calls, uploads.calls) == (1, 1)
    second = client.add_model(module)
    via_handle = client.model(module)
    assert second.id == via_handle.id == first.id
    assert (exports.calls, uploads.calls) == (1, 1), "the same module object must not be exported or sent again"

    # Training the module after it was sent must not leave the daemon with stale weights.
    with torch.no_grad():
        module.fc2.bias.add_(1.0)
    changed = client.add_model(module)
    assert changed.id != first.id
    assert (exports.calls, uploads.calls) == (2, 2)


def test_a_module_that_cannot_be_scripted_is_traced_with_the_example_input(client):
    torch.manual_seed(3)
    module = TraceOnlyNet().eval()
    x = torch.randn(1, 4)
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.add_model(module)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "torch.jit.script failed" in str(caught.value) and "example_input" in str(caught.value)

    model = client.add_model(module, example_input=x)
    attribution = model.attribute(x, target=0)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(attribution.output, expected, rtol=0, atol=1e-5)
    # Both linear layers feed output 0, so its input gradient is the sum of their rows.
    expected_saliency = (module.branches[0].weight[0] + module.branches[1].weight[0]).abs().detach().numpy()
    np.testing.assert_allclose(attribution.values[0], expected_saliency, rtol=0, atol=1e-5)


# Tracing NeitherNet formats tensors inside the tracer before it gives up; the warnings
# that causes are noise here.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_module_that_can_be_neither_scripted_nor_traced_is_a_clear_error(client):
    module = NeitherNet()
    with pytest.raises(layerlens.ExportError) as caught:
        client.add_model(module, example_input=torch.randn(1, 4))
    message = str(caught.value)
    assert isinstance(caught.value, layerlens.LayerlensError)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "cannot export NeitherNet" in message
    assert "torch.jit.script failed" in message and "torch.jit.trace" in message
    # The full reasons stay reachable for whoever wants the TorchScript details.
    assert caught.value.__cause__ is not None


def test_add_model_refuses_what_is_neither_a_file_nor_a_module(client, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        client.add_model(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="TorchScript file path or a torch.nn.Module"):
        client.add_model(42)


def test_add_a_file_that_lies_on_the_daemons_machine(client, fixtures_dir, monkeypatch):
    # The session's daemon runs on this machine, so the fixture path is valid for it too.
    path = fixtures_dir / "tiny_mlp_traced.pt"
    uploads = UploadCounter(client, monkeypatch)
    model = client.add_model_from_daemon_path(path, name="mlp-traced", input_shape=(1, 4))
    assert model.id == sha256_of(path)
    assert "mlp-traced" in model.names
    assert list(model.info.input_shape) == [1, 4]
    assert uploads.calls == 0
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.add_model_from_daemon_path(fixtures_dir / "no-such-file.pt")
    assert caught.value.code in ("NOT_FOUND", "INVALID_ARGUMENT")
    assert "no-such-file.pt" in str(caught.value)


def test_a_loaded_torchscript_module_is_sent_as_it_is(client, fixtures_dir):
    module = load_torchscript(fixtures_dir / "tiny_cnn_scripted.pt")
    x = torch.rand(2, 3, 8, 8)
    model = client.add_model(module, name="loaded-script")
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(model.attribute(x, target=4).output, expected, rtol=0, atol=1e-5)
