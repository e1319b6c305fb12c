"""The client's conversion rules, checked without a daemon: addresses, tensors, params, errors.

These are the rules every request passes through; a table of cases per rule keeps them
readable and makes a regression name the exact input that broke.
"""

from concurrent import futures

import grpc
import numpy as np
import pytest
import torch

import layerlens
from layerlens import _wire
from layerlens.v1 import common_pb2, models_pb2, models_pb2_grpc
from conftest import FakeRpcError


@pytest.mark.parametrize(
    "address, expected",
    [
        ("http://127.0.0.1:7533", ("127.0.0.1:7533", False)),
        ("127.0.0.1:7533", ("127.0.0.1:7533", False)),
        ("  http://localhost:9000/ ", ("localhost:9000", False)),
        ("https://lens.example.org:443", ("lens.example.org:443", True)),
        ("unix:///run/layerlens.sock", ("unix:///run/layerlens.sock", False)),
    ],
)
def test_grpc_target(address, expected):
    assert _wire.grpc_target(address) == expected


def test_grpc_target_rejects_an_empty_address():
    with pytest.raises(ValueError, match="names no host"):
        _wire.grpc_target("http://")


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, "true"),
        (False, "false"),
        (np.bool_(True), "true"),
        (20, "20"),
        (np.int64(7), "7"),
        (0.1, "0.1"),
        (np.float32(0.5), "0.5"),
        ("riemann_trapezoid", "riemann_trapezoid"),
        ([3, 8, 8], "3,8,8"),
        ((1, 4, 4), "1,4,4"),
        (np.array([2, 2]), "2,2"),
        ([0.1, 0.2], "0.1,0.2"),
        (torch.tensor([1, 2]), "1,2"),
    ],
)
def test_param_to_string(value, expected):
    assert _wire.param_to_string("key", value) == expected


@pytest.mark.parametrize("value, message", [({"a": 1}, "cannot send a dict"), ([[1, 2], [3]], "nested sequences")])
def test_param_to_string_refuses_what_the_daemon_cannot_parse(value, message):
    with pytest.raises(TypeError, match=message):
        _wire.param_to_string("key", value)


def test_params_leave_out_none():
    assert _wire.params_to_strings({"abs": False, "stdevs": None, "nt_samples": 4}) == {"abs": "false", "nt_samples": "4"}


@pytest.mark.parametrize(
    "value",
    [
        np.arange(24, dtype=np.float64).reshape(2, 3, 4),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2],  # not contiguous
        torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
        torch.ones(2, 2, requires_grad=True) * 3,
        [[1, 2], [3, 4]],
    ],
)
def test_inputs_travel_as_float32_and_come_back_unchanged(value):
    array = _wire.as_float32_array(value)
    tensor = _wire.array_to_tensor(array)
    assert tensor.dtype == common_pb2.DTYPE_FLOAT32
    assert list(tensor.shape) == list(array.shape)
    assert len(tensor.data) == array.size * 4
    back = _wire.tensor_to_array(tensor)
    assert back.dtype == np.float32 and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_a_tensor_with_the_wrong_byte_count_is_an_error():
    tensor = common_pb2.Tensor(shape=[2, 2], dtype=common_pb2.DTYPE_FLOAT32, data=b"\0" * 12)
    with pytest.raises(layerlens.LayerlensError, match=r"shape \[2, 2\] with 12 bytes, expected 16"):
        _wire.tensor_to_array(tensor)


def test_rpc_errors_become_layerlens_errors():
    error = _wire.error_from_rpc(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no model named digitz"), "http://x:1")
    assert isinstance(error, layerlens.LayerlensError) and isinstance(error, Exception)
    assert error.code == "NOT_FOUND"
    assert str(error) == "no model named digitz"
    unreachable = _wire.error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"), "http://x:1")
    assert unreachable.code == "UNAVAILABLE"
    assert "http://x:1" in str(unreachable) and "connection refused" in str(unreachable)


def test_connect_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LAYERLENS_ADDR", "127.0.0.1:1")
    with layerlens.connect() as ll:
        assert ll.address == "127.0.0.1:1"
    with layerlens.connect("http://elsewhere:2") as ll:
        assert ll.address == "http://elsewhere:2"
    monkeypatch.delenv("LAYERLENS_ADDR")
    with layerlens.connect() as ll:
        assert ll.address == layerlens.DEFAULT_ADDRESS == "http://127.0.0.1:7533"


def test_an_unreachable_daemon_is_a_layerlens_error():
    # Port 1 on loopback refuses connections; the deadline keeps the test short.
    with layerlens.connect("http://127.0.0.1:1", timeout=5) as ll:
        with pytest.raises(layerlens.LayerlensError) as caught:
            ll.models()
    assert caught.value.code == "UNAVAILABLE"
    assert "127.0.0.1:1" in str(caught.value)


class MetadataRecorder(models_pb2_grpc.ModelsServicer):
    """A Models service that only records the metadata each List call arrives with."""

    def __init__(self):
        self.metadata = []

    def List(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        return models_pb2.ListModelsResponse()


@pytest.fixture
def recording_server():
    # The header exactly as sent is observed on a plain gRPC server; layerlensd's own token
    # check (and TLS with a CA from this client) is tested in tests/tests/access.rs.
    recorder = MetadataRecorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    models_pb2_grpc.add_ModelsServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield recorder, f"http://127.0.0.1:{port}"
    server.stop(grace=None)


def test_the_token_travels_as_a_bearer_header(recording_server, monkeypatch):
    recorder, address = recording_server
    with layerlens.connect(address, token="s3cret", timeout=10) as ll:
        assert ll.models() == []
    monkeypatch.setenv("LAYERLENS_TOKEN", "from-env")
    with layerlens.connect(address, timeout=10) as ll:
        ll.models()
    monkeypatch.delenv("LAYERLENS_TOKEN")
    with layerlens.connect(address, timeout=10) as ll:
        ll.models()
    assert [metadata.get("authorization") for metadata in recorder.metadata] == [
        "Bearer s3cret",
        "Bearer from-env",
        None,
    ]
