"""Turns a live torch.nn.Module into TorchScript bytes the daemon can store.

The daemon runs TorchScript only, so a module from a notebook is scripted (or, failing
that, traced with the example input) and saved to bytes here. torch is imported only in
this module and only when it is called, so that `import layerlens` stays light.

Exporting a large model takes seconds, so the sha256 of each module's export is remembered
per module object (a weak reference: the cache never keeps a model alive). The entry holds
a fingerprint of the module's parameters and buffers (identity and in-place version of
each tensor), so a module trained further after add_model() is exported again instead of
being answered with its old weights.
"""

import hashlib
import io
import warnings
import weakref

from layerlens._errors import ExportError

# module -> (state fingerprint, sha256 hex of its TorchScript bytes)
_exported_sha256 = weakref.WeakKeyDictionary()


def _torch():
    import torch

    return torch


def _state_fingerprint(module):
    """Changes whenever a parameter or buffer is replaced or modified in place.

    `Tensor._version` counts in-place writes (an optimiser step bumps it); `id()` catches a
    tensor swapped for another. Both are cheap, unlike hashing the weights.
    """
    tensors = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    return tuple((name, id(tensor), getattr(tensor, "_version", None)) for name, tensor in tensors)


def cached_sha256(module):
    """The sha256 of this module's last export, or None if it changed since or never was exported."""
    entry = _exported_sha256.get(module)
    if entry is None:
        return None
    fingerprint, sha256 = entry
    return sha256 if fingerprint == _state_fingerprint(module) else None


def remember(module, sha256):
    """Records that the module, as it is now, exports to the bytes with this sha256."""
    _exported_sha256[module] = (_state_fingerprint(module), sha256)


def _first_line(error, limit=300):
    """The first non-empty line of an exception's message, cut to a readable length.

    TorchScript errors run to dozens of lines of source excerpts; the first line says what
    failed, and the full text stays reachable through the exception chain.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _trace_inputs(example_input):
    """The example input as torch.jit.trace takes it: a tensor or a tuple of tensors."""
    torch = _torch()

    def convert(value):
        if isinstance(value, torch.Tensor):
            return value
        return torch.as_tensor(value, dtype=torch.float32)

    if isinstance(example_input, (tuple, list)):
        return tuple(convert(value) for value in example_input)
    return convert(example_input)


def export_module(module, example_input=None):
    """Returns (TorchScript bytes, how) for a module; how is "scripted", "traced" or "torchscript".

    Scripting keeps data-dependent control flow, so it is tried first; tracing records one
    run on example_input and is the fallback for Python that TorchScript cannot compile.
    Both happen in eval mode (dropout off, batch norm using running statistics), which is
    the mode explanations are about; the module's own train/eval flags are restored after.
    """
    # torch 2.11 flags every torch.jit entry point as deprecated; the daemon runs
    # TorchScript, so there is nothing the user could do about these warnings. Tracer
    # warnings (a trace that may not generalise) still reach the user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"`torch\.jit\.")
        return _export_module(module, example_input)


def _export_module(module, example_input):
    torch = _torch()
    # Restore each submodule's own flag afterwards: a model may deliberately keep some
    # parts in eval mode while the rest trains.
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        if isinstance(module, torch.jit.ScriptModule):
            exported, how = module, "torchscript"
        else:
            exported, how = _script_or_trace(torch, module, type(module).__name__, example_input)
        buffer = io.BytesIO()
        torch.jit.save(exported, buffer)
    finally:
        for submodule, training in modes:
            submodule.training = training
    return buffer.getvalue(), how


def _script_or_trace(torch, module, name, example_input):
    try:
        return torch.jit.script(module), "scripted"
    except Exception as script_error:
        if example_input is None:
            raise ExportError(
                f"cannot export {name} to TorchScript: torch.jit.script failed ({_first_line(script_error)}); "
                f"pass example_input= (an input tensor) so that it can be traced with torch.jit.trace instead"
            ) from script_error
        script_reason = _first_line(script_error)
    try:
        return torch.jit.trace(module, _trace_inputs(example_input)), "traced"
    except Exception as trace_error:
        raise ExportError(
            f"cannot export {name} to TorchScript: torch.jit.script failed ({script_reason}) "
            f"and torch.jit.trace with the example input failed ({_first_line(trace_error)})"
        ) from trace_error


def sha256_hex(data):
    """The model id the daemon will give these bytes."""
    return hashlib.sha256(data).hexdigest()
