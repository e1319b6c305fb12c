"""The generation client without a daemon: requests it builds, streams it reads, results.

A fake Generate stub stands in for the daemon: it records the request each method sends
and answers with hand-made events, so what is checked here is exactly the client's part
(objective parsing, defaults, targets, the streaming loop, cancellation on interrupt,
result types, the notebook progress line). The daemon's side is checked by the tests
that start a real layerlensd.
"""

import io
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import torch

import layerlens
from layerlens import _generate
from layerlens._results import ModelInfo
from layerlens.v1 import common_pb2, generate_pb2, generate_pb2_grpc
from conftest import FakeRpcError

MODEL_ID = "ab" * 32


class FakeCall:
    """A unary-stream call: iterates its events (an exception in the list is raised when
    reached) and records cancel()."""

    def __init__(self, events):
        self.events = list(events)
        self.cancelled = False

    def __iter__(self):
        for event in self.events:
            if isinstance(event, BaseException):
                raise event
            yield event

    def cancel(self):
        self.cancelled = True
        return True


class FakeGenerateStub:
    """Records each request; answers with the events (or response) it was given."""

    def __init__(self, events=(), response=None):
        self.call = FakeCall(events)
        self.response = response
        self.requests = []

    def _stream(self, request, metadata=None, timeout=None):
        self.requests.append(request)
        return self.call

    Visualize = _stream
    Counterfactual = _stream

    def Traverse(self, request, metadata=None, timeout=None):
        self.requests.append(request)
        return self.response


@pytest.fixture
def fake_model():
    """A Model handle on a client whose Generate stub is a FakeGenerateStub (set .stub)."""
    client = layerlens.connect("127.0.0.1:1")
    model = layerlens.Model(client, ModelInfo(id=MODEL_ID, names=("fake",), size_bytes=1, resident=False))

    def use(stub):
        client._generate = stub
        return stub

    model.use_stub = use
    yield model
    client.close()


def tensor(array):
    array = np.ascontiguousarray(array, dtype=np.float32)
    return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_FLOAT32, data=array.tobytes())


PNG = common_pb2.Figure(mime="image/png", data=b"\x89PNG fake", alt_text="contact sheet")
SVG = common_pb2.Figure(mime="image/svg+xml", data=b"<svg/>", alt_text="grid")


def visualize_result(n_images=2):
    return generate_pb2.VisualizeResult(
        model_id=MODEL_ID,
        images=tensor(np.arange(n_images * 3 * 4 * 4).reshape(n_images, 3, 4, 4)),
        objective=[1.5, 2.5][:n_images],
        steps=8,
        predicted_class=[3, 5][:n_images],
        predicted_probability=[0.75, 0.5][:n_images],
        figure=PNG,
        labels=["class:3", "channel:features.0:2"][:n_images],
    )


def progress_event(step, steps=8, objective=(0.5, 1.0), figure=None):
    progress = generate_pb2.VisualizeProgress(step=step, steps=steps, objective=list(objective))
    if figure is not None:
        progress.figure.CopyFrom(figure)
    return generate_pb2.VisualizeEvent(progress=progress)


def terms_of(objectives):
    """The wire objectives as [[(term, weight, direction), ...], ...] for comparison."""
    return [
        [(term.term, pytest.approx(term.weight), [pytest.approx(value) for value in term.direction]) for term in objective.terms]
        for objective in _generate.objectives_to_proto(objectives)
    ]


