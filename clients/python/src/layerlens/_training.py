"""Training explained from Python: checkpoints, the optimiser's state, the loss
landscape, and `watch`, which reports a live training run to the daemon.

`watch(model, optimizer, every=10, run="exp1")` registers two hooks on the optimiser
(`register_step_pre_hook` and `register_step_post_hook`) and changes nothing in the
training loop. Every `every` steps the pre-hook copies the parameters and the post-hook
computes, per layer (the module that owns the parameters), the gradient norm, the
weight norm, the norm of the update the step applied and its update:weight ratio, and
quantiles of |update| per coordinate; a background thread sends them with the learning
rates (and the loss, if `run.log(loss=...)` gave one) to the daemon, which keeps them
in its database for anyone to see (`layerlens runs show`). The hooks read tensors
and never write them or draw random numbers, so a watched loop trains bit-identically
to an unwatched one. Quantiles of big layers come from an evenly strided sample of at
most QUANTILE_SAMPLE coordinates (max is exact).
"""

import io
import os
import pathlib
import queue
import threading
import time

import numpy as np

from layerlens import _wire
from layerlens._results import _FigureDisplay, _cells, _figure_html, _html_table
from layerlens.v1 import training_pb2

QUANTILE_SAMPLE = 1 << 16
# Steps whose records wait in the sender's queue at most; beyond it the oldest are
# dropped (a daemon that is down must not grow a training process's memory).
MAX_PENDING = 1000

_LOSSES = {"cross_entropy": training_pb2.LOSS_KIND_CROSS_ENTROPY, "mse": training_pb2.LOSS_KIND_MSE, "output": training_pb2.LOSS_KIND_OUTPUT}
_RUN_FIGURES = {
    "ratios": training_pb2.RUN_FIGURE_KIND_RATIO_HEATMAP,
    "gradient_flow": training_pb2.RUN_FIGURE_KIND_GRADIENT_FLOW,
    "learning_rate": training_pb2.RUN_FIGURE_KIND_LEARNING_RATE,
    "loss": training_pb2.RUN_FIGURE_KIND_LOSS,
    "compare": training_pb2.RUN_FIGURE_KIND_COMPARE,
}


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


class Checkpoint:
    """A stored checkpoint: id, model (id), step, optimizer ("Adam", ..., "" for none), format."""

    def __init__(self, message):
        self.id = message.id
        self.model = message.model
        self.step = message.step if message.HasField("step") else None
        self.optimizer = message.optimizer or None
        self.format = message.format
        self.parameters = message.parameters
        self.has_scheduler = message.has_scheduler
        self.size_bytes = message.size_bytes

    def __repr__(self):
        return f"Checkpoint(id={self.id[:12]!r}, step={self.step}, optimizer={self.optimizer!r})"


def _quantiles(message):
    return {"p50": float(message.p50), "p99": float(message.p99), "max": float(message.max)}


