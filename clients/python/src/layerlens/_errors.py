"""The exceptions the layerlens client raises.

Every failure the daemon reports arrives as a gRPC status; the client turns it into one
exception type, `LayerlensError`, so that notebook code catches one thing and can still
branch on the gRPC code. Failures the client finds itself before anything is sent (a live
module that can be neither scripted nor traced) use the same type with the code a daemon
would have answered.
"""


class LayerlensError(Exception):
    """A request to layerlensd failed.

    `code` is the gRPC status name, e.g. `"INVALID_ARGUMENT"`, `"NOT_FOUND"`,
    `"RESOURCE_EXHAUSTED"`, `"UNAVAILABLE"`; `str(error)` is the daemon's message, which
    names what was wrong (the model, the shape, the target).
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ExportError(LayerlensError):
    """A live torch.nn.Module could not be turned into TorchScript on the client side."""

    def __init__(self, message):
        super().__init__("INVALID_ARGUMENT", message)
