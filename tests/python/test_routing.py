"""The Python client's routing header and retries (clients/python/src/layerlens/_routing.py).

A daemon behind nginx (deploy/README.md) is picked by the `x-layerlens-model` header,
and a replica that dies shows as UNAVAILABLE until the proxy has moved its models. A real
layerlensd cannot be told to fail on cue, so these tests run the real client against a
scripted gRPC server on a loopback port: it records each call's metadata and fails
chosen calls with UNAVAILABLE (or another code) before answering. The tests through a
real nginx and real daemons are in tests/tests/scaleout.rs.
"""

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

import layerlens
from layerlens.v1 import common_pb2, explain_pb2, generate_pb2, models_pb2

MODEL_ID = "ab" * 32
MODEL_HEADER = "x-layerlens-model"


class ScriptedServer:
    """A gRPC server for the Models, Explain and Generate methods the tests call.

    `failures[method]` is a list of status codes: each call of that method takes the
    first one off and fails with it, until the list is empty. `calls` records
    (method, metadata dict) for every call. Visualize streams one progress event and
    then the result, or, with `fail_after_first_event`, fails UNAVAILABLE after the
    progress event.
    """

    def __init__(self):
        self.failures = {}
        self.calls = []
        self.fail_after_first_event = False
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "layerlens.v1.Models": {
                "Get": grpc.unary_unary_rpc_method_handler(
                    self._unary("Models/Get", lambda request: models_pb2.ModelInfo(id=MODEL_ID, names=["digits"])),
                    request_deserializer=models_pb2.GetModelRequest.FromString,
                    response_serializer=models_pb2.ModelInfo.SerializeToString,
                ),
                "List": grpc.unary_unary_rpc_method_handler(
                    self._unary("Models/List", lambda request: models_pb2.ListModelsResponse()),
                    request_deserializer=models_pb2.ListModelsRequest.FromString,
                    response_serializer=models_pb2.ListModelsResponse.SerializeToString,
                ),
                "Delete": grpc.unary_unary_rpc_method_handler(
                    self._unary("Models/Delete", lambda request: models_pb2.DeleteModelResponse(id=MODEL_ID)),
                    request_deserializer=models_pb2.DeleteModelRequest.FromString,
                    response_serializer=models_pb2.DeleteModelResponse.SerializeToString,
                ),
                "Upload": grpc.stream_unary_rpc_method_handler(
                    self._unary("Models/Upload", self._upload),
                    request_deserializer=models_pb2.UploadRequest.FromString,
                    response_serializer=models_pb2.ModelInfo.SerializeToString,
                ),
            },
            "layerlens.v1.Explain": {
                "Predict": grpc.unary_unary_rpc_method_handler(
                    self._unary("Explain/Predict", self._predict),
                    request_deserializer=explain_pb2.PredictRequest.FromString,
                    response_serializer=explain_pb2.PredictResponse.SerializeToString,
                ),
            },
            "layerlens.v1.Generate": {
                "Visualize": grpc.unary_stream_rpc_method_handler(
                    self._visualize,
                    request_deserializer=generate_pb2.VisualizeRequest.FromString,
                    response_serializer=generate_pb2.VisualizeEvent.SerializeToString,
                ),
            },
        }
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(service, methods) for service, methods in handlers.items()]
        )
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"http://127.0.0.1:{port}"
        self._server.start()

    def stop(self):
        self._server.stop(grace=None).wait(5)

    def _record(self, method, context):
        with self._lock:
            self.calls.append((method, dict(context.invocation_metadata())))
            pending = self.failures.get(method) or []
            return pending.pop(0) if pending else None

    def _unary(self, method, answer):
        def handle(request, context):
            failure = self._record(method, context)
            if failure is not None:
                context.abort(failure, f"scripted {failure.name} for {method}")
            return answer(request)

        return handle

    @staticmethod
    def _upload(requests):
        for _ in requests:
            pass
        return models_pb2.ModelInfo(id=MODEL_ID)

    @staticmethod
    def _predict(request):
        output = common_pb2.Tensor(shape=[1, 2], dtype=common_pb2.DTYPE_FLOAT32, data=np.array([[0.0, 1.0]], np.float32).tobytes())
        return explain_pb2.PredictResponse(model_id=request.model, output=output)

    def _visualize(self, request, context):
        failure = self._record("Generate/Visualize", context)
        if failure is not None:
            context.abort(failure, f"scripted {failure.name} for Visualize")
        yield generate_pb2.VisualizeEvent(progress=generate_pb2.VisualizeProgress(step=1, steps=2, objective=[0.5]))
        if self.fail_after_first_event:
            context.abort(grpc.StatusCode.UNAVAILABLE, "scripted UNAVAILABLE after the first event")
        images = common_pb2.Tensor(shape=[1, 1, 2, 2], dtype=common_pb2.DTYPE_FLOAT32, data=np.zeros((1, 1, 2, 2), np.float32).tobytes())
        yield generate_pb2.VisualizeEvent(result=generate_pb2.VisualizeResult(model_id=request.model, images=images, objective=[1.0], steps=2))

    def methods_called(self):
        return [method for method, _ in self.calls]


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.stop()


