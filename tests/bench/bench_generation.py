"""Generation benchmark, side by side in one run: steps per second of a channel objective
on resnet18 at 224x224, layerlensd against a plain PyTorch loop in this process that does
the same optimisation the way Lucent does it.

    python tests/bench/bench_generation.py OUT.md [--daemon target/release/layerlensd] [--steps 24] [--size 224]

Both sides (random weights, seeded; pretrained weights cannot be downloaded here):
- objective: the mean of channel 7 of `layer3.1` (Lucent's `channel("layer3_1", 7)`);
- one image, Lucent's FFT parameterisation with colour decorrelation and sigmoid,
  Lucent's standard transforms (pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 deg,
  jitter 4), cropped around the centre back to 224x224, Adam at lr 0.05;
- the reference reads the layer through a forward hook on the eager model, as Lucent
  does; the daemon through its tapped TorchScript copy, and through its own executor
  for the same model exported with torch.export (.pt2), both stored in one daemon.

Two references: "frozen" sets requires_grad=False on the model's parameters, so both
sides compute gradients for the image only (the same work); "Lucent default" leaves
them on, as Lucent's render_vis does, and also pays for weight gradients.

Timing: one job of `--steps` steps each (after a warm-up job of 4 steps), median of 5
jobs per side, the three sides alternating, per step. The daemon's figure is turned off and it reports progress 16 times per
job; the time includes the gRPC call.

Threads: torch in this process and libtorch in the daemon both use 2 (the machine's cores).
"""

import argparse
import copy
import pathlib
import signal
import statistics
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import layerlens  # noqa: E402
from bench_structure import start_daemon, timed  # noqa: E402  (same folder)

LAYER, CHANNEL = "layer3.1", 7
REPEATS = 5
SIZE = 224
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)


