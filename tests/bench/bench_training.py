"""Training explained, timed: what `layerlens.watch` costs a training loop, and how fast
the daemon's loss landscape is against the same grid computed by a PyTorch loop.

    PY="$(scripts/setup.sh | tail -n 1)"
    cargo build --release --bin layerlensd
    "$PY" tests/bench/bench_training.py [--quick] [--fixed-malloc]

Why it exists: `watch` promises to leave a training loop alone — its hooks only read
tensors, every `every` steps, and a background thread sends what they computed — and the
target is at most 3% more time per step with `every=10`. The loss landscape runs a
forward pass per grid point inside the daemon (a fresh copy of the model, weights
written in place, the data in chunks); it should be no slower than the loop a user would
write in PyTorch for the same grid.

Both parts talk to a release layerlensd that this script starts on 127.0.0.1:0 with a
temporary store (bench_attribution.Daemon, `--cache-bytes 0`) and stops at the end. As
in bench_exported.py, this process keeps torch's default intra-op thread count
(`torch.get_num_threads()`) and the daemon gets the same number as OMP_NUM_THREADS.

1. watch overhead. Two copies of torchvision's resnet18 (weights=None, seed 0, 1000
   classes) train on one fixed batch of 32 random images, shape (32, 3, 224, 224), seed
   1, with random labels, by SGD (lr 0.01, momentum 0.9): one copy watched with
   `every=10` (its loss logged with `watcher.log`), the other not. After 10 untimed
   warm-up steps each (the watched copy's include its first recorded step), they run
   blocks of 10 steps in the order W U U W U W W U (which cancels a drift of the
   machine that is linear or quadratic in time); each watched block holds exactly one
   recorded step, and its time includes a final `watcher.flush()`, so the records were
   sent before the clock stops. A step is `zero_grad`, forward, cross entropy,
   backward, `step`, `float(loss)`. Extra optimiser hooks registered around watch's
   own (a pre- and a post-hook before `watch`, the same after it; on both copies) time
   watch's hooks inside each step. The table gives the median and the mean time per
   step of each side and their ratios: the median is a step that records nothing, the
   mean includes the recorded steps' hooks and so is the overhead a run pays. Last,
   cProfile runs over watch's hooks for the next recorded step (untimed), to say what
   they spend their time on.
2. landscape. The digits CNN of tests/fixtures/make_fixtures.py, trained for 200 Adam
   steps on sklearn's digits (/16, float32, (n, 1, 8, 8)), and a 2-D grid (21x21,
   range 1.0, seed 0, cross entropy) over the first 512 digits; resnet18 as above
   (weights=None, eval) on 32 random 64x64 images with a 5x5 grid. The module is
   stored with `add_model(module, example_input=...)` (torch.export) and its state
   dict as a checkpoint beforehand; one untimed daemon call returns the random
   directions, and the PyTorch side — a copy of the module in eval mode, in this
   process — sets every parameter to `centre + a*d1 + b*d2` under `torch.no_grad` and
   computes `F.cross_entropy(model(x), y)` at each grid point. Calls alternate
   (daemon, PyTorch, daemon, ...); the daemon's time is one `Model.landscape()` call
   end to end (request encoding, gRPC, loading the checkpoint, a fresh model copy, the
   directions, the grid, the answer), without a figure except in the row that says so.
   The two grids must agree to rtol 1e-4. A 2x2 grid on each model shows the daemon's
   fixed cost per call, and on resnet18 a 2x2 grid around the stored weights (no
   checkpoint) what loading the checkpoint adds. Each side's minor page faults per call
   are counted (/proc/<pid>/stat).

--fixed-malloc runs this script and the daemon with fixed glibc malloc thresholds
(FIXED_MALLOC_ENVIRONMENT says why); --quick runs one block per side and an 11x11 digits
grid, without the profile and the resnet18 landscape.

Prints Markdown tables for BENCHMARKS.md; progress goes to stderr.
"""

