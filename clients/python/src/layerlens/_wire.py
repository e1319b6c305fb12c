"""Conversions between Python values and the layerlens.v1 wire messages.

Kept apart from the client so that the rules are in one place and can be tested without a
daemon: how an address is written, how arrays become `Tensor` messages and back, how
keyword options become the string map `params`, and how a gRPC error becomes a
`LayerlensError`.
"""

import sys

import grpc
import numpy as np

from layerlens._errors import LayerlensError
from layerlens.v1 import common_pb2

# The wire carries raw little-endian bytes; numpy dtypes are spelled with an explicit byte
# order so a big-endian host still reads them right.
_NUMPY_DTYPES = {
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    common_pb2.DTYPE_INT64: np.dtype("<i8"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_UINT8: np.dtype("u1"),
}

_FIGURE_FORMATS = {
    "png": common_pb2.FIGURE_FORMAT_PNG,
    "svg": common_pb2.FIGURE_FORMAT_SVG,
    "none": common_pb2.FIGURE_FORMAT_NONE,
}


def grpc_target(address):
    """Turns `http://host:port`, `https://host:port` or `host:port` into (target, use_tls).

    LAYERLENS_ADDR is written as a URL for the CLI's sake, while grpcio wants a bare
    `host:port` target and a separate choice of credentials.
    """
    text = address.strip()
    use_tls = False
    if text.startswith("https://"):
        text, use_tls = text[len("https://"):], True
    elif text.startswith("http://"):
        text = text[len("http://"):]
    text = text.rstrip("/")
    if not text:
        raise ValueError(f"layerlensd address {address!r} names no host; expected e.g. http://127.0.0.1:7533")
    return text, use_tls


def is_torch_tensor(value):
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def as_float32_array(value):
    """A C-ordered float32 numpy copy of a numpy array, torch tensor or nested list.

    Torch tensors are detached and moved to the CPU first; half and bfloat16 tensors go
    through float32 because numpy cannot hold bfloat16.
    """
    if is_torch_tensor(value):
        value = value.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def input_to_tensor(value):
    """A `Tensor` message for a model input: integer arrays (token ids) travel as int64,
    everything else as float32."""
    if is_torch_tensor(value) and not value.is_floating_point() and not value.is_complex() and value.dtype != getattr(sys.modules["torch"], "bool"):
        value = value.detach().to("cpu").numpy()
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer):
        array = np.ascontiguousarray(value, dtype="<i8")
        return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_INT64, data=array.tobytes())
    return array_to_tensor(as_float32_array(value))


def shape_of(value):
    """The shape of an array-like as a list of ints, or None when it has none (a tuple of inputs)."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return [int(dim) for dim in shape]


def array_to_tensor(array):
    """A `Tensor` message holding a float32 array."""
    array = np.ascontiguousarray(array, dtype=_NUMPY_DTYPES[common_pb2.DTYPE_FLOAT32])
    return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_FLOAT32, data=array.tobytes())


def tensor_to_array(tensor):
    """A writable numpy array with the contents of a `Tensor` message."""
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise LayerlensError("INTERNAL", f"layerlensd sent a tensor of unknown dtype {tensor.dtype}")
    shape = tuple(int(dim) for dim in tensor.shape)
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected_bytes:
        raise LayerlensError(
            "INTERNAL",
            f"layerlensd sent a tensor of shape {list(shape)} with {len(tensor.data)} bytes, expected {expected_bytes}",
        )
    # frombuffer views the message's immutable bytes; the copy makes the result writable
    # and native-endian, like any other array the user creates.
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def param_to_string(key, value):
    """Writes one keyword option the way the daemon parses `params` (Captum's argument names).

    bool -> "true"/"false", numbers -> their decimal text, lists/tuples/arrays -> their
    elements joined by commas (`sliding_window_shapes=(1, 3, 3)` -> "1,3,3").
    """
    if isinstance(value, str):
        return value
    # bool first: it is a subclass of int.
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple, np.ndarray)) or is_torch_tensor(value):
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        if isinstance(items, list) and any(isinstance(item, (list, tuple)) for item in items):
            raise TypeError(f"parameter {key!r}: nested sequences cannot be sent; pass a flat list of numbers")
        if not isinstance(items, list):
            items = [items]
        return ",".join(param_to_string(key, item) for item in items)
    raise TypeError(
        f"parameter {key!r}: cannot send a {type(value).__name__}; use a str, bool, int, float or a list of numbers"
    )


def is_array_like(value):
    """Arrays and tensors with at least one dimension travel as tensor parameters."""
    return (isinstance(value, np.ndarray) and value.ndim > 0) or (is_torch_tensor(value) and value.dim() > 0)


def split_params(params):
    """(text params, tensor params) of a request. Array values (baselines, feature_mask,
    noise, ...) become tensors; for a model with several inputs a tuple of arrays is sent
    as `name`, `name.1`, ...; everything else is text as in param_to_string."""
    text, tensors = {}, {}
    for key, value in params.items():
        if value is None:
            continue
        if is_array_like(value):
            tensors[key] = array_to_tensor(as_float32_array(value))
        elif isinstance(value, (tuple, list)) and value and all(is_array_like(item) for item in value):
            for index, item in enumerate(value):
                tensors[key if index == 0 else f"{key}.{index}"] = array_to_tensor(as_float32_array(item))
        else:
            text[key] = param_to_string(key, value)
    return text, tensors


def params_to_strings(params):
    """The `params` map of a request from keyword options; None values are left out."""
    return {key: param_to_string(key, value) for key, value in params.items() if value is not None}


def figure_format(name):
    """The `FigureFormat` for "png", "svg" or None/"none"."""
    key = "none" if name is None else str(name).lower()
    if key not in _FIGURE_FORMATS:
        raise ValueError(f"figure_format {name!r} is not one of 'png', 'svg', None")
    return _FIGURE_FORMATS[key]


def error_from_rpc(error, address):
    """The `LayerlensError` for a failed gRPC call."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    code_name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    message = details or str(error)
    # An unreachable daemon answers with grpcio's own text; say which address was tried
    # and how to change it, which is what a notebook user needs to fix it.
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"cannot reach layerlensd at {address} (set LAYERLENS_ADDR or pass addr=): {message}"
        # A TLS daemon closes a plaintext connection at once.
        if not address.strip().startswith("https://") and ("Socket closed" in message or "Connection reset" in message):
            message += " (if the daemon serves TLS, use an https:// address)"
    return LayerlensError(code_name, message)
