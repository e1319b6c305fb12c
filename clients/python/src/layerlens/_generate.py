"""Generation on the client side: objectives as wire messages, streamed jobs, their results.

The Generate service synthesizes inputs (activation maximisation, counterfactuals, latent
traversals). Visualize and Counterfactual are long jobs that stream progress events and
end with one event carrying the result; this module holds the one loop that reads such a
stream (collect_stream), the progress line it shows in a notebook while the job runs,
the parser of the objective mini-language that Model.visualize takes, and the result
types, which display as the daemon's figure like the other figure results.
"""

import base64
import html
import math
import numbers
import operator
import re
import sys
import time

import grpc
import numpy as np

from layerlens import _wire
from layerlens._errors import LayerlensError
from layerlens._results import _FigureDisplay
from layerlens.v1 import generate_pb2

# A term as the wire grammar writes it: `kind:arguments`, e.g. `class:3`,
# `channel:features.3:5`. Only this shape is checked here; which kinds exist and what
# their arguments mean is the daemon's to decide, so a newer daemon's kinds work with
# this client.
# `channel:LAYER:*` (every channel of a layer) ends in the one `*` a term may hold.
_TERM_PATTERN = re.compile(r"[a-z_]+:[^\s*+]+(:\*)?")
_TERM_DICT_KEYS = frozenset(("term", "weight", "direction"))
# Progress lines are redrawn at most this often (an image arriving is always shown):
# with progress_every=1 a fast job would otherwise spend its time re-rendering output.
_MIN_REDRAW_INTERVAL_S = 0.1
# A progress line lists every objective value up to this many images, else a summary.
_LISTED_OBJECTIVE_VALUES = 6


# --- objectives ---------------------------------------------------------------------


def objectives_to_proto(objectives):
    """The wire Objectives for `objectives` as Model.visualize() documents them.

    One objective (a string, a term dict or a (term, weight) pair) or a list of them; an
    objective written as a list is a weighted sum of its terms.
    """
    if _is_single_objective(objectives):
        objectives = [objectives]
    elif not isinstance(objectives, (list, tuple)):
        raise TypeError(
            f"objectives must be a string, a term dict, a (term, weight) pair or a list of them, "
            f"not {type(objectives).__name__}"
        )
    if not objectives:
        raise ValueError("visualize needs at least one objective, e.g. 'class:3'")
    return [generate_pb2.Objective(terms=_objective_terms(objective)) for objective in objectives]


def _is_single_objective(value):
    return isinstance(value, (str, dict)) or _is_term_pair(value)


def _is_term_pair(value):
    return (
        isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str)
        and isinstance(value[1], numbers.Real) and not isinstance(value[1], bool)
    )


def _objective_terms(objective):
    """The ObjectiveTerms of one objective: a string (`+`-separated `WEIGHT*TERM`
    pieces), a term dict, a (term, weight) pair, or a list of any of these (summed)."""
    if _is_single_objective(objective):
        pieces = [objective]
    elif isinstance(objective, (list, tuple)):
        pieces = list(objective)
    else:
        raise TypeError(
            f"an objective is a string, a term dict, a (term, weight) pair or a list of them, "
            f"not {type(objective).__name__}"
        )
    terms = []
    for piece in pieces:
        if isinstance(piece, str):
            terms.extend(_parse_objective_text(piece))
        elif isinstance(piece, dict):
            terms.append(_term_from_dict(piece))
        elif _is_term_pair(piece):
            terms.append(_term(piece[0], piece[1], None, context=piece[0]))
        else:
            raise TypeError(
                f"a term is a string, a dict {{'term', 'weight', 'direction'}} or a (term, weight) pair, "
                f"not {piece!r}"
            )
    if not terms:
        raise ValueError("an objective needs at least one term, e.g. 'class:3'")
    return terms


def _parse_objective_text(text):
    """`"class:3 + 0.5*channel:features.0:2"` -> ObjectiveTerms (weights 1 and 0.5)."""
    terms = []
    for piece in text.split("+"):
        piece = piece.strip()
        if not piece:
            raise ValueError(
                f"objective {text!r} has an empty term; write terms as 'class:3 + 0.5*channel:features.0:2'"
            )
        weight = 1.0
        # A `*` is a weight's unless it is the wildcard ending `channel:LAYER:*`.
        if "*" in piece.removesuffix(":*"):
            weight_text, piece = (part.strip() for part in piece.split("*", 1))
            try:
                weight = float(weight_text)
            except ValueError:
                raise ValueError(
                    f"objective {text!r}: {weight_text!r} is not a number; a weighted term is written WEIGHT*TERM, "
                    f"e.g. 0.5*class:3"
                ) from None
        terms.append(_term(piece, weight, None, context=text))
    return terms


