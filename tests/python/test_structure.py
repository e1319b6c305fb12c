"""Structure through a real daemon: module attributes and buffers, the op graph with
shapes and source lines, its figure, and models with tuple outputs, repeated calls and
ModuleList blocks (tests/python/structure_models.py)."""

import inspect

import numpy as np
import pytest
import torch

import layerlens
import structure_models


@pytest.fixture(scope="module")
def block_net(client, tmp_path_factory):
    torch.manual_seed(0)
    model = structure_models.BlockNet().eval()
    path = tmp_path_factory.mktemp("structure") / "block_net.pt"
    torch.jit.script(model).save(str(path))
    return client.add_model(path, name="block-net"), model


def line_of(function, needle):
    lines, start = inspect.getsourcelines(function)
    return start + next(index for index, line in enumerate(lines) if needle in line)


def test_summary_rows_carry_attributes_buffers_and_every_call(block_net):
    handle, model = block_net
    summary = handle.summary((2, 3, 16, 16))
    rows = {(row["path"], row["call_index"]): row for row in summary.rows}
    stem = rows[("stem", 0)]
    assert stem["attributes"]["kernel_size"] == [3, 3]
    assert stem["attributes"]["stride"] == [2, 2]
    assert stem["attributes"]["padding"] == [1, 1]
    assert stem["output_shape"] == [2, 8, 8, 8]
    norm = rows[("norm", 0)]
    assert norm["attributes"]["eps"] == pytest.approx(1e-5)
    # running_mean, running_var (8 each) and num_batches_tracked (1).
    assert norm["num_buffers"] == 17
    assert summary.rows[0]["num_buffers"] == 17
    # Blocks reached through the ModuleList keep their full path; each block's ReLU
    # is called twice.
    for block in ("blocks.0", "blocks.1"):
        assert rows[(f"{block}.act", 0)]["output_shape"] == [2, 8, 8, 8]
        assert (f"{block}.act", 1) in rows
        assert rows[(block, 0)]["num_params"] == sum(p.numel() for p in model.blocks[0].parameters())
    # The call site of `self.stem(x)` in BlockNet.forward.
    assert rows[("stem", 0)]["call_site"].endswith(f"structure_models.py:{line_of(structure_models.BlockNet.forward, 'self.stem(x)')}")
    # A tuple output: the root row has no single output shape, the head's is known.
    assert rows[("head", 0)]["output_shape"] == [2, 4]
    assert summary.notes == []


def test_graph_has_ops_shapes_and_sources(block_net):
    handle, _ = block_net
    graph = handle.graph((1, 3, 16, 16))
    ops = [op for op, _, _ in graph.nodes]
    assert ops.count("conv2d") == 3 and "batch_norm" in ops and "linear" in ops
    modules = {module for _, module, _ in graph.nodes}
    assert {"stem", "norm", "blocks.0.conv", "blocks.1.conv", "head"} <= modules
    conv = next(index for index, (op, module, _) in enumerate(graph.nodes) if module == "stem")
    out_shapes = {tuple(shape) for frm, _, shape in graph.edges if frm == conv}
    assert out_shapes == {(1, 8, 8, 8)}
    # Every op has a source location in PyTorch's or the model's Python files.
    assert all(source.rsplit(":", 1)[-1].isdigit() for _, _, source in graph.nodes if source)
    assert graph.figure_mime == "image/svg+xml"
    text = graph.figure.decode()
    assert "1×8×8×8" in text and "<text" in text
    folded = handle.graph((1, 3, 16, 16), depth=1, collapse_repeats=True)
    assert folded.figure_mime == "image/svg+xml"
    assert "×2" in folded.alt_text, folded.alt_text
    # Only `blocks.0` open: blocks.1 becomes one box, blocks.0 a frame around its ops.
    opened = handle.graph((1, 3, 16, 16), open=["blocks.0"])
    boxes = lambda graph: int(graph.alt_text.split(": ", 1)[1].split(" ")[0])  # noqa: E731
    assert boxes(opened) < boxes(graph), (opened.alt_text, graph.alt_text)
    assert "blocks.0: " in opened.figure.decode() and ">blocks.1<" in opened.figure.decode()


def test_tuple_output_models_refuse_attribution_clearly(block_net):
    handle, _ = block_net
    x = np.zeros((1, 3, 16, 16), dtype=np.float32)
    with pytest.raises(layerlens.LayerlensError) as raised:
        handle.attribute(x, "saliency", target=0)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "tuple" in str(raised.value)
    # Activations only need the layers' outputs: they work.
    report = handle.activations(x)
    assert [layer["path"] for layer in report.layers][:3] == ["stem", "norm", "act"]


@pytest.mark.parametrize(
    "fixture, shape, hint",
    [
        ("digits_cnn.pt", (1, 3, 8, 8), "the first layer, features.0 (torch.nn.Conv2d), takes 1 input channels: (N, 1, H, W)"),
        ("tiny_mlp_scripted.pt", (2, 7), "the first layer, fc1 (torch.nn.Linear), takes 4 input features: (N, ..., 4)"),
    ],
)
def test_rejected_shapes_name_what_the_first_layer_expects(client, fixtures_dir, fixture, shape, hint):
    handle = client.add_model(fixtures_dir / fixture)
    with pytest.raises(layerlens.LayerlensError) as raised:
        handle.predict(np.zeros(shape, dtype=np.float32))
    assert raised.value.code == "INVALID_ARGUMENT"
    # Refused by the shape stored with the model (when an earlier test stored one) or by
    # the model itself: either way the message names the shape and the first layer.
    assert str(list(shape)) in str(raised.value)
    assert hint in str(raised.value)