# --- objectives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "objectives, expected",
    [
        ("class:3", [[("class:3", 1, [])]]),
        ("  channel:features.3:5 ", [[("channel:features.3:5", 1, [])]]),
        ("class:3 + 0.5*channel:features.0:2", [[("class:3", 1, []), ("channel:features.0:2", 0.5, [])]]),
        ("2 * neuron:fc1:7:0:1+-1e-1*layer:features.8", [[("neuron:fc1:7:0:1", 2, []), ("layer:features.8", -0.1, [])]]),
        (["class:0", "class:1", "class:2"], [[("class:0", 1, [])], [("class:1", 1, [])], [("class:2", 1, [])]]),
        (("class_vs_rest:4", 2.0), [[("class_vs_rest:4", 2, [])]]),
        # A list at the top is always several objectives; a weighted sum of pairs is a list inside it.
        ([("class:3", 1.0), ("class:4", 0.25)], [[("class:3", 1, [])], [("class:4", 0.25, [])]]),
        ([[("class:3", 1.0), ("class:4", 0.25)]], [[("class:3", 1, []), ("class:4", 0.25, [])]]),
        ([["class:3", "0.5*class:4 + class:5"]], [[("class:3", 1, []), ("class:4", 0.5, []), ("class:5", 1, [])]]),
        (
            {"term": "direction:layer4", "direction": np.array([1.0, 0.0, -1.0])},
            [[("direction:layer4", 1, [1.0, 0.0, -1.0])]],
        ),
        (
            [["class:1", {"term": "direction:layer4", "weight": 0.5, "direction": torch.tensor([0.5, 0.5])}]],
            [[("class:1", 1, []), ("direction:layer4", 0.5, [0.5, 0.5])]],
        ),
    ],
)
def test_objectives_become_wire_messages(objectives, expected):
    assert terms_of(objectives) == expected


@pytest.mark.parametrize(
    "objectives, error, message",
    [
        ("", ValueError, "empty term"),
        ("class:3 +", ValueError, "empty term"),
        ("class:3 ++ class:4", ValueError, "empty term"),
        ("0.5*", ValueError, "is not a term"),
        ("*class:3", ValueError, "'' is not a number"),
        ("x*class:3", ValueError, "'x' is not a number"),
        ("class:3*2", ValueError, "'class:3' is not a number"),
        ("0.5*0.5*class:3", ValueError, "is not a term"),
        ("class3", ValueError, "is not a term"),
        ("class:", ValueError, "is not a term"),
        ("class: 3", ValueError, "is not a term"),
        ("class:3 - class:4", ValueError, "is not a term"),
        ("0*class:3", ValueError, "finite non-zero"),
        ("nan*class:3", ValueError, "finite non-zero"),
        ("direction:layer4", ValueError, "needs a direction vector"),
        ({"term": "class:3", "direction": [1.0]}, ValueError, "takes no direction"),
        ({"term": "direction:layer4", "direction": [[1.0, 2.0]]}, ValueError, "non-empty 1-d"),
        ({"term": "direction:layer4", "direction": []}, ValueError, "non-empty 1-d"),
        ({"weight": 2.0}, ValueError, "has no 'term'"),
        ({"term": "class:3", "wieght": 2.0}, ValueError, "unknown keys"),
        ([], ValueError, "at least one objective"),
        ([[]], ValueError, "at least one term"),
        (3, TypeError, "not int"),
        ([3], TypeError, "not int"),
        ([[3]], TypeError, "a term is"),
    ],
)
def test_bad_objectives_are_refused_before_sending(objectives, error, message):
    with pytest.raises(error, match=message):
        _generate.objectives_to_proto(objectives)


# --- requests ---------------------------------------------------------------------------


def test_visualize_request_defaults(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub([generate_pb2.VisualizeEvent(result=visualize_result())]))
    fake_model.visualize("class:3", progress=False)
    (request,) = stub.requests
    assert request.model == MODEL_ID
    assert [[(term.term, term.weight) for term in objective.terms] for objective in request.objectives] == [[("class:3", 1.0)]]
    assert request.images_per_objective == 1 and list(request.input_shape) == []
    assert (request.parameterization, request.transforms) == ("fft", "standard")
    assert request.steps == 256 and request.learning_rate == pytest.approx(0.05) and request.seed == 0
    assert (request.l2, request.total_variation, request.blur, request.diversity, request.diversity_layer) == (0, 0, 0, 0, "")
    assert list(request.mean) == [] and list(request.std) == []
    # Unset optional fields leave the choice to the daemon.
    assert not request.HasField("decorrelate") and not request.HasField("low") and not request.HasField("high")
    assert (request.progress_every, request.image_every) == (0, 0)
    assert request.figure_format == common_pb2.FIGURE_FORMAT_PNG


