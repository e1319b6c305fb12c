"""The example notebooks in clients/python/examples run headless and show sane results.

Each notebook runs on a real ipykernel through nbclient, as test_notebook.py runs the
quickstart: the `python3` kernel is pinned to this interpreter, LAYERLENS_ADDR points at
the session's daemon and LAYERLENS_DEMO_MODEL at the fixture model. The checks read the
saved outputs — the mime types a notebook frontend would render, and numbers compared
with PyTorch on the same TorchScript file — not only that the cells ran.
"""

import base64
import re

import numpy as np
import pytest

from conftest import REPO_ROOT, outputs_of, png_size

EXAMPLES = REPO_ROOT / "clients" / "python" / "examples"


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def rich(outputs, mime):
    """The data of every display/result output carrying `mime`."""
    return [output.data[mime] for output in outputs if output.output_type in ("display_data", "execute_result") and mime in output.data]


def text_of(outputs):
    """Everything printed (stream outputs) and the plain-text results, joined."""
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result") and "text/plain" in output.data:
            parts.append(output.data["text/plain"])
    return "\n".join(parts)


def cell_with(notebook, snippet):
    """The outputs of the first code cell whose source contains `snippet`."""
    for cell in code_cells(notebook):
        if snippet in cell.source:
            return list(cell.outputs)
    raise AssertionError(f"no cell contains {snippet!r}")


def pngs(outputs):
    images = [base64.b64decode(data) for data in rich(outputs, "image/png")]
    for image in images:
        width, height = png_size(image)
        assert width > 8 and height > 8
    return images


def digits_parameter_count(digits_torchscript):
    return sum(parameter.numel() for parameter in {id(p): p for p in digits_torchscript.parameters()}.values())


def test_structure_notebook(run_notebook, digits_torchscript):
    notebook = run_notebook("structure")
    total = digits_parameter_count(digits_torchscript)

    summary_html = rich(cell_with(notebook, "summary = digits.summary"), "text/html")
    assert len(summary_html) == 1
    table = summary_html[0]
    # Collapsible by depth: one <details> per top-level module with children.
    assert table.count("<details") == 2 and "features" in table and "classifier" in table, table[:500]
    assert f"{total:,}" in table
    assert "[1, 16, 8, 8]" in table, "output shapes are shown"
    printed = text_of(cell_with(notebook, "total parameters"))
    assert f"total parameters: {total}" in printed
    leaf_rows = [path for path, _module in digits_torchscript.named_modules() if not list(_module.children())]
    for path in leaf_rows:
        assert f"'{path}'" in printed, path

    shallow = rich(cell_with(notebook, "digits.summary(input_shape=[1, 1, 8, 8], depth=1)"), "text/html")[0]
    assert "<details" not in shallow and "features.0" not in shallow

    for snippet in ("graph = digits.graph", "digits.graph([1, 1, 8, 8], depth=1)"):
        svgs = rich(cell_with(notebook, snippet), "image/svg+xml")
        assert svgs and "<svg" in svgs[0], snippet
    full_graph = rich(cell_with(notebook, "graph = digits.graph"), "image/svg+xml")[0]
    folded_graph = rich(cell_with(notebook, "digits.graph([1, 1, 8, 8], depth=1)"), "image/svg+xml")[0]
    assert "conv2d" in full_graph.lower() and len(folded_graph) < len(full_graph)


def test_parameters_notebook(run_notebook, digits_torchscript):
    notebook = run_notebook("parameters")
    outputs = cell_with(notebook, "params = digits.parameters")
    table = rich(outputs, "text/html")[0]
    for name, _parameter in digits_torchscript.named_parameters():
        assert name in table, name
    assert "<img" in table, "the histograms show under the table"
    assert pngs(outputs), "the histograms are also an image/png output"

    printed = text_of(cell_with(notebook, "records = params.records()"))
    n_tensors = len(list(digits_torchscript.parameters()))
    assert f"tensors: {n_tensors}" in printed
    assert f"total values: {digits_parameter_count(digits_torchscript)}" in printed
    # pandas is optional: either its frame shows, or the ImportError says how to get it.
    assert "pip install pandas" in printed or rich(cell_with(notebook, "records = params.records()"), "text/html")

    assert "[16, 1, 3, 3] histogram total: 144 of 144" in text_of(cell_with(notebook, "histogram_counts"))
    filters = pngs(cell_with(notebook, "Image(data=params.filters)"))
    assert len(filters) == 1


def test_activations_notebook(run_notebook, digits_torchscript):
    notebook = run_notebook("activations")
    report = rich(cell_with(notebook, "report = broken.activations"), "text/html")
    assert report, "the activation report displays as HTML"
    page = report[0]
    # The planted dead channels are an error, coloured, with the layer's source line.
    assert re.search(r'<span style="color:#b91c1c;font-weight:bold">error</span>', page), page[:800]
    assert "dead" in page and "<details" in page
    assert pngs(cell_with(notebook, "report = broken.activations")), "the chart is an image/png output"
    printed = text_of(cell_with(notebook, "for anomaly in report.anomalies"))
    assert "error dead_units act" in printed
    assert "dead channels in act: 5 of 8" in printed

    trained = text_of(cell_with(notebook, "anomalies in the trained model"))
    assert "'nan'" not in trained, trained
    # One statistics row per module call below the root (each module of the CNN runs once).
    assert f"layers: {len(list(digits_torchscript.named_modules())) - 1}" in trained
    assert rich(cell_with(notebook, "trained = digits.activations"), "text/html")


