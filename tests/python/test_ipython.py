"""`%load_ext layerlens` in a real IPython shell: formatters, the `%layerlens` magic, unloading.

The notebook test shows the whole path through a kernel; this one pins down the pieces
(which MIME types each result produces, each magic subcommand, usage errors) where a
failure points at the exact line.
"""

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import layerlens
from layerlens import _ipython

CALL_TIMEOUT_S = 60


@pytest.fixture
def shell(daemon, monkeypatch):
    monkeypatch.setenv("LAYERLENS_ADDR", f"http://{daemon.address}")
    ipython = InteractiveShell.instance()
    # A profile may have turned rich formatters off; loading the extension turns them on.
    ipython.display_formatter.formatters["image/png"].enabled = False
    ipython.run_line_magic("load_ext", "layerlens")
    # A deadline on every call keeps a hung daemon from hanging the test run.
    ipython.run_line_magic("layerlens", f"connect http://{daemon.address} --timeout {CALL_TIMEOUT_S}")
    yield ipython
    ipython.run_line_magic("unload_ext", "layerlens")


def test_results_format_as_html_and_png(shell, digits_model, digits_images):
    attribution = digits_model.attribute(digits_images[:1], target=2)
    data, _metadata = shell.display_formatter.format(attribution)
    assert data["image/png"] == attribution.figure
    assert "saliency, target 2" in data["text/html"]
    summary_data, _ = shell.display_formatter.format(digits_model.summary())
    assert "<table" in summary_data["text/html"]


def test_the_magic_lists_models_and_summarises_one(shell, digits_model):
    models = shell.run_line_magic("layerlens", "")
    assert isinstance(models, layerlens.ModelList)
    assert digits_model.id in {info.id for info in models}
    assert "digits" in models._repr_html_()
    assert [info.id for info in shell.run_line_magic("layerlens", "models")] == [info.id for info in models]

    summary = shell.run_line_magic("layerlens", "summary digits --input-shape 1,1,8,8 --depth 1")
    assert isinstance(summary, layerlens.Summary)
    assert [row["path"] for row in summary.rows] == ["", "features", "classifier"]


def test_the_magic_connects_elsewhere(shell, daemon, capsys):
    shell.run_line_magic("layerlens", f"connect 127.0.0.1:{daemon.address.rsplit(':', 1)[1]} --timeout {CALL_TIMEOUT_S}")
    assert "now talks to 127.0.0.1:" in capsys.readouterr().out
    assert isinstance(shell.run_line_magic("layerlens", "models"), layerlens.ModelList)


@pytest.mark.parametrize("line", ["frobnicate", "summary", "summary digits --depth deep"])
def test_bad_magic_arguments_are_usage_errors(shell, line):
    with pytest.raises(UsageError, match="%layerlens"):
        shell.run_line_magic("layerlens", line)


def test_unloading_removes_the_magic(daemon, monkeypatch):
    monkeypatch.setenv("LAYERLENS_ADDR", f"http://{daemon.address}")
    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "layerlens")
    ipython.run_line_magic("layerlens", f"connect http://{daemon.address} --timeout {CALL_TIMEOUT_S}")
    ipython.run_line_magic("unload_ext", "layerlens")
    assert "layerlens" not in ipython.magics_manager.magics["line"]
    assert _ipython._MagicState.client is None