def test_visualize_request_options(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub([generate_pb2.VisualizeEvent(result=visualize_result())]))
    fake_model.visualize(
        [f"channel:features.3:{c}" for c in range(4)], images_per_objective=2, input_shape=(1, 3, 32, 32),
        parameterization="pixel", decorrelate=False, steps=64, learning_rate=0.1, seed=7, transforms="none",
        l2=0.01, total_variation=0.02, blur=0.03, diversity=0.5, diversity_layer="features.1",
        mean=np.array([0.485, 0.456, 0.406]), std=(0.229, 0.224, 0.225), low=0.0, high=1.0,
        progress_every=4, image_every=16, figure_format="svg", progress=False,
    )
    (request,) = stub.requests
    assert [objective.terms[0].term for objective in request.objectives] == [f"channel:features.3:{c}" for c in range(4)]
    assert request.images_per_objective == 2 and list(request.input_shape) == [1, 3, 32, 32]
    assert (request.parameterization, request.transforms, request.steps, request.seed) == ("pixel", "none", 64, 7)
    assert request.HasField("decorrelate") and request.decorrelate is False
    # low=0.0 is sent, not mistaken for "unset".
    assert request.HasField("low") and request.low == 0.0 and request.high == 1.0
    assert list(request.mean) == pytest.approx([0.485, 0.456, 0.406]) and list(request.std) == pytest.approx([0.229, 0.224, 0.225])
    assert (request.diversity, request.diversity_layer) == (pytest.approx(0.5), "features.1")
    assert (request.progress_every, request.image_every) == (4, 16)
    assert request.figure_format == common_pb2.FIGURE_FORMAT_SVG


@pytest.mark.parametrize("options, message", [({"steps": 0}, "at least 1"), ({"images_per_objective": 0}, "at least 1"), ({"figure_format": "gif"}, "figure_format")])
def test_visualize_refuses_bad_options(fake_model, options, message):
    stub = fake_model.use_stub(FakeGenerateStub())
    with pytest.raises(ValueError, match=message):
        fake_model.visualize("class:3", progress=False, **options)
    assert stub.requests == []


def counterfactual_result(n_rows=2, classes=3, steps=(2, 1)):
    rows = []
    for index in range(n_rows):
        path = np.linspace(0, 1, (steps[index] + 1) * classes, dtype=np.float32)
        rows.append(generate_pb2.CounterfactualRow(
            flipped=index == 0, distance=0.5 + index, l2_distance=1.0 + index, steps=steps[index],
            original_class=1, final_class=2 if index == 0 else 1, probability_path=path.tolist(), classes=classes,
        ))
    return generate_pb2.CounterfactualResult(
        model_id=MODEL_ID, counterfactual=tensor(np.zeros((n_rows, 1, 2, 2))), rows=rows, figure=SVG,
    )


@pytest.mark.parametrize(
    "target, expected",
    [(2, [2]), (np.int64(2), [2]), ([2, 0], [2, 0]), ((1,), [1]), (np.array([2, 0]), [2, 0]), (torch.tensor([1, 1]), [1, 1]), (torch.tensor(4), [4])],
)
def test_counterfactual_targets(fake_model, target, expected):
    stub = fake_model.use_stub(FakeGenerateStub([generate_pb2.CounterfactualEvent(result=counterfactual_result())]))
    fake_model.counterfactual(torch.zeros(2, 1, 2, 2), target, progress=False)
    (request,) = stub.requests
    assert list(request.target) == expected
    assert (request.norm, request.steps, request.step_size) == ("l2", 100, 0.0)
    assert not request.HasField("low") and not request.HasField("high")
    assert list(request.input.shape) == [2, 1, 2, 2] and request.input.dtype == common_pb2.DTYPE_FLOAT32


