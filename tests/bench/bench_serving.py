"""Serving benchmark, in one run against the release daemon: the load of
tests/tests/load.rs (32 concurrent clients x 200 mixed requests) with latency
percentiles and throughput, and cross-request batching of saliency on resnet18.

    python tests/bench/bench_serving.py OUT.md [--daemon target/release/layerlensd]
        [--unbatched-flags "--max-batch-size 1"]
        [--batched-flags "--max-batch-size 8 --max-batch-delay-ms 5"]

Part 1, load. One daemon, four small models from tests/fixtures/out (digits_cnn
scripted and traced, 1x1x8x8; tiny_cnn_traced, 1x3x8x8; tiny_mlp_scripted, 1x4).
32 threads, each with its own gRPC channel, send 200 requests each, cycling through
Predict (2 in 10), Attribute saliency (2 in 10, one in four of them with a PNG
figure), Attribute integrated_gradients with 8 steps, Activations, Summary,
Parameters, Models.List and Daemon.Status; the same mix and inputs as load.rs
(predictions of 48 fixed rows per model, attributions and activations of rows made
unique per request). Run twice: with the result cache (default size) and with
`--cache-bytes 0`. Latency is per call as the client sees it; throughput is all
requests over the wall time from the first to the last. The client runs in this
process on the same two cores as the daemon, so both numbers include its cost.

Part 2, batching. resnet18 (random weights, seeded), scripted; 8 different inputs
1x3x224x224 with explicit targets. A round sends the 8 saliency requests at once
from 8 threads and waits for all 8; median of 5 rounds after a warm-up round, for a
daemon started with the unbatched flags and one started with the batched flags
(cache off in both; both stay up and the rounds alternate, so a busy spell of the
shared machine hits every side alike). The reference ceiling: the same 8 rows as one
batch-8 saliency pass in PyTorch in this process against 8 batch-1 passes (input
gradients only, as Captum's Saliency; median of 5 each, alternating with the daemon
rounds; on the eager model, since the scripted one re-specialises in Python whenever
the batch size changes): the most batching can gain on this machine. The daemon's
answers are checked against the scripted model's gradients computed here.

Threads: torch in this process and libtorch in the daemon both use 2 (the machine's cores).
"""

import argparse
import pathlib
import shlex
import statistics
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
from layerlens.v1 import common_pb2, daemon_pb2, daemon_pb2_grpc, explain_pb2, explain_pb2_grpc, models_pb2, models_pb2_grpc  # noqa: E402
from bench_structure import start_daemon, stop_daemon, timed  # noqa: E402  (same folder)

FIXTURES = REPO / "tests" / "fixtures" / "out"
CLIENTS = 32
REQUESTS_PER_CLIENT = 200
CHECKED_INPUTS = 48
BATCH_ROWS = 8
REPEATS = 5
MAX_MESSAGE = 256 << 20
NO_FIGURE = common_pb2.FIGURE_FORMAT_NONE


class Stubs:
    """The generated stubs on one channel of their own."""

    def __init__(self, address):
        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE),
                   # Its own connection, as separate client processes would have.
                   ("grpc.use_local_subchannel_pool", 1)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.explain = explain_pb2_grpc.ExplainStub(self.channel)
        self.daemon = daemon_pb2_grpc.DaemonStub(self.channel)


def tensor(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_FLOAT32, data=array.tobytes())


def tensor_values(message):
    return np.frombuffer(message.data, dtype="<f4").reshape(list(message.shape))


def upload(stubs, path, name, input_shape):
    data = pathlib.Path(path).read_bytes()
    header = models_pb2.UploadRequest(header=models_pb2.UploadHeader(name=name, input_shape=list(input_shape)))
    chunks = [models_pb2.UploadRequest(chunk=data[start:start + (1 << 20)]) for start in range(0, len(data), 1 << 20)]
    return stubs.models.Upload(iter([header, *chunks]), timeout=120)


# ---- part 1: the load of load.rs ----

class LoadModel:
    def __init__(self, name, file, shape, classes, inputs):
        self.name, self.file, self.shape, self.classes, self.inputs = name, file, shape, classes, inputs

    def unique_input(self, client, request):
        base = self.inputs[(client * 7 + request) % len(self.inputs)]
        return (base + np.float32((client * REQUESTS_PER_CLIENT + request) * 1e-4)).reshape(self.shape)


