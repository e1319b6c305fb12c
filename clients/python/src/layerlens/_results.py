"""Result types of the layerlens client and how they display.

Each type holds plain Python and numpy values copied out of the wire message, so results
outlive the connection and pickle like ordinary objects. Display follows IPython's rich
display protocol (`_repr_html_`, `_repr_png_`, `_repr_svg_`): a summary shows as an
indented table, an attribution as the figure the daemon rendered, a model list as a table.
"""

import base64
import dataclasses
import datetime
import html
import json

_TABLE_STYLE = "border-collapse: collapse; font-family: monospace; font-size: 12px"
_CELL_STYLE = "padding: 2px 8px; text-align: right"
_TEXT_CELL_STYLE = "padding: 2px 8px; text-align: left"
_CAPTION_TARGETS = 10
# Summary tables are split into one table per top-level module; a fixed layout with the
# same column widths keeps their columns in line.
_FIXED_TABLE_STYLE = _TABLE_STYLE + "; table-layout: fixed"
# Summaries with at most this many rows show every top-level module expanded.
_SUMMARY_ROWS_OPEN = 60


def _subtrees(rows):
    """Rows (in call order, with depths) cut into groups: the root row alone, then each
    top-level (depth 1) row with the deeper rows that follow it."""
    groups = []
    for row in rows:
        if row["depth"] <= 1 or not groups:
            groups.append([row])
        else:
            groups[-1].append(row)
    return groups


def _dataframe(records, what):
    """A pandas DataFrame of flat records; pandas is optional, so say how to get it."""
    try:
        import pandas
    except ImportError as error:
        raise ImportError(f"{what}.to_dataframe() needs pandas, which layerlens does not install: pip install pandas") from error
    return pandas.DataFrame.from_records(list(records))


def _flat_stats(stats):
    """A statistics dict without its histogram, with the NaN/Inf counts."""
    return {key: value for key, value in stats.items() if not key.startswith("histogram_")}


def _format_count(value):
    return f"{value:,}"


def _format_bytes(size_bytes):
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size_bytes} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size_bytes} B"


