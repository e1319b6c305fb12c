"""Cross-request batching of SmoothGrad, side by side in one run: the same daemon binary
started twice (batching off, `--max-batch-size 1`; batching on, the defaults), both up
at once, and `layerlens bench` (the Rust load generator: one connection per client, no
GIL) sending seeded SmoothGrad requests to each in turn.

    python tests/bench/bench_noise_batching.py OUT.md [--daemon target/release/layerlensd]
        [--cli target/release/layerlens] [--rounds 3]

Models: the digits CNN (tests/fixtures/out/digits_cnn.pt, 1x1x8x8) and resnet18
(tests/fixtures/out/resnet18.pt, the fixture's 1x3x64x64). Each request is
`smoothgrad` with nt_samples=10 and a seed, on an input made unique per request (the
result cache is off anyway). A round runs 8 clients x N requests closed-loop against
the unbatched daemon, then against the batched one; the table gives the median
throughput over the rounds and the batched/unbatched ratio, with the mean requests
per pass the generator read from the daemon's phase headers.

Threads: libtorch in each daemon uses 2 (the machine's cores); only one daemon works
at a time.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "out"


def start(binary, store, flags, models):
    args = [str(binary), "--listen", "127.0.0.1:0", "--store", str(store), "--device", "cpu", "--cache-bytes", "0", *flags]
    for name, (path, shape) in models.items():
        args += ["--add-model", f"{name}={path}@{shape}"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=dict(os.environ, LAYERLENS_LOG="warn", OMP_NUM_THREADS="2"))
    for line in process.stdout:
        if "listening on " in line:
            return process, "http://" + line.split("listening on ", 1)[1].split()[0]
    raise SystemExit(f"layerlensd exited with status {process.wait()} before listening")


def bench(cli, address, model, requests):
    output = subprocess.run(
        [str(cli), "--addr", address, "--json", "bench", model, "--method", "smoothgrad", "--param", "nt_samples=10",
         "--param", "seed=7", "--target", "3", "--clients", "8", "--requests", str(requests)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return json.loads(output.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--daemon", default=str(REPO / "target" / "release" / "layerlensd"))
    parser.add_argument("--cli", default=str(REPO / "target" / "release" / "layerlens"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    models = {"digits": (FIXTURES / "digits_cnn.pt", "1,1,8,8"), "resnet18": (FIXTURES / "resnet18.pt", "1,3,64,64")}
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-noise-"))
    daemons = {}
    try:
        daemons["off"] = start(args.daemon, work / "off", ["--max-batch-size", "1"], models)
        daemons["on"] = start(args.daemon, work / "on", [], models)
        rows = []
        for model, requests in (("digits", 40), ("resnet18", 8)):
            results = {"off": [], "on": []}
            for side in ("off", "on"):  # warm-up: loads the model, first passes
                bench(args.cli, daemons[side][1], model, 2)
            for _ in range(args.rounds):
                for side in ("off", "on"):
                    results[side].append(bench(args.cli, daemons[side][1], model, requests))
            throughput = {side: statistics.median(result["throughput"] for result in results[side]) for side in results}
            batch = statistics.mean(result["mean_batch_size"] for result in results["on"])
            p50 = {side: statistics.median(result["latency_ms"]["p50"] for result in results[side]) for side in results}
            rows.append((model, requests, throughput, p50, batch))
            print(rows[-1], flush=True)
    finally:
        for process, _ in daemons.values():
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"SmoothGrad (nt_samples=10, seeded), 8 clients closed loop, median of {args.rounds} rounds per side:",
        "",
        "| model | requests per client | unbatched req/s | batched req/s | batched / unbatched | p50 unbatched | p50 batched | requests per pass (batched) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, requests, throughput, p50, batch in rows:
        lines.append(
            f"| {model} | {requests} | {throughput['off']:.1f} | {throughput['on']:.1f} | {throughput['on'] / throughput['off']:.2f}× "
            f"| {p50['off']:.1f} ms | {p50['on']:.1f} ms | {batch:.2f} |"
        )
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