def load_models():
    images = np.load(FIXTURES / "digits_test_images.npy").astype(np.float32)
    digits = [images[row].reshape(-1) for row in range(CHECKED_INPUTS)]

    def synthetic(length, salt):
        return [np.array([((row * 131 + index * 37 + salt) % 101) / 50.0 - 1.0 for index in range(length)], dtype=np.float32)
                for row in range(CHECKED_INPUTS)]

    return [
        LoadModel("digits", "digits_cnn.pt", [1, 1, 8, 8], 10, digits),
        LoadModel("digits-traced", "digits_cnn_traced.pt", [1, 1, 8, 8], 10, digits),
        LoadModel("cnn", "tiny_cnn_traced.pt", [1, 3, 8, 8], 5, synthetic(3 * 64, 1)),
        LoadModel("mlp", "tiny_mlp_scripted.pt", [1, 4], 3, synthetic(4, 2)),
    ]


def one_request(stubs, models, client, request):
    """Client `client`'s request number `request`, as in load.rs; answers (method, cached or None)."""
    model = models[(client + request) % len(models)]
    target = (client * 3 + request) % model.classes
    slot = (client + request * 3) % 10
    if slot in (0, 1):
        checked = model.inputs[(client * 5 + request) % len(model.inputs)].reshape(model.shape)
        answer = stubs.explain.Predict(explain_pb2.PredictRequest(model=model.name, input=tensor(checked), top_k=3), timeout=60)
        return "Predict", answer.cached
    if slot in (2, 3):
        figure = common_pb2.FIGURE_FORMAT_PNG if request % 4 == 0 else NO_FIGURE
        answer = stubs.explain.Attribute(explain_pb2.AttributeRequest(
            model=model.name, input=tensor(model.unique_input(client, request)), method="saliency", target=target,
            figure_format=figure), timeout=60)
        return "Attribute saliency", answer.cached
    if slot == 4:
        answer = stubs.explain.Attribute(explain_pb2.AttributeRequest(
            model=model.name, input=tensor(model.unique_input(client, request)), method="integrated_gradients",
            target=target, params={"n_steps": "8"}, figure_format=NO_FIGURE), timeout=60)
        return "Attribute integrated_gradients", answer.cached
    if slot == 5:
        answer = stubs.explain.Activations(explain_pb2.ActivationsRequest(
            model=model.name, input=tensor(model.unique_input(client, request)), bins=8, figure_format=NO_FIGURE), timeout=60)
        return "Activations", answer.cached
    if slot == 6:
        answer = stubs.explain.Summary(explain_pb2.SummaryRequest(
            model=model.name, input_shape=model.shape, depth=request % 3, figure_format=NO_FIGURE), timeout=60)
        return "Summary", answer.cached
    if slot == 7:
        answer = stubs.explain.Parameters(explain_pb2.ParametersRequest(
            model=model.name, bins=8 + request % 4, figure_format=NO_FIGURE), timeout=60)
        return "Parameters", answer.cached
    if slot == 8:
        listed = stubs.models.List(models_pb2.ListModelsRequest(), timeout=60)
        if len(listed.models) != len(models):
            raise RuntimeError(f"Models.List answered {len(listed.models)} models, not {len(models)}")
        return "Models.List", None
    stubs.daemon.Status(daemon_pb2.StatusRequest(), timeout=60)
    return "Daemon.Status", None