import argparse
import copy
import cProfile
import datetime
import os
import pathlib
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "clients" / "python" / "src"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "bench"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "fixtures"))

import layerlens  # noqa: E402
from bench_attribution import ForeignCpuMeter, process_cpu_seconds, running_daemon  # noqa: E402
from make_fixtures import DigitsCNN  # noqa: E402

DEFAULT_DAEMON = REPO_ROOT / "target" / "release" / "layerlensd"

# --fixed-malloc: glibc's allocator settings for this process and the daemon. By
# default glibc serves big blocks (a forward pass's activations) with mmap, raises that
# threshold as blocks are freed and trims the heap's top beyond twice it, so each pass
# may fault its activations' pages in afresh; on this VM that made the same digits grid
# take 2.1 s in one process and 3.8-5 s in another. Fixed thresholds keep freed memory.
FIXED_MALLOC_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}

WATCH_EVERY = 10
WATCH_BATCH = 32
WATCH_LEARNING_RATE = 0.01
WATCH_MOMENTUM = 0.9
# A whole block of untimed steps per side, the watched one including its first recorded
# step (the first send, the first quantiles). With 3 warm-up steps the first timed block
# was still 2-5% slower than the later ones, whichever side it belonged to.
WARMUP_STEPS = WATCH_EVERY
# W U U W U W W U: ABBA BAAB, so a drift that is linear (or quadratic) in time costs both
# sides alike.
BLOCK_ORDER = ("watched", "plain", "plain", "watched", "plain", "watched", "watched", "plain")
QUICK_BLOCK_ORDER = ("watched", "plain")

DIGITS_ROWS = 512
DIGITS_TRAIN_STEPS = 200
LANDSCAPE_RANGE = 1.0
LANDSCAPE_SEED = 0
LANDSCAPE_RTOL = 1e-4
RESNET_LANDSCAPE_SHAPE = (32, 3, 64, 64)
# return_directions=True on resnet18 answers two directions of 11.7M float32 values
# (94 MB), more than the daemon's default --max-message-bytes of 64 MiB.
MAX_MESSAGE_BYTES = 256 << 20


def minor_faults(pid):
    """Minor page faults of a process so far (/proc/<pid>/stat, field minflt)."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def median(values):
    return statistics.median(values) if values else float("nan")


def mean(values):
    return statistics.fmean(values) if values else float("nan")


# --- 1. watch overhead -----------------------------------------------------------------


class HookClock:
    """Optimiser hooks that write the time they run into `marks`; registered before and
    after watch's own hooks, the differences are the time watch's hooks took. With a
    `profiler` (cProfile), it profiles what runs between the marks: watch's hooks."""

    def __init__(self):
        self.marks = {}
        self.profiler = None

    def hook(self, key):
        def mark(optimizer, args, kwargs):
            if key.endswith("_end") and self.profiler is not None:
                self.profiler.disable()
            self.marks[key] = time.perf_counter()
            if key.endswith("_start") and self.profiler is not None:
                self.profiler.enable()

        return mark