def _term_from_dict(spec):
    unknown = sorted(set(spec) - _TERM_DICT_KEYS)
    if unknown:
        raise ValueError(f"objective term {spec!r} has unknown keys {unknown}; a term dict takes 'term', 'weight', 'direction'")
    if "term" not in spec:
        raise ValueError(f"objective term {spec!r} has no 'term', e.g. {{'term': 'direction:layer4', 'direction': vector}}")
    weight = spec.get("weight")
    return _term(spec["term"], 1.0 if weight is None else weight, spec.get("direction"), context=spec["term"])


def _term(term, weight, direction, *, context):
    """One checked ObjectiveTerm; `context` is what the user wrote, for the error message."""
    if not isinstance(term, str) or not _TERM_PATTERN.fullmatch(term.strip()):
        raise ValueError(
            f"objective {context!r}: {term!r} is not a term; terms are written KIND:ARGUMENTS, e.g. class:3, "
            f"channel:features.3:5, neuron:fc1:7, layer:features.8, direction:layer4"
        )
    term = term.strip()
    weight = float(weight)
    # The wire reads a weight of 0 as 1 (proto3 cannot tell 0 from unset), so a zero
    # weight must not be sent; leaving the term out is what it would mean.
    if weight == 0 or not math.isfinite(weight):
        raise ValueError(f"objective {context!r}: the weight of {term} must be a finite non-zero number, not {weight}")
    is_direction = term.startswith("direction:")
    if is_direction and direction is None:
        raise ValueError(
            f"the term {term!r} needs a direction vector (one value per channel of the layer): "
            f"pass {{'term': {term!r}, 'direction': vector}}"
        )
    if direction is not None and not is_direction:
        raise ValueError(f"the term {term!r} takes no direction; only direction:LAYER terms do")
    values = []
    if direction is not None:
        vector = _wire.as_float32_array(direction)
        if vector.ndim != 1 or vector.size == 0:
            raise ValueError(
                f"the direction of {term!r} must be one value per channel (a non-empty 1-d array), "
                f"not shape {list(vector.shape)}"
            )
        values = vector.tolist()
    return generate_pb2.ObjectiveTerm(term=term, weight=weight, direction=values)


def counterfactual_targets(target, n_rows):
    """The wire targets: one class for every row, or one per row of the (N, ...) input."""
    if isinstance(target, bool):
        raise TypeError("target must be a class index or a sequence of them, not a bool")
    if isinstance(target, numbers.Integral):
        return [int(target)]
    if hasattr(target, "tolist"):
        target = target.tolist()
        if not isinstance(target, list):
            return [operator.index(target)]
    if not isinstance(target, (list, tuple)):
        raise TypeError(f"target must be a class index or a sequence of them, not {type(target).__name__}")
    try:
        targets = [operator.index(item) for item in target]
    except TypeError:
        raise TypeError(f"target must be whole class indices (one per row), not {target!r}") from None
    if len(targets) not in (1, n_rows):
        raise ValueError(f"{len(targets)} targets for {n_rows} input rows; give one target for every row, or one per row")
    return targets


# --- streamed jobs --------------------------------------------------------------------


def collect_stream(call, watcher, address):
    """The result of a server-streaming job: hands each progress event to `watcher` and
    returns the result the last event carries.

    call: the response iterator of a unary-stream stub call, which is also its call
    object. Leaving early for any reason (the kernel's interrupt, KeyboardInterrupt, above
    all) cancels the call, so the daemon stops the job instead of computing for nobody.
    gRPC errors become LayerlensError as in Client._call.
    """
    result = None
    outcome = "failed"
    try:
        for event in call:
            kind = event.WhichOneof("event")
            if kind == "progress":
                watcher.on_progress(event.progress)
            elif kind == "result":
                result = event.result
            # An event of a kind this client does not know (a newer daemon's) is skipped.
        if result is not None:
            outcome = "done"
    except grpc.RpcError as error:
        raise _wire.error_from_rpc(error, address) from None
    except BaseException as error:
        call.cancel()
        outcome = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        raise
    finally:
        watcher.finish(outcome)
    if result is None:
        raise LayerlensError("INTERNAL", f"layerlensd ended the {watcher.name} stream without a result")
    return result


class ProgressWatcher:
    """Receives a job's progress events; shows them while the job runs when asked to."""

    name = "job"

    def __init__(self, show):
        self._view = _open_progress_view(self.name) if show else None
        self._last_step = (0, 0)

    def on_progress(self, progress):
        self._record(progress)
        self._last_step = (int(progress.step), int(progress.steps))
        if self._view is not None:
            self._view.show(self._last_step[0], self._last_step[1], self._describe(progress), self._figure(progress))

    def finish(self, outcome):
        if self._view is not None:
            step, steps = self._last_step
            self._view.close(outcome, step, steps)

    def _record(self, progress):
        pass

    def _describe(self, progress):
        return ""

    def _figure(self, progress):
        return None


