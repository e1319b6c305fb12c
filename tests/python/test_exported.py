"""torch.export programs (`.pt2`) through a real layerlensd: stored, run by the daemon's
own executor with gradients, and answering like eager PyTorch and like the same module
stored as TorchScript.

The fixture zoo (tests/fixtures/make_fixtures.py) exports each module both ways with the
same weights: the digits CNN, the tabular MLP, the two-input model, torchvision's resnet18,
a small torchvision VisionTransformer and a transformer encoder classifier. References are
computed here, in this process, on the eager module that `torch.export.load(...).module()`
rebuilds from the archive (the same weights and the same function). Captum's own numbers
for every attribution method are in test_attribution_fidelity.py (its `*_pt2` cases) and
torchinfo's rows in test_summary_torchinfo.py (its `*_exported` cases).
"""

import io
import json
import pathlib
import zipfile

import numpy as np
import pytest
import torch

import layerlens

TOLERANCE = 1e-5

ZOO = {
    # fixture: (input shape of one row, number of outputs)
    "digits_cnn.pt2": ((1, 8, 8), 10),
    "tiny_mlp.pt2": ((4,), 3),
    "resnet18.pt2": ((3, 64, 64), 10),
    "small_vit.pt2": ((3, 32, 32), 10),
    "encoder.pt2": ((6, 16), 3),
}


def eager_program(path):
    """The archive's module as PyTorch itself runs it."""
    return torch.export.load(str(path)).module()


def close(actual, expected, what, tolerance=TOLERANCE):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    bound = tolerance * (1.0 + np.abs(expected).max(initial=0.0))
    error = np.abs(actual - expected).max(initial=0.0)
    assert error <= bound, f"{what}: max |daemon - PyTorch| = {error:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def zoo(client, fixtures_dir):
    return {name: client.add_model(fixtures_dir / name, name=f"zoo-{name.replace('.', '-')}") for name in ZOO}


def test_exported_programs_are_stored_with_their_kind_and_example_shape(client, zoo, fixtures_dir):
    listed = {info.id: info for info in client.models()}
    for name, model in zoo.items():
        assert model.kind == "exported", name
        assert listed[model.id].format == "exported"
        row_shape, _ = ZOO[name]
        # Exported with a dynamic batch from a two-row example: that example's shape is
        # the stored default.
        assert list(model.info.input_shape) == [2, *row_shape], name
    assert client.add_model(fixtures_dir / "digits_cnn.pt").kind == "torchscript"


@pytest.mark.parametrize("name", list(ZOO))
def test_predictions_and_saliency_equal_eager_pytorch(zoo, fixtures_dir, name):
    row_shape, n_outputs = ZOO[name]
    model = zoo[name]
    eager = eager_program(fixtures_dir / name)
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, size=(3, *row_shape)).astype(np.float32))
    targets = [0, n_outputs - 1, 1]
    answer = model.attribute(x.numpy(), method="saliency", target=targets, figure_format=None)
    inputs = x.clone().requires_grad_(True)
    output = eager(inputs)
    output[torch.arange(3), torch.tensor(targets)].sum().backward()
    close(answer.output, output.detach().numpy(), f"{name}: output")
    close(answer.values, inputs.grad.abs().numpy(), f"{name}: saliency")


@pytest.mark.parametrize("stem,row_shape", [("resnet18", (3, 64, 64)), ("small_vit", (3, 32, 32)), ("encoder", (6, 16))])
def test_pt2_and_torchscript_of_one_module_give_the_same_answers(client, fixtures_dir, zoo, stem, row_shape):
    exported = zoo[f"{stem}.pt2"]
    scripted = client.add_model(fixtures_dir / f"{stem}.pt", name=f"zoo-{stem}-pt")
    assert scripted.kind == "torchscript"
    x = np.random.default_rng(1).uniform(0, 1, size=(2, *row_shape)).astype(np.float32)
    for method, params in [("saliency", {}), ("integrated_gradients", {"n_steps": 8})]:
        a = exported.attribute(x, method=method, target=1, figure_format=None, **params)
        b = scripted.attribute(x, method=method, target=1, figure_format=None, **params)
        close(a.values, b.values, f"{stem} {method}: .pt2 against .pt", tolerance=1e-4)