class Trainee:
    """One resnet18 and its SGD optimiser, watched or not, with hook clocks on both."""

    def __init__(self, client, watched, run_name):
        torch.manual_seed(0)
        self.model = torchvision.models.resnet18(weights=None).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=WATCH_LEARNING_RATE, momentum=WATCH_MOMENTUM)
        self.clock = HookClock()
        self.optimizer.register_step_pre_hook(self.clock.hook("pre_start"))
        self.optimizer.register_step_post_hook(self.clock.hook("post_start"))
        self.watcher = layerlens.watch(self.model, self.optimizer, every=WATCH_EVERY, run=run_name, client=client) if watched else None
        self.optimizer.register_step_pre_hook(self.clock.hook("pre_end"))
        self.optimizer.register_step_post_hook(self.clock.hook("post_end"))
        self.n_steps = 0
        # One dict per timed step: total, pre_hook, post_hook seconds and whether watch recorded it.
        self.steps = []
        self.block_seconds = []
        # CPU seconds other processes used during each block (bench_attribution.ForeignCpuMeter).
        self.block_foreign_cpu = []

    def step(self, x, y):
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        value = loss.item()
        if self.watcher is not None:
            self.watcher.log(loss=value)
        total = time.perf_counter() - start
        self.n_steps += 1
        marks = self.clock.marks
        return {
            "total": total,
            "pre_hook": marks["pre_end"] - marks["pre_start"],
            "post_hook": marks["post_end"] - marks["post_start"],
            "recorded": self.watcher is not None and self.n_steps % WATCH_EVERY == 0,
            "loss": value,
        }

    def block(self, x, y, n_steps, daemon_pid):
        meter = ForeignCpuMeter(os.getpid(), daemon_pid)
        start = time.perf_counter()
        for _ in range(n_steps):
            self.steps.append(self.step(x, y))
        if self.watcher is not None:
            # The records of this block reach the daemon before the clock stops.
            if not self.watcher.flush(timeout=120):
                raise RuntimeError("watch did not send its records within 120 s")
        self.block_seconds.append(time.perf_counter() - start)
        self.block_foreign_cpu.append(meter.seconds())


def watch_overhead(client, daemon, quick):
    order = QUICK_BLOCK_ORDER if quick else BLOCK_ORDER
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((WATCH_BATCH, 3, 224, 224), generator=generator)
    y = torch.randint(0, 1000, (WATCH_BATCH,), generator=generator)
    client.runs()  # the channel is open before the first record is sent
    trainees = {"watched": Trainee(client, True, "bench-watch"), "plain": Trainee(client, False, None)}
    for name, trainee in trainees.items():
        for _ in range(WARMUP_STEPS):
            trainee.step(x, y)
    daemon_cpu_start = process_cpu_seconds(daemon.pid)
    started = time.perf_counter()
    for index, name in enumerate(order):
        trainees[name].block(x, y, WATCH_EVERY, daemon.pid)
        last = trainees[name].steps[-WATCH_EVERY:]
        print(f"watch: block {index + 1}/{len(order)} {name}: {mean([s['total'] for s in last]):.3f} s/step, "
              f"other processes' CPU {trainees[name].block_foreign_cpu[-1]:.1f} s", file=sys.stderr)
    wall = time.perf_counter() - started
    daemon_cpu = process_cpu_seconds(daemon.pid) - daemon_cpu_start
    profile = None if quick else profile_recorded_step(trainees["watched"], x, y)
    watcher = trainees["watched"].watcher
    watcher.close()
    errors = watcher.errors
    records = client.run("bench-watch").records()
    recorded_steps = sorted({record["step"] for record in records})
    # The two copies start from the same weights and see the same batch: a watch that
    # changed training would show in the losses.
    losses_equal = [s["loss"] for s in trainees["watched"].steps] == [s["loss"] for s in trainees["plain"].steps]
    return {
        "trainees": trainees,
        "errors": errors,
        "recorded_steps": recorded_steps,
        "layers": len({record["layer"] for record in records}),
        "losses_equal": losses_equal,
        "daemon_cpu": daemon_cpu,
        "wall": wall,
        "order": order,
        "profile": profile,
    }


def profile_recorded_step(trainee, x, y, n_rows=8):
    """What watch's hooks spend their time on: cProfile of the hooks, untimed steps after
    the blocks up to and including the next recorded one. Answers the hooks' wall time
    in that recorded step (inflated by the profiler) and the functions that took the
    most time by their own (tottime), as (name, calls, seconds)."""
    profiler = cProfile.Profile()
    trainee.clock.profiler = profiler
    while True:
        step = trainee.step(x, y)
        if step["recorded"]:
            break
    trainee.clock.profiler = None
    functions = []
    for (file, _line, name), (_, calls, own_seconds, _, _) in pstats.Stats(profiler).stats.items():
        label = name if file == "~" else f"{pathlib.Path(file).name}:{name}"
        functions.append((label, calls, own_seconds))
    functions.sort(key=lambda row: -row[2])
    total = sum(row[2] for row in functions)
    return {"hooks": step["pre_hook"] + step["post_hook"], "pre_hook": step["pre_hook"], "post_hook": step["post_hook"],
            "total": total, "top": functions[:n_rows]}


