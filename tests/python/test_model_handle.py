"""Model's methods that explain or generate are Client's, forwarded: checked without a daemon.

Model declares none of their parameters (_ClientMethod in _client.py); these tests fail
when a Client method that takes a model has no Model method, when a Model method shows
other parameters than the Client method it calls, or when a call written against the
handle stops reaching the Client method with the same arguments.
"""

import inspect
import pydoc

import numpy as np
import pytest

from layerlens import Client, Model, ModelInfo

# Client methods that take a model but are the model store's, not the model's: Model has
# its own refresh/delete/pin/unpin that act on the handle and update its info.
STORE_METHODS = {"model", "delete", "pin", "unpin"}

FORWARDED = sorted(
    name
    for name, method in vars(Client).items()
    if not name.startswith("_")
    and callable(method)
    and list(inspect.signature(method).parameters)[1:2] == ["model"]
    and name not in STORE_METHODS
)

X = np.zeros((2, 1, 8, 8), dtype=np.float32)
Z = np.zeros((1, 4), dtype=np.float32)


class RecordingClient:
    """Stands in for Client: a method call is answered with (name, args, kwargs), not sent."""

    def __getattr__(self, name):
        def record(*args, **kwargs):
            return name, args, kwargs

        return record


def handle_on(client):
    return Model(client, ModelInfo(id="ab" * 32, names=("digits",), size_bytes=0, resident=False))


def test_the_forwarded_methods_are_the_ones_that_explain_or_generate():
    # A new Client method that takes a model shows up here: give Model a _ClientMethod
    # for it, or add it to STORE_METHODS if it belongs to the store.
    assert FORWARDED == [
        "activations", "add_checkpoint", "attribute", "attribute_text", "checkpoints", "compare", "counterfactual", "evaluate",
        "generate_text", "graph", "landscape", "optimizer", "parameters", "predict", "sanity_check", "set_tokenizer", "summary",
        "tokenize", "traverse", "visualize", "weight_change",
    ]


@pytest.mark.parametrize("name", FORWARDED)
def test_a_model_method_shows_the_parameters_of_its_client_method(name):
    client_parameters = list(inspect.signature(getattr(Client, name)).parameters.values())
    model_parameters = list(inspect.signature(getattr(Model, name)).parameters.values())
    assert [client_parameters[0], *client_parameters[2:]] == model_parameters
    # A bound method drops `self` too, as help(model.attribute) and Jupyter show it.
    handle = handle_on(RecordingClient())
    assert list(inspect.signature(getattr(handle, name)).parameters.values()) == client_parameters[2:]
    # The docstring is Model's own, fuller one, not the Client's pointer back to it.
    assert getattr(Model, name).__doc__ != getattr(Client, name).__doc__
    assert f"{name}(self" in pydoc.render_doc(getattr(Model, name), renderer=pydoc.plaintext)


@pytest.mark.parametrize(
    "name, args, kwargs, expected",
    [
        ("summary", ((1, 1, 8, 8), 2), {"input_dtype": "int64"}, {"input_shape": (1, 1, 8, 8), "depth": 2, "input_dtype": "int64"}),
        ("attribute", (X, "occlusion", 3), {"sliding_window_shapes": (1, 3, 3)},
         {"x": X, "method": "occlusion", "target": 3, "more_params": {"sliding_window_shapes": (1, 3, 3)}}),
        ("attribute", (X,), {"params": {"method": "riemann_trapezoid"}, "progress": None},
         {"x": X, "params": {"method": "riemann_trapezoid"}, "progress": None}),
        ("parameters", (), {"bins": 10}, {"bins": 10}),
        ("activations", (X,), {"figure_format": None}, {"x": X, "figure_format": None}),
        # top_k by position: Model.predict always took it so.
        ("predict", (X, 3), {}, {"x": X, "top_k": 3}),
        ("graph", ((1, 1, 8, 8),), {"collapse_repeats": True}, {"input_shape": (1, 1, 8, 8), "collapse_repeats": True}),
        ("compare", (X, ["saliency", ("occlusion", {"strides": 2})], 1), {"layer": "conv1", "abs": False},
         {"x": X, "methods": ["saliency", ("occlusion", {"strides": 2})], "target": 1, "layer": "conv1", "params": {"abs": False}}),
        ("evaluate", (X, "integrated_gradients", 4), {"metric_params": {"seed": 0}, "n_steps": 8},
         {"x": X, "method": "integrated_gradients", "target": 4, "metric_params": {"seed": 0}, "more_params": {"n_steps": 8}}),
        ("sanity_check", (X,), {"seed": 1, "signed": True}, {"x": X, "seed": 1, "signed": True}),
        ("visualize", ("class:3",), {"steps": 4, "progress": False}, {"objectives": "class:3", "steps": 4, "progress": False}),
        ("counterfactual", (X, 2), {"norm": "linf"}, {"x": X, "target": 2, "norm": "linf"}),
        ("traverse", (Z, [0, 1]), {"steps": 3}, {"z": Z, "dims": [0, 1], "steps": 3}),
    ],
)
def test_a_call_on_the_handle_reaches_the_client_method_with_the_same_arguments(name, args, kwargs, expected):
    client = RecordingClient()
    handle = handle_on(client)
    called, sent_args, sent_kwargs = getattr(handle, name)(*args, **kwargs)
    assert called == name
    # Bound against the real Client signature, so a call the Client method would refuse fails here.
    bound = inspect.signature(getattr(Client, name)).bind(client, *sent_args, **sent_kwargs).arguments
    assert bound.pop("self") is client
    assert bound.pop("model") is handle
    assert bound.keys() == expected.keys()
    for key, value in expected.items():
        assert bound[key] is value or bound[key] == value, key


def test_a_model_keyword_is_refused_as_before():
    # The Client refuses it before anything is sent, so the address need not answer.
    with Client("http://127.0.0.1:1") as client:
        with pytest.raises(TypeError, match="multiple values for argument 'model'"):
            handle_on(client).attribute(X, model="digits")
