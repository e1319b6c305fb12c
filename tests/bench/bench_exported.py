"""The `.pt2` executor against eager PyTorch: one forward and backward pass, side by side.

    PY="$(scripts/setup.sh | tail -n 1)"
    cargo build --release -p layerlens-engine --example forward_backward
    "$PY" tests/bench/bench_exported.py [--models resnet18,vit_b_16] [--rounds 7] [--repeats 3]
    cargo build --release --bin layerlensd    # for --daemon
    "$PY" tests/bench/bench_exported.py --daemon [--rounds 7]

Why it exists: the daemon runs `torch.export` programs with its own executor (each graph
node called through libtorch's dispatcher, boxed, from Rust), because PyTorch's C++
runtimes for `.pt2` give no gradients. Its cost per node must vanish next to the kernels:
the target is at most 1.10x the time of the same module run eagerly by PyTorch.

What is timed, on the same weights and the same input (uniform in [0, 1), seeded):
- eager: the torchvision module in this process, `x.requires_grad_()`, forward,
  `output[:, 0].sum()`, `torch.autograd.grad` to the input;
- exported: the same module saved with `torch.export.save`, loaded by the engine
  (daemon/engine/examples/forward_backward.rs, a release build) and run the same way:
  forward through the executor, backward to the input;
- torchscript: the same module traced and saved, through the engine's TorchScript path,
  for reference.
With --daemon, the same work as BENCHMARKS.md's attribution rows 1a and 3a — saliency and
integrated gradients (50 steps) on resnet18 — through a release layerlensd (Python client,
gRPC on loopback, no result cache) on the `.pt2` and on the traced `.pt` of the same
module, against Captum on the eager module in this process, interleaved the same way, with
the largest difference between the daemon's numbers and Captum's.

Each side prints the median of REPEATS passes per round; rounds alternate between the
sides (eager, exported, torchscript, eager, ...) so load from elsewhere hits all alike,
and the table gives the median over rounds. Both processes use the same intra-op thread
count (`torch.get_num_threads()` here, OMP_NUM_THREADS for the engine). Prints a
Markdown table for BENCHMARKS.md.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
import torchvision

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = REPO_ROOT / "target" / "release" / "examples" / "forward_backward"

MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), (1, 3, 224, 224)),
    "vit_b_16": (lambda: torchvision.models.vit_b_16(weights=None), (1, 3, 224, 224)),
}


def eager_round(module, x, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        inputs = x.detach().requires_grad_(True)
        score = module(inputs)[:, 0].sum()
        (gradient,) = torch.autograd.grad(score, inputs)
        assert gradient.shape == x.shape
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class EngineSide:
    """The engine's forward_backward example, kept running; one round per line sent."""

    def __init__(self, path, shape, repeats, threads):
        environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [str(BINARY), str(path), ",".join(map(str, shape)), str(repeats)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment,
        )
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"{BINARY} did not start on {path}: {ready!r}")

    def round(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        import json

        return json.loads(self.process.stdout.readline())["median_ms"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def daemon_rows(rounds):
    """Saliency and IG(50) through a release layerlensd on .pt2 and .pt, against Captum."""
    import numpy as np
    from captum.attr import IntegratedGradients, Saliency

    sys.path.insert(0, str(REPO_ROOT / "clients" / "python" / "src"))
    sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))
    import layerlens
    from bench_attribution import running_daemon

    binary = REPO_ROOT / "target" / "release" / "layerlensd"
    if not binary.is_file():
        sys.exit(f"{binary} is missing: cargo build --release --bin layerlensd")
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand((1, 3, 224, 224), generator=torch.Generator().manual_seed(1))
    target = int(module(x).argmax())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        exported_path = pathlib.Path(scratch) / "resnet18.pt2"
        traced_path = pathlib.Path(scratch) / "resnet18.pt"
        # A dynamic batch, as the README recommends: integrated gradients runs its steps
        # in passes of many rows, which a fixed-batch export would split into passes of
        # one row (a traced TorchScript file takes any batch).
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.export.save(
            torch.export.export(module, (torch.cat([x, x]),), dynamic_shapes=({0: batch},), strict=False), str(exported_path)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(module, x, check_trace=False).save(str(traced_path))
        with running_daemon(binary, scratch, torch.get_num_threads()) as daemon:
            client = layerlens.connect(f"http://{daemon.address}")
            models = {"pt2": client.add_model(exported_path, name="r18-pt2"), "pt": client.add_model(traced_path, name="r18-pt")}
            cases = {
                "saliency": (lambda model: model.attribute(x.numpy(), method="saliency", target=target, figure_format=None, progress=None),
                             lambda: Saliency(module).attribute(x.clone().requires_grad_(), target=target, abs=True)),
                "integrated_gradients (50 steps)": (
                    lambda model: model.attribute(x.numpy(), method="integrated_gradients", target=target, n_steps=50,
                                                  figure_format=None, progress=None),
                    lambda: IntegratedGradients(module).attribute(x, target=target, n_steps=50),
                ),
            }
            for name, (daemon_call, captum_call) in cases.items():
                times = {"pt2": [], "pt": [], "captum": []}
                answers = {kind: daemon_call(model) for kind, model in models.items()}
                reference = captum_call().detach().numpy()
                for _ in range(rounds):
                    for kind, model in models.items():
                        start = time.perf_counter()
                        daemon_call(model)
                        times[kind].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    captum_call()
                    times["captum"].append(time.perf_counter() - start)
                medians = {kind: statistics.median(values) for kind, values in times.items()}
                diffs = {kind: float(np.abs(answer.values - reference).max()) for kind, answer in answers.items()}
                rows.append((name, medians, diffs, float(np.abs(reference).max())))
                print(f"{name}: " + ", ".join(f"{kind} {value:.3f} s" for kind, value in medians.items()), file=sys.stderr)
            client.close()
    print(f"resnet18 1x3x224x224, target {target}; release layerlensd, --cache-bytes 0, {rounds} interleaved rounds, median seconds per call.\n")
    print("| method | daemon on .pt2 (s) | daemon on .pt (s) | Captum, eager (s) | .pt2 / Captum | .pt / Captum | max abs diff .pt2 − Captum | max abs diff .pt − Captum |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, medians, diffs, scale in rows:
        print(f"| {name} | {medians['pt2']:.3f} | {medians['pt']:.3f} | {medians['captum']:.3f} | "
              f"{medians['pt2'] / medians['captum']:.2f} | {medians['pt'] / medians['captum']:.2f} | "
              f"{diffs['pt2']:.2e} (of {scale:.2e}) | {diffs['pt']:.2e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,vit_b_16")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--daemon", action="store_true", help="saliency and IG through a release layerlensd instead")
    args = parser.parse_args()
    if args.daemon:
        daemon_rows(args.rounds)
        return
    if not BINARY.is_file():
        sys.exit(f"{BINARY} is missing: cargo build --release -p layerlens-engine --example forward_backward")
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            build, shape = MODELS[name]
            torch.manual_seed(0)
            module = build().eval()
            x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
            exported_path = pathlib.Path(scratch) / f"{name}.pt2"
            torch.export.save(torch.export.export(module, (x,), strict=False), str(exported_path))
            traced_path = pathlib.Path(scratch) / f"{name}.pt"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.jit.trace(module, x, check_trace=False).save(str(traced_path))
            eager_round(module, x, 2)
            sides = {"exported": EngineSide(exported_path, shape, args.repeats, threads),
                     "torchscript": EngineSide(traced_path, shape, args.repeats, threads)}
            times = {"eager": [], "exported": [], "torchscript": []}
            for _ in range(args.rounds):
                times["eager"].append(eager_round(module, x, args.repeats))
                for side, engine in sides.items():
                    times[side].append(engine.round())
            for engine in sides.values():
                engine.close()
            medians = {side: statistics.median(values) for side, values in times.items()}
            rows.append((name, shape, medians, times))
            print(f"{name}: " + ", ".join(f"{side} {value:.1f} ms" for side, value in medians.items()), file=sys.stderr)
    print(f"Threads: {threads}; {args.rounds} rounds x {args.repeats} passes per side; median of round medians.\n")
    print("| model | input | eager PyTorch (ms) | .pt2 executor (ms) | executor / eager | TorchScript in the engine (ms) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, shape, medians, _ in rows:
        ratio = medians["exported"] / medians["eager"]
        print(f"| {name} | {'x'.join(map(str, shape))} | {medians['eager']:.1f} | {medians['exported']:.1f} | "
              f"{ratio:.2f}x | {medians['torchscript']:.1f} |")


if __name__ == "__main__":
    main()