def print_watch(result):
    watched, plain = result["trainees"]["watched"], result["trainees"]["plain"]
    w_total = [s["total"] for s in watched.steps]
    p_total = [s["total"] for s in plain.steps]
    recorded = [s for s in watched.steps if s["recorded"]]
    unrecorded = [s for s in watched.steps if not s["recorded"]]
    w_block = sum(watched.block_seconds) / len(w_total)
    p_block = sum(plain.block_seconds) / len(p_total)
    w_hooks = mean([s["pre_hook"] + s["post_hook"] for s in watched.steps])
    p_hooks = mean([s["pre_hook"] + s["post_hook"] for s in plain.steps])
    order = result["order"]
    print(f"resnet18 (weights=None, 1000 classes), batch {WATCH_BATCH}x3x224x224 random images and labels, SGD lr {WATCH_LEARNING_RATE} "
          f"momentum {WATCH_MOMENTUM}; watch every={WATCH_EVERY}; {WARMUP_STEPS} warm-up steps per side, then {len(order)} blocks of "
          f"{WATCH_EVERY} steps ({' '.join('W' if name == 'watched' else 'U' for name in order)}); {len(w_total)} timed steps per side.\n")
    print("| row | watched (W) | unwatched (U) | W / U | notes |")
    print("|---|---:|---:|---:|---|")
    print(f"| median s per step | {median(w_total):.3f} | {median(p_total):.3f} | {median(w_total) / median(p_total):.4f} | "
          f"range {min(w_total):.3f}–{max(w_total):.3f} vs {min(p_total):.3f}–{max(p_total):.3f}; the median step records nothing |")
    print(f"| mean s per step | {mean(w_total):.3f} | {mean(p_total):.3f} | {mean(w_total) / mean(p_total):.4f} | "
          f"includes the {len(recorded)} recorded steps |")
    print(f"| blocks' wall time / steps (s) | {w_block:.3f} | {p_block:.3f} | {w_block / p_block:.4f} | "
          f"the watched blocks include `watcher.flush()` |")
    print(f"| watch's hooks, mean s per step | {w_hooks:.4f} | {p_hooks:.4f} | {1 + (w_hooks - p_hooks) / mean(p_total):.4f} | "
          f"ratio = 1 + hook time / unwatched mean step: the hooks' share, free of the machine's noise |")
    print(f"| recorded step (s) | {median([s['total'] for s in recorded]):.3f} | | | median of {len(recorded)}: pre-hook "
          f"{median([s['pre_hook'] for s in recorded]) * 1e3:.1f} ms, post-hook {median([s['post_hook'] for s in recorded]) * 1e3:.1f} ms |")
    print(f"| step that records nothing (s) | {median([s['total'] for s in unrecorded]):.3f} | | | median of {len(unrecorded)}: hooks "
          f"{median([s['pre_hook'] + s['post_hook'] for s in unrecorded]) * 1e6:.0f} µs |")
    print()
    blocks = {"watched": iter(zip(watched.block_seconds, watched.block_foreign_cpu)), "plain": iter(zip(plain.block_seconds, plain.block_foreign_cpu))}
    per_block = []
    for name in order:
        seconds, foreign = next(blocks[name])
        per_block.append(f"{'W' if name == 'watched' else 'U'} {seconds / WATCH_EVERY:.3f} ({foreign:.1f})")
    print(f"Blocks in order, s per step (other processes' CPU s): {', '.join(per_block)}.  ")
    profile = result["profile"]
    if profile is not None:
        print(f"What watch's hooks spent one recorded step on (cProfile, untimed step after the blocks; the hooks took "
              f"{profile['pre_hook'] * 1e3:.0f} ms before and {profile['post_hook'] * 1e3:.0f} ms after the optimiser's step under the "
              f"profiler; own time of the functions that took most):\n")
        print("| function | calls | own ms | share of profiled time |")
        print("|---|---:|---:|---:|")
        for label, calls, seconds in profile["top"]:
            print(f"| `{label}` | {calls} | {seconds * 1e3:.1f} | {seconds / profile['total']:.0%} |")
        print()
    print(f"watcher.errors == []: {result['errors'] == []}{'' if not result['errors'] else ' ' + repr(result['errors'][:3])}; "
          f"steps the daemon holds: {result['recorded_steps']} ({result['layers']} layers each); losses of the watched and unwatched "
          f"copies identical at every step: {result['losses_equal']}; the daemon used {result['daemon_cpu']:.2f} CPU s during the "
          f"{result['wall']:.0f} s of blocks.\n")