class VisualizeWatcher(ProgressWatcher):
    """Keeps (step, objective value per image) of every progress event as `history`."""

    name = "visualize"

    def __init__(self, show):
        super().__init__(show)
        self.history = []

    def _record(self, progress):
        self.history.append((int(progress.step), [float(value) for value in progress.objective]))

    def _describe(self, progress):
        return _objective_text(list(progress.objective))

    def _figure(self, progress):
        # The intermediate contact sheet, in events every image_every steps.
        return progress.figure if progress.HasField("figure") and progress.figure.data else None


class CounterfactualWatcher(ProgressWatcher):
    """Shows how many of the `n_rows` rows are already predicted as their target."""

    name = "counterfactual"

    def __init__(self, show, n_rows):
        super().__init__(show)
        self.n_rows = n_rows

    def _describe(self, progress):
        return f"{progress.flipped}/{self.n_rows} rows flipped"


def _objective_text(values):
    if not values:
        return ""
    if len(values) <= _LISTED_OBJECTIVE_VALUES:
        return "objective " + ", ".join(f"{value:.4g}" for value in values)
    return (
        f"objective mean {sum(values) / len(values):.4g} (min {min(values):.4g}, max {max(values):.4g}) "
        f"over {len(values)} images"
    )


def _open_progress_view(name, notebook_view=None, tqdm_view=None):
    """A notebook line under IPython's kernel, a tqdm bar in a terminal that has tqdm,
    otherwise None (nothing is printed). The view classes default to this module's
    (generation steps); _progress.py passes its own (attribution passes)."""
    shell = _kernel_shell()
    if shell is not None:
        return (notebook_view or _NotebookView)(name)
    if not sys.stderr.isatty():
        return None
    try:
        import tqdm
    except ImportError:
        return None
    return (tqdm_view or _TqdmView)(tqdm.tqdm, name)


