"""The connection to layerlensd and the handle of one stored model.

`connect()` opens a gRPC channel; `Client` wraps the three services (`Models`, `Explain`,
`Generate`) and `Model` is a handle on one stored model, referred to by its full id so
that a name moved to another model later does not change what the handle explains. Every
gRPC error becomes a `LayerlensError`. Model's methods that explain or generate are
Client's, called with the handle as the model (_ClientMethod), so their arguments are
declared once.
"""

import hashlib
import inspect
import os
import pathlib
import sys

import grpc
import numpy as np

from layerlens import _export, _generate, _progress, _routing, _text, _training, _wire
from layerlens._errors import LayerlensError
from layerlens._results import ActivationReport, Attribution, Comparison, Evaluation, Graph, ParameterReport, Prediction, ModelInfo, ModelList, SanityCheck, Summary
from layerlens._generate import Counterfactual, Traversal, Visualization
from layerlens.v1 import (
    common_pb2, daemon_pb2, daemon_pb2_grpc, explain_pb2, explain_pb2_grpc, generate_pb2, generate_pb2_grpc, models_pb2, models_pb2_grpc,
    text_pb2, text_pb2_grpc, training_pb2, training_pb2_grpc,
)

DEFAULT_ADDRESS = "http://127.0.0.1:7533"
# Each Upload message carries one chunk; 1 MiB keeps every message far below gRPC's
# default 4 MiB limit on the daemon's side.
UPLOAD_CHUNK_BYTES = 1 << 20
# Attributions have the input's size and figures can be large; grpcio's default 4 MiB
# receive limit would fail on a batch of ordinary images.
MAX_RECEIVE_BYTES = 1 << 30


def connect(addr=None, token=None, *, timeout=None, tls_ca=None, priority=None, user=None):
    """Opens a client of layerlensd.

    addr: `http://host:port`, `https://host:port` or `host:port`; default LAYERLENS_ADDR,
    else http://127.0.0.1:7533. token: sent as `authorization: Bearer <token>`; default
    LAYERLENS_TOKEN. timeout: seconds allowed for each call (None waits as long as it
    takes, which long attributions may need). tls_ca: for an https address, a PEM file
    with the certificate of the CA that signed the daemon's certificate (a self-signed
    certificate is its own CA); default LAYERLENS_TLS_CA, else the system's root
    certificates; ignored for http. priority: "interactive" (the default) or "batch"
    (sweeps and CI jobs: they wait behind interactive requests); default
    LAYERLENS_PRIORITY. user: the name the daemon's fair queuing counts this client
    under when it runs without tokens (with tokens, the token's user is used);
    default LAYERLENS_USER. Nothing is sent until the first call.
    """
    address = addr or os.environ.get("LAYERLENS_ADDR") or DEFAULT_ADDRESS
    token = token if token is not None else os.environ.get("LAYERLENS_TOKEN") or None
    tls_ca = tls_ca if tls_ca is not None else os.environ.get("LAYERLENS_TLS_CA") or None
    priority = priority or os.environ.get("LAYERLENS_PRIORITY") or None
    user = user or os.environ.get("LAYERLENS_USER") or None
    return Client(address, token=token, timeout=timeout, tls_ca=tls_ca, priority=priority, user=user)


