"""The daemon on a CUDA device (scripts/gpu-check), side by side with PyTorch and Captum
on the same device, in one run:

    python tests/bench/gpu_check.py OUT_DIR [--daemon target/release/layerlensd] [--device cuda:0]
        [--cli target/release/layerlens] [--baseline-daemon an/earlier/layerlensd]

The model is resnet18 (random weights, seeded, batch-norm statistics set by 8
train-mode passes over seeded noise, as in bench_attribution.py), stored twice: scripted
(TorchScript .pt) and exported with a dynamic batch (torch.export .pt2, run by the
daemon's own executor). The input is 1x3x224x224 on a GPU.

1. Same numbers (the correctness half; each check fails when the difference is above
   1e-4 of the reference's largest value, and the script then exits non-zero after
   writing its report): Status reports the device; for both models a prediction,
   saliency and integrated gradients (50 steps, Gauss-Legendre; section 2's runs) match
   the scripted model and Captum run here on the same device; the summary and
   activation report run; batched answers match PyTorch's (section 3).
2. Integrated gradients against Captum (internal_batch_size=None), under a fixed 1 GiB
   pass budget and under the default one (on a GPU: its free memory less a tenth).
3. 8 concurrent saliency requests from 8 Python threads with cross-request batching
   (`--max-batch-size 8 --max-batch-delay-ms 5`) against a daemon started with
   `--max-batch-size 1`; the reference ceiling is one batch-8 saliency pass here against
   8 batch-1 passes. Two batched answers are checked against PyTorch's.
4. The Rust load generator (`layerlens bench`, one connection per client) on both
   models: one user, 8 users batched and unbatched, beside Captum's in-process
   sequential saliency; SmoothGrad with 8 users. Each run's daemon phases (decode,
   queue, batch wait, copies, pass, encode) come from the answers' x-layerlens-phases.
5. A generation step (channel objective on layer3.1, bench_generation.py's) on both
   models against the same loop in PyTorch with frozen weights.
6. Out of memory on the device: a model that tiles its input 2048 times per side
   is asked for 8 rows of 32x32 (17 GiB a row: the joined pass does not fit, halves
   do) and for one 128x128 row (275 GiB: refused with RESOURCE_EXHAUSTED); the model
   and the daemon serve afterwards. Skipped on the CPU.
7. With `--baseline-daemon`: section 4's one-user and batched runs and section 5's
   generation step on that build, in the same session, so the phases and steps before
   and after sit side by side.

Writes OUT_DIR/gpu_check.md (its table's last column says whether each ratio meets
issue 14's target on a GPU) and OUT_DIR/gpu_check.json. On a CPU (`--device cpu`) it
runs the same checks smaller (64x64), to test the script itself.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch
import torchvision

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import grpc  # noqa: E402
import layerlens  # noqa: E402
from bench_structure import start_daemon, stop_daemon  # noqa: E402  (same folder)

REPEATS = 5
# A same-numbers check fails when the difference is above this fraction of the
# reference's largest value (Checks).
TOLERANCE = 1e-4


def start_daemon_on(binary, store, device, *flags):
    """layerlensd on `device` with the result cache off (bench_structure.start_daemon);
    libtorch keeps its own thread count. Answers (process, http:// address)."""
    process, address = start_daemon(binary, store, ("--cache-bytes", "0", *flags), device=device, threads=None)
    return process, f"http://{address}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(work, device, repeats=REPEATS, warmups=2):
    for _ in range(warmups):
        work()
    times = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        work()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def resnet18_files(work, side):
    """resnet18 with random weights (seeded) and batch-norm statistics from 8 seeded
    noise batches, saved scripted (resnet18.pt) and exported with a dynamic batch
    (resnet18.pt2, so requests can share passes). Answers the two paths."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    generator = torch.Generator().manual_seed(123)
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.rand(8, 3, 224, 224, generator=generator))
    model.eval()
    scripted, exported = work / "resnet18.pt", work / "resnet18.pt2"
    torch.jit.script(model).save(str(scripted))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, 3, side, side),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(exported))
    return scripted, exported


BLOWUP_SOURCE = '''
import sys, torch
class Blowup(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 4)
    def forward(self, x):
        big = x.repeat(1, 1, 2048, 2048)
        return self.fc(big.mean(dim=(2, 3)))
torch.manual_seed(0)
torch.jit.script(Blowup()).save(sys.argv[1])
'''


def saliency_reference(model, x, targets):
    x = x.clone().requires_grad_(True)
    output = model(x)
    output.gather(1, torch.as_tensor(targets, device=x.device)[:, None]).sum().backward()
    return x.grad.abs()


def concurrent_saliency(model, inputs, targets):
    """8 threads each ask for one saliency at once; answers (seconds, attributions)."""
    answers = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def ask(index):
        barrier.wait()
        answers[index] = model.attribute(inputs[index], method="saliency", target=int(targets[index]), figure_format=None).values

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(inputs))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, answers


class Checks:
    """The correctness half: each same-numbers comparison, failed when the difference is
    above TOLERANCE of the reference's largest value (a wrong device, weight or row
    gives differences of the values' own size; float32 kernels that add in another
    order differ by about 1e-7 of it)."""

    def __init__(self, report):
        self.report = report
        self.results = []

    def same(self, name, ours, theirs):
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        if ours.shape != theirs.shape:
            self.results.append((name, f"shape {ours.shape} against {theirs.shape}", False))
            return
        difference = float(np.max(np.abs(ours - theirs)))
        scale = float(np.max(np.abs(theirs)))
        passed = bool(np.all(np.isfinite(ours))) and difference <= TOLERANCE * max(scale, 1e-30)
        self.results.append((name, f"max abs diff {difference:.3g} (largest value {scale:.3g})", passed))

    def true(self, name, passed, detail=""):
        self.results.append((name, detail, bool(passed)))

    def failed(self):
        return [name for name, _, passed in self.results if not passed]

    def record(self):
        self.report["checks"] = [{"check": name, "detail": detail, "passed": passed} for name, detail, passed in self.results]
        self.report["checks_failed"] = self.failed()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--cli", type=pathlib.Path, default=REPO / "target" / "release" / "layerlens",
                        help="the layerlens CLI, for its load generator (`layerlens bench`); skipped when missing")
    parser.add_argument("--baseline-daemon", type=pathlib.Path,
                        help="an earlier build of layerlensd, run in the same session for the per-phase breakdown before and after")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device here (--device cpu tests the script)")
    side = 224 if on_gpu else 64
    report = {"device": args.device, "torch": torch.__version__, "daemon": str(args.daemon)}
    checks = Checks(report)
    # The daemon keeps cuDNN convolutions in float32 (no TF32) unless --allow-tf32;
    # the references here do the same, so both sides compute the same thing.
    torch.backends.cudnn.allow_tf32 = False
    if on_gpu:
        report["gpu"] = torch.cuda.get_device_name(device)
    rows = []
    work = pathlib.Path(tempfile.mkdtemp(prefix="layerlens-gpu-"))
    scripted_path, exported_path = resnet18_files(work, side)
    reference = torch.jit.load(str(scripted_path), map_location=device).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, side, side, generator=generator)
    inputs = [torch.rand(1, 3, side, side, generator=generator) for _ in range(8)]
    with torch.no_grad():
        target = int(reference(x.to(device)).argmax(1))
        targets = [int(reference(row.to(device)).argmax(1)) for row in inputs]
        logits = reference(x.to(device)).cpu().numpy()
    own_saliency = saliency_reference(reference, x.to(device), [target]).cpu().numpy()
    try:
        import captum.attr
    except ImportError:
        captum = None
    if captum is not None:
        ig = captum.attr.IntegratedGradients(reference)
        captum_ig = ig.attribute(x.to(device), target=target, n_steps=50, method="gausslegendre").detach().cpu().numpy()

    # The batched daemon gets the fixed 1 GiB pass budget the daemon had before its
    # budget followed the device's free memory (the default, on the unbatched one), to
    # see what larger passes buy integrated gradients on a GPU.
    fixed_budget = ("--pass-budget-bytes", str(1 << 30)) if on_gpu else ()
    batched_flags = ("--max-batch-size", "8", "--max-batch-delay-ms", "5")
    batched_process, batched_address = start_daemon_on(args.daemon, work / "store", args.device, *batched_flags, *fixed_budget)
    processes = [batched_process]
    try:
        client = layerlens.connect(batched_address, timeout=600)
        status = client.status()
        report["daemon_device"] = status["device"]
        checks.true("the daemon runs on the asked device", status["device"] == args.device, status["device"])
        model = client.add_model(scripted_path, name="resnet18")
        exported = client.add_model(exported_path, name="resnet18-exported")
        handles = {"scripted": model, "exported": exported}

        # 1. Same numbers as here, for the scripted and the exported model.
        for kind, handle in handles.items():
            handle.attribute(x.numpy(), method="saliency", target=target, figure_format=None)  # loads and warms it
            checks.same(f"{kind}: prediction equals the scripted model's here", handle.predict(x.numpy(), top_k=1).output, logits)
            saliency = handle.attribute(x.numpy(), method="saliency", target=target, figure_format=None).values
            checks.same(f"{kind}: saliency equals PyTorch's input gradient here", saliency, own_saliency)
        summary = model.summary(input_shape=(1, 3, side, side))
        report["summary_rows"] = len(summary.rows)
        activations = model.activations(x.numpy(), figure_format=None)
        report["activation_layers"] = len(activations.layers)
        checks.true("summary and activation report ran", len(summary.rows) > 0 and len(activations.layers) > 0,
                    f"{len(summary.rows)} rows, {len(activations.layers)} layers")

        # 2. Integrated gradients against Captum: a fixed 1 GiB pass budget (batched
        # daemon) and the default one (unbatched daemon).
        unbatched_process, unbatched_address = start_daemon_on(args.daemon, work / "store", args.device, "--max-batch-size", "1")
        processes.append(unbatched_process)
        unbatched_client = layerlens.connect(unbatched_address, timeout=600)
        unbatched = {kind: unbatched_client.model(handle.id) for kind, handle in handles.items()}
        if captum is not None:
            captum_seconds = median_seconds(lambda: ig.attribute(x.to(device), target=target, n_steps=50, method="gausslegendre"), device)
            budget_note = ", fixed 1 GiB pass budget" if on_gpu else ""
            default_note = "default pass budget (free device memory less a tenth)" if on_gpu else "default 1 GiB pass budget"
            for kind in handles:
                for label, handle, limit in ((budget_note, handles[kind], None), (f", {default_note}", unbatched[kind], 0.8)):
                    call = lambda handle=handle: handle.attribute(x.numpy(), method="integrated_gradients", target=target,
                                                                  figure_format=None, n_steps=50)
                    answer = call()
                    checks.same(f"{kind}: integrated gradients{label} equal Captum's", answer.values, captum_ig)
                    rows.append((f"IG, 50 steps, gausslegendre, resnet18 {kind} 1x3x{side}x{side}{label} "
                                 f"({answer.rows_evaluated} rows in {answer.passes} passes)",
                                 median_seconds(call, device), "Captum IntegratedGradients, internal_batch_size=None", captum_seconds, limit))

        # 3. Batching: 8 concurrent saliency requests from 8 Python threads, batched and not.
        arrays = [row.numpy() for row in inputs]
        timings, answers = {}, {}
        for label, handle in (("batched", model), ("unbatched", unbatched["scripted"])):
            for _ in range(2):
                concurrent_saliency(handle, arrays, targets)
        for _ in range(REPEATS):
            for label, handle in (("batched", model), ("unbatched", unbatched["scripted"])):
                seconds, answers[label] = concurrent_saliency(handle, arrays, targets)
                timings.setdefault(label, []).append(seconds)
        batched_seconds = statistics.median(timings["batched"])
        unbatched_seconds = statistics.median(timings["unbatched"])
        for index, (row, answer) in enumerate(zip(inputs, answers["batched"])):
            if index < 2:
                checks.same(f"batched saliency request {index} equals PyTorch's input gradient",
                            answer, saliency_reference(reference, row.to(device), [targets[index]]).cpu().numpy())
        report["batched_vs_unbatched_max_abs_diff"] = float(max(np.max(np.abs(a - b)) for a, b in zip(answers["batched"], answers["unbatched"])))
        stacked = torch.cat(inputs).to(device)
        one_pass = median_seconds(lambda: saliency_reference(reference, stacked, targets), device)
        eight_passes = median_seconds(lambda: [saliency_reference(reference, row.to(device), [t]) for row, t in zip(inputs, targets)], device)
        rows.append(("8 concurrent saliency requests (Python threads), batched (max 8, 5 ms)", batched_seconds,
                     "same daemon flags but --max-batch-size 1", unbatched_seconds))
        rows.append(("reference ceiling: one batch-8 saliency pass in PyTorch", one_pass, "8 batch-1 passes in PyTorch", eight_passes))
        report["batching_throughput_ratio"] = unbatched_seconds / batched_seconds
        report["reference_batching_ratio"] = eight_passes / one_pass

        # 4. The request path through the Rust load generator, for each model: one user
        # end to end with the daemon's phases, and 8 users batched against unbatched,
        # beside Captum's in-process sequential saliency on the same device.
        captum_saliency = None
        if captum is not None:
            explainer = captum.attr.Saliency(reference)
            captum_saliency = median_seconds(lambda: explainer.attribute(x.to(device).clone().requires_grad_(), target=target), device)
        if args.cli.is_file():
            x_path = work / "x.npy"
            np.save(x_path, x.numpy())
            load = LoadGenerator(args.cli, x_path, target)
            report["bench"] = {}
            for kind, handle in handles.items():
                one_user = load.run(batched_address, handle.id, 1, 100)
                eight_batched = load.run(batched_address, handle.id, 8, 60)
                eight_unbatched = load.run(unbatched_address, handle.id, 8, 60)
                report["bench"][f"{kind}, this build"] = {"one_user": one_user, "eight_users_batched": eight_batched,
                                                          "eight_users_unbatched": eight_unbatched}
                if captum_saliency is not None:
                    rows.append((f"saliency, {kind}, one user end to end (layerlens bench p50, gRPC)", one_user["latency_ms"]["p50"] / 1e3,
                                 "Captum Saliency in-process", captum_saliency, 1.15))
                    rows.append((f"saliency, {kind}, 8 users batched: seconds per request (1/throughput; "
                                 f"{eight_batched['mean_batch_size']:.1f} requests per pass)", 1 / eight_batched["throughput"],
                                 "Captum Saliency in-process, sequential", captum_saliency, 1 / 3))
                rows.append((f"saliency, {kind}, 8 users batched: seconds per request", 1 / eight_batched["throughput"],
                             "same daemon build with --max-batch-size 1", 1 / eight_unbatched["throughput"], 1 / 4))
            # SmoothGrad joins across callers too (each caller's noise drawn apart, seeded).
            smoothgrad = ("nt_samples=10", "seed=7")
            smooth_batched = load.run(batched_address, exported.id, 8, 10, "smoothgrad", smoothgrad)
            smooth_unbatched = load.run(unbatched_address, exported.id, 8, 10, "smoothgrad", smoothgrad)
            rows.append((f"SmoothGrad (10 samples), exported, 8 users batched: seconds per request "
                         f"({smooth_batched['mean_batch_size']:.1f} requests per pass)", 1 / smooth_batched["throughput"],
                         "same daemon build with --max-batch-size 1", 1 / smooth_unbatched["throughput"]))

        # 5. A generation step (channel objective) against a plain PyTorch loop with
        # frozen weights on the same device (bench_generation.py's loop).
        generation(rows, report, checks, handles, device, side)

        # 6. Out of memory on the device.
        if on_gpu:
            try:
                out_of_memory(client, work, report)
            except Exception as error:  # recorded, so the other results still come back
                report["oom_error"] = repr(error)[:500]
            checks.true("out of memory: a joined pass too large is retried in halves", report.get("oom_retry_rows_equal"),
                        report.get("oom_error", ""))
            checks.true("out of memory: a row too large is refused with RESOURCE_EXHAUSTED",
                        "RESOURCE_EXHAUSTED" in str(report.get("oom_refused")), str(report.get("oom_refused"))[:120])
            checks.true("out of memory: the model serves afterwards", report.get("oom_model_serves_after"))
            checks.true("resnet18 serves after the out-of-memory requests",
                        model.predict(x.numpy(), top_k=1).output.shape == (1, 1000))
        report["status_after"] = client.status()
    finally:
        for process in processes:
            stop_daemon(process)

    # 7. The same load on an earlier build, in this session, for the phases before.
    if args.baseline_daemon and args.cli.is_file():
        baseline(args, report, rows, work, x, target, scripted_path, exported_path, batched_flags, fixed_budget, side)
    checks.record()
    write_report(args, report, rows)
    if checks.failed():
        sys.exit(f"gpu_check: {len(checks.failed())} correctness check(s) failed: {', '.join(checks.failed())}")


class LoadGenerator:
    """`layerlens bench` (the Rust load generator) on the resnet18 input, closed loop."""

    def __init__(self, cli, input_path, target):
        self.cli, self.input_path, self.target = cli, input_path, target

    def run(self, address, model_id, clients, requests, method="saliency", params=()):
        options = [part for param in params for part in ("--param", param)]
        result = subprocess.run([str(self.cli), "--addr", address, "--json", "bench", model_id, "--method", method,
                                 "--input", str(self.input_path), "--target", str(self.target), "--clients", str(clients),
                                 "--requests", str(requests), *options], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"layerlens bench: {result.stderr}")
        answer = json.loads(result.stdout)
        if answer["errors"]:
            raise RuntimeError(f"layerlens bench: errors {answer['errors']}")
        return {key: answer[key] for key in ("throughput", "latency_ms", "daemon_phases", "outside_daemon_ms", "mean_batch_size")}


GENERATION_STEPS, GENERATION_JOBS = 24, 3


def daemon_job(handle, side, count):
    """One activation-maximisation job of `count` steps (bench_generation.py's objective)."""
    from bench_generation import CHANNEL, LAYER  # noqa: E402  (same folder)

    return handle.visualize(f"channel:{LAYER}:{CHANNEL}", input_shape=(1, 3, side, side), steps=count, seed=0,
                            figure_format=None, progress=False)


def generation(rows, report, checks, handles, device, side, steps=GENERATION_STEPS, jobs=GENERATION_JOBS):
    """Section 5: per step, median of `jobs` jobs of `steps` steps after a warm-up job,
    the daemon's two models and the loop alternating."""
    from bench_generation import CHANNEL, LAYER, lucent_style_job  # noqa: E402  (same folder)

    torch.manual_seed(0)
    eager = torchvision.models.resnet18(weights=None).eval().to(device)
    for parameter in eager.parameters():
        parameter.requires_grad_(False)

    def loop_job(count):
        lucent_style_job(eager, count, 0, size=side, device=device)

    sides = {kind: (lambda count, handle=handle: daemon_job(handle, side, count)) for kind, handle in handles.items()}
    sides["loop"] = loop_job
    for job in sides.values():
        job(4)
    samples = {name: [] for name in sides}
    for _ in range(jobs):
        for name, job in sides.items():
            sync(device)
            started = time.perf_counter()
            job(steps)
            sync(device)
            samples[name].append((time.perf_counter() - started) / steps)
    loop = statistics.median(samples["loop"])
    for kind in handles:
        objective = daemon_job(handles[kind], side, 4).objective[0]
        checks.true(f"{kind}: generation gives a finite objective", np.isfinite(objective), f"{objective:.4g}")
        rows.append((f"generation step, channel {LAYER}:{CHANNEL}, resnet18 {kind} {side}x{side} (per step, {steps}-step jobs)",
                     statistics.median(samples[kind]), "a plain PyTorch loop, weights frozen (bench_generation.py's)", loop, 1.0))
    report["generation_seconds_per_step"] = {name: values for name, values in samples.items()}
    report["generation_loop_seconds_per_step"] = loop


def baseline(args, report, rows, work, x, target, scripted_path, exported_path, batched_flags, fixed_budget, side):
    """Section 7: the earlier build on its own store, with the batched daemon's flags:
    section 4's one-user and batched loads and section 5's generation step."""
    process, address = start_daemon_on(args.baseline_daemon, work / "baseline-store", args.device, *batched_flags, *fixed_budget)
    try:
        client = layerlens.connect(address, timeout=600)
        load = LoadGenerator(args.cli, work / "x.npy", target)
        for kind, path in (("scripted", scripted_path), ("exported", exported_path)):
            try:
                handle = client.add_model(path, name=f"resnet18-{kind}")
                handle.attribute(x.numpy(), method="saliency", target=target, figure_format=None)
                report["bench"][f"{kind}, baseline build"] = {
                    "one_user": load.run(address, handle.id, 1, 100), "eight_users_batched": load.run(address, handle.id, 8, 60)}
                daemon_job(handle, side, 4)
                per_step = []
                for _ in range(GENERATION_JOBS):
                    started = time.perf_counter()
                    daemon_job(handle, side, GENERATION_STEPS)
                    per_step.append((time.perf_counter() - started) / GENERATION_STEPS)
                report["generation_seconds_per_step"][f"{kind}, baseline build"] = per_step
                rows.append((f"generation step, resnet18 {kind}, the baseline build (per step)", statistics.median(per_step),
                             "the plain PyTorch loop of section 5", report["generation_loop_seconds_per_step"]))
            except Exception as error:  # an earlier build may lack what this one serves
                report["bench"][f"{kind}, baseline build"] = {"error": repr(error)[:300]}
    finally:
        stop_daemon(process)


def out_of_memory(client, work, report):
    """Section 3 of the docstring: CUDA out of memory retried, then refused."""
    blowup_path = work / "blowup.pt"
    script = work / "make_blowup.py"
    script.write_text(BLOWUP_SOURCE)
    subprocess.run([sys.executable, str(script), str(blowup_path)], check=True)
    blowup = client.add_model(blowup_path, name="blowup")
    small = blowup.predict(np.full((1, 1, 8, 8), 0.5, dtype=np.float32), top_k=1).output
    started = time.perf_counter()
    eight = blowup.predict(np.full((8, 1, 32, 32), 0.5, dtype=np.float32), top_k=1).output
    report["oom_retry_seconds"] = time.perf_counter() - started
    report["oom_retry_rows_equal"] = bool(all(np.allclose(row, eight[0]) for row in eight))
    try:
        blowup.predict(np.full((1, 1, 128, 128), 0.5, dtype=np.float32), top_k=1)
        report["oom_refused"] = "not refused"
    except layerlens.LayerlensError as error:
        report["oom_refused"] = f"{error.code}: {str(error)[:300]}"
    except grpc.RpcError as error:
        report["oom_refused"] = f"{error.code()}: {error.details()[:300]}"
    again = blowup.predict(np.full((1, 1, 8, 8), 0.5, dtype=np.float32), top_k=1).output
    report["oom_model_serves_after"] = bool(np.array_equal(again, small))


PHASES = ("decode", "queue", "batch_wait", "to_device", "pass", "to_host", "encode", "handler")


def phase_table(report):
    """The load generator's runs, one line each: throughput, latency and the daemon's
    mean milliseconds per phase ("pass" is `run` less the two copies)."""
    lines = ["| model, build | load | requests/s | p50 ms | requests per pass | " + " | ".join(PHASES) + " | outside the daemon ms |",
             "|---|---|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|"]
    for name, loads in report.get("bench", {}).items():
        if "error" in loads:
            lines.append(f"| {name} | {loads['error']} |")
            continue
        for load, result in loads.items():
            means = {phase: values["mean_ms"] for phase, values in result["daemon_phases"].items()}
            means["pass"] = means.get("run", 0.0) - means.get("to_device", 0.0) - means.get("to_host", 0.0)
            cells = " | ".join(f"{means[phase]:.3f}" if phase in means else "–" for phase in PHASES)
            lines.append(f"| {name} | {load.replace('_', ' ')} | {result['throughput']:.1f} | {result['latency_ms']['p50']:.2f} | "
                         f"{result['mean_batch_size']:.2f} | {cells} | {result['outside_daemon_ms']:.3f} |")
    return lines


def write_report(args, report, rows):
    lines = [f"# gpu-check on {report.get('gpu', args.device)} (torch {report['torch']})", "",
             "| work | layerlensd s | reference | reference s | ratio | issue 14's target for the ratio (on a GPU) |",
             "|---|---|---|---|---|---|"]
    for name, ours, reference_name, theirs, *limit in rows:
        ratio = ours / theirs
        goal = f"≤ {limit[0]:.2f}: {'met' if ratio <= limit[0] else 'missed'}" if limit and limit[0] is not None else ""
        lines.append(f"| {name} | {ours:.4f} | {reference_name} | {theirs:.4f} | {ratio:.2f} | {goal} |")
    lines += ["", "Phases (the daemon's means per request, ms):", ""] + phase_table(report)
    lines += ["", "Same numbers:", ""]
    lines += [f"- {'PASS' if check['passed'] else 'FAIL'}: {check['check']}" + (f" ({check['detail']})" if check["detail"] else "")
              for check in report.get("checks", [])]
    rest = {key: value for key, value in report.items() if key not in ("status_after", "checks", "bench")}
    lines += ["", "```json", json.dumps(rest, indent=2, default=str), "```"]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