def _kernel_shell():
    """The IPython shell when this runs in a Jupyter kernel (rich display available).

    IPython is only looked at when something already imported it: a plain script never
    pays for importing it. A terminal IPython has no kernel and shows no rich output.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return shell


class _ProgressLine:
    """One state of the progress display: a text line and the latest image, if any."""

    def __init__(self, text, figure=None):
        self.text = text
        self.figure = figure

    def _repr_html_(self):
        line = f'<div style="font-family: monospace; font-size: 12px">{html.escape(self.text)}</div>'
        if self.figure is None:
            return line
        encoded = base64.b64encode(self.figure.data).decode("ascii")
        return f'{line}<img src="data:{html.escape(self.figure.mime)};base64,{encoded}" alt="{html.escape(self.figure.alt_text)}">'

    def __repr__(self):
        return self.text


class _NotebookView:
    """An output area that a running job redraws in place (IPython's display handles)."""

    def __init__(self, name):
        from IPython.display import display

        self.name = name
        self._figure = None
        self._drawn_at = 0.0
        self._handle = display(_ProgressLine(f"{name}: starting"), display_id=True)

    def show(self, step, steps, text, figure):
        if figure is not None:
            self._figure = figure
        now = time.monotonic()
        if figure is None and step < steps and now - self._drawn_at < _MIN_REDRAW_INTERVAL_S:
            return
        self._drawn_at = now
        line = f"{self.name}: step {step}/{steps}" + (f" · {text}" if text else "")
        self._handle.update(_ProgressLine(line, self._figure))

    def close(self, outcome, step, steps):
        # The intermediate image is dropped: the result displays its own final figure.
        where = f" at step {step}/{steps}" if outcome != "done" and steps else ""
        self._handle.update(_ProgressLine(f"{self.name}: {outcome}{where}"))


class _TqdmView:
    """A tqdm bar on stderr for terminals."""

    def __init__(self, tqdm_class, name):
        self._bar = tqdm_class(desc=name, total=None, leave=False)

    def show(self, step, steps, text, figure):
        if self._bar.total != steps:
            self._bar.total = steps
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix_str(text, refresh=True)

    def close(self, outcome, step, steps):
        self._bar.close()


# --- results ----------------------------------------------------------------------------


class Visualization(_FigureDisplay):
    """Inputs synthesized to maximise objectives; displays as the daemon's contact sheet.

    `images` is a float32 numpy array (N, C, H, W), the images exactly as the model was fed
    them (after the request's mean/std normalisation), objectives in order, each repeated
    images_per_objective times. Per image: `objective` (its final value before
    regularisers), `labels` (the objective as text), `predicted_class` and
    `predicted_probability` (the model's softmax on it). `steps` is the number of steps
    taken; `history` holds (step, objective value per image) from each progress event.
    """

    def __init__(self, model_id, images, objective, labels, predicted_class, predicted_probability, steps, figure=None, history=()):
        self.model_id = model_id
        self.images = images
        self.objective = objective
        self.labels = labels
        self.predicted_class = predicted_class
        self.predicted_probability = predicted_probability
        self.steps = steps
        self.history = list(history)
        self._set_figure(figure)

    @classmethod
    def from_proto(cls, message, history=()):
        return cls(
            model_id=message.model_id,
            images=_wire.tensor_to_array(message.images),
            objective=[float(value) for value in message.objective],
            labels=list(message.labels),
            predicted_class=[int(value) for value in message.predicted_class],
            predicted_probability=[float(value) for value in message.predicted_probability],
            steps=int(message.steps),
            figure=message.figure if message.HasField("figure") else None,
            history=history,
        )

    def __repr__(self):
        return f"Visualization({len(self.images)} images of shape {list(self.images.shape[1:])}, steps={self.steps})"


class Counterfactual(_FigureDisplay):
    """The smallest changes found that make the model predict the target classes;
    displays as the daemon's figure (original, counterfactual, difference).

    `counterfactual` is a float32 numpy array of the input's shape. `rows` holds one dict
    per input row: `flipped` (predicted as its target at the end), `distance` (from the
    original, in the request's norm), `l2_distance`, `steps` (taken until it flipped, or
    the budget), `original_class`, `final_class`, and `probability_path`, the class
    probabilities at each step as a numpy array (steps + 1, classes).
    """

    def __init__(self, model_id, counterfactual, rows, figure=None):
        self.model_id = model_id
        self.counterfactual = counterfactual
        self.rows = rows
        self._set_figure(figure)

    @classmethod
    def from_proto(cls, message):
        return cls(
            model_id=message.model_id,
            counterfactual=_wire.tensor_to_array(message.counterfactual),
            rows=[_counterfactual_row(row) for row in message.rows],
            figure=message.figure if message.HasField("figure") else None,
        )

    @property
    def flip_rate(self):
        """The fraction of rows predicted as their target at the end (NaN without rows)."""
        if not self.rows:
            return math.nan
        return sum(row["flipped"] for row in self.rows) / len(self.rows)

    @property
    def mean_l2(self):
        """The mean L2 distance of the rows that flipped (NaN when none did): the
        distances of rows that did not flip measure the step budget, not the model."""
        distances = [row["l2_distance"] for row in self.rows if row["flipped"]]
        return sum(distances) / len(distances) if distances else math.nan

    def __repr__(self):
        return f"Counterfactual({len(self.rows)} rows, flip_rate={self.flip_rate:.3g}, mean_l2={self.mean_l2:.4g})"


def _counterfactual_row(row):
    classes = int(row.classes)
    path = np.asarray(row.probability_path, dtype=np.float32)
    if classes == 0 or path.size % classes != 0:
        if path.size:
            raise LayerlensError(
                "INTERNAL",
                f"layerlensd sent a probability path of {path.size} values that is not rows of {classes} classes",
            )
        path = path.reshape(0, classes)
    else:
        path = path.reshape(-1, classes)
    return {
        "flipped": bool(row.flipped),
        "distance": float(row.distance),
        "l2_distance": float(row.l2_distance),
        "steps": int(row.steps),
        "original_class": int(row.original_class),
        "final_class": int(row.final_class),
        "probability_path": path,
    }


class Traversal(_FigureDisplay):
    """A generator's outputs along latent directions; displays as the daemon's grid.

    `images` is a float32 numpy array (rows × columns, C, H, W), row-major: one row per
    varied latent dimension (or one row for an interpolation), one column per step.
    `latents` (rows × columns, D) are the latent vectors they came from.
    """

    def __init__(self, model_id, images, latents, rows, columns, figure=None):
        self.model_id = model_id
        self.images = images
        self.latents = latents
        self.rows = rows
        self.columns = columns
        self._set_figure(figure)

    @classmethod
    def from_proto(cls, message):
        return cls(
            model_id=message.model_id,
            images=_wire.tensor_to_array(message.images),
            latents=_wire.tensor_to_array(message.latents),
            rows=int(message.rows),
            columns=int(message.columns),
            figure=message.figure if message.HasField("figure") else None,
        )

    def __repr__(self):
        return f"Traversal({self.rows} rows × {self.columns} columns of images {list(self.images.shape[1:])})"
