"""Structure benchmarks, side by side in one run: the torchinfo-style summary of
layerlensd against torchinfo 1.8 in-process, and the activation report against a plain
forward pass.

    python tests/bench/bench_structure.py OUT.md [--daemon target/release/layerlensd]

Models (random weights, seeded; pretrained weights cannot be downloaded here):
torchvision resnet18 and vit_b_16, scripted, input 1x3x224x224.

- summary, cold: the first Summary call on a freshly started daemon (loads the model,
  builds the tapped copy, runs it once); one sample per model.
- summary, warm: later calls for the same input shape, served from the worker's
  summary cache; median of 5.
- torchinfo: `torchinfo.summary(model, input_size, depth=10, verbose=0)` on the eager
  model in this process (it runs a forward pass with hooks every time); median of 3
  after a warm-up.
- activations: `Model.activations(x)` (per-layer statistics and histograms of every
  module call's output, computed on the daemon, no figure) for resnet18 at batch 32,
  against `Model.predict(x)` (one plain forward pass through the same gRPC path and
  input transfer); median of 5 after a warm-up each, alternating. The in-process eager
  forward is reported for scale, and the daemon's
  peak RSS (VmHWM) after forward passes and after an activation report.

Threads: torch in this process and libtorch in the daemon both use 2 (the machine's cores).
"""

import argparse
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
import torchinfo
import torchvision

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import layerlens  # noqa: E402


def start_daemon(binary, store, extra_args=("--cache-bytes", "0"), device="cpu", threads="2"):
    """layerlensd on a free loopback port; answers (process, HOST:PORT). The default
    `--cache-bytes 0`: every repetition must run, not come from the result cache.
    `threads` is the daemon's OMP_NUM_THREADS (None: libtorch's default, for GPU hosts)."""
    env = dict(os.environ, LAYERLENS_LOG="warn")
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    process = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--store", str(store), "--device", device, *extra_args],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.time() + 120
    for line in process.stdout:
        if "listening on" in line:
            return process, line.split("listening on", 1)[1].strip()
        if time.time() > deadline:
            break
    process.kill()
    raise RuntimeError(f"{binary} did not start on {device} with {' '.join(extra_args)}")


def stop_daemon(process):
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def peak_rss_gib(pid):
    """The process's peak resident set size (VmHWM), in GiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def timed(function, repeats):
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def describe(samples):
    return f"{statistics.median(samples):.3f} s" + (f" ({min(samples):.3f}–{max(samples):.3f}, N={len(samples)})" if len(samples) > 1 else " (N=1)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        models = {}
        for name, build in [("resnet18", torchvision.models.resnet18), ("vit_b_16", torchvision.models.vit_b_16)]:
            torch.manual_seed(0)
            model = build(weights=None).eval()
            path = work / f"{name}.pt"
            torch.jit.script(model).save(str(path))
            models[name] = (model, path)
        daemon, address = start_daemon(args.daemon, work / "store")
        try:
            client = layerlens.connect(address, timeout=600)
            shape = (1, 3, 224, 224)
            for name, (model, path) in models.items():
                handle = client.add_model(path, name=name)
                cold = timed(lambda: handle.summary(shape), 1)
                warm = timed(lambda: handle.summary(shape), 5)
                summary = handle.summary(shape)
                torchinfo.summary(model, input_size=shape, depth=10, verbose=0)
                reference = timed(lambda: torchinfo.summary(model, input_size=shape, depth=10, verbose=0), 3)
                stats = torchinfo.summary(model, input_size=shape, depth=10, verbose=0)
                same = (summary.total_params == stats.total_params, len(summary.rows))
                rows.append((f"summary {name}, warm (cached)", describe(warm), describe(reference), statistics.median(warm) / statistics.median(reference), f"params equal: {same[0]}; {same[1]} rows"))
                rows.append((f"summary {name}, cold (first call)", describe(cold), describe(reference), statistics.median(cold) / statistics.median(reference), "loads the model and builds its tapped copy"))
            resnet, _ = models["resnet18"]
            handle = client.model("resnet18")
            x = torch.rand(32, 3, 224, 224, generator=torch.Generator().manual_seed(1)).numpy()
            # Peak resident memory of the daemon after plain forward passes, then after
            # activation reports: what holding (or not holding) every layer's output costs.
            handle.predict(x)
            peak_forward = peak_rss_gib(daemon.pid)
            handle.activations(x, figure_format=None)
            peak_activations = peak_rss_gib(daemon.pid)
            activation_samples, forward_samples = [], []
            for _ in range(5):
                activation_samples += timed(lambda: handle.activations(x, figure_format=None), 1)
                forward_samples += timed(lambda: handle.predict(x), 1)
            with torch.no_grad():
                resnet(torch.from_numpy(x))
                eager = timed(lambda: resnet(torch.from_numpy(x)), 3)
            report = handle.activations(x, figure_format=None)
            rows.append(("activations resnet18, batch 32 (vs daemon forward)", describe(activation_samples), describe(forward_samples),
                         statistics.median(activation_samples) / statistics.median(forward_samples),
                         f"{len(report.layers)} layer outputs reduced; eager forward in-process {describe(eager)}; "
                         f"daemon peak RSS {peak_forward:.2f} GiB after forward passes, {peak_activations:.2f} GiB after an activation report"))
            client.close()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    lines = [
        "| row | layerlensd | reference | ratio | notes |",
        "|---|---|---|---|---|",
    ] + [f"| {row} | {ours} | {theirs} | {ratio:.2f} | {note} |" for row, ours, theirs, ratio, note in rows]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
