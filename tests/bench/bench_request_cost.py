"""The daemon's own cost per request on a small model, two builds side by side: the
requests per second `layerlens bench` (the Rust load generator) gets, and what each
request costs the daemon process in CPU time and context switches (read from /proc).

    python tests/bench/bench_request_cost.py OUT.md --baseline-daemon PATH
        [--daemon target/release/layerlensd] [--cli target/release/layerlens] [--rounds 5]

Why it exists (issue: GPU serving, "remove the per-request cost"): on a small model the
pass is a fraction of a millisecond, so what the daemon does around it (resolving the
model's name, thread hand-offs, encoding) is what a user waits for, on the CPU and on a
GPU alike. The throughput of one closed-loop client is the most sensitive reading of
it; the CPU time and context switches per request tell the daemon's work from the
client's on a machine where both share the cores.

Model: the digits CNN (tests/fixtures/out/digits_cnn.pt2, 1x1x8x8), Predict (top 5),
`--cache-bytes 0`, OMP_NUM_THREADS=2. A round starts each build in turn (the order
alternates from round to round), warms it with 20 requests, then runs one client x
--requests-one requests and 32 clients x --requests-many requests, closed loop, and
stops it. The table gives medians over the rounds.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "out" / "digits_cnn.pt2"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start(binary, store):
    args = [str(binary), "--listen", "127.0.0.1:0", "--store", str(store), "--device", "cpu", "--cache-bytes", "0",
            "--add-model", f"digits={MODEL}@1,1,8,8"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=dict(os.environ, LAYERLENS_LOG="warn", OMP_NUM_THREADS="2"))
    for line in process.stdout:
        if "listening on " in line:
            return process, "http://" + line.split("listening on ", 1)[1].split()[0]
    raise SystemExit(f"{binary} exited with status {process.wait()} before listening")


def usage(pid):
    """CPU seconds and context switches (voluntary and not) of the process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    switches = 0
    for status in pathlib.Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            switches += sum(int(line.split()[1]) for line in status.read_text().splitlines() if "ctxt_switches" in line)
        except OSError:
            pass  # a thread that ended between listing and reading
    return cpu, switches


def bench(cli, address, clients, requests):
    output = subprocess.run([str(cli), "--addr", address, "--json", "bench", "digits", "--method", "predict", "--clients", str(clients),
                             "--requests", str(requests)], check=True, capture_output=True, text=True, timeout=600)
    return json.loads(output.stdout)


def measure(cli, process, address, clients, requests):
    cpu_before, switches_before = usage(process.pid)
    report = bench(cli, address, clients, requests)
    cpu_after, switches_after = usage(process.pid)
    answered = clients * requests
    if report.get("errors"):
        raise SystemExit(f"{report['errors']} errors: {json.dumps(report)[:500]}")
    return {
        "throughput": report["throughput"],
        "p50_ms": report["latency_ms"]["p50"],
        "cpu_us": (cpu_after - cpu_before) / answered * 1e6,
        "switches": (switches_after - switches_before) / answered,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    parser.add_argument("--baseline-daemon", type=pathlib.Path, required=True)
    parser.add_argument("--cli", type=pathlib.Path, default=REPO / "target" / "release" / "layerlens")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests-one", type=int, default=2000)
    parser.add_argument("--requests-many", type=int, default=300)
    args = parser.parse_args()

    builds = {"baseline": args.baseline_daemon, "this build": args.daemon}
    loads = {"1 client": (1, args.requests_one), "32 clients": (32, args.requests_many)}
    rows = {(build, load): [] for build in builds for load in loads}
    with tempfile.TemporaryDirectory() as work:
        for round_index in range(args.rounds):
            order = list(builds) if round_index % 2 == 0 else list(reversed(builds))
            for build in order:
                process, address = start(builds[build], pathlib.Path(work) / f"store-{round_index}-{build.replace(' ', '-')}")
                try:
                    bench(args.cli, address, 1, 20)
                    for load, (clients, requests) in loads.items():
                        row = measure(args.cli, process, address, clients, requests)
                        rows[(build, load)].append(row)
                        print(f"round {round_index + 1} {build:10} {load:10} {row['throughput']:8.1f} req/s  p50 {row['p50_ms']:.3f} ms  "
                              f"daemon {row['cpu_us']:.0f} us CPU, {row['switches']:.1f} switches per request", flush=True)
                finally:
                    process.terminate()
                    process.wait(timeout=30)

    def median(build, load, key):
        return statistics.median(row[key] for row in rows[(build, load)])

    lines = [
        f"Predict on the digits CNN, `layerlens bench` closed loop, medians of {args.rounds} alternating rounds; "
        f"baseline `{args.baseline_daemon}`, this build `{args.daemon}`.",
        "",
        "| load | build | requests/s | p50 ms | daemon CPU µs per request | context switches per request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for load in loads:
        for build in builds:
            lines.append(f"| {load} | {build} | {median(build, load, 'throughput'):.0f} | {median(build, load, 'p50_ms'):.3f} | "
                         f"{median(build, load, 'cpu_us'):.0f} | {median(build, load, 'switches'):.1f} |")
        ratio = median("this build", load, "throughput") / median("baseline", load, "throughput")
        lines.append(f"| {load} | this build / baseline | {ratio:.2f}× | | | |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