@pytest.fixture
def client(server):
    with layerlens.connect(server.address, token="secret-token", timeout=10) as connected:
        yield connected


X = np.zeros((1, 1, 8, 8), np.float32)


def test_model_handles_send_the_full_id_and_names_are_sent_as_given(server, client):
    model = client.model("digits")
    model.predict(X)
    client.models()
    (get_method, get_metadata), (predict_method, predict_metadata), (list_method, list_metadata) = server.calls
    assert (get_method, predict_method, list_method) == ("Models/Get", "Explain/Predict", "Models/List")
    # The lookup by name carries the name; the handle's calls carry the id.
    assert get_metadata[MODEL_HEADER] == "digits"
    assert predict_metadata[MODEL_HEADER] == MODEL_ID
    # A call about no model has no header; the token travels beside the header.
    assert MODEL_HEADER not in list_metadata
    assert predict_metadata["authorization"] == "Bearer secret-token"


def test_unavailable_is_retried_three_times_with_pauses(server, client):
    model = client.model(MODEL_ID)
    server.failures["Explain/Predict"] = [grpc.StatusCode.UNAVAILABLE] * 2
    prediction = model.predict(X)
    np.testing.assert_array_equal(prediction.output, [[0.0, 1.0]])
    assert server.methods_called().count("Explain/Predict") == 3

    server.failures["Explain/Predict"] = [grpc.StatusCode.UNAVAILABLE] * 5
    started = time.monotonic()
    with pytest.raises(layerlens.LayerlensError) as failure:
        model.predict(X)
    waited = time.monotonic() - started
    assert failure.value.code == "UNAVAILABLE"
    assert server.methods_called().count("Explain/Predict") == 6
    assert server.failures["Explain/Predict"] == [grpc.StatusCode.UNAVAILABLE] * 2
    assert waited >= 0.1 + 0.3


def test_other_errors_and_store_changes_are_not_retried(server, client):
    model = client.model(MODEL_ID)
    server.failures["Explain/Predict"] = [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT]
    with pytest.raises(layerlens.LayerlensError) as failure:
        model.predict(X)
    assert failure.value.code == "INVALID_ARGUMENT"
    assert server.methods_called().count("Explain/Predict") == 1

    server.failures["Models/Delete"] = [grpc.StatusCode.UNAVAILABLE]
    with pytest.raises(layerlens.LayerlensError) as failure:
        client.delete(MODEL_ID)
    assert failure.value.code == "UNAVAILABLE"
    assert server.methods_called().count("Models/Delete") == 1
    assert server.calls[-1][1][MODEL_HEADER] == MODEL_ID

    server.failures["Models/Upload"] = [grpc.StatusCode.UNAVAILABLE]
    with pytest.raises(layerlens.LayerlensError) as failure:
        client._upload(iter([b"not a model"]), "x", None)
    assert failure.value.code == "UNAVAILABLE"
    assert server.methods_called().count("Models/Upload") == 1


def test_a_stream_is_reopened_only_before_its_first_event(server, client):
    model = client.model(MODEL_ID)
    server.failures["Generate/Visualize"] = [grpc.StatusCode.UNAVAILABLE] * 2
    visualization = model.visualize("class:1", input_shape=(1, 1, 2, 2), steps=2, progress=False)
    assert visualization.images.shape == (1, 1, 2, 2)
    visualize_calls = [metadata for method, metadata in server.calls if method == "Generate/Visualize"]
    assert len(visualize_calls) == 3
    assert all(metadata[MODEL_HEADER] == MODEL_ID for metadata in visualize_calls)

    # Once an event arrived the job ran somewhere: a failure then is final.
    server.fail_after_first_event = True
    with pytest.raises(layerlens.LayerlensError) as failure:
        model.visualize("class:1", input_shape=(1, 1, 2, 2), steps=2, progress=False)
    assert failure.value.code == "UNAVAILABLE"
    assert server.methods_called().count("Generate/Visualize") == 4
