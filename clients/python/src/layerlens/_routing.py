"""Routing header and retries, for daemons that sit behind a proxy (deploy/README.md).

Several layerlensd replicas can share one model store behind nginx, which hashes the
`x-layerlens-model` header so that each model is loaded on one replica and stays
resident there. Every call about a model therefore carries that header with the model
reference the request holds. `Model` handles (and the `Client` methods, which look the
model up first) always put the full 64-hex id in their requests, so they always send the
id. A bare name or id prefix passed straight to a call is sent as given: a name and the
id of the same model may hash to different replicas, which works (every replica reads the
same store) but loads the model twice.

When a replica dies the proxy moves its models to the next replica on the hash ring, and
a call caught in between fails with UNAVAILABLE. Calls that may safely run twice are
then tried again after a short pause (`RETRY_PAUSES`: three tries in about half a
second); Upload, AddFromPath and Delete are sent once, and a generation stream is opened
again only while none of its events has arrived (after that the job runs somewhere and
must not be started twice). A `timeout` given to `connect()` applies to each try.
"""

import time

import grpc

MODEL_HEADER = "x-layerlens-model"

# Pauses before the second and third try of a call answered UNAVAILABLE. Short enough
# that a daemon which is really gone is reported within half a second.
RETRY_PAUSES = (0.1, 0.3)

# Requests that change the store: a retry after an answer was lost would upload again,
# or answer NOT_FOUND for a delete that worked. (Upload's request is a stream of chunks
# and is never retried either: an iterator cannot be sent twice.)
_NOT_RETRIED = frozenset({"AddFromPathRequest", "DeleteModelRequest"})


def model_reference(request):
    """The model reference a request carries: its `model` field, or that of the request
    it wraps (Compare's `base`, Evaluate's and SanityCheck's `attribution`); None when it
    names no model (List, Status) or is not a message (Upload's chunk stream)."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:
        return None
    if "model" in descriptor.fields_by_name:
        return request.model or None
    for field in descriptor.fields:
        if field.message_type is not None and not _is_repeated(field) and request.HasField(field.name):
            inner = getattr(request, field.name)
            if "model" in inner.DESCRIPTOR.fields_by_name and inner.model:
                return inner.model
    return None


def _is_repeated(field):
    # protobuf 7 dropped FieldDescriptor.label for `is_repeated`; older ones lack that.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def call_metadata(metadata, request):
    """`metadata` (a tuple of (key, value) pairs) plus the model header when the request
    names a model."""
    model = model_reference(request)
    return tuple(metadata) + ((MODEL_HEADER, model),) if model else tuple(metadata)


def is_retried(request):
    """Whether a request may be sent again after UNAVAILABLE."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    return descriptor is not None and descriptor.name not in _NOT_RETRIED


def _retry_pause(error, pauses):
    """The pause before the next try, or None when `error` is final."""
    if not isinstance(error, grpc.RpcError) or not hasattr(error, "code") or error.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    return next(pauses, None)


def call_with_retry(send, request, metadata):
    """Answers `send(request, metadata)` for a unary call, with the model header added
    to `metadata`, trying again (see RETRY_PAUSES) while it fails with UNAVAILABLE and
    the request may be repeated. The last error is raised as grpcio raised it."""
    metadata = call_metadata(metadata, request)
    pauses = iter(RETRY_PAUSES if is_retried(request) else ())
    while True:
        try:
            return send(request, metadata)
        except grpc.RpcError as error:
            pause = _retry_pause(error, pauses)
            if pause is None:
                raise
        time.sleep(pause)


class RetryingStream:
    """The events of a server-streaming call, opened by `open_call(metadata)` with the
    model header of `request`; opened again (see RETRY_PAUSES) when it fails with
    UNAVAILABLE before its first event. Iterate it once, like grpcio's call object;
    `cancel()` cancels the call under way."""

    def __init__(self, open_call, request, metadata):
        self._open_call = open_call
        self._metadata = call_metadata(metadata, request)
        self._call = None
        self._cancelled = False

    def __iter__(self):
        pauses = iter(RETRY_PAUSES)
        while not self._cancelled:
            self._call = self._open_call(self._metadata)
            received = False
            try:
                for event in self._call:
                    received = True
                    yield event
                return
            except grpc.RpcError as error:
                pause = None if received else _retry_pause(error, pauses)
                if pause is None:
                    raise
            time.sleep(pause)

    def cancel(self):
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()
