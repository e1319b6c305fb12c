"""The daemon's torchinfo-style summary, checked row by row against torchinfo 1.8 itself.

Each case in MODEL_CASES builds a model with seeded random weights, saves it as TorchScript
(scripted where that keeps every module call visible, traced otherwise), stores it in the
session's layerlensd and asks for its summary. torchinfo.summary runs on the same eager
module, with the same weights and the same input shape, in this process; its
`summary_list` (one LayerInfo per module call, in call order) is the reference. The two
lists are matched in order and must agree on the module path, depth, parameter count and
output shape of every row exactly, and on the mult-adds of every leaf row within 1%. The
totals and the size footer (bytes) must equal torchinfo's ModelStatistics, and a summary
cut at depth 1 must keep only the shallow rows, each cut-off row carrying the mult-adds of
all the leaf calls below it.

Where layerlens and torchinfo differ on purpose, the test says so next to the check:
tied weights are counted once by layerlens and twice by torchinfo, and torchinfo's input
size includes the Python object header of each input tensor's storage.
"""

import dataclasses
import inspect
import sys
import warnings

import pytest
import torch
import torchinfo
import torchvision
from torch import nn

# Mult-adds are a count, not a measurement, and layerlens reimplements torchinfo's
# formula; 1% leaves room only for a differently rounded product, not for a different
# rule.
MULT_ADDS_RELATIVE_TOLERANCE = 0.01
# torchinfo's summary_list holds every row whatever `depth` it is given (depth only cuts
# the printed table); a large value just documents that all rows are wanted.
TORCHINFO_DEPTH = 100
SEED = 0


class TokenLSTM(nn.Module):
    """Token ids (batch, seq_len) -> embedding -> 2-layer LSTM -> class logits of the last step."""

    def __init__(self, vocab_size=100, embedding_dim=16, hidden_size=32, n_classes=5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, tokens):
        outputs, _ = self.lstm(self.embedding(tokens))
        return self.head(outputs[:, -1])


class TiedLanguageModel(nn.Module):
    """Token ids (batch, seq_len) -> next-token logits, the output layer reusing the
    embedding matrix (weight tying, as in GPT-2): one (vocab_size, dim) tensor, two modules."""

    def __init__(self, vocab_size=50, dim=16):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.hidden = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        self.output.weight = self.embedding.weight

    def forward(self, tokens):
        return self.output(torch.tanh(self.hidden(self.embedding(tokens))))


