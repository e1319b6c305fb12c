"""kernel-ext/examples/quickstart.ipynb runs headless on the real evcxr Rust kernel.

The Rust notebook extension (`layerlens-kernel-ext`) is only useful if evcxr really
compiles it and really shows its values: this test installs `evcxr_jupyter` with cargo
when it is missing (it lands in ~/.cargo/bin and later runs reuse it; compiling it on a
fresh machine takes several minutes), registers its kernelspec in a temporary
JUPYTER_PATH, and executes the notebook with nbclient against the session's daemon
(LAYERLENS_ADDR). The checks read the saved display outputs: the summary as an HTML table
naming every module of the model, the prediction PyTorch makes on the same TorchScript
file, and the attributions and the generated image as PNGs.

evcxr builds the notebook's dependencies (tonic, tokio, ...) on the first `:dep`. Its
crate directory (EVCXR_TMPDIR) is kept in the per-user cache, one per checkout, so later
runs only rebuild what changed; a lock file keeps two runs of one checkout apart.
"""

import base64
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

import nbformat
import numpy as np
import pytest

from conftest import REPO_ROOT, outputs_of, png_size

NOTEBOOK = REPO_ROOT / "kernel-ext" / "examples" / "quickstart.ipynb"
# The version the notebook was written against; any installed evcxr_jupyter is used.
EVCXR_VERSION = "0.22.0"
# Compiling evcxr_jupyter (it embeds rust-analyzer's crates) from source: about 20
# minutes on two cores.
EVCXR_INSTALL_TIMEOUT_S = 3600
# The `:dep` cell compiles layerlens-kernel-ext and everything under it the first time.
DEP_CELL_TIMEOUT_S = 900
# Every other cell compiles and links one small crate.
CELL_TIMEOUT_S = 240
KERNEL_START_TIMEOUT_S = 120
INSTALL_KERNEL_TIMEOUT_S = 60


def cargo_home():
    return pathlib.Path(os.environ.get("CARGO_HOME") or pathlib.Path.home() / ".cargo")


def cache_root():
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "layerlens"