def test_layer_methods_and_activations_reach_module_paths(zoo, fixtures_dir):
    model = zoo["resnet18.pt2"]
    x = np.random.default_rng(2).uniform(0, 1, size=(1, 3, 64, 64)).astype(np.float32)
    cam = model.attribute(x, method="grad_cam", target=3, layer="layer4.1.conv2", figure_format=None)
    assert cam.values.shape == (1, 1, 2, 2)
    # Grad-CAM by hand on the eager module: channel means of d score / d layer4.1.conv2,
    # times that layer's output, summed over channels.
    # The archive's own module is one flat graph whose submodules run no hooks: the
    # reference is torchvision's resnet18 carrying the archive's weights.
    import torchvision

    eager = torchvision.models.resnet18(num_classes=10).eval()
    eager.load_state_dict(eager_program(fixtures_dir / "resnet18.pt2").state_dict())
    captured = {}
    handle = eager.get_submodule("layer4.1.conv2").register_forward_hook(lambda module, inputs, output: captured.update(out=output))
    score = eager(torch.from_numpy(x))[0, 3]
    handle.remove()
    (gradient,) = torch.autograd.grad(score, captured["out"])
    expected = (gradient.mean(dim=(2, 3), keepdim=True) * captured["out"]).sum(1, keepdim=True)
    close(cam.values, expected.detach().numpy(), "grad_cam at layer4.1.conv2")

    report = model.activations(x, figure_format=None)
    paths = [layer["path"] for layer in report.layers]
    assert "layer1.0.conv1" in paths and "fc" in paths


def test_dynamic_batch_answers_batches_one_and_seven(zoo, fixtures_dir):
    model = zoo["digits_cnn.pt2"]
    eager = eager_program(fixtures_dir / "digits_cnn.pt2")
    for batch in (1, 7):
        x = np.random.default_rng(batch).uniform(0, 1, size=(batch, 1, 8, 8)).astype(np.float32)
        answer = model.predict(x)
        with torch.no_grad():
            close(answer.output, eager(torch.from_numpy(x)).numpy(), f"batch {batch}")


def test_a_static_export_refuses_another_batch_naming_the_dimension(client, fixtures_dir):
    model = client.add_model(fixtures_dir / "digits_cnn_static.pt2", name="digits-static")
    one = np.random.default_rng(0).uniform(0, 1, size=(1, 1, 8, 8)).astype(np.float32)
    # Integrated gradients runs many rows per pass: the executor splits them into passes of
    # the exported batch size, so the fixed batch never limits an explanation.
    answer = model.attribute(one, method="integrated_gradients", target=2, n_steps=16, figure_format=None)
    reference = client.model("zoo-digits_cnn-pt2").attribute(one, method="integrated_gradients", target=2, n_steps=16, figure_format=None)
    close(answer.values, reference.values, "static and dynamic exports")
    seven = np.random.default_rng(0).uniform(0, 1, size=(7, 1, 8, 8)).astype(np.float32)
    with pytest.raises(layerlens.LayerlensError) as caught:
        model.attribute(seven, method="saliency", target=0)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "dimension 0" in str(caught.value) and "fixed at 1" in str(caught.value)