@pytest.mark.parametrize(
    "x, target, options, error, message",
    [
        (np.zeros((2, 4)), [1, 2, 3], {}, ValueError, "3 targets for 2 input rows"),
        (np.zeros((2, 4)), [], {}, ValueError, "0 targets"),
        (np.zeros((2, 4)), [1.5, 2], {}, TypeError, "whole class indices"),
        (np.zeros((2, 4)), "3", {}, TypeError, "not str"),
        (np.zeros((2, 4)), True, {}, TypeError, "not a bool"),
        (np.float32(1.0), 1, {}, ValueError, r"batch of inputs \(N, ...\)"),
        (np.zeros((2, 4)), 1, {"step_size": 0}, ValueError, "step_size must be positive"),
        (np.zeros((2, 4)), 1, {"steps": 0}, ValueError, "at least 1"),
    ],
)
def test_counterfactual_refuses_bad_arguments(fake_model, x, target, options, error, message):
    stub = fake_model.use_stub(FakeGenerateStub())
    with pytest.raises(error, match=message):
        fake_model.counterfactual(x, target, progress=False, **options)
    assert stub.requests == []


def test_counterfactual_options_and_result(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub([
        generate_pb2.CounterfactualEvent(progress=generate_pb2.CounterfactualProgress(step=1, steps=4, flipped=0)),
        generate_pb2.CounterfactualEvent(result=counterfactual_result()),
    ]))
    result = fake_model.counterfactual(
        np.zeros((2, 1, 2, 2)), 2, norm="linf", steps=4, step_size=0.01, low=-1, high=1, figure_format=None, progress=False,
    )
    (request,) = stub.requests
    assert (request.norm, request.steps, request.step_size) == ("linf", 4, pytest.approx(0.01))
    assert (request.low, request.high) == (-1.0, 1.0)
    assert request.figure_format == common_pb2.FIGURE_FORMAT_NONE
    assert isinstance(result, layerlens.Counterfactual)
    assert result.counterfactual.shape == (2, 1, 2, 2) and result.counterfactual.dtype == np.float32
    first, second = result.rows
    assert first["probability_path"].shape == (3, 3) and second["probability_path"].shape == (2, 3)
    assert first["flipped"] and not second["flipped"]
    assert (first["original_class"], first["final_class"], first["steps"]) == (1, 2, 2)
    assert first["distance"] == pytest.approx(0.5) and second["l2_distance"] == pytest.approx(2.0)
    assert result.flip_rate == pytest.approx(0.5)
    # The mean L2 distance is over the rows that flipped.
    assert result.mean_l2 == pytest.approx(1.0)
    assert result._repr_svg_() == "<svg/>" and result._repr_png_() is None
    assert "flip_rate=0.5" in repr(result)


def test_counterfactual_with_a_broken_probability_path_is_an_error():
    result = counterfactual_result()
    result.rows[0].probability_path.append(0.5)
    with pytest.raises(layerlens.LayerlensError, match="not rows of 3 classes"):
        layerlens.Counterfactual.from_proto(result)


def test_traverse_request_and_result(fake_model):
    response = generate_pb2.TraverseResponse(
        model_id=MODEL_ID, images=tensor(np.ones((2 * 5, 1, 4, 4))), latents=tensor(np.zeros((2 * 5, 8))),
        rows=2, columns=5, figure=PNG,
    )
    stub = fake_model.use_stub(FakeGenerateStub(response=response))
    traversal = fake_model.traverse(torch.zeros(1, 8), [0, 3], range=2.0, steps=5)
    (request,) = stub.requests
    assert list(request.z.shape) == [1, 8] and list(request.dims) == [0, 3]
    assert (request.range, request.steps) == (2.0, 5) and not request.HasField("z_end")
    assert isinstance(traversal, layerlens.Traversal)
    assert traversal.images.shape == (10, 1, 4, 4) and traversal.latents.shape == (10, 8)
    assert (traversal.rows, traversal.columns) == (2, 5)
    assert traversal._repr_png_() == PNG.data and traversal._repr_svg_() is None


