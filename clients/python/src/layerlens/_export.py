"""Turns a live torch.nn.Module into model bytes the daemon can store.

With an example input, a module from a notebook is exported with `torch.export.export`
(non-strict, batch dimension dynamic where export allows it) and saved as a `.pt2`
archive; TorchScript is deprecated since PyTorch 2.11, so it is only the fallback: when
export fails, or without an example input, the module is scripted (or traced). torch is imported only in
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


def _export_program(torch, module, example_input):
    """torch.export archive bytes, with the batch dimension dynamic when export accepts it.

    Export specialises size-1 dimensions, so a dynamic batch needs an example of two rows:
    the example is repeated to two rows for the export only."""
    examples = _trace_inputs(example_input)
    examples = examples if isinstance(examples, tuple) else (examples,)
    doubled = tuple(torch.cat([item, item]) if item.dim() > 0 else item for item in examples)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        program = torch.export.export(
            module, doubled, dynamic_shapes=tuple({0: batch} if item.dim() > 0 else None for item in doubled), strict=False
        )
    except Exception:
        program = torch.export.export(module, examples, strict=False)
    leaves = [spec for spec in program.graph_signature.output_specs if spec.kind.name == "USER_OUTPUT"]
    if not leaves or any(not hasattr(spec.arg, "name") or type(spec.arg).__name__ != "TensorArgument" for spec in leaves):
        raise ValueError("the module returns values that are not tensors")
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def export_module(module, example_input=None):
    """Returns (model bytes, how) for a module; how is "exported" (a torch.export `.pt2`
    archive), "scripted", "traced" or "torchscript".

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
            export_reason = None
            if example_input is not None:
                try:
                    return _export_program(torch, module, example_input), "exported"
                except Exception as export_error:  # noqa: BLE001 - any export failure falls back to TorchScript
                    export_reason = _first_line(export_error)
            exported, how = _script_or_trace(torch, module, type(module).__name__, example_input, export_reason)
            if export_reason is not None:
                warnings.warn(
                    f"torch.export could not export {type(module).__name__} ({export_reason}); it was {how} as TorchScript instead",
                    stacklevel=4,
                )
        buffer = io.BytesIO()
        torch.jit.save(exported, buffer)
    finally:
        for submodule, training in modes:
            submodule.training = training
    return buffer.getvalue(), how


def _script_or_trace(torch, module, name, example_input, export_reason=None):
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
        exported_first = f"torch.export failed ({export_reason}), " if export_reason else ""
        raise ExportError(
            f"cannot export {name}: {exported_first}torch.jit.script failed ({script_reason}) "
            f"and torch.jit.trace with the example input failed ({_first_line(trace_error)})"
        ) from trace_error


def sha256_hex(data):
    """The model id the daemon will give these bytes."""
    return hashlib.sha256(data).hexdigest()
