"""clients/python/examples/quickstart.ipynb runs headless on a real ipykernel and shows results.

The run_notebook fixture (conftest.py) starts the `python3` kernel through nbclient,
pinned to this interpreter, with LAYERLENS_ADDR for the session's daemon, the fixture
model path and a PYTHONPATH that reaches the client's source tree, and fails on any error
output. The saved outputs must hold the daemon's PNG and the summary as an HTML table.
"""

import base64

from conftest import outputs_of, png_size


def test_quickstart_notebook_runs_and_displays_results(run_notebook):
    notebook = run_notebook("quickstart")
    outputs = list(outputs_of(notebook))

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