def test_traverse_defaults_and_interpolation(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub(response=generate_pb2.TraverseResponse(
        model_id=MODEL_ID, images=tensor(np.ones((7, 1, 2, 2))), latents=tensor(np.zeros((7, 4))), rows=1, columns=7,
    )))
    fake_model.traverse(np.zeros(4), 2)
    fake_model.traverse(np.zeros(4), z_end=np.ones(4), figure_format="svg")
    single, interpolation = stub.requests
    assert list(single.dims) == [2] and (single.range, single.steps) == (3.0, 7)
    assert single.figure_format == common_pb2.FIGURE_FORMAT_PNG
    assert list(interpolation.dims) == [] and interpolation.HasField("z_end") and list(interpolation.z_end.shape) == [4]
    with pytest.raises(ValueError, match="not both"):
        fake_model.traverse(np.zeros(4), [1], z_end=np.ones(4))


# --- the streaming loop -----------------------------------------------------------------


def test_visualize_collects_progress_and_returns_the_last_events_result(fake_model):
    fake_model.use_stub(FakeGenerateStub([
        progress_event(2, objective=(0.1, 0.2)),
        progress_event(4, objective=(0.3, 0.4), figure=PNG),
        generate_pb2.VisualizeEvent(),  # an event kind this client does not know
        progress_event(8, objective=(1.5, 2.5)),
        generate_pb2.VisualizeEvent(result=visualize_result()),
    ]))
    result = fake_model.visualize(["class:3", "channel:features.0:2"], steps=8, progress=False)
    assert isinstance(result, layerlens.Visualization)
    assert result.images.shape == (2, 3, 4, 4) and result.images.dtype == np.float32
    assert result.images[1, 0, 0, 0] == 48
    assert result.objective == [1.5, 2.5] and result.labels == ["class:3", "channel:features.0:2"]
    assert result.predicted_class == [3, 5] and result.predicted_probability == [0.75, 0.5]
    assert result.steps == 8 and result.model_id == MODEL_ID
    assert [step for step, _ in result.history] == [2, 4, 8]
    assert result.history[1][1] == pytest.approx([0.3, 0.4])
    assert result.figure == PNG.data and result._repr_png_() == PNG.data and result._repr_svg_() is None
    assert repr(result) == "Visualization(2 images of shape [3, 4, 4], steps=8)"


class RecordingWatcher:
    name = "visualize"

    def __init__(self):
        self.progress = []
        self.outcome = None

    def on_progress(self, progress):
        self.progress.append(progress.step)

    def finish(self, outcome):
        self.outcome = outcome


def test_a_stream_without_a_result_is_an_error():
    call = FakeCall([progress_event(1), progress_event(2)])
    watcher = RecordingWatcher()
    with pytest.raises(layerlens.LayerlensError, match="ended the visualize stream without a result") as caught:
        _generate.collect_stream(call, watcher, "http://x:1")
    assert caught.value.code == "INTERNAL"
    assert watcher.progress == [1, 2] and watcher.outcome == "failed" and not call.cancelled


def test_an_interrupt_cancels_the_call_and_propagates():
    call = FakeCall([progress_event(1), KeyboardInterrupt(), generate_pb2.VisualizeEvent(result=visualize_result())])
    watcher = RecordingWatcher()
    with pytest.raises(KeyboardInterrupt):
        _generate.collect_stream(call, watcher, "http://x:1")
    assert call.cancelled and watcher.outcome == "cancelled" and watcher.progress == [1]