def _is_torch_module(value):
    # A live module can only exist if the caller imported torch, so torch is never
    # imported just to ask.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def _file_chunks(handle):
    while True:
        chunk = handle.read(UPLOAD_CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _bytes_chunks(data):
    view = memoryview(data)
    for start in range(0, len(view), UPLOAD_CHUNK_BYTES):
        yield bytes(view[start:start + UPLOAD_CHUNK_BYTES])


class Client:
    """A connection to one layerlensd; see connect()."""

    def __init__(self, address, token=None, timeout=None, tls_ca=None, priority=None, user=None):
        self.address = address
        self.timeout = timeout
        target, use_tls = _wire.grpc_target(address)
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if use_tls:
            # Read here, so a wrong path fails at connect() and names the file.
            root_certificates = pathlib.Path(tls_ca).read_bytes() if tls_ca is not None else None
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        # Metadata rather than call credentials: grpcio refuses call credentials on a
        # plaintext channel, and a team daemon on a private network is usually plaintext.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if priority is not None:
            if priority not in ("interactive", "batch"):
                raise ValueError(f"priority is {priority!r}; expected 'interactive' or 'batch'")
            self._metadata += (("x-layerlens-priority", priority),)
        if user is not None:
            self._metadata += (("x-layerlens-user", str(user)),)
        self._models = models_pb2_grpc.ModelsStub(self._channel)
        self._explain = explain_pb2_grpc.ExplainStub(self._channel)
        self._generate = generate_pb2_grpc.GenerateStub(self._channel)
        self._daemon = daemon_pb2_grpc.DaemonStub(self._channel)
        self._training = training_pb2_grpc.TrainingStub(self._channel)
        self._text = text_pb2_grpc.TextStub(self._channel)

    def __repr__(self):
        return f"layerlens.Client({self.address!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Closes the channel; later calls fail."""
        self._channel.close()

    def _call(self, rpc, request):
        # The model header and retries on UNAVAILABLE: _routing.py.
        try:
            return _routing.call_with_retry(
                lambda message, metadata: rpc(message, metadata=metadata, timeout=self.timeout), request, self._metadata
            )
        except grpc.RpcError as error:
            # `from None`: grpcio's own exception repeats the message with transport
            # internals that only clutter a notebook's traceback.
            raise _wire.error_from_rpc(error, self.address) from None

    def _stream(self, rpc, request, watcher):
        """The result of a streaming job (Visualize, Counterfactual, AttributeStream); see _generate.collect_stream."""
        # Opened with the model header, and again on UNAVAILABLE before any event (_routing.py).
        call = _routing.RetryingStream(
            lambda metadata: rpc(request, metadata=metadata, timeout=self.timeout), request, self._metadata
        )
        return _generate.collect_stream(call, watcher, self.address)

    def status(self):
        """The daemon's state as a dict: `version`, `uptime_seconds`, `device`,
        `resident_bytes`, `models` (resident ones: `id`, `names`, `resident_bytes`,
        `in_flight` and `queued` requests, `pinned`, `ready`, `idle_seconds`), `cache`
        (`capacity_bytes`, `size_bytes`, `entries`, `hits`, `misses`), `memory`
        (`budget_bytes`, `used_bytes`, `evictions`) and `queue` (`max_queue`,
        `max_batch_size`, `max_batch_delay_ms`), the same keys as
        `layerlens --json status`."""
        answer = self._call(self._daemon.Status, daemon_pb2.StatusRequest())
        cache = answer.cache
        return {
            "version": answer.version,
            "uptime_seconds": answer.uptime_seconds,
            "device": answer.device,
            "resident_bytes": int(answer.resident_bytes),
            "models": [
                {
                    "id": model.id, "names": list(model.names), "resident_bytes": int(model.resident_bytes),
                    "in_flight": int(model.in_flight), "queued": int(model.queued), "pinned": bool(model.pinned),
                    "ready": bool(model.ready), "idle_seconds": float(model.idle_seconds), "kind": model.kind,
                }
                for model in answer.models
            ],
            "memory": {
                "budget_bytes": int(answer.memory.budget_bytes), "used_bytes": int(answer.memory.used_bytes),
                "evictions": int(answer.memory.evictions),
            },
            "queue": {
                "max_queue": int(answer.queue.max_queue), "max_batch_size": int(answer.queue.max_batch_size),
                "max_batch_delay_ms": float(answer.queue.max_batch_delay_ms),
            },
            "cache": {
                "capacity_bytes": int(cache.capacity_bytes), "size_bytes": int(cache.size_bytes), "entries": int(cache.entries),
                "hits": int(cache.hits), "misses": int(cache.misses),
            },
        }

    # --- the model store -------------------------------------------------------------

    def models(self):
        """The daemon's stored models, as a list of ModelInfo that displays as a table."""
        response = self._call(self._models.List, models_pb2.ListModelsRequest())
        return ModelList(ModelInfo.from_proto(info) for info in response.models)

    def model(self, model):
        """A handle on a stored model: a full id, an 8+ hex-character id prefix, a name,
        a ModelInfo, or a live torch.nn.Module (which is added first, see add_model)."""
        if isinstance(model, Model):
            return model
        if _is_torch_module(model):
            return self.add_model(model)
        info = self._call(self._models.Get, models_pb2.GetModelRequest(model=_model_ref(model)))
        return Model(self, ModelInfo.from_proto(info))

    def delete(self, model):
        """Deletes a stored model (handle, id, id prefix or name); returns its full id."""
        response = self._call(self._models.Delete, models_pb2.DeleteModelRequest(model=_model_ref(model)))
        return response.id

    def pin(self, model):
        """Pins a model (admin only): it loads now and is never evicted to make room
        under the daemon's memory budget. Returns its ModelInfo."""
        return ModelInfo.from_proto(self._call(self._models.Pin, models_pb2.PinModelRequest(model=_model_ref(model))))

    def unpin(self, model):
        """Unpins a model (admin only): it may be evicted again. Returns its ModelInfo."""
        return ModelInfo.from_proto(self._call(self._models.Unpin, models_pb2.PinModelRequest(model=_model_ref(model))))

    def add_model(self, module_or_path, example_input=None, name=None, *, tokenizer=None):
        """Stores a model in the daemon and returns its handle.

        module_or_path: a model file (str or path: a torch.export `.pt2` archive or
        TorchScript), or a live torch.nn.Module, which is exported with torch.export when
        example_input is given (TorchScript scripting or tracing is the fallback); the
        returned handle's `exported_as` says which was used ("exported", "scripted",
        "traced"; None when the daemon already held the module). The bytes are sent
        only when the daemon does not already hold them (models are stored by sha256), and a
        module is exported only once while its weights stay the same. example_input's shape
        is stored with the model so the daemon can check inputs before running it.
        tokenizer: the model's tokenizer for the text methods (a fast Hugging Face
        tokenizer, a tokenizers.Tokenizer or a tokenizer.json path), stored with it.
        """
        handle = self._add_model(module_or_path, example_input, name)
        if tokenizer is not None:
            self.set_tokenizer(handle, tokenizer)
            handle = handle.refresh()
        return handle

    def _add_model(self, module_or_path, example_input, name):
        input_shape = _wire.shape_of(example_input) if example_input is not None else None
        if _is_torch_module(module_or_path):
            return self._add_module(module_or_path, example_input, name, input_shape)
        if not isinstance(module_or_path, (str, os.PathLike)):
            raise TypeError(
                f"add_model() takes a TorchScript file path or a torch.nn.Module, not {type(module_or_path).__name__}"
            )
        path = pathlib.Path(module_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        sha256 = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in _file_chunks(handle):
                sha256.update(chunk)
        info = self._stored_as(sha256.hexdigest(), name)
        if info is None:
            with path.open("rb") as handle:
                info = self._upload(_file_chunks(handle), name, input_shape)
        return Model(self, info)

    def add_model_from_daemon_path(self, path, name=None, input_shape=None):
        """Stores a TorchScript file that lies on the daemon's machine, without sending it.

        path is read by the daemon, so it must make sense there (for a daemon on another
        machine, a path on that machine); input_shape is the shape of one example input.
        """
        request = models_pb2.AddFromPathRequest(
            path=os.fspath(path), name=name or "", input_shape=[int(dim) for dim in input_shape or ()]
        )
        return Model(self, ModelInfo.from_proto(self._call(self._models.AddFromPath, request)))

    def _add_module(self, module, example_input, name, input_shape):
        sha256 = _export.cached_sha256(module)
        if sha256 is not None:
            info = self._stored_as(sha256, name)
            if info is not None:
                return Model(self, info)
        data, how = _export.export_module(module, example_input)
        sha256 = _export.sha256_hex(data)
        _export.remember(module, sha256)
        info = self._stored_as(sha256, name)
        if info is None:
            info = self._upload(_bytes_chunks(data), name, input_shape)
        model = Model(self, info)
        model.exported_as = how
        return model

    def _stored_as(self, sha256, name):
        """The ModelInfo when the daemon holds these bytes under the wanted name, else None.

        A model that is stored but lacks the requested name is uploaded again: the wire API
        has no call that only adds a name, and Upload of known bytes just adds the name.
        """
        try:
            info = self._call(self._models.Get, models_pb2.GetModelRequest(model=sha256))
        except LayerlensError as error:
            if error.code == "NOT_FOUND":
                return None
            raise
        if name is not None and name not in info.names:
            return None
        return ModelInfo.from_proto(info)

    def _upload(self, chunks, name, input_shape):
        header = models_pb2.UploadHeader(name=name or "", input_shape=input_shape or [])

        def requests():
            yield models_pb2.UploadRequest(header=header)
            for chunk in chunks:
                yield models_pb2.UploadRequest(chunk=chunk)

        return ModelInfo.from_proto(self._call(self._models.Upload, requests()))

    # --- explanations ------------------------------------------------------------------

    def summary(self, model, input_shape=None, depth=None, *, input_dtype="float32", figure_format=None):
        """The module tree of a model with parameter counts; see Model.summary()."""
        handle = self.model(model)
        if input_shape is None and handle.info.input_shape:
            input_shape = handle.info.input_shape
        inputs = _sample_inputs(input_shape, input_dtype)
        request = explain_pb2.SummaryRequest(
            model=handle.id,
            input_shape=list(inputs[0].shape) if inputs else [],
            depth=int(depth or 0),
            figure_format=_wire.figure_format(figure_format),
            input_dtype=inputs[0].dtype if inputs else common_pb2.DTYPE_FLOAT32,
            extra_inputs=inputs[1:],
        )
        answer = self._call(self._explain.Summary, request)
        return _mark_cached(Summary.from_proto(answer), answer)

    def attribute(
        self,
        model,
        x,
        method="saliency",
        target=None,
        *,
        layer=None,
        figure_format="png",
        figure_method=None,
        figure_sign=None,
        params=None,
        progress=True,
        **more_params,
    ):
        """Attribution of one output to the input(s) x; see Model.attribute()."""
        request = self._attribute_request(
            model, x, method, target, layer=layer, figure_format=figure_format, figure_method=figure_method,
            figure_sign=figure_sign, params={**(params or {}), **more_params},
        )
        if progress is None:
            answer = self._call(self._explain.Attribute, request)
        else:
            # The stream ends with the answer Attribute gives; on the way it reports
            # progress, and an interrupt cancels the call so the daemon stops the work.
            answer = self._stream(self._explain.AttributeStream, request, _progress.AttributeWatcher(progress, method))
        return _mark_cached(Attribution.from_proto(answer, _wire.tensor_to_array), answer)

    def _attribute_request(self, model, x, method, target, *, layer, figure_format, figure_method, figure_sign, params):
        """The wire AttributeRequest shared by attribute, compare, evaluate and sanity_check."""
        handle = self.model(model)
        inputs = list(x) if isinstance(x, (tuple, list)) else [x]
        if not inputs:
            raise ValueError("attribute needs at least one input")
        tensors = [_wire.input_to_tensor(item) for item in inputs]
        text_params, tensor_params = _wire.split_params(params)
        request = explain_pb2.AttributeRequest(
            model=handle.id,
            input=tensors[0],
            extra_inputs=tensors[1:],
            method=method,
            params=text_params,
            tensor_params=tensor_params,
            layer=layer or "",
            figure_format=_wire.figure_format(figure_format),
            figure_options=common_figure_options(figure_method, figure_sign),
        )
        if target is not None:
            if isinstance(target, (list, tuple)) or hasattr(target, "tolist"):
                listed = target.tolist() if hasattr(target, "tolist") else list(target)
                request.targets.extend(int(item) for item in listed)
            else:
                request.target = int(target)
        return request

    def parameters(self, model, *, bins=30, figure_format="png"):
        """Statistics of every parameter tensor; see Model.parameters()."""
        handle = self.model(model)
        request = explain_pb2.ParametersRequest(model=handle.id, bins=int(bins), figure_format=_wire.figure_format(figure_format))
        answer = self._call(self._explain.Parameters, request)
        return _mark_cached(ParameterReport.from_proto(answer), answer)

    def activations(self, model, x, *, bins=30, figure_format="png"):
        """Per-layer activation statistics and anomalies; see Model.activations()."""
        handle = self.model(model)
        inputs = list(x) if isinstance(x, (tuple, list)) else [x]
        tensors = [_wire.input_to_tensor(item) for item in inputs]
        request = explain_pb2.ActivationsRequest(
            model=handle.id, input=tensors[0], extra_inputs=tensors[1:], bins=int(bins), figure_format=_wire.figure_format(figure_format),
        )
        answer = self._call(self._explain.Activations, request)
        return _mark_cached(ActivationReport.from_proto(answer), answer)

    # top_k may be given by position: Model.predict(x, 3) always took it so, and
    # Model.predict is this method with the handle as the model.
    def predict(self, model, x, top_k=5):
        """The model's output with top-k classes; see Model.predict()."""
        handle = self.model(model)
        inputs = list(x) if isinstance(x, (tuple, list)) else [x]
        tensors = [_wire.input_to_tensor(item) for item in inputs]
        request = explain_pb2.PredictRequest(model=handle.id, input=tensors[0], extra_inputs=tensors[1:], top_k=int(top_k))
        answer = self._call(self._explain.Predict, request)
        return _mark_cached(Prediction(
            _wire.tensor_to_array(answer.output),
            [[(int(top.class_index), float(top.logit), float(top.probability)) for top in row.top] for row in answer.rows],
        ), answer)

    def graph(self, model, input_shape=None, *, depth=None, collapse_repeats=False, open=None, input_dtype="float32", figure_format="svg"):
        """The forward pass as boxes and arrows; see Model.graph()."""
        handle = self.model(model)
        if input_shape is None and handle.info.input_shape:
            input_shape = handle.info.input_shape
        inputs = _sample_inputs(input_shape, input_dtype)
        if not inputs:
            raise ValueError("the graph needs an input shape, e.g. (1, 3, 224, 224); none is stored with the model")
        request = explain_pb2.GraphRequest(
            model=handle.id,
            input_shape=list(inputs[0].shape),
            input_dtype=inputs[0].dtype,
            extra_inputs=inputs[1:],
            depth=int(depth or 0),
            collapse_repeats=bool(collapse_repeats),
            figure_format=_wire.figure_format(figure_format),
        )
        if open is not None:
            request.view.open.extend([open] if isinstance(open, str) else list(open))
        answer = self._call(self._explain.Graph, request)
        return _mark_cached(Graph(
            [(node.op, node.module_path, node.source) for node in answer.nodes],
            [(getattr(edge, "from"), edge.to, list(edge.shape)) for edge in answer.edges],
            answer.figure if answer.HasField("figure") else None,
        ), answer)

    def methods(self):
        """The attribution methods the daemon serves (its method table), as a list of dicts:
        name, summary, options, layer (explains a layer: needs `layer=`), sampling (draws
        random numbers unless given a seed), batchable."""
        answer = self._call(self._explain.Methods, explain_pb2.MethodsRequest())
        return [
            {"name": method.name, "summary": method.summary, "options": list(method.options), "layer": method.layer,
             "sampling": method.sampling, "batchable": method.batchable}
            for method in answer.methods
        ]

    def compare(self, model, x, methods, target=None, *, layer=None, figure_format="png", figure_method=None, figure_sign=None, **params):
        """Several methods on one input; see Model.compare()."""
        request = self._attribute_request(
            model, x, "", target, layer=layer, figure_format=figure_format, figure_method=figure_method,
            figure_sign=figure_sign, params={},
        )
        specs = []
        for entry in methods:
            name, options = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
            shared = {key: value for key, value in params.items()}
            text_params, tensor_params = _wire.split_params({**shared, **options})
            # The layer travels once, in the base: the daemon's method table decides which
            # methods use it.
            specs.append(explain_pb2.MethodSpec(method=name, params=text_params, tensor_params=tensor_params))
        answer = self._call(self._explain.Compare, explain_pb2.CompareRequest(base=request, methods=specs))
        return Comparison(
            [Attribution.from_proto(item, _wire.tensor_to_array) for item in answer.attributions],
            answer.figure if answer.HasField("figure") else None,
        )

    def evaluate(self, model, x, method="saliency", target=None, *, metrics=("infidelity", "sensitivity_max"), metric_params=None, layer=None, params=None, **more_params):
        """Faithfulness metrics of an attribution; see Model.evaluate()."""
        request = self._attribute_request(
            model, x, method, target, layer=layer, figure_format=None, figure_method=None, figure_sign=None,
            params={**(params or {}), **more_params},
        )
        answer = self._call(self._explain.Evaluate, explain_pb2.EvaluateRequest(
            attribution=request, metrics=list(metrics), params=_wire.params_to_strings(metric_params or {}),
        ))
        return Evaluation(
            Attribution.from_proto(answer.attribution, _wire.tensor_to_array),
            list(answer.infidelity) or None,
            list(answer.sensitivity_max) or None,
        )

    def sanity_check(self, model, x, method="saliency", target=None, *, seed=0, signed=False, figure_format="png", params=None, **more_params):
        """Model-parameter randomisation test; see Model.sanity_check()."""
        request = self._attribute_request(
            model, x, method, target, layer=None, figure_format=figure_format, figure_method=None, figure_sign=None,
            params={**(params or {}), **more_params},
        )
        answer = self._call(self._explain.SanityCheck, explain_pb2.SanityCheckRequest(attribution=request, seed=seed, signed=signed))
        return SanityCheck(
            Attribution.from_proto(answer.attribution, _wire.tensor_to_array),
            [(step.layer, step.spearman, list(step.spearman_per_row)) for step in answer.steps],
            answer.figure if answer.HasField("figure") else None,
        )

    # --- generation --------------------------------------------------------------------

    def visualize(
        self, model, objectives, *, images_per_objective=1, input_shape=None, parameterization="fft",
        decorrelate=None, steps=256, learning_rate=0.05, seed=0, transforms="standard", l2=0.0,
        total_variation=0.0, blur=0.0, diversity=0.0, diversity_layer=None, mean=None, std=None, low=None,
        high=None, progress_every=0, image_every=0, figure_format="png", progress=True,
    ):
        """Activation maximisation; see Model.visualize()."""
        # The arguments are checked before the model is looked up, which may be a call.
        wire_objectives = _generate.objectives_to_proto(objectives)
        if int(steps) < 1 or int(images_per_objective) < 1:
            raise ValueError(f"steps ({steps}) and images_per_objective ({images_per_objective}) must be at least 1")
        handle = self.model(model)
        request = generate_pb2.VisualizeRequest(
            model=handle.id,
            objectives=wire_objectives,
            images_per_objective=int(images_per_objective),
            input_shape=[int(dim) for dim in (() if input_shape is None else input_shape)],
            parameterization=parameterization,
            steps=int(steps),
            learning_rate=float(learning_rate),
            seed=int(seed),
            transforms=transforms,
            l2=float(l2),
            total_variation=float(total_variation),
            blur=float(blur),
            diversity=float(diversity),
            diversity_layer=diversity_layer or "",
            mean=_wire.as_float32_array(mean).ravel().tolist() if mean is not None else [],
            std=_wire.as_float32_array(std).ravel().tolist() if std is not None else [],
            progress_every=int(progress_every),
            image_every=int(image_every),
            figure_format=_wire.figure_format(figure_format),
        )
        # Optional fields: unset lets the daemon pick (decorrelation on for 3 channels,
        # the range [0, 1]).
        if decorrelate is not None:
            request.decorrelate = bool(decorrelate)
        if low is not None:
            request.low = float(low)
        if high is not None:
            request.high = float(high)
        watcher = _generate.VisualizeWatcher(progress)
        result = self._stream(self._generate.Visualize, request, watcher)
        return Visualization.from_proto(result, watcher.history)

    def counterfactual(self, model, x, target, *, norm="l2", steps=100, step_size=None, low=None, high=None, figure_format="png", progress=True):
        """The smallest change to x that flips the prediction; see Model.counterfactual()."""
        array = _wire.as_float32_array(x)
        # np.ndim of x itself: as_float32_array turns a scalar into shape (1,).
        if np.ndim(x) < 1 or array.shape[0] < 1:
            raise ValueError(f"counterfactual takes a batch of inputs (N, ...), not shape {list(array.shape)}")
        if int(steps) < 1:
            raise ValueError(f"steps must be at least 1, not {steps}")
        if step_size is not None and not float(step_size) > 0:
            raise ValueError(f"step_size must be positive, not {step_size} (None: the daemon's default)")
        targets = _generate.counterfactual_targets(target, array.shape[0])
        handle = self.model(model)
        request = generate_pb2.CounterfactualRequest(
            model=handle.id,
            input=_wire.array_to_tensor(array),
            target=targets,
            norm=norm,
            steps=int(steps),
            step_size=float(step_size or 0.0),
            figure_format=_wire.figure_format(figure_format),
        )
        if low is not None:
            request.low = float(low)
        if high is not None:
            request.high = float(high)
        watcher = _generate.CounterfactualWatcher(progress, n_rows=array.shape[0])
        return Counterfactual.from_proto(self._stream(self._generate.Counterfactual, request, watcher))

    def traverse(self, model, z, dims=None, *, range=3.0, steps=7, z_end=None, figure_format="png"):
        """Latent traversal or interpolation of a generator; see Model.traverse()."""
        handle = self.model(model)
        if dims is not None and z_end is not None:
            raise ValueError("give dims (a traversal) or z_end (an interpolation), not both")
        if int(steps) < 1:
            raise ValueError(f"steps must be at least 1, not {steps}")
        dims = [dims] if isinstance(dims, int) else list(dims or ())
        request = generate_pb2.TraverseRequest(
            model=handle.id,
            z=_wire.array_to_tensor(_wire.as_float32_array(z)),
            dims=[int(dim) for dim in dims],
            range=float(range),
            steps=int(steps),
            figure_format=_wire.figure_format(figure_format),
        )
        if z_end is not None:
            request.z_end.CopyFrom(_wire.array_to_tensor(_wire.as_float32_array(z_end)))
        return Traversal.from_proto(self._call(self._generate.Traverse, request))

    # --- language models -------------------------------------------------------------------

    def set_tokenizer(self, model, tokenizer):
        """Stores a model's tokenizer; see Model.set_tokenizer()."""
        handle = self.model(model)
        request = text_pb2.SetTokenizerRequest(model=handle.id, tokenizer_json=_text.tokenizer_json(tokenizer))
        answer = self._call(self._text.SetTokenizer, request)
        return {"vocab_size": answer.vocab_size, "model_vocab": answer.model_vocab, "id": answer.id}

    def tokenize(self, model, text):
        """(ids, tokens) of `text` by the model's stored tokenizer."""
        handle = self.model(model)
        answer = self._call(self._text.Tokenize, text_pb2.TokenizeRequest(model=handle.id, text=text))
        return list(answer.ids), list(answer.tokens)

    def generate_text(self, model, text, *, max_new_tokens=20, sample=False, seed=0, temperature=1.0, top_k=0, tokenizer=None, on_token=None):
        """A causal LM's continuation; see Model.generate_text()."""
        handle = self.model(model)
        if tokenizer is not None:
            self.set_tokenizer(handle, tokenizer)
        request = text_pb2.GenerateTextRequest(
            model=handle.id, text=text, max_new_tokens=int(max_new_tokens), sample=bool(sample), seed=int(seed),
            temperature=float(temperature), top_k=int(top_k),
        )
        call = _routing.RetryingStream(lambda metadata: self._text.Generate(request, metadata=metadata, timeout=self.timeout), request, self._metadata)
        try:
            for event in call:
                if event.HasField("token"):
                    if on_token is not None:
                        on_token(event.token)
                elif event.HasField("result"):
                    return _text.GeneratedText(event.result)
        except grpc.RpcError as error:
            raise _wire.error_from_rpc(error, self.address) from None
        raise LayerlensError("UNKNOWN", "the Generate stream ended without a result")

    def attribute_text(self, model, text=None, target=None, method="feature_ablation", *, tokenizer=None, template=None, values=None,
                       baselines=None, skip_tokens=None, baseline_token=None, attr_target="log_prob", n_samples=None, seed=0,
                       max_new_tokens=None, layer=None, n_steps=None, figure="tokens", figure_format="png"):
        """Which prompt tokens drove a continuation or a class; see Model.attribute_text()."""
        handle = self.model(model)
        if tokenizer is not None:
            self.set_tokenizer(handle, tokenizer)
        request = _text.attribute_text_request(
            handle.id, text, target, method, template=template, values=values, baselines=baselines, skip_tokens=skip_tokens,
            baseline_token=baseline_token, attr_target=attr_target, n_samples=n_samples, seed=seed, max_new_tokens=max_new_tokens,
            figure_format=_wire.figure_format(figure_format),
        )
        request.layer = layer or ""
        request.n_steps = int(n_steps or 0)
        request.figure_kind = figure
        return _text.TextAttribution(self._call(self._text.Attribute, request))

    # --- training ------------------------------------------------------------------------

    def add_checkpoint(self, model, checkpoint, step=None):
        """Stores a training checkpoint of a stored model; see Model.add_checkpoint()."""
        handle = self.model(model)
        data = _training.checkpoint_bytes(checkpoint)
        header = training_pb2.CheckpointHeader(model=handle.id)
        if step is not None:
            header.step = int(step)

        def requests():
            yield training_pb2.CheckpointUploadRequest(header=header)
            for chunk in _bytes_chunks(data):
                yield training_pb2.CheckpointUploadRequest(chunk=chunk)

        return _training.Checkpoint(self._call(self._training.UploadCheckpoint, requests()))

    def checkpoints(self, model):
        """A model's checkpoints by step; see Model.checkpoints()."""
        handle = self.model(model)
        answer = self._call(self._training.ListCheckpoints, training_pb2.ListCheckpointsRequest(model=handle.id))
        return [_training.Checkpoint(info) for info in answer.checkpoints]

    def optimizer(self, model, checkpoint, *, figure="ratios", bins=40, figure_format="png"):
        """What the optimiser does to each parameter; see Model.optimizer()."""
        handle = self.model(model)
        figures = {"ratios": training_pb2.OPTIMIZER_FIGURE_RATIOS, "step_histograms": training_pb2.OPTIMIZER_FIGURE_STEP_HISTOGRAMS}
        if figure not in figures:
            raise ValueError(f"figure {figure!r}; expected 'ratios' or 'step_histograms'")
        request = training_pb2.ExplainOptimizerRequest(
            model=handle.id, checkpoint=_checkpoint_ref(checkpoint), figure=figures[figure], bins=int(bins), figure_format=_wire.figure_format(figure_format),
        )
        return _training.OptimizerReport(self._call(self._training.ExplainOptimizer, request))

    def landscape(self, model, x, y=None, *, checkpoint=None, loss="cross_entropy", dims=1, steps=21, range=None, seed=0, trajectory=(),
                  return_directions=False, figure_format="png"):
        """The loss around a checkpoint; see Model.landscape()."""
        handle = self.model(model)
        if loss not in _training._LOSSES:
            raise ValueError(f"loss {loss!r}; expected one of {sorted(_training._LOSSES)}")
        inputs = list(x) if isinstance(x, (tuple, list)) else [x]
        request = training_pb2.LandscapeRequest(
            model=handle.id,
            checkpoint=_checkpoint_ref(checkpoint) if checkpoint is not None else "",
            inputs=[_wire.input_to_tensor(item) for item in inputs],
            loss=_training._LOSSES[loss],
            dims=int(dims),
            steps=int(steps),
            range=float(range) if range is not None else (0.0 if trajectory else 1.0),
            seed=int(seed),
            trajectory=[_checkpoint_ref(item) for item in trajectory],
            return_directions=bool(return_directions),
            figure_format=_wire.figure_format(figure_format),
        )
        if y is not None:
            request.targets.CopyFrom(_wire.input_to_tensor(y))
        return _training.Landscape(self._call(self._training.Landscape, request))

    def weight_change(self, model, from_checkpoint, to_checkpoint, *, figure_format="png"):
        """Per-layer weight change between two checkpoints; see Model.weight_change()."""
        handle = self.model(model)
        request = training_pb2.WeightChangeRequest(
            model=handle.id, from_checkpoint=_checkpoint_ref(from_checkpoint), to_checkpoint=_checkpoint_ref(to_checkpoint),
            figure_format=_wire.figure_format(figure_format),
        )
        return _training.WeightChange(self._call(self._training.WeightChange, request))

    def runs(self):
        """The training runs the daemon keeps: a list of dicts (name, model, optimizer, steps, last_step, layers)."""
        answer = self._call(self._training.ListRuns, training_pb2.ListRunsRequest())
        return [{"name": run.name, "model": run.model, "optimizer": run.optimizer, "steps": run.steps, "first_step": run.first_step,
                 "last_step": run.last_step, "layers": list(run.layers)} for run in answer.runs]

    def run(self, name):
        """A training run by name (`records()`, `steps()`, `figure()`)."""
        return _training.Run(self, name)


def _checkpoint_ref(checkpoint):
    """A checkpoint id from a Checkpoint or an id (prefix) string."""
    return checkpoint.id if isinstance(checkpoint, _training.Checkpoint) else str(checkpoint)



def common_figure_options(method, sign):
    """The request's figure options (Captum's visualize_image_attr method and sign)."""
    return explain_pb2.FigureOptions(method=method or "", sign=sign or "")


def _model_ref(model):
    """The string the wire API takes for a model: an id, an id prefix or a name."""
    if isinstance(model, (Model, ModelInfo)):
        return model.id
    if isinstance(model, str):
        return model
    raise TypeError(f"a model is referred to by its id, an id prefix, a name or a handle, not {type(model).__name__}")


class _ClientMethod:
    """A Model method that is the Client method of the same name, called with the handle
    as its `model`.

    Model declares none of the method's parameters, so an argument added to the Client
    method reaches the handle with no edit in Model. On class creation it makes a plain
    function whose `__signature__` is the Client method's without `model`, and whose
    docstring is the one given here: Model's docstrings are the full ones users read in
    Jupyter, while Client's point to them. Read on the class, the attribute is that
    function, so help(), pydoc and IPython's `?` show it as the method it is; read on a
    handle, it is the function bound to the handle. `__wrapped__` names the Client
    method, so IPython's `??` shows the code that runs.
    """

    def __init__(self, doc):
        self.doc = doc

    def __set_name__(self, owner, name):
        client_method = getattr(Client, name)
        client_signature = inspect.signature(client_method)
        self_parameter, model_parameter, *parameters = client_signature.parameters.values()
        if model_parameter.name != "model":
            raise TypeError(f"Client.{name} takes {model_parameter.name!r} first, not 'model'; it cannot be a Model method")

        # The handle is positional-only so that no keyword the caller passes can collide
        # with it; a `model=` keyword reaches the Client method, which refuses it as before.
        def forward(handle, /, *args, **kwargs):
            # Looked up on the handle's client at call time, as a written-out method would.
            return getattr(handle.client, name)(handle, *args, **kwargs)

        forward.__name__ = name
        forward.__qualname__ = f"{owner.__qualname__}.{name}"
        forward.__module__ = owner.__module__
        forward.__doc__ = self.doc
        forward.__wrapped__ = client_method
        forward.__signature__ = client_signature.replace(parameters=[self_parameter, *parameters])
        self.function = forward

    # A descriptor rather than a function put in its own place, so that type checkers
    # (the package ships py.typed) see a callable attribute, as they saw the methods
    # that were written out.
    def __get__(self, handle, owner=None):
        return self.function.__get__(handle, owner)


class Model:
    """A handle on one model stored in layerlensd.

    `info` is the ModelInfo as it was when the handle was made (refresh() asks again).
    """

    def __init__(self, client, info):
        self.client = client
        self.info = info
        # How add_model() turned a live module into a file ("exported", "scripted",
        # "traced"), or None.
        self.exported_as = None

    @property
    def id(self):
        """The full model id: the sha256 of the model file, 64 hex characters."""
        return self.info.id

    @property
    def kind(self):
        """"exported" for a torch.export archive (.pt2), "torchscript" otherwise."""
        return self.info.format

    @property
    def names(self):
        return self.info.names

    @property
    def name(self):
        return self.info.name

    @property
    def size_bytes(self):
        return self.info.size_bytes

    @property
    def resident(self):
        return self.info.resident

    def __repr__(self):
        names = f", names={list(self.names)}" if self.names else ""
        return f"Model(id={self.id[:12]!r}{names})"

    parameters = _ClientMethod(
        """Per parameter tensor: shape, dtype, count, mean, std, min, max, L2 norm, share
        of exact zeros, NaN/Inf counts and a histogram; displays as a table with the
        daemon's histogram figure and the first convolution's filters."""
    )

    activations = _ClientMethod(
        """Per module call, statistics of its output on input x (computed on the daemon's
        device), and an anomaly report (NaN/Inf, dead units, saturation, exploding
        scale) with severities and source lines; displays as HTML."""
    )

    predict = _ClientMethod(
        """The model's output for x and, for classifiers, the top-k classes per row with
        softmax probabilities."""
    )

    graph = _ClientMethod(
        """The forward pass on zero inputs of `input_shape` (one shape, or a list of
        shapes for a model with several inputs; default: the shape stored with the
        model) as boxes and arrows with tensor
        shapes, grouped by module (`depth=` folds deeper calls into one box,
        `collapse_repeats=True` folds identical blocks into one box marked xN,
        `open=["layer1", "layer1.0"]` keeps only those module calls open and folds every
        other into one box); displays as the daemon's SVG in Jupyter."""
    )

    compare = _ClientMethod(
        """Several methods on one input, side by side: methods is a list of names or of
        (name, {options}) pairs; shared options go as keywords. Answers a Comparison
        (`.attributions`, displays as the daemon's grid figure)."""
    )

    evaluate = _ClientMethod(
        """Captum's infidelity and sensitivity_max of an attribution, one value per row
        (`metrics=`, `metric_params={"n_perturb_samples": 10, "seed": 0, ...}`)."""
    )

    sanity_check = _ClientMethod(
        """Adebayo et al.'s parameter randomisation test: `.steps` lists (layer,
        Spearman, per-row Spearman) from the output layer towards the input."""
    )

    visualize = _ClientMethod(
        """Feature visualisation: inputs optimised (Adam, as Lucent does) so the model's
        objectives are as large as possible; one image per objective, all in one batch.

        objectives: one objective or a list of them (a list is always several objectives,
        one image each). An objective is a term, e.g. "class:3", "class_vs_rest:3",
        "channel:features.3:5", "neuron:features.3:5" (or "neuron:LAYER:C:Y:X"),
        "layer:features.8"; or a weighted sum written "class:3 + 0.5*channel:features.0:2"
        (`+`-separated WEIGHT*TERM pieces; a negative weight as "-0.5*TERM"); or a
        (term, weight) pair; or a term dict {"term", "weight", "direction"}, the only way to
        give "direction:LAYER" its direction vector (one value per channel); or a list of
        such terms, summed. E.g. every channel of a layer as one contact sheet:
        `[f"channel:features.3:{c}" for c in range(16)]`.
        images_per_objective: images per objective (with `diversity`, made to differ).
        input_shape: the shape of one input, (1, C, H, W) or (C, H, W); default the shape
        stored with the model. parameterization: "fft" (Lucent's default) or "pixel";
        decorrelate: colour decorrelation (None: on for 3-channel images). steps,
        learning_rate, seed: the optimisation. transforms: "standard" (Lucent's jitter,
        scale, rotate) or "none". l2, total_variation, blur: regulariser weights;
        diversity (at diversity_layer): Lucent's diversity term. mean, std: the model's
        input normalisation, one value per channel, applied to images in [low, high]
        (default [0, 1]). progress_every: a progress event every k steps (0: 16 per job);
        image_every: an intermediate image every m steps (0: none), shown while the job
        runs. figure_format: "png", "svg" or None. progress: in Jupyter, a line that
        updates with the step and objective values (and the intermediate images); a tqdm
        bar in a terminal when tqdm is installed. Interrupting the kernel cancels the job.

        Answers a Visualization: `.images` (N, C, H, W) as fed to the model, `.objective`,
        `.labels`, `.predicted_class`, `.predicted_probability`, `.history`; displays as
        the daemon's contact sheet.
        """
    )

    counterfactual = _ClientMethod(
        """The smallest change to each row of x that makes the model predict `target`
        (projected gradient steps, clipped to [low, high], stopping per row once it flips).

        x: the inputs, (batch, ...), a numpy array or torch tensor (sent as float32).
        target: the class every row should be predicted as, or a sequence with one per
        row. norm: "l2" or "linf", the distance that is kept small. steps: the most
        gradient steps. step_size: the L2 length (or L∞ size) of a step; None: 1% of the
        value range (× sqrt(elements) for L2). low, high: the valid value range (default
        [0, 1]). figure_format: "png", "svg" or None. progress: in Jupyter, a line that
        updates with the step and the rows flipped so far. Interrupting the kernel cancels
        the job.

        Answers a Counterfactual: `.counterfactual` (x's shape), `.rows` (per row:
        flipped, distance, l2_distance, steps, original_class, final_class,
        probability_path (steps + 1, classes)), `.flip_rate`, `.mean_l2`; displays as the
        daemon's original / counterfactual / difference figure.
        """
    )

    traverse = _ClientMethod(
        """For a generator (latent vector -> image): its outputs as latent dimensions vary
        around z, or along the line from z to z_end.

        z: the latent vector, (1, D) or (D,). dims: the dimensions to vary (an int or a
        list), each over z[d] + linspace(-range, range, steps); None sends none (the
        daemon's default).
        z_end: interpolate from z to z_end in `steps` steps instead (then give no dims).
        figure_format: "png", "svg" or None.

        Answers a Traversal: `.images` (rows × columns, C, H, W), `.latents` (rows ×
        columns, D), `.rows`, `.columns`; displays as the daemon's grid.
        """
    )

    set_tokenizer = _ClientMethod(
        """Stores this model's tokenizer: a fast Hugging Face tokenizer, a
        tokenizers.Tokenizer, or the path of a tokenizer.json. Its vocabulary must fit
        the model's embedding."""
    )
    tokenize = _ClientMethod("""(ids, tokens) of a text by this model's stored tokenizer.""")
    generate_text = _ClientMethod(
        """A causal LM's continuation of `text`: greedy (as `generate(do_sample=False)`),
        or sampled (`sample=True`, `seed`, `temperature`, `top_k`). `on_token(token)` sees
        each token as it is generated (`.id`, `.token`, `.text` so far). Answers a
        GeneratedText (`text`, `ids`, `tokens`). `tokenizer` stores one first."""
    )
    attribute_text = _ClientMethod(
        """Which prompt tokens drove the model's output, with Captum's LLMAttribution
        semantics: for a causal LM the log-probability (attr_target="prob": the
        probability) of the `target` continuation (a string; None: the model's greedy
        continuation), per output token and summed; for a classifier, `target` is the
        class (an int) and its logit is attributed.

        method: "feature_ablation" or "shapley_value_sampling" (`n_samples`
        permutations drawn like torch.manual_seed(seed); torch.randperm), "lime" or
        "kernel_shap" (`n_samples` perturbations drawn as Captum's from the same seed,
        the same scikit-learn fit; whole continuation only, token_attr None), or per output
        token as Captum's LLMGradientAttribution on `layer` (default: the token
        embedding): "layer_integrated_gradients" (`n_steps`, default 50) or
        "layer_gradient_x_activation". The prompt is
        `text` (every token a feature, Captum's TextTokenInput; `skip_tokens` are kept
        as they are, a removed token becomes `baseline_token`, default id 0), or
        `template` with `values` (a list for `{}` slots or a dict for `{name}` slots; a
        removed value becomes its entry of `baselines`, default ""), as
        TextTemplateInput. `tokenizer` stores the model's tokenizer first.

        figure: "tokens" (the prompt coloured by attribution), "matrix" (output token ×
        input token, Captum's plot_token_attr) or "bars" (plot_seq_attr); `.figure`
        holds it. Answers a TextAttribution (seq_attr, token_attr, input_tokens,
        output_tokens, output_probs, html) that displays as the HTML token heat map.
        """
    )
    add_checkpoint = _ClientMethod(
        """Stores a training checkpoint of this model and answers a Checkpoint (id, step,
        optimizer).

        checkpoint: a file path, its bytes, or what you would pass to torch.save: a
        `model.state_dict()`, or {"model": model.state_dict(), "optimizer":
        optimizer.state_dict(), "step": n, "scheduler": scheduler.state_dict()}; safetensors
        files are accepted too. The daemon reads it as data (no pickled code runs: a
        pickle that names anything but tensors and containers is refused by name) and
        checks every parameter's name and shape against this model.
        step: the training step (default: the one the checkpoint records).
        """
    )
    checkpoints = _ClientMethod("""This model's stored checkpoints (Checkpoint objects), ordered by step.""")
    optimizer = _ClientMethod(
        """What the optimiser does to each parameter, rebuilt from a checkpoint's state.

        checkpoint: a Checkpoint or its id (prefix). For Adam/AdamW the last update is
        lr·m̂/(√v̂+ε) with bias correction (plus decoupled weight decay), for SGD and
        RMSprop with momentum lr·buf; the effective learning rate per coordinate is
        lr/(√v̂+ε) (lr for SGD). figure: "ratios" (update:weight per layer) or
        "step_histograms". Answers an OptimizerReport (rows, layers, findings, notes),
        which displays as a table, the anomaly report and the figure.
        """
    )
    landscape = _ClientMethod(
        """The loss around a checkpoint (Li et al. 2018) over a data batch.

        x: the inputs (batch, ...); y: the targets (class indices for cross entropy,
        the output's shape for MSE). checkpoint: the centre (None: the stored weights).
        loss: "cross_entropy", "mse", or "output" (the model's output is the loss).
        dims 1 or 2, `steps` grid points per direction over [-range, range] (default 1).
        Directions are filter-normalised random ones drawn from `seed`, or, with
        `trajectory` (a run's checkpoints in order), the top-2 PCA directions of the
        trajectory, drawn over the contours. return_directions: also answer the
        directions. Answers a Landscape (losses, coordinates, center_loss, directions,
        trajectory) that displays as the daemon's figure.
        """
    )
    weight_change = _ClientMethod(
        """How far each parameter and layer moved from one checkpoint to another:
        ‖Δw‖, ‖Δw‖/‖w‖ and the cosine between the weights. Displays as a bar chart."""
    )

    def __eq__(self, other):
        return isinstance(other, Model) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def refresh(self):
        """Asks the daemon for the model's current names and residency."""
        self.info = self.client.model(self.id).info
        return self

    def delete(self):
        """Deletes the model from the daemon."""
        return self.client.delete(self.id)

    def pin(self):
        """Keeps the model resident (admin only); see Client.pin."""
        self.info = self.client.pin(self.id)
        return self

    def unpin(self):
        """Lets the model be evicted again (admin only); see Client.unpin."""
        self.info = self.client.unpin(self.id)
        return self

    summary = _ClientMethod(
        """torchinfo's summary: one row per module call with input and output shapes,
        parameters and mult-adds, shown as an indented table in Jupyter.

        input_shape: shape of one input, e.g. (1, 3, 224, 224), or a list of shapes for a
        model with several inputs, in forward's order; defaults to the shape stored
        with the model (without one, rows carry no shapes). depth: leave out rows
        deeper than this. input_dtype: "int64" for token ids (one dtype for every
        input, or a list with one per input). figure_format: "png" or
        "svg" to also get the daemon's figure (none by default: the table is the display).
        """
    )

    attribute = _ClientMethod(
        """Which input elements drove one output of the model.

        x: the input as the model takes it, (batch, ...), a numpy array or torch tensor
        (sent as float32); a tuple of them for a model with several inputs. method: one of
        the daemon's methods (`saliency`, `integrated_gradients`, `smoothgrad`,
        `gradient_shap`, `occlusion`, `feature_ablation`, `grad_cam`, ...). target: the
        output index to explain for every batch row, a list with one per row, or None for
        the class the model predicts for each row. layer: the module path for layer
        methods. params: further options under Captum's argument names (`abs=False`,
        `n_steps=100` or `"auto"`, `sliding_window_shapes=(1, 3, 3)`); array values
        (`baselines=`, `feature_mask=`, `noise=`) travel as tensors. figure_format: "png",
        "svg" or None; figure_method/figure_sign: Captum's visualize_image_attr options.
        params: a dict of further options, for names that clash with this signature
        (integrated gradients' quadrature: `params={"method": "riemann_trapezoid"}`).
        progress: True (default) shows a progress bar for attributions that run longer
        than half a second (a line in Jupyter, a tqdm bar on a terminal); False shows
        none; both run over the daemon's progress stream, so interrupting the kernel
        (or Ctrl-C) cancels the request on the daemon. None uses the plain unary call.
        The result is the same either way.
        """
    )


_SAMPLE_DTYPES = {"float32": common_pb2.DTYPE_FLOAT32, "int64": common_pb2.DTYPE_INT64}


def _sample_inputs(input_shape, input_dtype):
    """One shape ((1, 3, 32, 32)) or several ([(1, 3, 32, 32), (1, 10)]) with one dtype
    for all or a list of dtypes, as SampleInput messages; [] without a shape."""
    if input_shape is None or len(input_shape) == 0:
        return []
    several = all(isinstance(item, (list, tuple)) for item in input_shape)
    shapes = [tuple(shape) for shape in input_shape] if several else [tuple(input_shape)]
    dtypes = [input_dtype] * len(shapes) if isinstance(input_dtype, str) else list(input_dtype)
    if len(dtypes) != len(shapes):
        raise ValueError(f"{len(dtypes)} input dtypes for {len(shapes)} input shapes; give one dtype, or one per shape")
    inputs = []
    for shape, dtype in zip(shapes, dtypes):
        if str(dtype) not in _SAMPLE_DTYPES:
            raise ValueError(f"input_dtype {dtype!r} is not supported; use 'float32' or 'int64' (token ids)")
        inputs.append(explain_pb2.SampleInput(shape=[int(dim) for dim in shape], dtype=_SAMPLE_DTYPES[str(dtype)]))
    return inputs


def _mark_cached(result, answer):
    """Sets `result.cached`: whether the daemon answered from its result cache (an
    identical earlier request; sampling methods only with an explicit seed)."""
    result.cached = bool(answer.cached)
    return result
