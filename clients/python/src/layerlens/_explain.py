"""`layerlens.explain(model, x)`: one call from a notebook to an attribution.

The long way is `layerlens.connect().add_model(module, example_input=x).attribute(x, ...)`;
this module keeps one default client (made by `connect()` on first use, so LAYERLENS_ADDR
and LAYERLENS_TOKEN apply) and does those steps. A live module is exported once per
module object and weights (the client's export cache), and uploaded only when the
daemon lacks its bytes, so calling explain in a loop costs one attribution per call.
"""

import os
import threading

from layerlens._errors import ExportError

_default = {"client": None}
_default_lock = threading.Lock()


def default_client():
    """The client explain() uses: `layerlens.connect()`, made on first use and kept."""
    from layerlens._client import connect

    with _default_lock:
        if _default["client"] is None:
            _default["client"] = connect()
        return _default["client"]


def set_default_client(client):
    """Makes explain() use `client` (None: make a new one from the environment next time)."""
    with _default_lock:
        _default["client"] = client


def explain(model, x, method="saliency", target=None, *, client=None, **kwargs):
    """Attribution of one output of `model` to the input `x`, as `Model.attribute` gives it.

    model: a live torch.nn.Module (scripted, or traced with x when scripting fails, then
    stored in the daemon), a TorchScript file (a pathlib.Path, or a str naming an
    existing file), or a stored model: a name, an id, an id prefix or a Model handle. x: the input,
    (batch, ...), numpy or torch. method and target: as Model.attribute; further keywords
    (layer=, n_steps=, figure_format=, ...) go to it too. client: a layerlens.Client;
    default `layerlens.connect()`, made once and kept.

    Answers an Attribution (`.values` in x's shape) that displays as the daemon's figure
    with a method/target caption. A module that can be neither scripted nor traced
    raises ExportError saying why each failed.
    """
    client = client if client is not None else default_client()
    from layerlens._client import _is_torch_module

    if _is_torch_module(model):
        try:
            handle = client.add_model(model, example_input=_first_input(x))
        except ExportError as error:
            raise ExportError(f"layerlens.explain: {error}; explain needs a model TorchScript can export") from error
    elif isinstance(model, os.PathLike) or (isinstance(model, str) and os.path.isfile(model)):
        handle = client.add_model(model, example_input=_first_input(x))
    else:
        handle = client.model(model)
    return handle.attribute(x, method=method, target=target, **kwargs)


def _first_input(x):
    """The example input add_model traces with: x itself, or a tuple for several inputs."""
    return tuple(x) if isinstance(x, list) else x