def _rewrite(source, edit):
    """A copy of a .pt2 archive with `edit(name, bytes) -> bytes or None` applied to each entry."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
        for info in original.infolist():
            data = edit(info.filename, original.read(info.filename))
            if data is not None:
                copy.writestr(info.filename, data)
    return out.getvalue()


def _edit_program(change):
    def edit(name, data):
        if "/models/" in name and name.endswith(".json"):
            program = json.loads(data)
            change(program)
            return json.dumps(program).encode()
        return data

    return edit


def _future_schema(program):
    program["schema_version"]["major"] = 9


def _unknown_operator(program):
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.no_such_operator.default"


def _truncate_weights(name, data):
    return data[: len(data) // 2] if name.endswith("weight_0") else data


def _no_graph(name, data):
    return None if "/models/" in name else data


def _plain_zip(name, data):
    return data


BAD_ARCHIVES = [
    ("future-schema", _edit_program(_future_schema), "schema version 9."),
    ("unknown-operator", _edit_program(_unknown_operator), "aten::no_such_operator"),
    ("truncated-weights", _truncate_weights, "truncated"),
    ("no-graph", _no_graph, "no models/<name>.json graph"),
]


@pytest.mark.parametrize("case,edit,expected", BAD_ARCHIVES, ids=[case[0] for case in BAD_ARCHIVES])
def test_a_bad_archive_is_refused_by_name_and_nothing_is_stored(client, fixtures_dir, tmp_path, case, edit, expected):
    before = {info.id for info in client.models()}
    path = tmp_path / f"{case}.pt2"
    path.write_bytes(_rewrite(fixtures_dir / "digits_cnn.pt2", edit))
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.add_model(path, name=f"bad-{case}")
    assert caught.value.code == "INVALID_ARGUMENT", caught.value
    assert expected in str(caught.value), str(caught.value)
    assert {info.id for info in client.models()} == before
    # The daemon keeps serving.
    assert client.model("zoo-digits_cnn-pt2").summary().rows


def test_a_zip_that_is_not_an_archive_is_refused(client, tmp_path):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.add_model(path)
    assert caught.value.code == "INVALID_ARGUMENT"


def test_a_live_module_with_an_example_is_exported(client):
    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 3)).eval()
    x = torch.randn(5, 4)
    model = client.add_model(module, example_input=x[:1], name="live-exported")
    assert model.exported_as == "exported" and model.kind == "exported"
    answer = model.attribute(x.numpy(), method="input_x_gradient", target=2, figure_format=None)
    inputs = x.clone().requires_grad_(True)
    module(inputs)[:, 2].sum().backward()
    close(answer.values, (inputs.grad * x).numpy(), "input x gradient of a live module")


# --- custom operators ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def custom_op_program(tmp_path_factory):
    """tests/fixtures/custom_op/scaled_relu.cpp built against this torch, loaded here, and a
    module calling it exported to a .pt2: (library path, archive path, eager module)."""
    import subprocess

    from conftest import REPO_ROOT

    torch_dir = pathlib.Path(torch.__file__).parent
    scratch = tmp_path_factory.mktemp("custom-op")
    library = scratch / "libscaled_relu.so"
    subprocess.run(
        ["g++", "-shared", "-fPIC", "-std=c++17", "-O1", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}",
         f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
         str(REPO_ROOT / "tests" / "fixtures" / "custom_op" / "scaled_relu.cpp"),
         f"-L{torch_dir / 'lib'}", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}", "-o", str(library)],
        check=True,
    )
    torch.ops.load_library(str(library))

    class UsesCustomOp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(4, 6)
            self.fc2 = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.fc2(torch.ops.layerlens_test.scaled_relu(self.fc1(x), 1.5))

    torch.manual_seed(7)
    module = UsesCustomOp().eval()
    archive = scratch / "uses_custom_op.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 4),), strict=False), str(archive))
    return library, archive, module


def test_a_custom_operator_is_named_until_its_library_is_loaded(client, custom_op_program, tmp_path_factory):
    from conftest import running_daemon

    library, archive, module = custom_op_program
    with pytest.raises(layerlens.LayerlensError) as caught:
        client.add_model(archive)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "layerlens_test::scaled_relu" in str(caught.value) and "--op-library" in str(caught.value)

    # Exported from a two-row example without a dynamic batch: requests have two rows.
    x = torch.randn(2, 4)
    with running_daemon(tmp_path_factory, ["--op-library", str(library)]) as other:
        with layerlens.connect(f"http://{other.address}") as other_client:
            model = other_client.add_model(archive, name="custom-op")
            answer = model.attribute(x.numpy(), method="saliency", target=2, abs=False, figure_format=None)
    inputs = x.clone().requires_grad_(True)
    output = module(inputs)
    output[:, 2].sum().backward()
    close(answer.output, output.detach().numpy(), "output through the custom operator")
    close(answer.values, inputs.grad.numpy(), "gradient through the custom operator")


# --- a transformers text classifier ---------------------------------------------------------


def test_a_transformers_text_classifier_explains_its_tokens_like_captum(client, fixtures_dir):
    import importlib.util

    from captum.attr import LayerGradientXActivation

    from conftest import FIXTURE_SCRIPT

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURE_SCRIPT)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    path = fixtures_dir / "text_classifier.pt2"
    eager = fixtures.text_classifier().eval()
    eager.load_state_dict(eager_program(path).state_dict())
    model = client.add_model(path, name="text-classifier")
    ids = np.random.default_rng(3).integers(0, 100, size=(3, 8)).astype(np.int64)

    prediction = model.predict(ids)
    with torch.no_grad():
        close(prediction.output, eager(torch.from_numpy(ids)).numpy(), "logits")

    # The stored example is int64 token ids: the summary runs on them without being told.
    summary = model.summary()
    # BERT's SDPA attention passes its dropout's probability to the kernel and never calls
    # the module: the one note names those two modules (one per layer) and no others.
    [note] = summary.notes
    assert note.startswith("2 module(s) have no row: no call of theirs ran an op on this input "
                           "(model.bert.encoder.layer.0.attention.self.dropout, model.bert.encoder.layer.1.attention.self.dropout)"), note
    rows = {row["path"]: row for row in summary.rows}
    assert rows["model.bert.embeddings.word_embeddings"]["output_shape"] == [2, 8, 32]

    layer = "model.bert.embeddings.word_embeddings"
    answer = model.attribute(ids, method="layer_gradient_x_activation", target=[0, 1, 2], layer=layer, figure_format=None)
    reference = LayerGradientXActivation(eager, eager.get_submodule(layer)).attribute(torch.from_numpy(ids), target=[0, 1, 2])
    close(answer.values, reference.detach().numpy(), "layer gradient x activation of the word embeddings")

    with pytest.raises(layerlens.LayerlensError) as caught:
        model.attribute(ids, method="saliency", target=0)
    assert caught.value.code == "INVALID_ARGUMENT" and "embedding" in str(caught.value)