# --- 2. landscape ----------------------------------------------------------------------


def digits_data(rows):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return x, y, x[:rows], y[:rows]


def trained_digits_cnn():
    """DigitsCNN after DIGITS_TRAIN_STEPS Adam steps on all digits (a trained-looking centre)."""
    x, y, _, _ = digits_data(DIGITS_ROWS)
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(DIGITS_TRAIN_STEPS):
        batch = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.eval()


def pytorch_grid(module, directions, coordinates, x, y):
    """The landscape by hand: every parameter set to centre + a*d1 + b*d2, then the loss.
    Rows are the second direction's coordinate, as the daemon answers them."""
    parameters = list(module.named_parameters())
    centre = [parameter.detach().clone() for _, parameter in parameters]
    first = [torch.from_numpy(directions[name][0]) for name, _ in parameters]
    second = [torch.from_numpy(directions[name][1]) for name, _ in parameters]
    losses = np.empty((len(coordinates), len(coordinates)))
    with torch.no_grad():
        for row, beta in enumerate(coordinates):
            for column, alpha in enumerate(coordinates):
                for (_, parameter), c, d1, d2 in zip(parameters, centre, first, second):
                    parameter.copy_(c + alpha * d1 + beta * d2)
                losses[row, column] = float(F.cross_entropy(module(x), y))
        for (_, parameter), c in zip(parameters, centre):
            parameter.copy_(c)
    return losses