def evcxr_jupyter():
    """The evcxr_jupyter binary: on PATH, in cargo's bin directory, or installed now."""
    found = shutil.which("evcxr_jupyter") or shutil.which("evcxr_jupyter", path=str(cargo_home() / "bin"))
    if found:
        return pathlib.Path(found)
    cargo = shutil.which("cargo") or shutil.which("cargo", path=str(cargo_home() / "bin"))
    if not cargo:
        pytest.fail("evcxr_jupyter is not installed and there is no cargo to install it with")
    log = cache_root() / "evcxr_jupyter-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs at once install once: the second waits, then finds the binary.
    with (cache_root() / "evcxr_jupyter-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("evcxr_jupyter", path=str(cargo_home() / "bin"))
        if found:
            return pathlib.Path(found)
        return install_evcxr_jupyter(cargo, log)


def install_evcxr_jupyter(cargo, log):
    started = time.monotonic()
    with log.open("wb") as log_file:
        try:
            status = subprocess.run(
                [cargo, "install", "--locked", "--version", EVCXR_VERSION, "evcxr_jupyter"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=EVCXR_INSTALL_TIMEOUT_S,
            ).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    if status != 0:
        pytest.fail(f"`cargo install --locked evcxr_jupyter` failed ({status}); log {log}:\n{tail}")
    print(f"installed evcxr_jupyter in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return cargo_home() / "bin" / "evcxr_jupyter"


@pytest.fixture
def rust_kernel(tmp_path, monkeypatch):
    """A `rust` kernelspec registered by `evcxr_jupyter --install` in a temporary JUPYTER_PATH."""
    binary = evcxr_jupyter()
    jupyter_path = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(jupyter_path))
    result = subprocess.run([str(binary), "--install"], capture_output=True, text=True, timeout=INSTALL_KERNEL_TIMEOUT_S)
    assert result.returncode == 0, f"evcxr_jupyter --install failed:\n{result.stdout}\n{result.stderr}"
    assert (jupyter_path / "kernels" / "rust" / "kernel.json").is_file(), result.stdout
    # No user prelude or init script of this machine's evcxr may change the run.
    monkeypatch.setenv("EVCXR_CONFIG_DIR", str(tmp_path / "evcxr-config"))
    return "rust"


@pytest.fixture
def evcxr_crate_dir():
    """evcxr's crate and target directory for this checkout, kept between runs and locked while in use."""
    checkout = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]
    # Outside the repository: cargo would take the evcxr crate for a stray member of
    # this workspace.
    directory = cache_root() / "evcxr" / checkout
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f"{checkout}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield directory


def cell_with(notebook, snippet):
    for cell in notebook.cells:
        if cell.cell_type == "code" and snippet in cell.source:
            return list(cell.outputs)
    raise AssertionError(f"no cell contains {snippet!r}")


def rich(outputs, mime):
    return [output.data[mime] for output in outputs if output.output_type in ("display_data", "execute_result") and mime in output.data]


def one_png(outputs):
    """The one image/png of a cell, checked to decode as a PNG of some size."""
    images = rich(outputs, "image/png")
    assert len(images) == 1, f"expected one image/png output, got {len(images)}: {outputs}"
    image = base64.b64decode(images[0])
    width, height = png_size(image)
    assert width > 8 and height > 8, (width, height)
    return image


def rust_std_dylib_dir():
    """The directory of the toolchain's libstd-*.so, which every cell's library links."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    version = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True, timeout=60).stdout
    host = next(line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("host:"))
    return pathlib.Path(sysroot) / "lib" / "rustlib" / host / "lib"


def test_quickstart_runs_on_evcxr(rust_kernel, evcxr_crate_dir, daemon, digits_model, digits_torchscript, fixtures_dir, monkeypatch, tmp_path):
    from nbclient import NotebookClient

    monkeypatch.setenv("LAYERLENS_ADDR", f"http://{daemon.address}")
    monkeypatch.delenv("LAYERLENS_TOKEN", raising=False)
    monkeypatch.setenv("EVCXR_TMPDIR", str(evcxr_crate_dir))
    # Each cell's library finds libstd through a relative rpath computed from
    # target/<triple>/debug/deps, but evcxr loads the copy one directory up; from a crate
    # directory under $HOME (not /tmp, where `..` stops at the root and the path
    # happens to resolve) the rpath misses and dlopen fails. Say where libstd is.
    monkeypatch.setenv("LD_LIBRARY_PATH", os.pathsep.join(filter(None, [str(rust_std_dylib_dir()), os.environ.get("LD_LIBRARY_PATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    runner = NotebookClient(
        notebook,
        kernel_name=rust_kernel,
        timeout_func=lambda cell: DEP_CELL_TIMEOUT_S if ":dep" in cell.source else CELL_TIMEOUT_S,
        startup_timeout=KERNEL_START_TIMEOUT_S,
        allow_errors=True,
        # The kernel runs in the notebook's directory, so the notebook's relative
        # `:dep` path and fixture path resolve as they do for a person.
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    started = time.monotonic()
    runner.execute()
    print(f"executed {NOTEBOOK.name} on evcxr in {time.monotonic() - started:.0f} s", file=sys.stderr)
    nbformat.write(notebook, tmp_path / "quickstart.executed.ipynb")

    errors = [f"{output.ename}: {output.evalue}" for output in outputs_of(notebook) if output.output_type == "error"]
    assert not errors, f"quickstart.ipynb raised {errors}"
    # evcxr reports compile errors and a failed `?` on stderr rather than as errors.
    stderr = [output.text for output in outputs_of(notebook) if output.output_type == "stream" and output.name == "stderr"]
    assert not stderr, f"quickstart.ipynb wrote to stderr: {stderr}"

    model_text = rich(cell_with(notebook, 'session.model("digits")'), "text/plain")
    assert model_text and "digits" in model_text[0] and digits_model.id in model_text[0], model_text

    # The summary: an HTML table with a row for every module of the TorchScript file.
    summary = rich(cell_with(notebook, "m.summary("), "text/html")
    assert len(summary) == 1 and summary[0].startswith("<table"), summary
    table = summary[0]
    paths = [path for path, _module in digits_torchscript.named_modules() if path]
    assert paths
    for path in paths:
        assert f"<code>{path}</code>" in table, f"module {path} missing from the summary table"
    total = sum(parameter.numel() for parameter in {id(p): p for p in digits_torchscript.parameters()}.values())
    assert f"Total params: {total:,}" in table
    assert "[1, 16, 8, 8]" in table, "output shapes are shown"

    # The prediction is PyTorch's on the same input.
    import torch

    sample = np.load(fixtures_dir / "digit_sample.npy")
    with torch.no_grad():
        expected_class = int(digits_torchscript(torch.from_numpy(sample)).argmax(dim=1)[0])
    prediction = rich(cell_with(notebook, "m.predict(&x)"), "text/html")
    assert len(prediction) == 1 and "<table" in prediction[0]
    assert f"<tr><td>0</td><td>1</td><td>{expected_class}</td>" in prediction[0], prediction[0]

    # Attributions: the daemon's heat map as a PNG, captioned with the method and target.
    for method in ("saliency", "integrated_gradients"):
        outputs = cell_with(notebook, f'"{method}"')
        one_png(outputs)
        caption = rich(outputs, "text/html")
        assert caption and "<figure" in caption[0] and f"{method} for target {expected_class}" in caption[0], caption

    # Activation maximisation: the contact sheet, captioned with the objective.
    outputs = cell_with(notebook, "m.visualize(")
    one_png(outputs)
    text = rich(outputs, "text/plain")
    assert text and "64 steps" in text[0] and "class_vs_rest:3" in text[0], text