def test_two_input_models_get_summaries_and_graphs_for_both_inputs(client, fixtures_dir):
    # TwoInputNet: image (N, 1, 6, 6) through conv -> relu -> flatten -> linear, features
    # (N, 3) through linear -> tanh -> linear, the two logits added.
    handle = client.add_model(fixtures_dir / "two_input_scripted.pt", name="structure-two-input")
    summary = handle.summary([(2, 1, 6, 6), (2, 3)])
    assert summary.notes == []
    rows = {row["path"]: row for row in summary.rows}
    assert rows[""]["input_shape"] == [[2, 1, 6, 6], [2, 3]]
    assert rows[""]["output_shape"] == [2, 4]
    assert rows["image.0"]["input_shape"] == [2, 1, 6, 6] and rows["image.0"]["output_shape"] == [2, 4, 6, 6]
    assert rows["tabular.0"]["input_shape"] == [2, 3] and rows["tabular.0"]["output_shape"] == [2, 8]
    assert summary.input_bytes == (2 * 36 + 2 * 3) * 4

    graph = handle.graph([(1, 1, 6, 6), (1, 3)])
    ops = [op for op, _, _ in graph.nodes]
    assert ops.count("conv2d") == 1 and ops.count("linear") == 3 and "add" in ops
    linear_in = {tuple(shape) for frm, to, shape in graph.edges if graph.nodes[to][1] == "tabular.2"}
    assert linear_in == {(1, 8)}
    text = graph.figure.decode()
    assert "input 0" in text and "input 1" in text

    # One shape for a model that takes two: libtorch's message names the missing argument.
    with pytest.raises(layerlens.LayerlensError) as error:
        handle.summary((2, 1, 6, 6))
    assert "features" in str(error.value), str(error.value)
    # Mismatched dtype lists are refused before any request.
    with pytest.raises(ValueError, match="2 input dtypes for 1 input shapes"):
        handle.summary([(2, 1, 6, 6)], input_dtype=["float32", "int64"])


def test_activation_statistics_match_forward_hooks_on_the_eager_model(block_net):
    """Every module call's statistics against the same call's output recorded by forward
    hooks on the eager model: BlockNet calls each block's ReLU twice, and a block's
    output is its second ReLU's output (one tensor for two layers)."""
    handle, model = block_net
    x = np.random.default_rng(3).standard_normal((6, 3, 16, 16)).astype(np.float32)
    recorded = {}

    def hook(name):
        def record(module, args, output):
            if isinstance(output, torch.Tensor):
                recorded.setdefault(name, []).append(output.detach().clone())
        return record

    hooks = [module.register_forward_hook(hook(name)) for name, module in model.named_modules() if name]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for registered in hooks:
        registered.remove()

    report = handle.activations(x, bins=10)
    compared = 0
    for layer in report.layers:
        expected = recorded[layer["path"]][layer["call_index"]].double().numpy()
        stats, where = layer["stats"], f"{layer['path']} call {layer['call_index']}"
        assert layer["shape"] == list(expected.shape), where
        assert stats["count"] == expected.size, where
        for key, value in [("mean", expected.mean()), ("std", expected.std(ddof=1)), ("min", expected.min()),
                           ("max", expected.max()), ("l2_norm", np.sqrt((expected ** 2).sum())),
                           ("zero_fraction", (expected == 0).mean())]:
            assert stats[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (where, key)
        assert sum(stats["histogram_counts"]) == expected.size, where
        if layer["type"].endswith("ReLU"):
            assert layer["nonpositive_fraction"] == pytest.approx((expected <= 0).mean()), where
            per_channel_max = expected.transpose(1, 0, 2, 3).reshape(expected.shape[1], -1).max(axis=1)
            assert layer["dead_channels"] == int((per_channel_max <= 0).sum()), where
        compared += 1
    assert compared == sum(len(outputs) for outputs in recorded.values())
    assert {(layer["path"], layer["call_index"]) for layer in report.layers} >= {("blocks.0.act", 1), ("blocks.1", 0)}


def test_scripted_branches_are_tapped_and_drawn(client, tmp_path):
    # Scripted TransformerEncoderLayers hold the fused fast path and the slow path's
    # module calls in the two branches of an `if`; both show in the graph, and the
    # calls of the path that ran get shapes in the summary.
    from test_summary_torchinfo import small_transformer_encoder

    torch.manual_seed(0)
    path = tmp_path / "encoder.pt"
    torch.jit.script(small_transformer_encoder().eval()).save(str(path))
    handle = client.add_model(path, name="structure-scripted-encoder")
    graph = handle.graph((2, 10, 32))
    ops = [op for op, _, _ in graph.nodes]
    assert ops.count("linear") >= 4 and ops.count("layer_norm") >= 4, ops
    modules = {module for _, module, _ in graph.nodes}
    assert {"layers.0.linear1", "layers.1.norm2"} <= modules
    summary = handle.summary((2, 10, 32))
    rows = {row["path"]: row for row in summary.rows}
    assert rows["layers.0.linear1"]["output_shape"] == [2, 10, 64]
    assert rows["layers.1.self_attn"]["output_shape"] == [2, 10, 32]
    # MultiheadAttention uses its out_proj's weights without calling it: no call, no row.
    [note] = summary.notes
    assert note.startswith("2 module(s) have no row: no call of theirs ran an op on this input "
                           "(layers.0.self_attn.out_proj, layers.1.self_attn.out_proj). "), note