def _html_table(header, body_rows, footer_rows=(), *, table_style=_TABLE_STYLE, colgroup=""):
    """An HTML table; cells are (text, align_left) pairs whose text is already escaped.
    header None leaves out the head row (a table continuing one above it)."""

    def cells(row, tag):
        return "".join(
            f'<{tag} style="{_TEXT_CELL_STYLE if left else _CELL_STYLE}">{text}</{tag}>' for text, left in row
        )

    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>" if header is not None else ""
    body = "".join("<tr>" + cells(row, "td") + "</tr>" for row in body_rows)
    foot = "".join('<tr style="border-top: 1px solid">' + cells(row, "td") + "</tr>" for row in footer_rows)
    return f'<table style="{table_style}">{colgroup}{head}<tbody>{body}{foot}</tbody></table>'


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model stored in layerlensd: its id (sha256 of the file), names and state."""

    id: str
    names: tuple
    size_bytes: int
    resident: bool
    format: str = "torchscript"
    input_shape: tuple = ()
    created_unix: int = 0
    pinned: bool = False
    # A tokenizer (tokenizer.json) is stored with the model.
    has_tokenizer: bool = False

    @classmethod
    def from_proto(cls, message):
        return cls(
            id=message.id,
            names=tuple(message.names),
            size_bytes=int(message.size_bytes),
            resident=bool(message.resident),
            format=message.format,
            input_shape=tuple(int(dim) for dim in message.input_shape),
            created_unix=int(message.created_unix),
            pinned=bool(message.pinned),
            has_tokenizer=bool(message.has_tokenizer),
        )

    @property
    def name(self):
        """The first name referring to this model, or None when it has none."""
        return self.names[0] if self.names else None

    @property
    def kind(self):
        """"exported" (a torch.export .pt2 archive) or "torchscript"."""
        return self.format


class ModelList(list):
    """The daemon's models (a list of ModelInfo) that displays as a table in Jupyter."""

    def _repr_html_(self):
        if not self:
            return "<p>layerlensd stores no models yet.</p>"
        header = [
            ("id", True), ("names", True), ("size", False), ("resident", True),
            ("format", True), ("input shape", True), ("added (UTC)", True),
        ]
        rows = []
        for info in self:
            added = (
                datetime.datetime.fromtimestamp(info.created_unix, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
                if info.created_unix else ""
            )
            rows.append([
                (f'<span title="{html.escape(info.id)}">{html.escape(info.id[:12])}</span>', True),
                (html.escape(", ".join(info.names)), True),
                (_format_bytes(info.size_bytes), False),
                ("yes" if info.resident else "no", True),
                (html.escape(info.format), True),
                (html.escape(str(list(info.input_shape))) if info.input_shape else "", True),
                (added, True),
            ])
        return _html_table(header, rows)


class Summary:
    """The module tree of a model with parameter counts, as `layerlens summary` prints it.

    `rows` is a list of dicts, one per module call in call order (the root first), with
    keys `path` (dotted module path, "" for the root), `type`, `depth`, `num_params`
    (this module and its children, tied parameters once), `trainable_params`,
    `own_params`, `input_shape` and `output_shape` (None without a sample input),
    `mult_adds` (torchinfo's count), `params_percent`, `kernel_size`, `call_index`,
    `call_site` and `is_leaf`. The footer: `input_bytes`, `forward_backward_bytes`,
    `params_bytes`, `total_bytes`; `notes` says what could not be shown.
    """

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(self, model_id, rows, total_params, trainable_params, total_mult_adds=0, figure=None, footer=None, notes=()):
        self.model_id = model_id
        self.rows = rows
        self.total_params = total_params
        self.trainable_params = trainable_params
        self.total_mult_adds = total_mult_adds
        footer = footer or {}
        self.input_bytes = footer.get("input_bytes", 0)
        self.forward_backward_bytes = footer.get("forward_backward_bytes", 0)
        self.params_bytes = footer.get("params_bytes", 0)
        self.total_bytes = footer.get("total_bytes", 0)
        self.notes = list(notes)
        self.figure = figure.data if figure is not None and figure.data else None
        self.figure_mime = figure.mime if figure is not None and figure.data else None

    @classmethod
    def from_proto(cls, message):
        rows = []
        for row in message.rows:
            def shape_of(shapes):
                # Same convention as the CLI's JSON: one shape is a list of ints, several a
                # list of lists, none is None.
                shapes = [[int(dim) for dim in shape.dims] for shape in shapes]
                return None if not shapes else shapes[0] if len(shapes) == 1 else shapes

            output_shape = shape_of(row.output_shapes)
            rows.append({
                "path": row.path,
                "type": row.type_name,
                "depth": int(row.depth),
                "num_params": int(row.num_params),
                "trainable_params": int(row.trainable_params),
                "own_params": int(row.own_params),
                "output_shape": output_shape,
                "input_shape": shape_of(row.input_shapes),
                "mult_adds": int(row.mult_adds),
                "params_percent": float(row.params_percent),
                "kernel_size": [int(dim) for dim in row.kernel_size] or None,
                "call_index": int(row.call_index),
                "call_site": row.call_site,
                "is_leaf": bool(row.is_leaf),
                "attributes": {name: json.loads(value) for name, value in row.attributes.items()},
                "num_buffers": int(row.num_buffers),
            })
        figure = message.figure if message.HasField("figure") else None
        return cls(
            model_id=message.model_id,
            rows=rows,
            total_params=int(message.total_params),
            trainable_params=int(message.trainable_params),
            total_mult_adds=int(message.total_mult_adds),
            figure=figure,
            footer={
                "input_bytes": int(message.input_bytes),
                "forward_backward_bytes": int(message.forward_backward_bytes),
                "params_bytes": int(message.params_bytes),
                "total_bytes": int(message.total_bytes),
            },
            notes=list(message.notes),
        )

    def _show_shapes(self):
        return any(row["output_shape"] is not None for row in self.rows)

    def _show_mult_adds(self):
        return self.total_mult_adds > 0 or any(row["mult_adds"] for row in self.rows)

    def _repr_html_(self):
        """The table, collapsible by depth: the root row, then one `<details>` per
        top-level module holding its subtree (open while the model is small), then the
        totals. Every part is its own table with the same fixed column widths, so the
        columns line up whether a part is open or closed."""
        header = [("layer", True), ("type", True)]
        widths = [24, 20]
        if self._show_shapes():
            header.append(("output shape", True))
            widths.append(16)
        header += [("params", False), ("trainable", False)]
        widths += [10, 10]
        if self._show_mult_adds():
            header.append(("mult-adds", False))
            widths.append(12)
        colgroup = "<colgroup>" + "".join(f'<col style="width: {width}em">' for width in widths) + "</colgroup>"

        def table(body_rows, head=None, foot=()):
            return _html_table(head, body_rows, foot, table_style=_FIXED_TABLE_STYLE, colgroup=colgroup)

        groups = _subtrees(self.rows)
        open_attribute = " open" if len(self.rows) <= _SUMMARY_ROWS_OPEN else ""
        parts = []
        for group in groups:
            cells = [self._html_cells(row) for row in group]
            if len(group) == 1:
                parts.append(table(cells, head=header if not parts else None))
                continue
            top = group[0]
            label = html.escape(top["path"])
            shape = f", output {html.escape(str(top['output_shape']))}" if top["output_shape"] is not None else ""
            summary_line = (
                f'{label} <span style="color: #6b7280">({html.escape(top["type"].rsplit(".", 1)[-1])}, '
                f'{_format_count(top["num_params"])} params{shape}, {len(group) - 1} submodules)</span>'
            )
            parts.append(
                f'<details{open_attribute} style="margin: 0"><summary style="cursor: pointer; font-family: monospace; '
                f'font-size: 12px; padding: 2px 0">{summary_line}</summary>{table(cells, head=header if not parts else None)}</details>'
            )
        footer = [("total", True), ("", True)]
        if self._show_shapes():
            footer.append(("", True))
        footer += [(_format_count(self.total_params), False), (_format_count(self.trainable_params), False)]
        if self._show_mult_adds():
            footer.append((_format_count(self.total_mult_adds), False))
        parts.append(table([], foot=[footer]))
        notes = "".join(f'<p style="font-size: 12px">note: {html.escape(note)}</p>' for note in self.notes)
        return f'<div class="layerlens-summary">{"".join(parts)}{notes}</div>'

    def _html_cells(self, row):
        # The root row has path ""; show the model's type there instead of nothing.
        label = html.escape(row["path"].rsplit(".", 1)[-1] if row["path"] else "(model)")
        indent = f'<span style="padding-left: {1.5 * row["depth"]:.1f}em" title="{html.escape(row["path"])}">'
        cells = [(f"{indent}{label}</span>", True), (html.escape(row["type"]), True)]
        if self._show_shapes():
            cells.append((html.escape(str(row["output_shape"])) if row["output_shape"] is not None else "", True))
        cells += [(_format_count(row["num_params"]), False), (_format_count(row["trainable_params"]), False)]
        if self._show_mult_adds():
            cells.append((_format_count(row["mult_adds"]), False))
        return cells

    def __str__(self):
        """A plain-text table for terminals and logs."""
        lines = [f"{'layer':<40} {'type':<32} {'params':>12} {'trainable':>12}"]
        for row in self.rows:
            label = "  " * row["depth"] + (row["path"].rsplit(".", 1)[-1] if row["path"] else "(model)")
            lines.append(f"{label:<40} {row['type']:<32} {row['num_params']:>12,} {row['trainable_params']:>12,}")
        lines.append(f"{'total':<40} {'':<32} {self.total_params:>12,} {self.trainable_params:>12,}")
        return "\n".join(lines)

    def __repr__(self):
        return f"Summary(model_id={self.model_id[:12]!r}, rows={len(self.rows)}, total_params={self.total_params})"

    def to_dataframe(self):
        """The rows as a pandas DataFrame (pandas is not a dependency of layerlens)."""
        return _dataframe(self.rows, "Summary")


class Attribution:
    """How much each input element contributed to the chosen output, with the daemon's figure.

    `values` is a float32 numpy array of the input's shape (layer methods: the layer's
    output shape); `targets` the output index explained for each batch row; `output` the
    model's output for the input, (batch, outputs).
    """

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(
        self, model_id, method, targets, values, output, convergence_delta=None, figure=None,
        extra_values=(), convergence_deltas=(), n_steps=None, rows_evaluated=0, passes=0,
    ):
        self.model_id = model_id
        self.method = method
        self.targets = targets
        self.values = values
        self.output = output
        self.convergence_delta = convergence_delta
        # Attributions to the second, third, ... input of a model with several.
        self.extra_values = tuple(extra_values)
        # Per batch row: sum of attributions - (F(input) - F(baseline)), as Captum.
        self.convergence_deltas = list(convergence_deltas)
        # Integrated gradients: the step count used (the one settled on with n_steps="auto").
        self.n_steps = n_steps
        # Rows evaluated (one input through forward, or forward and backward), and the
        # passes they were batched into under the daemon's memory budget.
        self.rows_evaluated = rows_evaluated
        self.passes = passes
        self.figure = figure.data if figure is not None and figure.data else None
        self.figure_mime = figure.mime if figure is not None and figure.data else None
        self.alt_text = figure.alt_text if figure is not None else ""

    @classmethod
    def from_proto(cls, message, tensor_to_array):
        return cls(
            model_id=message.model_id,
            method=message.method,
            targets=[int(target) for target in message.targets],
            values=tensor_to_array(message.attribution),
            output=tensor_to_array(message.output) if message.HasField("output") else None,
            convergence_delta=message.convergence_delta if message.HasField("convergence_delta") else None,
            figure=message.figure if message.HasField("figure") else None,
            extra_values=[tensor_to_array(tensor) for tensor in message.extra_attributions],
            convergence_deltas=list(message.convergence_deltas),
            n_steps=message.n_steps or None,
            rows_evaluated=message.rows_evaluated,
            passes=message.passes,
        )

    @property
    def all_values(self):
        """One attribution per model input: (values, *extra_values)."""
        return (self.values, *self.extra_values)

    @property
    def caption(self):
        """E.g. "saliency, target 3"; when batch rows have different targets, each row's is listed."""
        distinct = sorted(set(self.targets))
        if not distinct:
            return self.method
        if len(distinct) == 1:
            return f"{self.method}, target {distinct[0]}"
        # One target per batch row; a long batch is cut short so the caption stays a line.
        shown = ", ".join(str(target) for target in self.targets[:_CAPTION_TARGETS])
        more = f", ... ({len(self.targets)} rows)" if len(self.targets) > _CAPTION_TARGETS else ""
        return f"{self.method}, targets {shown}{more}"

    def _repr_png_(self):
        return self.figure if self.figure_mime == "image/png" else None

    def _repr_svg_(self):
        return self.figure.decode("utf-8") if self.figure_mime == "image/svg+xml" else None

    def _repr_html_(self):
        caption = html.escape(self.caption)
        if self.convergence_delta is not None:
            caption += html.escape(f" (convergence delta {self.convergence_delta:.3g})")
        if self.figure is None:
            return f"<p>{caption}: values of shape {list(self.values.shape)}, no figure requested</p>"
        encoded = base64.b64encode(self.figure).decode("ascii")
        return (
            f'<figure style="margin: 0"><img src="data:{html.escape(self.figure_mime)};base64,{encoded}" '
            f'alt="{html.escape(self.alt_text)}"><figcaption>{caption}</figcaption></figure>'
        )

    def __repr__(self):
        return f"Attribution(method={self.method!r}, targets={self.targets}, shape={tuple(self.values.shape)})"


class _FigureDisplay:
    """Inline display of a figure the daemon rendered (PNG or SVG)."""

    def _set_figure(self, figure):
        self.figure = figure.data if figure is not None and figure.data else None
        self.figure_mime = figure.mime if figure is not None and figure.data else None
        self.alt_text = figure.alt_text if figure is not None else ""

    def _repr_png_(self):
        return self.figure if self.figure_mime == "image/png" else None

    def _repr_svg_(self):
        return self.figure.decode("utf-8") if self.figure_mime == "image/svg+xml" else None


class Comparison(_FigureDisplay):
    """Several methods' attributions of one input; displays as a side-by-side grid."""

    def __init__(self, attributions, figure=None):
        self.attributions = attributions
        self._set_figure(figure)

    def __getitem__(self, method):
        """The attribution of one method by name."""
        for attribution in self.attributions:
            if attribution.method == method:
                return attribution
        raise KeyError(method)

    @property
    def caption(self):
        """E.g. "saliency | occlusion, target 3": the methods, left to right, and the target(s)."""
        methods = " | ".join(attribution.method for attribution in self.attributions)
        targets = sorted({target for attribution in self.attributions for target in attribution.targets})
        if not targets:
            return methods
        return f"{methods}, target{'s' if len(targets) > 1 else ''} {', '.join(str(target) for target in targets)}"

    def _repr_html_(self):
        if self.figure is None:
            return f"<p>{html.escape(self.caption)}: no figure requested</p>"
        return (
            f'<figure style="margin: 0">{_figure_html(self.figure, self.figure_mime, self.alt_text)}'
            f"<figcaption>{html.escape(self.caption)}</figcaption></figure>"
        )

    def __repr__(self):
        return f"Comparison({[attribution.method for attribution in self.attributions]})"


class Evaluation:
    """Faithfulness of an attribution: per batch row, Captum's infidelity (lower is
    better) and sensitivity_max (lower is more stable)."""

    def __init__(self, attribution, infidelity=None, sensitivity_max=None):
        self.attribution = attribution
        self.infidelity = infidelity
        self.sensitivity_max = sensitivity_max

    def __repr__(self):
        return f"Evaluation(method={self.attribution.method!r}, infidelity={self.infidelity}, sensitivity_max={self.sensitivity_max})"


class SanityCheck(_FigureDisplay):
    """The parameter randomisation test: `steps` is a list of (layer, Spearman mean,
    Spearman per row), from the output layer towards the input."""

    def __init__(self, attribution, steps, figure=None):
        self.attribution = attribution
        self.steps = steps
        self._set_figure(figure)

    @property
    def spearman(self):
        return [spearman for _, spearman, _ in self.steps]

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td>{html.escape(layer)}</td><td>{spearman:.3f}</td></tr>" for layer, spearman, _ in self.steps
        )
        return (
            f"<table><thead><tr><th>randomised down to</th><th>Spearman ({html.escape(self.attribution.method)})</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )

    def __repr__(self):
        return f"SanityCheck({[(layer, round(spearman, 3)) for layer, spearman, _ in self.steps]})"


class Graph(_FigureDisplay):
    """The op graph of one forward pass: `nodes` as (op, module path, source line),
    `edges` as (from, to, shape); displays as the daemon's figure."""

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(self, nodes, edges, figure=None):
        self.nodes = nodes
        self.edges = edges
        self._set_figure(figure)

    def __repr__(self):
        return f"Graph({len(self.nodes)} ops, {len(self.edges)} edges)"


def _stats(message):
    return {
        "count": int(message.count), "mean": message.mean, "std": message.std, "min": message.min, "max": message.max,
        "l2_norm": message.l2_norm, "zero_fraction": message.zero_fraction, "nan_count": int(message.nan_count),
        "inf_count": int(message.inf_count), "histogram_edges": list(message.histogram_edges),
        "histogram_counts": [int(count) for count in message.histogram_counts],
    }


def _cells(texts):
    """(escaped text, left-aligned) cells for _html_table: the first column left."""
    return [(html.escape(str(text)), index == 0) for index, text in enumerate(texts)]


def _figure_html(figure, mime, alt_text):
    if figure is None:
        return ""
    encoded = base64.b64encode(figure).decode("ascii")
    return f'<img src="data:{html.escape(mime)};base64,{encoded}" alt="{html.escape(alt_text)}">'


class ParameterReport:
    """Statistics of every parameter tensor: `parameters` is a list of dicts (name,
    module_path, shape, dtype, requires_grad, stats); `histograms` and `filters` are the
    daemon's figures (bytes)."""

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(self, parameters, histograms=None, filters=None):
        self.parameters = parameters
        self.histograms, self.histograms_mime = (histograms.data, histograms.mime) if histograms is not None else (None, None)
        self.filters, self.filters_mime = (filters.data, filters.mime) if filters is not None else (None, None)
        self._alt = (histograms.alt_text if histograms is not None else "", filters.alt_text if filters is not None else "")

    @classmethod
    def from_proto(cls, message):
        parameters = [
            {"name": p.name, "module_path": p.module_path, "shape": list(p.shape), "dtype": p.dtype,
             "requires_grad": p.requires_grad, "stats": _stats(p.stats)}
            for p in message.parameters
        ]
        return cls(
            parameters,
            message.histograms if message.HasField("histograms") else None,
            message.filters if message.HasField("filters") else None,
        )

    def _repr_html_(self):
        body = [
            [p["name"], str(p["shape"]), f'{p["stats"]["mean"]:.3g}', f'{p["stats"]["std"]:.3g}',
             f'{p["stats"]["min"]:.3g}', f'{p["stats"]["max"]:.3g}', f'{100 * p["stats"]["zero_fraction"]:.1f}%',
             str(p["stats"]["nan_count"] + p["stats"]["inf_count"])]
            for p in self.parameters
        ]
        table = _html_table(_cells(["parameter", "shape", "mean", "std", "min", "max", "zeros", "NaN/Inf"]), [_cells(row) for row in body])
        return table + _figure_html(self.histograms, self.histograms_mime, self._alt[0]) + _figure_html(self.filters, self.filters_mime, self._alt[1])

    def _repr_png_(self):
        # Frontends that cannot show HTML still get the histograms.
        return self.histograms if self.histograms_mime == "image/png" else None

    def records(self):
        """One flat dict per parameter tensor: name, module_path, shape, dtype,
        requires_grad and the statistics (count, mean, std, min, max, l2_norm,
        zero_fraction, nan_count, inf_count); the histograms stay in `parameters`."""
        return [
            {**{key: value for key, value in parameter.items() if key != "stats"}, **_flat_stats(parameter["stats"])}
            for parameter in self.parameters
        ]

    def to_dataframe(self):
        """records() as a pandas DataFrame, one row per parameter tensor (needs pandas)."""
        return _dataframe(self.records(), "ParameterReport")

    def __repr__(self):
        return f"ParameterReport({len(self.parameters)} tensors)"


_SEVERITY = {0: "info", 1: "info", 2: "warning", 3: "error"}
_SEVERITY_COLOUR = {"error": "#b91c1c", "warning": "#b45309", "info": "#1d4ed8"}


class ActivationReport:
    """Per module call, statistics of its output (`layers`, dicts in call order) and the
    anomaly report (`anomalies`: dicts with severity, kind, path, call_site, message,
    most severe first); `chart` and `histograms` are the daemon's figures."""

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(self, layers, anomalies, chart=None, histograms=None):
        self.layers = layers
        self.anomalies = anomalies
        self.chart, self.chart_mime = (chart.data, chart.mime) if chart is not None else (None, None)
        self.histograms, self.histograms_mime = (histograms.data, histograms.mime) if histograms is not None else (None, None)
        self._alt = (chart.alt_text if chart is not None else "", histograms.alt_text if histograms is not None else "")

    @classmethod
    def from_proto(cls, message):
        layers = [
            {"path": layer.path, "type": layer.type_name, "call_index": int(layer.call_index), "call_site": layer.call_site,
             "shape": list(layer.shape), "stats": _stats(layer.stats),
             "nonpositive_fraction": layer.nonpositive_fraction if layer.HasField("nonpositive_fraction") else None,
             "saturated_fraction": layer.saturated_fraction if layer.HasField("saturated_fraction") else None,
             "dead_channels": int(layer.dead_channels) if layer.HasField("dead_channels") else None,
             "channels": int(layer.channels) if layer.HasField("channels") else None}
            for layer in message.layers
        ]
        anomalies = [
            {"severity": _SEVERITY.get(anomaly.severity, "info"), "kind": anomaly.kind, "path": anomaly.path,
             "call_site": anomaly.call_site, "message": anomaly.message}
            for anomaly in message.anomalies
        ]
        return cls(
            layers, anomalies,
            message.chart if message.HasField("chart") else None,
            message.histograms if message.HasField("histograms") else None,
        )

    def _repr_html_(self):
        if self.anomalies:
            items = "".join(
                f'<li><span style="color:{_SEVERITY_COLOUR[a["severity"]]};font-weight:bold">{html.escape(a["severity"])}</span> '
                f'{html.escape(a["message"])} <code>{html.escape(a["call_site"].rsplit("/", 1)[-1])}</code></li>'
                for a in self.anomalies
            )
            report = f"<p><b>{len(self.anomalies)} anomalies</b></p><ul>{items}</ul>"
        else:
            report = "<p><b>no anomalies</b></p>"
        rows = [
            _cells([layer["path"] or "(model)", layer["type"].rsplit(".", 1)[-1], str(layer["shape"]), f'{layer["stats"]["mean"]:.3g}',
                    f'{layer["stats"]["std"]:.3g}', f'{layer["stats"]["min"]:.3g}', f'{layer["stats"]["max"]:.3g}',
                    "" if layer["nonpositive_fraction"] is None else f'{100 * layer["nonpositive_fraction"]:.0f}%',
                    "" if layer["dead_channels"] is None else f'{layer["dead_channels"]}/{layer["channels"]}'])
            for layer in self.layers
        ]
        header = _cells(["layer", "type", "shape", "mean", "std", "min", "max", "<= 0", "dead channels"])
        report += (
            f'<details><summary style="cursor: pointer">per-layer statistics ({len(self.layers)} module calls)</summary>'
            f"{_html_table(header, rows)}</details>"
        )
        return report + _figure_html(self.chart, self.chart_mime, self._alt[0]) + _figure_html(self.histograms, self.histograms_mime, self._alt[1])

    def _repr_png_(self):
        return self.chart if self.chart_mime == "image/png" else None

    def records(self):
        """One flat dict per module call: path, type, call_index, call_site, shape, the
        output's statistics (count, mean, std, min, max, l2_norm, zero_fraction,
        nan_count, inf_count), nonpositive_fraction, saturated_fraction, dead_channels,
        channels, and `anomalies`: the kinds reported for this path."""
        kinds = {}
        for anomaly in self.anomalies:
            kinds.setdefault(anomaly["path"], []).append(anomaly["kind"])
        return [
            {**{key: value for key, value in layer.items() if key != "stats"}, **_flat_stats(layer["stats"]),
             "anomalies": kinds.get(layer["path"], [])}
            for layer in self.layers
        ]

    def to_dataframe(self):
        """records() as a pandas DataFrame, one row per module call (needs pandas)."""
        return _dataframe(self.records(), "ActivationReport")

    def __repr__(self):
        return f"ActivationReport({len(self.layers)} layers, {len(self.anomalies)} anomalies)"


class Prediction:
    """The model's output (`output`, numpy) and per row the top classes as (class, logit,
    probability)."""

    # Whether the daemon answered from its result cache; the client sets it per answer.
    cached = False

    def __init__(self, output, top_k):
        self.output = output
        self.top_k = top_k

    @property
    def classes(self):
        """The best class of each row."""
        return [row[0][0] for row in self.top_k]

    def _repr_html_(self):
        body = [[str(index), ", ".join(f"{c} ({100 * p:.1f}%)" for c, _, p in row)] for index, row in enumerate(self.top_k)]
        return _html_table(_cells(["row", "top classes"]), [_cells(row) for row in body])

    def __repr__(self):
        return f"Prediction(classes={self.classes})"