def test_an_interrupt_through_the_client_cancels_the_call(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub([progress_event(1), KeyboardInterrupt()]))
    with pytest.raises(KeyboardInterrupt):
        fake_model.visualize("class:3", progress=False)
    assert stub.call.cancelled


def test_an_error_while_showing_progress_cancels_the_call():
    class BrokenWatcher(RecordingWatcher):
        def on_progress(self, progress):
            raise RuntimeError("display broke")

    call = FakeCall([progress_event(1), generate_pb2.VisualizeEvent(result=visualize_result())])
    with pytest.raises(RuntimeError, match="display broke"):
        _generate.collect_stream(call, BrokenWatcher(), "http://x:1")
    assert call.cancelled


def test_a_grpc_error_in_the_stream_becomes_a_layerlens_error(fake_model):
    stub = fake_model.use_stub(FakeGenerateStub([
        progress_event(1), FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no layer named features.99"),
    ]))
    with pytest.raises(layerlens.LayerlensError, match="no layer named features.99") as caught:
        fake_model.visualize("channel:features.99:0", progress=False)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not stub.call.cancelled


def test_progress_prints_nothing_outside_a_notebook_or_terminal(fake_model, capsys):
    fake_model.use_stub(FakeGenerateStub([progress_event(4), generate_pb2.VisualizeEvent(result=visualize_result())]))
    fake_model.visualize("class:3", progress=True)
    assert capsys.readouterr() == ("", "")


# --- the notebook progress line ---------------------------------------------------------


class FakeHandle:
    def __init__(self, shown):
        self.shown = [shown]

    def update(self, value):
        self.shown.append(value)


@pytest.fixture
def fake_kernel(monkeypatch):
    """IPython as it looks inside a Jupyter kernel; collects what is displayed."""
    import IPython
    import IPython.display

    handles = []

    def display(value, display_id=False):
        assert display_id is True, "progress must be shown in an output that can be updated"
        handles.append(FakeHandle(value))
        return handles[-1]

    class Shell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(_generate, "_MIN_REDRAW_INTERVAL_S", 0.0)
    return handles


def test_visualize_animates_in_a_notebook(fake_model, fake_kernel):
    fake_model.use_stub(FakeGenerateStub([
        progress_event(2, objective=(0.125, 0.25)),
        progress_event(4, objective=(0.5, 0.75), figure=PNG),
        progress_event(8, objective=(1.0, 2.0)),
        generate_pb2.VisualizeEvent(result=visualize_result()),
    ]))
    fake_model.visualize(["class:3", "class:4"], steps=8, image_every=4)
    (handle,) = fake_kernel
    lines = [repr(shown) for shown in handle.shown]
    assert lines == [
        "visualize: starting",
        "visualize: step 2/8 · objective 0.125, 0.25",
        "visualize: step 4/8 · objective 0.5, 0.75",
        "visualize: step 8/8 · objective 1, 2",
        "visualize: done",
    ]
    # The intermediate image appears with the event that carries it and stays until the
    # next one; the finished line drops it, as the result shows the final figure.
    pages = [shown._repr_html_() for shown in handle.shown]
    assert "<img" not in pages[1] and "data:image/png;base64," in pages[2] and "<img" in pages[3]
    assert "<img" not in pages[4]


def test_counterfactual_progress_and_interrupt_in_a_notebook(fake_model, fake_kernel):
    stub = fake_model.use_stub(FakeGenerateStub([
        generate_pb2.CounterfactualEvent(progress=generate_pb2.CounterfactualProgress(step=10, steps=100, flipped=1)),
        KeyboardInterrupt(),
    ]))
    with pytest.raises(KeyboardInterrupt):
        fake_model.counterfactual(np.zeros((3, 4)), 1)
    (handle,) = fake_kernel
    assert [repr(shown) for shown in handle.shown][1:] == [
        "counterfactual: step 10/100 · 1/3 rows flipped",
        "counterfactual: cancelled at step 10/100",
    ]
    assert stub.call.cancelled