def test_attributions_notebook(run_notebook, digits_torchscript, fixtures_dir):
    import torch

    notebook = run_notebook("attributions")
    x = torch.from_numpy(np.load(fixtures_dir / "digits_test_images.npy")[:1])
    with torch.no_grad():
        predicted = int(digits_torchscript(x).argmax(1))
    prediction = rich(cell_with(notebook, "prediction = digits.predict"), "text/html")[0]
    assert "<td" in prediction and f">{predicted} (" in prediction

    for snippet, method in [("layerlens.explain(", "saliency"), ("method=\"integrated_gradients\"", "integrated_gradients"),
                            ("method=\"occlusion\"", "occlusion")]:
        outputs = cell_with(notebook, snippet)
        page = rich(outputs, "text/html")[0]
        assert f"<figcaption>{method}, target {predicted}" in page, page[-300:]
        assert len(pngs(outputs)) == 1, method

    printed = text_of(cell_with(notebook, "convergence delta"))
    assert "(1, 1, 8, 8)" in printed
    found = re.search(r"sum of attributions (\S+) convergence delta: (\S+)", printed)
    total, delta = float(found.group(1)), float(found.group(2))
    # Completeness: the attributions add up to F(x) - F(0) up to a few percent at 32 steps.
    assert delta < 0.05 * abs(total), printed

    outputs = cell_with(notebook, "comparison = digits.compare")
    page = rich(outputs, "text/html")[0]
    assert f"saliency | integrated_gradients | occlusion | grad_cam, target {predicted}" in page
    assert len(pngs(outputs)) == 1


def test_generation_notebook(run_notebook, digits_torchscript):
    notebook = run_notebook("generation")
    sheet = pngs(cell_with(notebook, "sheet = digits.visualize"))
    assert len(sheet) == 1
    printed = text_of(cell_with(notebook, "predicted:"))
    assert "images: (10, 1, 8, 8)" in printed
    predicted = [int(value) for value in re.search(r"predicted: \[([^\]]*)\]", printed).group(1).split(",")]
    # Each class's image is mostly classified as that class by the model itself.
    assert sum(digit == klass for digit, klass in enumerate(predicted)) >= 8, predicted


def test_training_notebook(run_notebook):
    notebook = run_notebook("training")
    printed = text_of(cell_with(notebook, "run.close()"))
    assert "run errors: []" in printed
    assert "checkpoints: [(50, 'Adam'), (100, 'Adam'), (150, 'Adam')]" in printed
    assert "records: 60 steps: 15" in text_of(cell_with(notebook, 'view = ll.run("notebook-adam")')), "4 layers at 15 recorded steps"
    for snippet in ('view.figure("ratios")', 'view.figure("gradient_flow")', 'figure="step_histograms"', "line = stored.landscape", "plane = stored.landscape", "stored.weight_change"):
        assert pngs(cell_with(notebook, snippet)), f"no figure from the cell with {snippet!r}"
    report = rich(cell_with(notebook, "report = stored.optimizer"), "text/html")
    assert report and "update:weight" in report[0] and "Adam" in report[0] and "<img" in report[0]
    match = re.search(r"daemon ([0-9.]+), PyTorch ([0-9.]+)", text_of(cell_with(notebook, "line = stored.landscape")))
    assert match and float(match.group(1)) == pytest.approx(float(match.group(2)), rel=1e-5)
    variance = re.search(r"explained variance: \[([0-9.]+), ([0-9.]+)\]", text_of(cell_with(notebook, "plane = stored.landscape")))
    assert variance and float(variance.group(1)) + float(variance.group(2)) == pytest.approx(1.0, abs=1e-3), "three points span a plane"


def test_language_notebook(run_notebook):
    notebook = run_notebook("language")
    assert "with tokenizer: True" in text_of(cell_with(notebook, "ll.add_model"))
    assert "same as transformers' generate: True" in text_of(cell_with(notebook, "lm.generate_text"))
    attribution = cell_with(notebook, 't = lm.attribute_text(prompt')
    html = rich(attribution, "text/html")
    assert html and "<span" in html[0], "the token heat map displays as HTML"
    passes = re.search(r"passes: (\d+) for (\d+) perturbed prompts", text_of(attribution))
    assert passes and int(passes.group(1)) < int(passes.group(2)), "the perturbed prompts share passes"
    template = text_of(cell_with(notebook, "s = lm.attribute_text"))
    assert "'Dave'" in template and "'Palm Coast'" in template and "'lawyer'" in template