class OptimizerReport(_FigureDisplay):
    """What the optimiser does to each parameter, from a checkpoint's state.

    `rows`: a dict per parameter (parameter, layer, shape, learning_rate, weight_norm,
    update_norm, update_weight_ratio, effective_lr {p50, p99, max}, step_size,
    momentum_norm, zero_second_moment_fraction, weight_decay_share, has_state); NaN where
    the state does not determine a number. `layers`: the same norms per layer.
    `findings`: the anomaly report (severity, layer, parameter, kind, message, value).
    Displays as a table with the findings and the update:weight ratio figure.
    """

    def __init__(self, message):
        self.optimizer = message.optimizer or None
        self.step = message.step if message.HasField("step") else None
        self.checkpoint = message.checkpoint
        self.rows = [
            {"parameter": row.parameter, "layer": row.layer, "shape": list(row.shape), "group": row.group,
             "learning_rate": row.learning_rate, "weight_norm": row.weight_norm, "update_norm": row.update_norm,
             "update_weight_ratio": row.update_weight_ratio, "effective_lr": _quantiles(row.effective_lr),
             "step_size": _quantiles(row.step_size), "momentum_norm": row.momentum_norm,
             "zero_second_moment_fraction": row.zero_second_moment_fraction, "weight_decay_share": row.weight_decay_share,
             "step_histogram": (list(row.step_histogram.edges), list(row.step_histogram.counts)),
             "moments": {moment.name: {"norm": moment.norm, "max_abs": moment.max_abs, "nonfinite": moment.nonfinite} for moment in row.moments},
             "has_state": row.has_state}
            for row in message.rows
        ]
        self.layers = [
            {"layer": layer.layer, "weight_norm": layer.weight_norm, "update_norm": layer.update_norm, "update_weight_ratio": layer.update_weight_ratio}
            for layer in message.layers
        ]
        self.findings = [
            {"severity": finding.severity, "layer": finding.layer, "parameter": finding.parameter, "kind": finding.kind,
             "message": finding.message, "value": finding.value}
            for finding in message.findings
        ]
        self.param_groups = [{"index": group.index, "lr": group.learning_rate, "options": dict(group.options)} for group in message.param_groups]
        self.schedule = (
            {"last_epoch": message.schedule.last_epoch, "last_lr": list(message.schedule.last_lr), "base_lr": list(message.schedule.base_lr),
             "state": dict(message.schedule.state)}
            if message.HasField("schedule") else None
        )
        self.notes = list(message.notes)
        self._set_figure(message.figure if message.HasField("figure") else None)

    def row(self, parameter):
        """The row of one parameter by name."""
        for row in self.rows:
            if row["parameter"] == parameter:
                return row
        raise KeyError(parameter)

    def _repr_html_(self):
        body = [
            [row["parameter"], f'{row["weight_norm"]:.3g}', f'{row["update_norm"]:.3g}', f'{row["update_weight_ratio"]:.2e}',
             f'{row["effective_lr"]["p50"]:.2e}']
            for row in self.rows
        ]
        table = _html_table(_cells(["parameter", "‖w‖", "‖update‖", "update:weight", "effective lr p50"]), [_cells(row) for row in body])
        heading = f"<p><b>{self.optimizer or 'no optimiser'}</b> at step {self.step}</p>"
        findings = "".join(f"<li>{finding['severity']}: {finding['message']}</li>" for finding in self.findings) or "<li>no findings</li>"
        notes = "".join(f"<li>note: {note}</li>" for note in self.notes)
        return heading + table + f"<ul>{findings}{notes}</ul>" + _figure_html(self.figure, self.figure_mime, self.alt_text)


class Landscape(_FigureDisplay):
    """The loss around a checkpoint: `losses` is (steps,) or (steps, steps) with the
    second direction's coordinate as the row; `coordinates` the grid along each
    direction; `center_loss` the loss at the checkpoint; `directions` (when asked for)
    {parameter: [direction 1, direction 2]} as numpy arrays; `trajectory` a list of
    (label, step, x, y). Displays as the daemon's figure."""

    def __init__(self, message):
        self.dims = message.dims
        self.steps = message.steps
        self.range = message.range
        self.center_loss = message.center_loss
        self.coordinates = np.array(message.coordinates)
        losses = np.array(message.losses)
        self.losses = losses.reshape(self.steps, self.steps) if self.dims == 2 else losses
        self.directions = {}
        for direction in message.directions:
            self.directions.setdefault(direction.parameter, [None, None])[direction.direction] = _wire.tensor_to_array(direction.values)
        self.trajectory = [(point.checkpoint, point.step if point.HasField("step") else None, point.x, point.y) for point in message.trajectory]
        self.explained_variance = list(message.explained_variance)
        self.passes = message.passes
        self._set_figure(message.figure if message.HasField("figure") else None)

    def __repr__(self):
        return f"Landscape({self.dims}-D, {self.steps} steps, ±{self.range}, center loss {self.center_loss:.6g})"


class WeightChange(_FigureDisplay):
    """Per parameter (`parameters`) and per layer (`layers`): from_norm, change_norm,
    relative_change, cosine. Displays as a bar chart of the relative change."""

    def __init__(self, message):
        def rows(changes):
            return [{"name": c.name, "from_norm": c.from_norm, "change_norm": c.change_norm, "relative_change": c.relative_change, "cosine": c.cosine}
                    for c in changes]

        self.parameters = rows(message.parameters)
        self.layers = rows(message.layers)
        self._set_figure(message.figure if message.HasField("figure") else None)