def landscape_rows(client, daemon_pid, name, module, x, y, grids, rounds):
    """Times the daemon's landscape and the PyTorch loop for each (steps, figure_format,
    from_checkpoint) in grids; without the checkpoint the daemon uses the stored model's
    own weights (the same values here), which shows what loading the checkpoint costs."""
    stored = client.add_model(module, example_input=x[:2], name="bench-" + name.split()[0])
    checkpoint = stored.add_checkpoint({"model": module.state_dict()})
    reference = copy.deepcopy(module).eval()
    with torch.no_grad():
        centre_loss = float(F.cross_entropy(reference(x), y))
    rows = []
    for steps, figure_format, from_checkpoint in grids:
        def daemon_call(directions=False):
            return stored.landscape(x.numpy(), y.numpy(), checkpoint=checkpoint if from_checkpoint else None, loss="cross_entropy", dims=2, steps=steps,
                                    range=LANDSCAPE_RANGE, seed=LANDSCAPE_SEED, return_directions=directions, figure_format=figure_format)

        first = daemon_call(directions=True)
        coordinates = [float(value) for value in first.coordinates]
        expected = pytorch_grid(reference, first.directions, coordinates, x, y)
        times = {"daemon": [], "pytorch": []}
        faults = {"daemon": [], "pytorch": []}
        meter = ForeignCpuMeter(os.getpid(), daemon_pid)
        answers = []
        for _ in range(rounds):
            before = minor_faults(daemon_pid)
            start = time.perf_counter()
            answers.append(daemon_call())
            times["daemon"].append(time.perf_counter() - start)
            faults["daemon"].append(minor_faults(daemon_pid) - before)
            before = minor_faults(os.getpid())
            start = time.perf_counter()
            pytorch_grid(reference, first.directions, coordinates, x, y)
            times["pytorch"].append(time.perf_counter() - start)
            faults["pytorch"].append(minor_faults(os.getpid()) - before)
        got = answers[-1].losses
        relative = float(np.max(np.abs(got - expected) / np.abs(expected)))
        rows.append({
            "model": name, "input": "x".join(map(str, x.shape)), "steps": steps, "figure": figure_format, "times": times, "faults": faults,
            "from_checkpoint": from_checkpoint,
            "agree": bool(np.allclose(got, expected, rtol=LANDSCAPE_RTOL, atol=0)), "relative": relative,
            "centre": (answers[-1].center_loss, centre_loss), "passes": answers[-1].passes,
            "rounds": rounds, "same_every_call": all(np.array_equal(answer.losses, got) for answer in answers),
            "loss_range": (float(expected.min()), float(expected.max())), "foreign_cpu": meter.seconds(), "notes": list(getattr(first, "notes", [])),
        })
        print(f"landscape {name} {steps}x{steps} figure={figure_format} checkpoint={from_checkpoint}: daemon {median(times['daemon']):.3f} s, "
              f"pytorch {median(times['pytorch']):.3f} s, max rel diff {relative:.1e}", file=sys.stderr)
    return rows


def print_landscape(rows):
    print(f"2-D grid, range {LANDSCAPE_RANGE}, seed {LANDSCAPE_SEED}, cross entropy; median seconds of N alternating calls per side "
          f"after one untimed daemon call that returned the directions; agreement at rtol {LANDSCAPE_RTOL}.\n")
    print("| model, data | grid | daemon s, median [min–max] N | PyTorch loop s, median [min–max] N | daemon / PyTorch | "
          "grids agree (max rel diff) | minor page faults per call, daemon / PyTorch (median) | notes |")
    print("|---|---|---:|---:|---:|---|---|---|")
    for row in rows:
        daemon, pytorch = row["times"]["daemon"], row["times"]["pytorch"]
        figure = "" if row["figure"] is None else f"; daemon also renders a {row['figure'].upper()} contour figure"
        if not row["from_checkpoint"]:
            figure += "; no checkpoint: the daemon uses the stored weights (the same values)"
        print(f"| {row['model']}, {row['input']} | {row['steps']}x{row['steps']} ({row['steps'] ** 2} points) | "
              f"{median(daemon):.3f} [{min(daemon):.3f}–{max(daemon):.3f}] N={len(daemon)} | "
              f"{median(pytorch):.3f} [{min(pytorch):.3f}–{max(pytorch):.3f}] N={len(pytorch)} | "
              f"{median(daemon) / median(pytorch):.2f} | {'yes' if row['agree'] else 'NO'} ({row['relative']:.1e}) | "
              f"{median(row['faults']['daemon']):.0f} / {median(row['faults']['pytorch']):.0f} | "
              f"{row['passes']} passes; centre loss daemon {row['centre'][0]:.6f}, PyTorch {row['centre'][1]:.6f}; "
              f"loss {row['loss_range'][0]:.3g}–{row['loss_range'][1]:.3g}; other processes' CPU {row['foreign_cpu']:.1f} s{figure} |")
    print()


# --- main ------------------------------------------------------------------------------