def percentile(sorted_values, fraction):
    rank = min(max(int(np.ceil(len(sorted_values) * fraction)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def run_load(binary, work, label, extra_args, requests_per_client):
    """One phase of the load; answers markdown rows."""
    models = load_models()
    process, address = start_daemon(binary, work / f"store-{label.replace(' ', '-')}", tuple(extra_args))
    try:
        setup = Stubs(address)
        for model in models:
            upload(setup, FIXTURES / model.file, model.name, model.shape)
        # Every model loaded and warm before the clock starts.
        for model in models:
            setup.explain.Predict(explain_pb2.PredictRequest(model=model.name, input=tensor(model.inputs[0].reshape(model.shape))), timeout=120)
        results = [[] for _ in range(CLIENTS)]
        errors = []
        start_together = threading.Barrier(CLIENTS + 1)

        def client_thread(client):
            stubs = Stubs(address)
            start_together.wait()
            for request in range(requests_per_client):
                started = time.perf_counter()
                try:
                    method, cached = one_request(stubs, models, client, request)
                except Exception as error:  # noqa: BLE001 -- every failure is counted and shown
                    errors.append(f"client {client} request {request}: {error}")
                    continue
                results[client].append((method, time.perf_counter() - started, cached))
            stubs.channel.close()

        threads = [threading.Thread(target=client_thread, args=(client,)) for client in range(CLIENTS)]
        for thread in threads:
            thread.start()
        start_together.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        setup.channel.close()
    finally:
        stop_daemon(process)
    if errors:
        raise RuntimeError(f"{label}: {len(errors)} requests failed, e.g. {errors[:3]}")
    outcomes = [outcome for per_client in results for outcome in per_client]
    by_method = {}
    for method, latency, _ in outcomes:
        by_method.setdefault(method, []).append(latency)
    cacheable = [cached for _, _, cached in outcomes if cached is not None]
    rows = []
    for method in sorted(by_method):
        latencies = sorted(by_method[method])
        rows.append(f"| {label} | {method} | {len(latencies)} | {percentile(latencies, 0.5) * 1e3:.1f} | "
                    f"{percentile(latencies, 0.99) * 1e3:.1f} | |")
    latencies = sorted(latency for _, latency, _ in outcomes)
    rows.append(f"| {label} | **all** | {len(latencies)} | {percentile(latencies, 0.5) * 1e3:.1f} | "
                f"{percentile(latencies, 0.99) * 1e3:.1f} | **{len(outcomes) / elapsed:.0f} requests/s** in {elapsed:.2f} s; "
                f"cache answered {sum(cacheable)} of {len(cacheable)} cacheable; 0 errors |")
    return rows


# ---- part 2: cross-request batching of saliency on resnet18 ----

def saliency_reference(model, inputs, targets):
    """Saliency (|d output[target] / d input|) of `inputs` as one batch: gradients for
    the input only, as Captum's Saliency asks autograd for (no weight gradients)."""
    x = inputs.clone().requires_grad_(True)
    output = model(x)
    (gradient,) = torch.autograd.grad(output[torch.arange(len(targets)), torch.tensor(targets)].sum(), x)
    return gradient.abs()


def describe(samples):
    return f"{statistics.median(samples):.3f} s ({min(samples):.3f}–{max(samples):.3f}, N={len(samples)})"


def batching_rows(binary, work, unbatched_flags, batched_flags):
    torch.manual_seed(0)
    eager = torchvision.models.resnet18(weights=None).eval()
    path = work / "resnet18.pt"
    torch.jit.script(eager).save(str(path))
    scripted = torch.jit.load(str(path)).eval()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(BATCH_ROWS, 3, 224, 224, generator=generator)
    targets = [(row * 113 + 7) % 1000 for row in range(BATCH_ROWS)]
    reference = saliency_reference(scripted, inputs, targets).numpy()

    class SaliencyDaemon:
        """A daemon with resnet18 stored and warm, and one channel per concurrent row."""

        def __init__(self, flags, store_name):
            self.process, address = start_daemon(binary, work / store_name, ("--cache-bytes", "0", *flags))
            self.setup = Stubs(address)
            upload(self.setup, path, "resnet18", [1, 3, 224, 224])
            self.stubs = [Stubs(address) for _ in range(BATCH_ROWS)]
            self.requests = [explain_pb2.AttributeRequest(model="resnet18", input=tensor(inputs[row:row + 1].numpy()), method="saliency",
                                                          target=targets[row], figure_format=NO_FIGURE) for row in range(BATCH_ROWS)]
            self.answers = [None] * BATCH_ROWS
            self.samples = []

        def one_round(self):
            """The 8 requests at once; waits for all 8."""
            self.answers = [None] * BATCH_ROWS
            barrier = threading.Barrier(BATCH_ROWS)

            def send(row):
                barrier.wait()
                self.answers[row] = self.stubs[row].explain.Attribute(self.requests[row], timeout=600)

            threads = [threading.Thread(target=send, args=(row,)) for row in range(BATCH_ROWS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if any(answer is None for answer in self.answers):
                raise RuntimeError("a saliency request failed")

        def difference(self):
            return max(float(np.abs(tensor_values(self.answers[row].attribution)[0] - reference[row]).max()) for row in range(BATCH_ROWS))

        def close(self):
            for stubs in [self.setup, *self.stubs]:
                stubs.channel.close()
            stop_daemon(self.process)

    # The ceiling is timed on the eager model (same weights): TorchScript's profiling
    # executor in this process re-specialises whenever the batch size changes, which
    # would time the compiler, not the passes.
    eager_difference = float(np.abs(saliency_reference(eager, inputs, targets).numpy() - reference).max())
    one_batch, single_rows = [], []
    daemons = []
    try:
        daemons = [SaliencyDaemon(unbatched_flags, "store-unbatched"), SaliencyDaemon(batched_flags, "store-batched")]
        for daemon in daemons:
            daemon.one_round()  # warm-up: loads the model
        saliency_reference(eager, inputs[:1], targets[:1])
        saliency_reference(eager, inputs, targets)
        # Alternating, so that a busy spell of the (shared) machine hits all four alike.
        for _ in range(REPEATS):
            for daemon in daemons:
                daemon.samples += timed(daemon.one_round, 1)
            one_batch += timed(lambda: saliency_reference(eager, inputs, targets), 1)
            single_rows += timed(lambda: [saliency_reference(eager, inputs[row:row + 1], targets[row:row + 1]) for row in range(BATCH_ROWS)], 1)
        (unbatched, unbatched_difference), (batched, batched_difference) = [(daemon.samples, daemon.difference()) for daemon in daemons]
    finally:
        for daemon in daemons:
            daemon.close()
    daemon_ratio = statistics.median(unbatched) / statistics.median(batched)
    torch_ratio = statistics.median(single_rows) / statistics.median(one_batch)
    return [
        f"| 8 concurrent saliency requests, resnet18 1x3x224x224, `{' '.join(batched_flags)}` vs `{' '.join(unbatched_flags)}` | "
        f"{describe(batched)} | {describe(unbatched)} | {daemon_ratio:.2f}x throughput | "
        f"{BATCH_ROWS / statistics.median(batched):.2f} vs {BATCH_ROWS / statistics.median(unbatched):.2f} rows/s; "
        f"max abs difference from PyTorch {batched_difference:.1e} (batched), {unbatched_difference:.1e} (unbatched) |",
        f"| reference ceiling: the same 8 rows as one batch-8 saliency pass vs 8 batch-1 passes, PyTorch in-process (eager model) | "
        f"{describe(one_batch)} | {describe(single_rows)} | {torch_ratio:.2f}x throughput | "
        f"{BATCH_ROWS / statistics.median(one_batch):.2f} vs {BATCH_ROWS / statistics.median(single_rows):.2f} rows/s; "
        f"eager vs scripted gradients differ by at most {eager_difference:.1e} |",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    parser.add_argument("--unbatched-flags", default="--max-batch-size 1", help="daemon flags of the unbatched run")
    parser.add_argument("--batched-flags", default="--max-batch-size 8 --max-batch-delay-ms 5", help="daemon flags of the batched run")
    parser.add_argument("--requests-per-client", type=int, default=REQUESTS_PER_CLIENT,
                        help="requests each of the 32 clients sends (200, as in load.rs; less only to try the script out)")
    parser.add_argument("--skip-load", action="store_true", help="run only the batching part")
    parser.add_argument("--skip-batching", action="store_true", help="run only the load part")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines = []
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        if not args.skip_load:
            lines += [f"Load: {CLIENTS} clients x {args.requests_per_client} mixed requests, {args.daemon.name} "
                      f"({args.daemon.parent.name} build), loopback.", "",
                      "| phase | method | requests | p50 ms | p99 ms | throughput |", "|---|---|---|---|---|---|"]
            lines += run_load(args.daemon, work, "result cache on", [], args.requests_per_client)
            lines += run_load(args.daemon, work, "--cache-bytes 0", ["--cache-bytes", "0"], args.requests_per_client)
            lines.append("")
        if not args.skip_batching:
            lines += ["| row | batched | unbatched | ratio | notes |", "|---|---|---|---|---|"]
            lines += batching_rows(args.daemon, work, shlex.split(args.unbatched_flags), shlex.split(args.batched_flags))
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