def lucent_style_job(model, steps, seed, size=SIZE, device="cpu"):
    """Lucent's render_vis loop for one channel objective, written out, on `device`
    (where `model` is) for a `size`x`size` image."""
    generator = np.random.default_rng(seed)
    height = width = size
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    spectrum = torch.tensor(generator.normal(0, 0.01, (1, 3) + freqs.shape + (2,)), dtype=torch.float32, device=device, requires_grad=True)
    scale = torch.tensor(1.0 / np.maximum(freqs, 1.0 / max(width, height)), dtype=torch.float32, device=device)[None, None, ..., None]
    matrix = torch.tensor((COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))).T, device=device)

    def image():
        raw = torch.fft.irfftn(torch.view_as_complex(scale * spectrum), s=(height, width), norm="ortho") / 4.0
        return torch.sigmoid((raw.permute(0, 2, 3, 1) @ matrix).permute(0, 3, 1, 2))

    def transform(x):
        x = F.pad(x, [12] * 4, mode="constant", value=0.5)
        dy, dx = generator.integers(0, 8, 2)
        x = x[:, :, dy:dy + x.shape[2] - 8, dx:dx + x.shape[3] - 8]
        factor = 1 + (generator.integers(0, 11) - 5) / 50
        x = F.interpolate(x, size=[int(np.ceil(factor * d)) for d in x.shape[2:]], mode="bilinear", align_corners=True)
        angle = np.deg2rad(generator.choice(list(range(-10, 11)) + 5 * [0]))
        if angle != 0:
            theta = torch.tensor([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0]], dtype=torch.float32, device=device)[None]
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        dy, dx = generator.integers(0, 4, 2)
        x = x[:, :, dy:dy + x.shape[2] - 4, dx:dx + x.shape[3] - 4]
        # Back to size x size: a centred crop, or grey padding when smaller.
        for dim, target in ((2, height), (3, width)):
            size = x.shape[dim]
            if size > target:
                x = x.narrow(dim, (size - target) // 2, target)
            elif size < target:
                before = (target - size) // 2
                pad = [before, target - size - before, 0, 0] if dim == 3 else [0, 0, before, target - size - before]
                x = F.pad(x, pad, mode="constant", value=0.5)
        return x

    captured = {}
    module = dict(model.named_modules())[LAYER]
    hook = module.register_forward_hook(lambda _module, _args, output: captured.__setitem__("layer", output))
    optimizer = torch.optim.Adam([spectrum], lr=0.05)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            model(transform(image()))
            loss = -captured["layer"][:, CHANNEL].mean()
            loss.backward()
            optimizer.step()
    finally:
        hook.remove()
    return -loss.item()


def per_step(samples, steps):
    return [sample / steps for sample in samples]


def describe(samples):
    return f"{statistics.median(samples) * 1e3:.0f} ms ({min(samples) * 1e3:.0f}–{max(samples) * 1e3:.0f}, N={len(samples)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=pathlib.Path)
    parser.add_argument("--daemon", type=pathlib.Path, default=REPO / "target" / "release" / "layerlensd")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--size", type=int, default=SIZE, help="image height and width (default 224)")
    args = parser.parse_args()
    size = args.size
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    frozen_model = copy.deepcopy(model)
    for parameter in frozen_model.parameters():
        parameter.requires_grad_(False)
    rows = []
    ours, exported, frozen, lucent_default = [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        path = work / "resnet18.pt"
        torch.jit.script(model).save(str(path))
        daemon, address = start_daemon(args.daemon, work / "store")
        try:
            client = layerlens.connect(address, timeout=600)
            handle = client.add_model(path, name="resnet18")
            exported_path = work / "resnet18.pt2"
            torch.export.save(torch.export.export(model, (torch.zeros(1, 3, size, size),)), str(exported_path))
            exported_handle = client.add_model(exported_path, name="resnet18-exported")

            def job(steps, on=handle):
                return on.visualize(f"channel:{LAYER}:{CHANNEL}", input_shape=(1, 3, size, size), steps=steps, seed=0,
                                    figure_format=None, progress=False)

            job(4)
            job(4, exported_handle)
            lucent_style_job(model, 4, 0, size=size)
            lucent_style_job(frozen_model, 4, 0, size=size)
            # Alternating, so that a busy spell of the machine hits all three alike.
            for _ in range(REPEATS):
                ours += per_step(timed(lambda: job(args.steps), 1), args.steps)
                exported += per_step(timed(lambda: job(args.steps, exported_handle), 1), args.steps)
                frozen += per_step(timed(lambda: lucent_style_job(frozen_model, args.steps, 0, size=size), 1), args.steps)
                lucent_default += per_step(timed(lambda: lucent_style_job(model, args.steps, 0, size=size), 1), args.steps)
            final = job(args.steps).objective[0]
            final_exported = job(args.steps, exported_handle).objective[0]
            client.close()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    reference_final = lucent_style_job(frozen_model, args.steps, 0, size=size)
    rows.append((f"channel {LAYER}:{CHANNEL}, resnet18 {size}x{size} TorchScript, per step (vs PyTorch loop, weights frozen)", describe(ours), describe(frozen),
                 statistics.median(ours) / statistics.median(frozen),
                 f"{args.steps} steps per job; final objective {final:.3f} (daemon) vs {reference_final:.3f} (reference)"))
    rows.append((f"same, the model exported (.pt2, the daemon's own executor)", describe(exported), describe(frozen),
                 statistics.median(exported) / statistics.median(frozen),
                 f"final objective {final_exported:.3f} (daemon, exported)"))
    rows.append((f"same (TorchScript), vs Lucent's default (weight gradients too)", describe(ours), describe(lucent_default),
                 statistics.median(ours) / statistics.median(lucent_default), "render_vis leaves requires_grad on the model's parameters"))
    lines = ["| row | layerlensd | reference | ratio | notes |", "|---|---|---|---|---|"]
    lines += [f"| {row} | {a} | {b} | {ratio:.2f} | {note} |" for row, a, b, ratio, note in rows]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