def with_flags(binary, folder, flags):
    """An executable in `folder` that runs `binary` with its arguments and `flags`:
    bench_attribution.Daemon starts the daemon with a fixed set of flags."""
    wrapper = pathlib.Path(folder) / "layerlensd"
    wrapper.write_text(f'#!/bin/sh\nexec {binary} "$@" {" ".join(flags)}\n')
    wrapper.chmod(0o755)
    return wrapper

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one block per side, an 11x11 digits grid, no resnet18 landscape")
    parser.add_argument("--daemon", default=os.environ.get("LAYERLENSD_BIN", str(DEFAULT_DAEMON)))
    parser.add_argument("--skip-watch", action="store_true")
    parser.add_argument("--skip-landscape", action="store_true")
    parser.add_argument("--fixed-malloc", action="store_true",
                        help="run this process and the daemon with fixed glibc malloc thresholds (FIXED_MALLOC_ENVIRONMENT says why)")
    args = parser.parse_args()
    if args.fixed_malloc and any(os.environ.get(key) != value for key, value in FIXED_MALLOC_ENVIRONMENT.items()):
        # glibc reads these when a process starts: run this script again with them set;
        # the daemon, started by it, inherits them.
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, **FIXED_MALLOC_ENVIRONMENT))
    binary = pathlib.Path(args.daemon)
    if not binary.is_file():
        sys.exit(f"{binary} is missing: cargo build --release --bin layerlensd")
    threads = torch.get_num_threads()
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO_ROOT).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="layerlens-bench-training-") as scratch:
        extra_flags = ["--max-message-bytes", str(MAX_MESSAGE_BYTES)]
        with running_daemon(with_flags(binary.resolve(), scratch, extra_flags), scratch, threads) as daemon:
            client = layerlens.connect(f"http://{daemon.address}")
            watch_result = None if args.skip_watch else watch_overhead(client, daemon, args.quick)
            rows = []
            rounds = 3 if args.quick else 7
            if not args.skip_landscape:
                module = trained_digits_cnn()
                _, _, x, y = digits_data(DIGITS_ROWS)
                grids = [(11, None, True), (2, None, True)] if args.quick else [(21, None, True), (21, "png", True), (2, None, True)]
                rows += landscape_rows(client, daemon.pid, "digits-CNN (200 Adam steps)", module, x, y, grids, rounds)
                if not args.quick:
                    torch.manual_seed(0)
                    resnet = torchvision.models.resnet18(weights=None).eval()
                    generator = torch.Generator().manual_seed(2)
                    rx = torch.randn(RESNET_LANDSCAPE_SHAPE, generator=generator)
                    ry = torch.randint(0, 1000, (RESNET_LANDSCAPE_SHAPE[0],), generator=generator)
                    rows += landscape_rows(client, daemon.pid, "resnet18 (weights=None)", resnet, rx, ry,
                                           [(5, None, True), (2, None, True), (2, None, False)], 5)
            client.close()
            daemon_arguments = " ".join([str(binary), *daemon.arguments[1:], *extra_flags])
    elapsed = time.perf_counter() - started
    print(f"Measured {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} on {os.cpu_count()} CPUs, no GPU; "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}; layerlens {commit}"
          f"{' (working tree has uncommitted changes)' if dirty else ''}; daemon `{daemon_arguments}` with OMP_NUM_THREADS={threads}; "
          f"intra-op threads here {threads} (torch's default); glibc malloc "
          f"{'with ' + ', '.join(f'{key}={value}' for key, value in FIXED_MALLOC_ENVIRONMENT.items()) + ' (both processes)' if args.fixed_malloc else 'defaults'}.  ")
    print(f"Command: `python {' '.join(sys.argv)}`; ran {elapsed:.0f} s; 1-minute load average {load_start:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end.\n")
    if watch_result is not None:
        print("### watch overhead\n")
        print_watch(watch_result)
    if rows:
        print("### Loss landscape, daemon (gRPC, end to end) vs a PyTorch loop (in process)\n")
        print_landscape(rows)
    failed = []
    if watch_result is not None and (watch_result["errors"] or not watch_result["recorded_steps"]):
        failed.append("watch: errors or no records")
    if any(not row["agree"] for row in rows):
        failed.append("landscape: grids disagree")
    if failed:
        sys.exit("; ".join(failed))


if __name__ == "__main__":
    main()