class RunFigure(_FigureDisplay):
    def __init__(self, figure):
        self._set_figure(figure)


class Run:
    """A training run stored in the daemon; `records()` lists its per-layer records."""

    def __init__(self, client, name):
        self.client = client
        self.name = name

    def _message(self):
        return self.client._call(self.client._training.GetRun, training_pb2.GetRunRequest(run=self.name))

    def records(self):
        """A dict per (step, layer): step, layer, grad_norm, weight_norm, update_norm,
        update_weight_ratio, step_size {p50, p99, max}, loss (None when not logged)."""
        return [
            {"step": r.step, "layer": r.layer, "grad_norm": r.grad_norm, "weight_norm": r.weight_norm, "update_norm": r.update_norm,
             "update_weight_ratio": r.update_weight_ratio, "step_size": _quantiles(r.step_size), "loss": r.loss if r.HasField("loss") else None}
            for r in self._message().records
        ]

    def steps(self):
        """A dict per recorded step: step, loss (or None), learning_rates (per param group)."""
        return [{"step": s.step, "loss": s.loss if s.HasField("loss") else None, "learning_rates": list(s.learning_rates)} for s in self._message().steps]

    def figure(self, kind="ratios", *, compare_with=(), figure_format="png"):
        """A figure of the run: "ratios" (layers × steps heat map of update:weight),
        "gradient_flow", "learning_rate", "loss", or "compare" with the runs named in
        `compare_with`."""
        if kind not in _RUN_FIGURES:
            raise ValueError(f"figure kind {kind!r}; expected one of {sorted(_RUN_FIGURES)}")
        runs = [self.name, *[run.name if isinstance(run, Run) else str(run) for run in compare_with]]
        request = training_pb2.RunFigureRequest(runs=runs, kind=_RUN_FIGURES[kind], figure_format=_wire.figure_format(figure_format))
        return RunFigure(self.client._call(self.client._training.RunFigure, request))

    def _repr_html_(self):
        return _figure_html(*(lambda figure: (figure.figure, figure.figure_mime, figure.alt_text))(self.figure()))

    def __repr__(self):
        return f"Run({self.name!r})"


def checkpoint_bytes(checkpoint):
    """The bytes of a checkpoint given as a path, bytes, or an object torch.save takes
    (a state dict, or {"model": ..., "optimizer": ...})."""
    if isinstance(checkpoint, (bytes, bytearray)):
        return bytes(checkpoint)
    if isinstance(checkpoint, (str, os.PathLike)):
        return pathlib.Path(checkpoint).read_bytes()
    import torch

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def _layer_of(name):
    return name.rpartition(".")[0]