def test_many_objective_values_are_summarised():
    assert _generate._objective_text([float(value) for value in range(10)]) == "objective mean 4.5 (min 0, max 9) over 10 images"


def test_terminal_progress_uses_tqdm(fake_model, monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fake_model.use_stub(FakeGenerateStub([progress_event(4), progress_event(8), generate_pb2.VisualizeEvent(result=visualize_result())]))
    fake_model.visualize("class:3", steps=8)
    assert "visualize" in terminal.getvalue() and "8/8" in terminal.getvalue()


# --- through real gRPC ----------------------------------------------------------------------


class StreamingServicer(generate_pb2_grpc.GenerateServicer):
    """An in-process Generate service: Visualize sends two progress events and the result,
    or, when `hold` is set, one event and then waits until the client goes away."""

    def __init__(self, hold=False):
        self.hold = hold
        self.metadata = None
        self.saw_cancel = threading.Event()

    def Visualize(self, request, context):
        self.metadata = dict(context.invocation_metadata())
        yield progress_event(1, steps=request.steps)
        if self.hold:
            deadline = time.monotonic() + HOLD_TIMEOUT_S
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not context.is_active():
                self.saw_cancel.set()
            return
        yield progress_event(request.steps, steps=request.steps)
        yield generate_pb2.VisualizeEvent(result=visualize_result(len(request.objectives)))

    def Traverse(self, request, context):
        return generate_pb2.TraverseResponse(
            model_id=request.model, images=tensor(np.zeros((request.steps, 1, 2, 2))),
            latents=tensor(np.zeros((request.steps, 4))), rows=1, columns=request.steps,
        )


HOLD_TIMEOUT_S = 20


@pytest.fixture
def grpc_generate():
    """(servicer factory, client) for an in-process gRPC server with the Generate service."""
    servers, clients = [], []

    def start(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        generate_pb2_grpc.add_GenerateServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        client = layerlens.connect(f"http://127.0.0.1:{port}", token="secret", timeout=30)
        clients.append(client)
        return layerlens.Model(client, ModelInfo(id=MODEL_ID, names=(), size_bytes=1, resident=False))

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop(grace=None)


def test_visualize_and_traverse_over_grpc(grpc_generate):
    servicer = StreamingServicer()
    model = grpc_generate(servicer)
    result = model.visualize(["class:3", "class:5"], steps=8, progress=False)
    assert result.history == [(1, [0.5, 1.0]), (8, [0.5, 1.0])]
    assert result.images.shape == (2, 3, 4, 4)
    assert servicer.metadata["authorization"] == "Bearer secret"
    traversal = model.traverse(np.zeros(4), z_end=np.ones(4), steps=3)
    assert traversal.images.shape == (3, 1, 2, 2) and traversal.columns == 3


def test_a_kernel_interrupt_cancels_the_job_on_the_server(grpc_generate, monkeypatch):
    """SIGINT (what Jupyter's interrupt sends) while the client waits for the next event:
    KeyboardInterrupt reaches the user and the server sees the call cancelled."""
    servicer = StreamingServicer(hold=True)
    model = grpc_generate(servicer)

    class InterruptSoon(_generate.VisualizeWatcher):
        def on_progress(self, progress):
            super().on_progress(progress)
            # The signal arrives while the client blocks in the stream's next().
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    monkeypatch.setattr(_generate, "VisualizeWatcher", InterruptSoon)
    with pytest.raises(KeyboardInterrupt) as caught:
        model.visualize("class:3", steps=8, progress=False)
    # The traceback keeps the call object alive, as IPython's sys.last_traceback does in a
    # notebook, so grpcio's cancel-on-garbage-collection cannot stand in for the client's.
    assert servicer.saw_cancel.wait(HOLD_TIMEOUT_S), "the server never saw the call cancelled"
    assert caught.type is KeyboardInterrupt
