"""Progress and interruption of long attributions (Model.attribute(progress=...)).

What each check stands on:
- the attribution's numbers: PyTorch's own input gradient on the same TorchScript file,
  so the streamed path is checked against an oracle, not against itself;
- progress: the events the daemon's AttributeStream sends, read through the client;
- interruption: a real ipykernel started with jupyter_client, interrupted with
  KernelManager.interrupt_kernel() (SIGINT, what Jupyter's stop button sends) while a
  long occlusion runs; the daemon's worker must then answer the next request at once.
"""

import queue
import time

import numpy as np
import pytest
import torch

from conftest import use_test_kernel
from layerlens import _progress

DIGITS_SHAPE = (1, 8, 8)
# Occlusion with 1x1 windows over this many rows runs 64 passes of this many rows each:
# about 10 s on two idle CPU cores, each pass under two hundred milliseconds.
LONG_ROWS = 4096
KERNEL_START_TIMEOUT_S = 60
# How long the kernel may take to show the progress line and to stop after the interrupt.
PROGRESS_SHOWN_TIMEOUT_S = 30
INTERRUPT_TIMEOUT_S = 15
FREE_WITHIN_S = 2.0


def tiled_digits(images, rows):
    return np.resize(images, (rows, *DIGITS_SHAPE)).astype(np.float32)


def test_streamed_attribution_reports_progress_and_matches_pytorch(client, digits_model, digits_torchscript, digits_images):
    x = digits_images[:4].astype(np.float32)
    # Saliency in passes of one row: 4 gradient passes after the targets' forward pass.
    request = client._attribute_request(
        digits_model, x, "saliency", 3, layer=None, figure_format=None, figure_method=None, figure_sign=None,
        params={"internal_batch_size": 1, "abs": False},
    )
    watcher = _progress.AttributeWatcher(False, "saliency")
    answer = client._stream(client._explain.AttributeStream, request, watcher)
    assert watcher.events, "no progress events"
    last = watcher.events[-1]
    assert (last.phase, last.rows_done, last.rows_total) == ("gradient passes", 4, 4)
    assert last.passes_done == last.passes_total == answer.passes
    assert [event.passes_done for event in watcher.events] == sorted(event.passes_done for event in watcher.events)

    inputs = torch.from_numpy(x).requires_grad_(True)
    digits_torchscript(inputs)[:, 3].sum().backward()
    expected = inputs.grad.numpy()
    # The public call with progress on (the stream) and off (unary Attribute).
    for progress in (True, None):
        attribution = digits_model.attribute(x, "saliency", target=3, abs=False, figure_format=None, progress=progress)
        np.testing.assert_allclose(attribution.values, expected, rtol=1e-5, atol=1e-6)


def test_progress_needs_no_display_outside_a_kernel(client, digits_model, digits_images, capsys):
    # pytest's stderr is no terminal and there is no kernel: progress=True shows nothing.
    attribution = digits_model.attribute(digits_images[:2].astype(np.float32), "integrated_gradients", target=1, n_steps=64, figure_format=None)
    assert attribution.values.shape == (2, *DIGITS_SHAPE)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.fixture
def kernel(daemon, tmp_path, monkeypatch):
    """A real ipykernel (this venv's Python) that imports the client from the source tree."""
    from jupyter_client.manager import KernelManager

    use_test_kernel(daemon, tmp_path, monkeypatch)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    kernel_client = manager.client()
    kernel_client.start_channels()
    try:
        kernel_client.wait_for_ready(timeout=KERNEL_START_TIMEOUT_S)
        yield manager, kernel_client
    finally:
        kernel_client.stop_channels()
        manager.shutdown_kernel(now=True)


def iopub_until(kernel_client, msg_id, stop, timeout, seen):
    """Reads the cell's iopub messages into `seen` until `stop(message)` or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = kernel_client.get_iopub_msg(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(message)
        if stop(message):
            return message
    return None


def display_text(message):
    if message["msg_type"] in ("display_data", "update_display_data", "execute_result"):
        return message["content"]["data"].get("text/plain", "")
    return ""


def test_kernel_interrupt_cancels_the_attribution_on_the_daemon(kernel, client, digits_model, digits_images, tmp_path):
    manager, kernel_client = kernel
    images_path = tmp_path / "images.npy"
    np.save(images_path, tiled_digits(digits_images, LONG_ROWS))
    code = (
        "import numpy as np, layerlens\n"
        f"model = layerlens.connect().model({digits_model.id!r})\n"
        f"x = np.load({str(images_path)!r})\n"
        "model.attribute(x, 'occlusion', target=3, sliding_window_shapes=(1, 1, 1), internal_batch_size=1,\n"
        "                figure_format=None, progress=True)\n"
    )
    msg_id = kernel_client.execute(code)
    seen = []
    shown = iopub_until(
        kernel_client, msg_id, lambda message: "rows" in display_text(message), PROGRESS_SHOWN_TIMEOUT_S, seen,
    )
    assert shown is not None, f"no progress line within {PROGRESS_SHOWN_TIMEOUT_S} s: {[m['msg_type'] for m in seen]}"
    assert "attribute (occlusion)" in display_text(shown)

    manager.interrupt_kernel()
    interrupted_at = time.monotonic()
    error = iopub_until(kernel_client, msg_id, lambda message: message["msg_type"] == "error", INTERRUPT_TIMEOUT_S, seen)
    assert error is not None, f"the cell did not end with an error after the interrupt: {[m['msg_type'] for m in seen]}"
    assert error["content"]["ename"] == "KeyboardInterrupt"
    stopped_after = time.monotonic() - interrupted_at
    # The progress line was left saying what happened.
    assert any("cancelled" in display_text(message) for message in seen), [display_text(m) for m in seen]

    # The daemon's worker is free at once: the occlusion stopped within one pass.
    started = time.monotonic()
    prediction = digits_model.predict(np.zeros((1, *DIGITS_SHAPE), dtype=np.float32))
    waited = time.monotonic() - started
    assert len(prediction.top_k) == 1
    assert waited < FREE_WITHIN_S, f"Predict waited {waited:.2f} s after the interrupt (the kernel stopped in {stopped_after:.2f} s)"
    # The worker counts a command as running until just after it answered: allow it a
    # moment to count the Predict out.
    deadline = time.monotonic() + 1.0
    while True:
        resident = [model for model in client.status()["models"] if model["id"] == digits_model.id]
        assert resident, "digits is not resident"
        if resident[0]["in_flight"] == 0:
            break
        assert time.monotonic() < deadline, f"still in flight after the interrupt: {resident}"
        time.sleep(0.02)
