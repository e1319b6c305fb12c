"""The daemon on a CUDA device (scripts/gpu-check), side by side with PyTorch and Captum
on the same device, in one run:

    python tests/bench/gpu_check.py OUT_DIR [--daemon target/release/layerlensd] [--device cuda:0]

1. The `--device` path: Status reports the device; a prediction, saliency and
   integrated gradients (50 steps, Gauss-Legendre) on resnet18 (random weights,
   seeded, batch-norm statistics set by 8 train-mode passes over seeded noise, as in
   bench_attribution.py) match the scripted model and Captum run here on the same
   device (max abs difference); the summary and activation report run there.
2. Timing, each the median of 5 after warm-ups: the daemon's integrated gradients
   against Captum's (internal_batch_size=None), under a fixed 1 GiB pass budget and
   under the default one (on a GPU: its free memory less a tenth; the passes each
   took are reported, and the default's answer is checked against Captum's too), and
   8 concurrent saliency requests from 8 threads with cross-request batching (`--max-batch-size 8
   --max-batch-delay-ms 5`) against a daemon started with `--max-batch-size 1`; the
   reference ceiling is one batch-8 saliency pass here against 8 batch-1 passes.
3. Out of memory on the device: a model that tiles its input 2048 times per side
   is asked for 8 rows of 32x32 (17 GiB a row: the joined pass does not fit, halves
   do) and for one 128x128 row (275 GiB: refused with RESOURCE_EXHAUSTED); the model
   and the daemon serve afterwards. Skipped on the CPU.

Writes OUT_DIR/gpu_check.md and OUT_DIR/gpu_check.json. On a CPU (`--device cpu`) it
runs the same checks smaller, to test the script itself.
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


def resnet18_file(path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    generator = torch.Generator().manual_seed(123)
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.rand(8, 3, 224, 224, generator=generator))
    model.eval()
    torch.jit.script(model).save(str(path))


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--cli", type=pathlib.Path, default=REPO / "target" / "release" / "layerlens",
                        help="the layerlens CLI, for its load generator (`layerlens bench`); skipped when missing")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    side = 224 if on_gpu else 64
    report = {"device": args.device, "torch": torch.__version__}
    # The daemon keeps cuDNN convolutions in float32 (no TF32) unless --allow-tf32;
    # the references here do the same, so both sides compute the same thing.
    torch.backends.cudnn.allow_tf32 = False
    if on_gpu:
        report["gpu"] = torch.cuda.get_device_name(device)
    rows = []
    work = pathlib.Path(tempfile.mkdtemp(prefix="layerlens-gpu-"))
    model_path = work / "resnet18.pt"
    resnet18_file(model_path)
    reference = torch.jit.load(str(model_path), map_location=device).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, side, side, generator=generator)
    inputs = [torch.rand(1, 3, side, side, generator=generator) for _ in range(8)]
    with torch.no_grad():
        target = int(reference(x.to(device)).argmax(1))
        targets = [int(reference(row.to(device)).argmax(1)) for row in inputs]

    # The batched daemon gets the fixed 1 GiB pass budget the daemon had before its
    # budget followed the device's free memory (the default, on the unbatched one), to
    # see what larger passes buy integrated gradients on a GPU.
    fixed_budget = ("--pass-budget-bytes", str(1 << 30)) if on_gpu else ()
    batched_process, batched_address = start_daemon_on(
        args.daemon, work / "store", args.device, "--max-batch-size", "8", "--max-batch-delay-ms", "5", *fixed_budget)
    processes = [batched_process]
    try:
        client = layerlens.connect(batched_address, timeout=600)
        status = client.status()
        report["daemon_device"] = status["device"]
        assert status["device"] == args.device, f"the daemon reports device {status['device']}"
        model = client.add_model(model_path, name="resnet18")
        model.attribute(x.numpy(), method="saliency", target=target, figure_format=None)  # loads and warms it

        # 1. Same numbers as here.
        prediction = model.predict(x.numpy(), top_k=1)
        with torch.no_grad():
            logits = reference(x.to(device)).cpu().numpy()
        report["predict_max_abs_diff"] = float(np.max(np.abs(prediction.output - logits)))
        saliency = model.attribute(x.numpy(), method="saliency", target=target, figure_format=None).values
        own = saliency_reference(reference, x.to(device), [target]).cpu().numpy()
        report["saliency_max_abs_diff"] = float(np.max(np.abs(saliency - own)))
        report["saliency_max_abs"] = float(np.max(np.abs(own)))
        summary = model.summary(input_shape=(1, 3, side, side))
        report["summary_rows"] = len(summary.rows)
        activations = model.activations(x.numpy(), figure_format=None)
        report["activation_layers"] = len(activations.layers)

        try:
            import captum.attr
        except ImportError:
            captum = None
        if captum is not None:
            ig = captum.attr.IntegratedGradients(reference)
            captum_values = ig.attribute(x.to(device), target=target, n_steps=50, method="gausslegendre").detach().cpu().numpy()
            daemon_ig = model.attribute(x.numpy(), method="integrated_gradients", target=target, figure_format=None, n_steps=50)
            report["ig_max_abs_diff"] = float(np.max(np.abs(daemon_ig.values - captum_values)))
            report["ig_max_abs"] = float(np.max(np.abs(captum_values)))
            daemon_seconds = median_seconds(
                lambda: model.attribute(x.numpy(), method="integrated_gradients", target=target, figure_format=None, n_steps=50), device)
            captum_seconds = median_seconds(lambda: ig.attribute(x.to(device), target=target, n_steps=50, method="gausslegendre"), device)
            report["ig_passes"] = f"{daemon_ig.rows_evaluated} rows in {daemon_ig.passes} passes"
            budget_note = ", fixed 1 GiB pass budget" if on_gpu else ""
            rows.append((f"IG, 50 steps, gausslegendre, resnet18 1x3x{side}x{side}{budget_note}", daemon_seconds, "Captum IntegratedGradients, internal_batch_size=None", captum_seconds))

        # 2. Batching: 8 concurrent saliency requests, batched and not.
        unbatched_process, unbatched_address = start_daemon_on(args.daemon, work / "store", args.device, "--max-batch-size", "1")
        processes.append(unbatched_process)
        unbatched_client = layerlens.connect(unbatched_address, timeout=600)
        unbatched_model = unbatched_client.model(model.id)
        if captum is not None:
            unbatched_ig = unbatched_model.attribute(x.numpy(), method="integrated_gradients", target=target, figure_format=None, n_steps=50)
            report["ig_passes_default_budget"] = f"{unbatched_ig.rows_evaluated} rows in {unbatched_ig.passes} passes"
            report["ig_default_budget_max_abs_diff"] = float(np.max(np.abs(unbatched_ig.values - captum_values)))
            default_seconds = median_seconds(
                lambda: unbatched_model.attribute(x.numpy(), method="integrated_gradients", target=target, figure_format=None, n_steps=50), device)
            default_note = "default pass budget (free device memory less a tenth)" if on_gpu else "default 1 GiB pass budget"
            rows.append((f"IG, 50 steps, {default_note}", default_seconds, "Captum IntegratedGradients, internal_batch_size=None", captum_seconds))
        arrays = [row.numpy() for row in inputs]
        timings = {}
        answers = {}
        for label, handle in (("batched", model), ("unbatched", unbatched_model)):
            for _ in range(2):
                concurrent_saliency(handle, arrays, targets)
        for _ in range(REPEATS):
            for label, handle in (("batched", model), ("unbatched", unbatched_model)):
                seconds, answers[label] = concurrent_saliency(handle, arrays, targets)
                timings.setdefault(label, []).append(seconds)
        batched_seconds = statistics.median(timings["batched"])
        unbatched_seconds = statistics.median(timings["unbatched"])
        report["batched_vs_unbatched_max_abs_diff"] = float(max(np.max(np.abs(a - b)) for a, b in zip(answers["batched"], answers["unbatched"])))
        stacked = torch.cat(inputs).to(device)
        one_pass = median_seconds(lambda: saliency_reference(reference, stacked, targets), device)
        eight_passes = median_seconds(lambda: [saliency_reference(reference, row.to(device), [t]) for row, t in zip(inputs, targets)], device)
        rows.append(("8 concurrent saliency requests, batched (max 8, 5 ms)", batched_seconds, "same daemon flags but --max-batch-size 1", unbatched_seconds))
        rows.append(("reference ceiling: one batch-8 saliency pass in PyTorch", one_pass, "8 batch-1 passes in PyTorch", eight_passes))
        report["batching_throughput_ratio"] = unbatched_seconds / batched_seconds
        report["reference_batching_ratio"] = eight_passes / one_pass

        # 3. The request path through the Rust load generator: one user end to end with
        # the daemon's phases, and 8 users batched against unbatched, beside Captum's
        # in-process sequential saliency on the same GPU.
        if args.cli.is_file():
            x_path = work / "x.npy"
            np.save(x_path, x.numpy())

            def bench(address, clients, requests, method="saliency", params=()):
                options = [part for param in params for part in ("--param", param)]
                result = subprocess.run([str(args.cli), "--addr", address, "--json", "bench", model.id, "--method", method,
                                         "--input", str(x_path), "--target", str(target), "--clients", str(clients),
                                         "--requests", str(requests), *options], capture_output=True, text=True, timeout=600)
                if result.returncode != 0:
                    raise RuntimeError(f"layerlens bench: {result.stderr}")
                return json.loads(result.stdout)

            one_user = bench(batched_address, 1, 50)
            report["bench_one_user"] = {"latency_ms": one_user["latency_ms"], "daemon_phases": one_user["daemon_phases"],
                                        "outside_daemon_ms": one_user["outside_daemon_ms"]}
            captum_saliency = None
            if captum is not None:
                explainer = captum.attr.Saliency(reference)
                captum_saliency = median_seconds(lambda: explainer.attribute(x.to(device).requires_grad_(), target=target), device)
                rows.append(("saliency, one user end to end (layerlens bench p50, gRPC)", one_user["latency_ms"]["p50"] / 1e3,
                             "Captum Saliency in-process", captum_saliency))
            eight_batched = bench(batched_address, 8, 30)
            eight_unbatched = bench(unbatched_address, 8, 30)
            report["bench_eight_users"] = {
                "batched_throughput": eight_batched["throughput"], "unbatched_throughput": eight_unbatched["throughput"],
                "mean_batch_size": eight_batched["mean_batch_size"], "batched_phases": eight_batched["daemon_phases"],
                "unbatched_phases": eight_unbatched["daemon_phases"],
            }
            report["bench_batching_throughput_ratio"] = eight_batched["throughput"] / eight_unbatched["throughput"]
            # SmoothGrad joins across callers too (each caller's noise drawn apart, seeded).
            smoothgrad = ("nt_samples=10", "seed=7")
            smooth_batched = bench(batched_address, 8, 10, "smoothgrad", smoothgrad)
            smooth_unbatched = bench(unbatched_address, 8, 10, "smoothgrad", smoothgrad)
            report["bench_smoothgrad_eight_users"] = {
                "batched_throughput": smooth_batched["throughput"], "unbatched_throughput": smooth_unbatched["throughput"],
                "mean_batch_size": smooth_batched["mean_batch_size"],
                "ratio": smooth_batched["throughput"] / smooth_unbatched["throughput"],
            }
            if captum_saliency is not None:
                report["bench_batched_vs_captum_sequential_rate"] = eight_batched["throughput"] * captum_saliency

        # 4. Out of memory on the device.
        if on_gpu:
            try:
                out_of_memory(client, work, report)
            except Exception as error:  # recorded, so the other results still come back
                report["oom_error"] = repr(error)[:500]
            report["resnet_serves_after_oom"] = model.predict(x.numpy(), top_k=1).output.shape == (1, 1000)
        report["status_after"] = client.status()
    finally:
        for process in processes:
            stop_daemon(process)
    write_report(args, report, rows)


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


def write_report(args, report, rows):
    lines = [f"# gpu-check on {report.get('gpu', args.device)} (torch {report['torch']})", "",
             "| work | layerlensd s | reference | reference s | ratio |", "|---|---|---|---|---|"]
    for name, ours, reference_name, theirs in rows:
        lines.append(f"| {name} | {ours:.4f} | {reference_name} | {theirs:.4f} | {ours / theirs:.2f} |")
    lines += ["", "```json", json.dumps({key: value for key, value in report.items() if key != "status_after"}, indent=2, default=str), "```"]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
