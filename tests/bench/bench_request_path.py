"""Where a saliency request's time goes: `layerlens bench` (the Rust load generator)
against Captum's Saliency in this process, on the same resnet18, side by side.

    PY="$(scripts/setup.sh | tail -n 1)"
    cargo build --release --bin layerlensd --bin layerlens
    "$PY" tests/bench/bench_request_path.py [--rounds 5] [--requests 20] [--threads 2] [--baseline-daemon PATH]

Why it exists (issue: GPU serving): the daemon's end-to-end time for one saliency call
was 1.15-1.4x Captum in-process on this CPU, and nobody had measured where the rest
goes. Each answer carries the daemon's time per phase (`x-layerlens-phases`), so a
round splits the client's latency into the pass itself (`run`), the daemon's request
path around it (`handler - run`) and what happens outside the daemon (client, HTTP/2,
prost on the client side: `latency - handler`).

Model: torchvision resnet18(weights=None) under seed 0, batch-norm statistics from
seeded noise (bench_attribution.make_resnet18), eval; the daemon serves it exported
with torch.export (.pt2) and scripted (TorchScript .pt); the input is torch.rand
(1, 3, 224, 224) from seed 1; target 831, abs=True, no figure. Captum: Saliency on the
eager model, torch.set_num_threads(--threads); the daemon: release build,
OMP_NUM_THREADS=--threads, --cache-bytes 0; `layerlens bench --clients 1 --requests N`
(closed loop, each request's input moved by 1e-6 in one value so no cache answers).
Rounds alternate Captum and each daemon model; medians over rounds of the per-round
medians. With --baseline-daemon (another build of layerlensd, e.g. the last release),
its two models run in the same rounds, so a change is measured against the build
before it side by side. Also one round of 8 concurrent clients with batching on (default) and off
(--max-batch-size 1, a second daemon), for the throughput ratio.
"""

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))
from bench_attribution import make_resnet18, running_daemon  # noqa: E402

RELEASE = REPO_ROOT / "target" / "release"
TARGET = 831


def cli(address, *args):
    result = subprocess.run([str(RELEASE / "layerlens"), "--addr", f"http://{address}", *args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"layerlens {' '.join(args)}: {result.stderr}")
    return result.stdout


def bench(address, model, input_path, clients, requests):
    return json.loads(cli(address, "--json", "bench", model, "--method", "saliency", "--input", str(input_path), "--target", str(TARGET),
                          "--param", "abs=true", "--clients", str(clients), "--requests", str(requests)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-daemon", type=pathlib.Path, help="another layerlensd build to run in the same rounds")
    args = parser.parse_args()
    for binary in ("layerlensd", "layerlens"):
        if not (RELEASE / binary).is_file():
            sys.exit(f"{RELEASE / binary} is missing: cargo build --release --bin layerlensd --bin layerlens")
    torch.set_num_threads(args.threads)
    from captum.attr import Saliency

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        scripted_path, exported_path, input_path = scratch / "resnet18.pt", scratch / "resnet18.pt2", scratch / "x.npy"
        make_resnet18(scripted_path, bn_calibration_batches=8)
        model = torch.jit.load(str(scripted_path)).eval()
        # The eager model Captum explains: the same weights, unscripted.
        import torchvision

        eager = torchvision.models.resnet18(weights=None).eval()
        eager.load_state_dict(model.state_dict())
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        np.save(input_path, x.numpy())
        torch.export.save(torch.export.export(eager, (x,)), str(exported_path))
        saliency = Saliency(eager)
        reference = saliency.attribute(x.clone().requires_grad_(), target=TARGET).detach().numpy()

        def captum_round():
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                saliency.attribute(x.clone().requires_grad_(), target=TARGET)
                times.append(time.perf_counter() - start)
            return statistics.median(times) * 1e3

        builds = {"daemon": RELEASE / "layerlensd"}
        if args.baseline_daemon:
            builds["baseline"] = args.baseline_daemon
        models = [(build, name) for build in builds for name in ("exported", "scripted")]
        rows = {"captum": [], **{model: [] for model in models}}
        phases = {model: [] for model in models}
        with contextlib.ExitStack() as stack:
            daemons = {build: stack.enter_context(running_daemon(binary, scratch, args.threads)) for build, binary in builds.items()}
            for daemon in daemons.values():
                cli(daemon.address, "models", "add", str(exported_path), "--name", "exported")
                cli(daemon.address, "models", "add", str(scripted_path), "--name", "scripted", "--input-shape", "1,3,224,224")
            daemon = daemons["daemon"]
            out = scratch / "daemon.npy"
            cli(daemon.address, "attribute", "exported", "--input", str(input_path), "--method", "saliency", "--target", str(TARGET),
                "--out", str(out))
            difference = float(np.abs(np.load(out) - reference).max())
            for _ in range(3):
                captum_round()
            for round_index in range(args.rounds):
                rows["captum"].append(captum_round())
                for build, name in models:
                    answer = bench(daemons[build].address, name, input_path, 1, args.requests)
                    assert answer["answered"] == args.requests and not answer["errors"], answer
                    rows[build, name].append(answer["latency_ms"]["p50"])
                    phases[build, name].append({key: value["p50_ms"] for key, value in answer["daemon_phases"].items()})
                print(f"round {round_index + 1}: captum {rows['captum'][-1]:.1f} ms, "
                      + ", ".join(f"{build} {name} {rows[build, name][-1]:.1f} ms" for build, name in models), file=sys.stderr)
            batched = bench(daemon.address, "exported", input_path, 8, args.requests)
        # A second daemon with cross-request batching off (running_daemon takes no flags).
        store = scratch / "unbatched-store"
        process = subprocess.Popen([str(RELEASE / "layerlensd"), "--listen", "127.0.0.1:0", "--store", str(store), "--device", "cpu",
                                    "--cache-bytes", "0", "--max-batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        try:
            address = None
            for line in process.stdout:
                if "listening on" in line:
                    address = line.split("listening on")[1].split()[0]
                    break
            cli(address, "models", "add", str(exported_path), "--name", "exported")
            unbatched = bench(address, "exported", input_path, 8, args.requests)
        finally:
            process.terminate()
            process.wait(timeout=30)

    captum = statistics.median(rows["captum"])
    print(f"\nresnet18 saliency 1x3x224x224, target {TARGET}, abs=True, no figure; {args.threads} threads each side; "
          f"{args.rounds} rounds of {args.requests} requests; medians of per-round medians. Max |daemon - Captum| = {difference:.1e}\n")
    print("| model | end to end p50 ms | / Captum | daemon handler ms | run (the pass) ms | daemon path around the run ms | outside the daemon ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| Captum Saliency, eager, in-process | {captum:.1f} | 1.00 | – | – | – | – |")
    for build, name in models:
        latency = statistics.median(rows[build, name])
        handler = statistics.median(p["handler"] for p in phases[build, name])
        run = statistics.median(p["run"] for p in phases[build, name])
        label = f"daemon, {name}" if build == "daemon" else f"baseline {args.baseline_daemon}, {name}"
        print(f"| {label} | {latency:.1f} | {latency / captum:.2f} | {handler:.2f} | {run:.2f} | {handler - run:.2f} | {latency - handler:.2f} |")
    print(f"\n8 clients on the exported model: batching on {batched['throughput']:.1f} requests/s "
          f"({batched['mean_batch_size']:.2f} requests per pass), off {unbatched['throughput']:.1f} requests/s: "
          f"{batched['throughput'] / unbatched['throughput']:.2f}x")


if __name__ == "__main__":
    main()