def _quantile_values(flat):
    """p50, p99 and max of |flat| (a 1-D tensor), from a strided sample for big ones."""
    import torch

    magnitudes = flat.abs()
    stride = max(1, magnitudes.numel() // QUANTILE_SAMPLE)
    sample = magnitudes[::stride].double()
    quantiles = torch.quantile(sample, torch.tensor([0.5, 0.99], dtype=torch.float64))
    return float(quantiles[0]), float(quantiles[1]), float(magnitudes.max())


class Watcher:
    """A live run: the hooks `watch` registered and the thread that sends records.

    `log(loss=...)` attaches a loss to the next recorded step; `close()` removes the
    hooks and sends what is pending (also at interpreter exit).
    """

    def __init__(self, client, model, optimizer, every, run, model_ref):
        import torch

        if every < 1:
            raise ValueError(f"every is {every}; it must be at least 1")
        self.client = client
        self.run = run
        self.every = int(every)
        self._optimizer = optimizer
        self._model_ref = model_ref or ""
        # Parameters by identity -> (layer, name), in the model's order.
        self._names = {id(parameter): name for name, parameter in model.named_parameters()}
        self._steps = 0
        self._before = None
        self._loss = None
        self._errors = []
        self._queue = queue.Queue(maxsize=MAX_PENDING)
        self._torch = torch
        self._closed = False
        self._handles = [optimizer.register_step_pre_hook(self._pre_step), optimizer.register_step_post_hook(self._post_step)]
        self._sender = threading.Thread(target=self._send_loop, name=f"layerlens-watch-{run}", daemon=True)
        self._sender.start()

    @property
    def name(self):
        return self.run

    def log(self, loss=None):
        """Attaches `loss` (a number or a 0-d tensor) to the next recorded step."""
        if loss is not None:
            self._loss = float(loss.detach()) if hasattr(loss, "detach") else float(loss)

    def _recording(self):
        # Step numbers count from 1; steps every, 2·every, ... are recorded.
        return (self._steps + 1) % self.every == 0

    def _pre_step(self, optimizer, args, kwargs):
        if not self._recording():
            self._before = None
            return
        with self._torch.no_grad():
            self._before = {id(p): p.detach().clone() for group in optimizer.param_groups for p in group["params"]}

    def _post_step(self, optimizer, args, kwargs):
        self._steps += 1
        before, self._before = self._before, None
        if before is None:
            return
        torch = self._torch
        layers = {}
        with torch.no_grad():
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    name = self._names.get(id(parameter))
                    if name is None or id(parameter) not in before:
                        continue
                    update = (parameter.detach() - before[id(parameter)]).flatten()
                    grad = parameter.grad
                    layer = layers.setdefault(_layer_of(name), {"grad": 0.0, "weight": 0.0, "update": 0.0, "updates": []})
                    layer["grad"] += float(grad.detach().double().square().sum()) if grad is not None else 0.0
                    layer["weight"] += float(parameter.detach().double().square().sum())
                    layer["update"] += float(update.double().square().sum())
                    layer["updates"].append(update)
            records = []
            for layer, sums in layers.items():
                weight_norm, update_norm = sums["weight"] ** 0.5, sums["update"] ** 0.5
                p50, p99, largest = _quantile_values(torch.cat(sums["updates"]))
                records.append(training_pb2.RunRecord(
                    step=self._steps, layer=layer, grad_norm=sums["grad"] ** 0.5, weight_norm=weight_norm, update_norm=update_norm,
                    update_weight_ratio=update_norm / weight_norm if weight_norm > 0 else float("nan"),
                    step_size=training_pb2.Quantiles(p50=p50, p99=p99, max=largest),
                ))
        step = training_pb2.RunStep(step=self._steps, learning_rates=[float(group["lr"]) for group in optimizer.param_groups], unix_time=time.time())
        if self._loss is not None:
            step.loss = self._loss
            self._loss = None
        report = training_pb2.ReportRunRequest(
            run=self.run, model=self._model_ref, steps=[step], records=records, optimizer=type(optimizer).__name__,
        )
        try:
            self._queue.put_nowait(report)
        except queue.Full:
            self._errors.append(f"step {self._steps}: the daemon is not keeping up; its records were dropped")

    def _send_loop(self):
        while True:
            report = self._queue.get()
            if report is None:
                return
            try:
                self.client._call(self.client._training.ReportRun, report)
            except Exception as error:  # noqa: BLE001 - a training loop must not die of a monitoring error
                self._errors.append(f"step {report.steps[0].step if report.steps else '?'}: {error}")
            finally:
                self._queue.task_done()

    def flush(self, timeout=30.0):
        """Waits until every record so far reached the daemon (or `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    @property
    def errors(self):
        """What could not be sent, one line per failed report."""
        return list(self._errors)

    def close(self):
        """Removes the hooks and sends what is pending."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self.flush()
        self._queue.put(None)
        self._sender.join(timeout=5)

    def records(self):
        """The run's records as the daemon has them (after sending what is pending)."""
        self.flush()
        return Run(self.client, self.run).records()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"layerlens.watch(run={self.run!r}, every={self.every}, steps={self._steps})"


def watch(model, optimizer, every=10, run="run", client=None, model_ref=None):
    """Reports a training run to the daemon every `every` optimiser steps, with no
    change to the training loop (see the module docs). Answers a Watcher: call
    `.log(loss=loss)` in the loop to record the loss, `.close()` at the end (or use it
    as a context manager). `client` defaults to `layerlens.connect()`; `model_ref` is
    what the run says it trains (a stored model's name, for example)."""
    if client is None:
        from layerlens._explain import default_client

        client = default_client()
    return Watcher(client, model, optimizer, every, run, model_ref)
