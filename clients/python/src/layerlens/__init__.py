"""Python and Jupyter client of layerlensd, the daemon that explains PyTorch models.

    import layerlens
    ll = layerlens.connect()                    # LAYERLENS_ADDR / LAYERLENS_TOKEN
    m = ll.add_model(module_or_path, example_input=None, name=None)
    m.summary(input_shape)                      # displays as a table in Jupyter
    a = m.attribute(x, method="saliency", target=3)
    a.values                                    # numpy array, same shape as x
    a                                           # displays as the daemon's figure
    v = m.visualize("class:3")                  # activation maximisation, progress in Jupyter
    v.images                                    # numpy (N, C, H, W)
    layerlens.explain(module, x, method="integrated_gradients", target=3)
                                                # one call: export, upload once, attribute

`%load_ext layerlens` turns on inline display and adds the `%layerlens` magic. Importing
this package imports neither torch nor IPython; each is loaded only when it is used.
"""

from layerlens._client import DEFAULT_ADDRESS, Client, Model, connect
from layerlens._errors import ExportError, LayerlensError
from layerlens._explain import default_client, explain, set_default_client
from layerlens._generate import Counterfactual, Traversal, Visualization
from layerlens._text import GeneratedText, TextAttribution
from layerlens._training import Checkpoint, Landscape, OptimizerReport, Run, Watcher, WeightChange, watch
from layerlens._results import ActivationReport, Attribution, Comparison, Evaluation, Graph, ParameterReport, Prediction, ModelInfo, ModelList, SanityCheck, Summary

__version__ = "0.1.0"

__all__ = [
    "GeneratedText",
    "TextAttribution",
    "Checkpoint",
    "Landscape",
    "OptimizerReport",
    "Run",
    "Watcher",
    "WeightChange",
    "watch",
    "ActivationReport",
    "ParameterReport",
    "Prediction",
    "DEFAULT_ADDRESS",
    "Attribution",
    "Client",
    "Comparison",
    "Counterfactual",
    "Evaluation",
    "Graph",
    "ExportError",
    "LayerlensError",
    "Model",
    "ModelInfo",
    "ModelList",
    "SanityCheck",
    "Summary",
    "Traversal",
    "Visualization",
    "connect",
    "default_client",
    "explain",
    "set_default_client",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython):
    """Entry point of `%load_ext layerlens`; see layerlens._ipython."""
    from layerlens import _ipython

    _ipython.load_ipython_extension(ipython)


def unload_ipython_extension(ipython):
    """Entry point of `%unload_ext layerlens`."""
    from layerlens import _ipython

    _ipython.unload_ipython_extension(ipython)