class ImageAndFeatures(nn.Module):
    """Two inputs: an image (batch, 1, 8, 8) through a conv branch and features (batch, 5)
    through an MLP branch, concatenated into a linear head -> (batch, 3)."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(5, 6), nn.Tanh())
        self.head = nn.Linear(4 * 8 * 8 + 6, 3)

    def forward(self, image, features):
        return self.head(torch.cat([self.image(image), self.features(features)], dim=1))


def small_transformer_encoder():
    """Two TransformerEncoderLayers, d_model 32, batch_first: (batch, seq_len, 32) in and out."""
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    # No nested tensors: the input has no padding mask, and the flag only adds a warning.
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """One model of the table: how to build it, how to export it and what to feed it."""

    name: str
    build: object
    # One shape, or a list of shapes for a model with several inputs.
    input_shape: object
    input_dtype: str
    export: str
    why_export: str
    check_trace: bool = True
    tied_weights: bool = False

    def __str__(self):
        return self.name

    @property
    def input_shapes(self):
        return list(self.input_shape) if isinstance(self.input_shape, list) else [self.input_shape]


MODEL_CASES = [
    ModelCase(
        "resnet18_scripted", lambda: torchvision.models.resnet18(weights=None), (1, 3, 224, 224), "float32", "script",
        "torchvision models are scriptable and ResNet's forward has no data-dependent branches",
    ),
    ModelCase(
        "resnet18_traced", lambda: torchvision.models.resnet18(weights=None), (1, 3, 224, 224), "float32", "trace",
        "the same network through the tracer: its graph records the same module calls differently",
    ),
    ModelCase(
        "mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(weights=None), (1, 3, 224, 224), "float32",
        "script", "scriptable; squeeze-excitation blocks and Hardswish make many small leaf calls",
    ),
    ModelCase(
        "vgg11_bn", lambda: torchvision.models.vgg11_bn(weights=None), (1, 3, 224, 224), "float32", "script",
        "scriptable; 132M parameters, so the footer's byte counts are large",
    ),
    ModelCase(
        "token_lstm", TokenLSTM, (2, 12), "int64", "trace",
        "a scripted nn.LSTM keeps the branches of its forward for packed sequences and unbatched "
        "inputs; the trace holds the one path token ids take",
    ),
    ModelCase(
        "transformer_encoder", small_transformer_encoder, (2, 10, 32), "float32", "trace",
        "scripted TransformerEncoderLayers keep the fused fast path behind data-dependent "
        "branches, so the calls inside them would have no shapes. The trace is taken with grad "
        "enabled, which rules the fast path out and records the module calls of the slow path; "
        "the trace checker re-traces under torch.no_grad, takes the fast path and reports a "
        "different graph, hence check_trace=False",
        check_trace=False,
    ),
    ModelCase(
        "token_lstm_scripted", TokenLSTM, (2, 12), "int64", "script",
        "the scripted nn.LSTM keeps its branches for packed sequences and unbatched inputs; "
        "the daemon lifts values out of branches and returns tuples' tensors directly, so "
        "the call that ran has its shape",
    ),
    ModelCase(
        "transformer_encoder_scripted", small_transformer_encoder, (2, 10, 32), "float32", "script",
        "scripted encoder layers hold the fused fast path and the module calls of the slow "
        "path in branches; the summary runs with grad mode on, as torchinfo does, so the "
        "slow path runs and the calls in the branch not taken are left out",
    ),
    ModelCase(
        "two_inputs", ImageAndFeatures, [(2, 1, 8, 8), (2, 5)], "float32", "script",
        "scriptable; two inputs, so the summary gets one sample input per forward argument",
    ),
    ModelCase(
        "tied_embedding", TiedLanguageModel, (2, 7), "int64", "script",
        "scriptable; the saved file keeps the embedding and output weight as one tensor",
        tied_weights=True,
    ),
    ModelCase(
        "efficientnet_b0_scripted", lambda: torchvision.models.efficientnet_b0(weights=None), (1, 3, 64, 64), "float32",
        "script", "StochasticDepth returns its input in eval mode, so no op of the call makes its output: the "
        "daemon marks what every call returns before inlining, and the calls of blocks without a residual "
        "connection (in a branch not taken) are left out, as torchinfo leaves them out",
    ),
    ModelCase(
        "convnext_tiny_scripted", lambda: torchvision.models.convnext_tiny(weights=None), (1, 3, 64, 64), "float32",
        "script", "every CNBlock ends in a StochasticDepth call that returns its input; layer scale is a parameter "
        "owned by the block itself",
    ),
    # The same networks as torch.export archives (.pt2), run by the daemon's own executor:
    # module calls come from each node's nn_module_stack instead of TorchScript call stacks.
    ModelCase(
        "resnet18_exported", lambda: torchvision.models.resnet18(weights=None), (1, 3, 224, 224), "float32", "export",
        "torch.export records every module call; in-place ReLUs and additions run out of place",
    ),
    ModelCase(
        "mobilenet_v3_small_exported", lambda: torchvision.models.mobilenet_v3_small(weights=None), (1, 3, 224, 224),
        "float32", "export", "squeeze-excitation blocks and Hardswish through the executor",
    ),
    ModelCase(
        "transformer_encoder_exported", small_transformer_encoder, (2, 10, 32), "float32", "export",
        "export traces the slow path with grad enabled, so every module call of the encoder layers is a node run",
    ),
    ModelCase(
        "token_lstm_exported", TokenLSTM, (2, 12), "int64", "export",
        "an embedding over int64 token ids and aten::lstm with its weights passed as a tensor list",
    ),
    ModelCase(
        "two_inputs_exported", ImageAndFeatures, [(2, 1, 8, 8), (2, 5)], "float32", "export",
        "two user inputs bound in the order of the program's signature",
    ),
]


@dataclasses.dataclass
class Measured:
    """What one case produced: the daemon's summaries and torchinfo's rows and totals as plain data."""

    summary: object
    summary_depth_one: object
    torchinfo_rows: list
    torchinfo_stats: dict
    unique_params: int
    unique_param_bytes: int
    torchinfo_input_overhead_bytes: int


_measured = {}


def torchinfo_path(layer_info):
    """The dotted module path of a torchinfo LayerInfo ("" for the root).

    LayerInfo keeps only the attribute name (`var_name`); the path is rebuilt from the chain
    of parents, whose root carries the model's class name instead of a path part.
    """
    parts = []
    while layer_info.parent_info is not None:
        parts.append(layer_info.var_name)
        layer_info = layer_info.parent_info
    return ".".join(reversed(parts))


def export_torchscript(module, example_input, case, path):
    """Saves the module as TorchScript the way the case says, at path."""
    # torch 2.11 marks torch.jit as deprecated and the tracer warns about Python booleans
    # in nn.functional; exporting TorchScript is the point here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.export == "export":
            program = torch.export.export(module, example_input if isinstance(example_input, tuple) else (example_input,), strict=False)
            torch.export.save(program, str(path))
            return
        if case.export == "script":
            exported = torch.jit.script(module)
        else:
            with torch.enable_grad():
                exported = torch.jit.trace(module, example_input, check_trace=case.check_trace)
        exported.save(str(path))


def measure(case, client, tmp_path_factory):
    """Runs the case once per session (the large models take seconds) and keeps plain data only."""
    if case.name in _measured:
        return _measured[case.name]
    torch.manual_seed(SEED)
    module = case.build().eval()
    dtype = torch.int64 if case.input_dtype == "int64" else torch.float32
    # The daemon runs the model on zeros; torchinfo's input is torch.rand cast to the
    # dtype, which for token ids is zeros too. Shapes do not depend on the values.
    example_inputs = tuple(torch.zeros(shape, dtype=dtype) for shape in case.input_shapes)
    path = tmp_path_factory.mktemp(case.name) / (f"{case.name}.pt2" if case.export == "export" else f"{case.name}.pt")
    export_torchscript(module, example_inputs if len(example_inputs) > 1 else example_inputs[0], case, path)

    model = client.add_model(path, name=f"torchinfo-{case.name}")
    path.unlink()
    # One shape as a list of ints; several as a list of lists, one per forward argument.
    shapes = [list(shape) for shape in case.input_shapes]
    daemon_shape = shapes if len(shapes) > 1 else shapes[0]
    summary = model.summary(daemon_shape, input_dtype=case.input_dtype)
    summary_depth_one = model.summary(daemon_shape, depth=1, input_dtype=case.input_dtype)
    model.delete()

    statistics = torchinfo.summary(
        module, input_size=case.input_shapes, dtypes=[dtype] * len(shapes), depth=TORCHINFO_DEPTH, verbose=0, device="cpu"
    )
    rows = [
        {
            "path": torchinfo_path(layer),
            "type": layer.class_name,
            "depth": layer.depth,
            "num_params": layer.num_params,
            "output_shape": list(layer.output_size),
            "mult_adds": layer.macs,
            "is_leaf": layer.is_leaf_layer,
            "is_recursive": layer.is_recursive,
            "executed": layer.executed,
        }
        for layer in statistics.summary_list
    ]
    # Module.parameters() yields a tensor shared by two modules once.
    unique = list(module.parameters())
    storage = example_inputs[0].untyped_storage()
    _measured[case.name] = Measured(
        summary=summary,
        summary_depth_one=summary_depth_one,
        torchinfo_rows=rows,
        torchinfo_stats={
            "total_params": statistics.total_params,
            "trainable_params": statistics.trainable_params,
            "total_mult_adds": statistics.total_mult_adds,
            "input_bytes": statistics.total_input,
            "forward_backward_bytes": statistics.total_output_bytes,
            "params_bytes": statistics.total_param_bytes,
        },
        unique_params=sum(parameter.numel() for parameter in unique),
        unique_param_bytes=sum(parameter.numel() * parameter.element_size() for parameter in unique),
        # torchinfo sizes its input with sys.getsizeof(tensor.untyped_storage()), which is
        # the storage's bytes plus the CPython header of the storage object (64 bytes on
        # CPython 3.11). That header is no part of the input a forward pass holds.
        torchinfo_input_overhead_bytes=(sys.getsizeof(storage) - storage.nbytes()) * len(example_inputs),
    )
    return _measured[case.name]


def called_torchinfo_rows(measured):
    """torchinfo's rows for module calls, the ones layerlens can see.

    torchinfo also inserts a row for a container whose forward never runs but whose children
    do (the TransformerEncoder's `layers` ModuleList, iterated in Python): it was never
    called, so it has no output and the TorchScript graph has no call of it. Those rows are
    the only ones with `executed` False.
    """
    return [row for row in measured.torchinfo_rows if row["executed"]]


@pytest.mark.parametrize("case", MODEL_CASES, ids=str)
def test_rows_match_torchinfo(case, client, tmp_path_factory):
    measured = measure(case, client, tmp_path_factory)
    summary = measured.summary
    reference = called_torchinfo_rows(measured)
    # The one note allowed names modules without a call that ran, which torchinfo has no
    # row for either (MultiheadAttention's out_proj, whose weights its parent uses directly).
    notes = [note for note in summary.notes if not note.endswith("which records no op")]
    assert notes == [], f"{case.name}: {summary.notes}"
    for note in summary.notes:
        named = [path for path in note.split(" (", 1)[1].split(")", 1)[0].split(", ") if path != "..."]
        assert named and not any(row["path"] in named for row in reference), f"{case.name}: {note}"

    # Both lists hold the root first, then one row per call in the order the forward pass
    # makes them.
    assert [row["path"] for row in summary.rows] == [row["path"] for row in reference]
    mult_adds_errors = []
    for row, expected in zip(summary.rows, reference):
        where = f"{case.name} row {row['path']!r} (call {row['call_index']})"
        assert row["depth"] == expected["depth"], where
        # The daemon names the qualified class (torch.nn.Conv2d); torchinfo the class name.
        assert row["type"].split(".")[-1] == expected["type"], where
        assert row["num_params"] == expected["num_params"], where
        assert row["output_shape"] == expected["output_shape"], where
        assert row["is_leaf"] == expected["is_leaf"], where
        # torchinfo marks a module's second and later calls as recursive.
        assert (row["call_index"] > 0) == expected["is_recursive"], where
        if row["is_leaf"]:
            relative_error = abs(row["mult_adds"] - expected["mult_adds"]) / max(expected["mult_adds"], 1)
            mult_adds_errors.append((relative_error, where, row["mult_adds"], expected["mult_adds"]))
        else:
            # Without a depth limit only leaf calls carry mult-adds; torchinfo computes a
            # number for containers too but leaves it out of its total.
            assert row["mult_adds"] == 0, where
    worst_error, where, got, expected = max(mult_adds_errors)
    assert worst_error <= MULT_ADDS_RELATIVE_TOLERANCE, (
        f"worst mult-adds: {where}: layerlens {got:,}, torchinfo {expected:,} ({worst_error:.2%})"
    )


@pytest.mark.parametrize("case", MODEL_CASES, ids=str)
def test_totals_and_footer_match_torchinfo(case, client, tmp_path_factory):
    measured = measure(case, client, tmp_path_factory)
    summary = measured.summary
    expected = measured.torchinfo_stats

    if case.tied_weights:
        # torchinfo adds up its leaf rows, and both the embedding and the output layer
        # hold the tied matrix, so it counts (and sizes) that one tensor twice. The model
        # has one copy in memory, in its state dict and in its file, which is what
        # layerlens counts.
        assert summary.total_params == summary.trainable_params == measured.unique_params
        assert summary.params_bytes == measured.unique_param_bytes
        assert expected["total_params"] > measured.unique_params, "torchinfo no longer double-counts tied weights"
        assert expected["params_bytes"] > measured.unique_param_bytes
    else:
        assert summary.total_params == expected["total_params"] == measured.unique_params
        assert summary.trainable_params == expected["trainable_params"], case.name
        assert summary.params_bytes == expected["params_bytes"], case.name
    assert summary.rows[0]["num_params"] == measured.unique_params

    relative_error = abs(summary.total_mult_adds - expected["total_mult_adds"]) / max(expected["total_mult_adds"], 1)
    assert relative_error <= MULT_ADDS_RELATIVE_TOLERANCE, (
        f"{case.name} total mult-adds: layerlens {summary.total_mult_adds:,}, "
        f"torchinfo {expected['total_mult_adds']:,} ({relative_error:.2%})"
    )
    assert summary.total_mult_adds == sum(row["mult_adds"] for row in summary.rows if row["is_leaf"])

    assert summary.forward_backward_bytes == expected["forward_backward_bytes"], case.name
    expected_input_bytes = expected["input_bytes"] - measured.torchinfo_input_overhead_bytes
    assert summary.input_bytes == expected_input_bytes, case.name
    assert summary.total_bytes == summary.input_bytes + summary.forward_backward_bytes + summary.params_bytes
    if not case.tied_weights:
        # torchinfo's "Estimated Total Size" is the sum of its three lines.
        torchinfo_total_bytes = expected["input_bytes"] + expected["forward_backward_bytes"] + expected["params_bytes"]
        assert summary.total_bytes == torchinfo_total_bytes - measured.torchinfo_input_overhead_bytes, case.name


@pytest.mark.parametrize("case", MODEL_CASES, ids=str)
def test_depth_one_collapses_deeper_calls(case, client, tmp_path_factory):
    measured = measure(case, client, tmp_path_factory)
    full = measured.summary.rows
    collapsed = measured.summary_depth_one

    assert all(row["depth"] <= 1 for row in collapsed.rows), case.name
    assert [row["path"] for row in collapsed.rows] == [row["path"] for row in full if row["depth"] <= 1]
    # Rows are in call order, which is a pre-order walk of the call tree: the calls below
    # a call are the rows after it up to the next row at its depth or shallower.
    full_at_depth_one = [index for index, row in enumerate(full) if row["depth"] <= 1]
    for row, index in zip(collapsed.rows, full_at_depth_one):
        where = f"{case.name} row {row['path']!r} (call {row['call_index']})"
        assert row["num_params"] == full[index]["num_params"], where
        assert row["output_shape"] == full[index]["output_shape"], where
        below = []
        for later in full[index + 1:]:
            if later["depth"] <= row["depth"]:
                break
            below.append(later)
        if row["depth"] == 1 and not row["is_leaf"]:
            assert row["mult_adds"] == sum(call["mult_adds"] for call in below if call["is_leaf"]), where
        else:
            assert row["mult_adds"] == full[index]["mult_adds"], where
    assert collapsed.total_mult_adds == measured.summary.total_mult_adds
    assert collapsed.total_params == measured.summary.total_params


RESNET_CASES = [case for case in MODEL_CASES if case.name.startswith("resnet18")]


def source_lines_containing(function, text):
    """Line numbers (in its file) of the lines of a function's source that contain text."""
    lines, first_line = inspect.getsourcelines(function)
    return [first_line + offset for offset, line in enumerate(lines) if text in line]


@pytest.mark.parametrize("case", RESNET_CASES, ids=str)
def test_resnet18_call_sites_and_repeated_relu(case, client, tmp_path_factory):
    rows = measure(case, client, tmp_path_factory).summary.rows
    block_forward = torchvision.models.resnet.BasicBlock.forward

    # BasicBlock.forward, not Bottleneck.forward, which has the same line further down.
    conv1_lines = source_lines_containing(block_forward, "out = self.conv1(x)")
    assert len(conv1_lines) == 1
    (conv1,) = [row for row in rows if row["path"] == "layer1.0.conv1"]
    relu_calls = [row for row in rows if row["path"] == "layer1.0.relu"]
    # A BasicBlock calls its one ReLU module twice: after bn1, and after the residual sum.
    relu_lines = source_lines_containing(block_forward, "self.relu(out)")
    assert [row["call_index"] for row in relu_calls] == [0, 1]

    if case.export in ("script", "export"):
        # An exported program's nodes carry the Python stack that made them: the frame of
        # the caller's forward is the call site.
        assert conv1["call_site"].endswith(f"resnet.py:{conv1_lines[0]}")
        assert [row["call_site"].rsplit("/", 1)[-1] for row in relu_calls] == [f"resnet.py:{line}" for line in relu_lines]
    else:
        # The tracer records a module call as a bare prim::CallMethod without a source
        # range (only the ops inside carry the Python line that ran them), so a traced
        # model cannot say where a module was called. An empty call site, as the root
        # row has, says so; a made-up location would not.
        assert conv1["call_site"] in ("", f"{inspect.getsourcefile(block_forward)}:{conv1_lines[0]}")
        assert all(row["call_site"] == "" for row in relu_calls), [row["call_site"] for row in relu_calls]


# A trace or an export records ops only: a call that returns its input unchanged leaves
# nothing in the file, so it can have no row (the scripted cases above have them).
PASSTHROUGH_CASES = [
    ModelCase("efficientnet_b0_traced", lambda: torchvision.models.efficientnet_b0(weights=None), (1, 3, 64, 64), "float32",
              "trace", "StochasticDepth in eval mode records no op in a trace"),
    ModelCase("efficientnet_b0_exported", lambda: torchvision.models.efficientnet_b0(weights=None), (1, 3, 64, 64), "float32",
              "export", "nor in an export: the archive's module call graph names the module, no node runs in it"),
]


@pytest.mark.parametrize("case", PASSTHROUGH_CASES, ids=str)
def test_calls_that_leave_no_op_are_named_in_a_note(case, client, tmp_path_factory):
    measured = measure(case, client, tmp_path_factory)
    summary = measured.summary
    # Every other row is torchinfo's, with its shape.
    reference = [row for row in called_torchinfo_rows(measured) if row["type"] != "StochasticDepth"]
    assert [row["path"] for row in summary.rows] == [row["path"] for row in reference]
    for row, expected in zip(summary.rows, reference):
        assert row["output_shape"] == expected["output_shape"], row["path"]
    # efficientnet_b0 has one StochasticDepth in each of its 16 MBConv blocks; torchinfo
    # sees the 9 that run (blocks with a residual connection).
    assert sum(row["type"] == "StochasticDepth" for row in called_torchinfo_rows(measured)) == 9
    [note] = summary.notes
    assert note.startswith("16 module(s) have no row: no call of theirs ran an op on this input (features.1.0.stochastic_depth, "), note
    assert "StochasticDepth" in note, note
