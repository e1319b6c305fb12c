"""clients/python/examples/quickstart.ipynb runs headless on a real ipykernel and shows results.

nbclient starts the `python3` kernel, pinned to this interpreter (the venv's python),
which inherits LAYERLENS_ADDR for the session's daemon, the fixture model
path and a PYTHONPATH that reaches the client's source tree. The saved outputs must hold the
daemon's PNG, the summary as an HTML table, and no errors.
"""

import base64
import json
import os
import sys

import nbformat
from nbclient import NotebookClient

from conftest import CLIENT_SOURCE, REPO_ROOT, png_size

NOTEBOOK = REPO_ROOT / "clients" / "python" / "examples" / "quickstart.ipynb"
CELL_TIMEOUT_S = 120
KERNEL_START_TIMEOUT_S = 60


def outputs_of(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            yield from cell.outputs


def test_quickstart_notebook_runs_and_displays_results(daemon, fixtures_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERLENS_ADDR", f"http://{daemon.address}")
    monkeypatch.delenv("LAYERLENS_TOKEN", raising=False)
    monkeypatch.setenv("LAYERLENS_DEMO_MODEL", str(fixtures_dir / "digits_cnn.pt"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(CLIENT_SOURCE), os.environ.get("PYTHONPATH")])))

    # Pin the `python3` kernel to this interpreter and keep the user's IPython profile out:
    # a kernelspec or startup script in the home directory must not change what runs.
    kernel_dir = tmp_path / "jupyter" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (layerlens tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    runner = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        startup_timeout=KERNEL_START_TIMEOUT_S,
        # Errors are collected and asserted on below, with their text in the failure.
        allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    runner.execute()
    # Kept for whoever has to look at a failure: pytest prints tmp_path on error.
    nbformat.write(notebook, tmp_path / "quickstart.executed.ipynb")

    outputs = list(outputs_of(notebook))
    errors = [f"{output.ename}: {output.evalue}" for output in outputs if output.output_type == "error"]
    assert not errors, f"the notebook raised {errors}"

    rich = [output for output in outputs if output.output_type in ("display_data", "execute_result")]
    pngs = [base64.b64decode(output.data["image/png"]) for output in rich if "image/png" in output.data]
    assert pngs, "no image/png output: the attribution did not display as the daemon's figure"
    for png in pngs:
        width, height = png_size(png)
        assert width > 0 and height > 0

    tables = [output.data["text/html"] for output in rich if "text/html" in output.data]
    summary_tables = [table for table in tables if "<table" in table and "features" in table and "classifier" in table]
    assert summary_tables, "no text/html output with the summary table"
    model_tables = [table for table in tables if "<table" in table and "digits" in table and "resident" in table]
    assert model_tables, "%layerlens models showed no table of models"
