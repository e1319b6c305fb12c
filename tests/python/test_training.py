"""Training explained, end to end against a real daemon: real training runs of the digits
CNN (Adam, AdamW with amsgrad, SGD with momentum, RMSprop, Adagrad), `layerlens.watch`
on them, their checkpoints stored and explained, and the loss landscape.

Every number the daemon reports is recomputed here in plain PyTorch from the same
optimiser state or weights — the effective step (Adam: lr·m̂/(√v̂+ε) with bias
correction), update:weight ratios, norms, effective learning rates, the loss at each
grid point of the landscape for the same perturbed weights — and the rebuilt last
update is also compared with the update the optimiser really applied.
"""

import math
import os
import pathlib
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

import layerlens
from conftest import REPO_ROOT, png_size
from training_runs import DigitsCNN, checkpoint_bytes, digits_data, train

STEPS = 200
CLI = REPO_ROOT / "target" / "debug" / "layerlens"


def cli(daemon, *args, check=True):
    completed = subprocess.run(
        [str(CLI), "--addr", f"http://{daemon.address}", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


@pytest.fixture(scope="module")
def digits_trainee(client):
    """A DigitsCNN stored through add_model (exported): the model the checkpoints belong to."""
    torch.manual_seed(0)
    return client.add_model(DigitsCNN().eval(), example_input=torch.zeros(2, 1, 8, 8), name="digits-trainee")


@pytest.fixture(scope="module")
def adam_runs(client):
    """The same Adam training twice: watched (every 10 steps, loss logged) and not."""
    watched = train("adam", STEPS, watch=lambda model, optimizer: layerlens.watch(model, optimizer, every=10, run="adam-run", client=client),
                    checkpoint_every=50)
    plain = train("adam", STEPS, checkpoint_every=50)
    return watched, plain


@pytest.fixture(scope="module")
def sgd_runs(client):
    watched = train("sgd", STEPS, watch=lambda model, optimizer: layerlens.watch(model, optimizer, every=25, run="sgd-run", client=client),
                    every=25, checkpoint_every=STEPS)
    plain = train("sgd", STEPS, every=25, checkpoint_every=STEPS)
    return watched, plain


def test_a_watched_loop_trains_bit_identically_and_its_records_are_pytorchs_norms(adam_runs, sgd_runs, client):
    for (watched, plain), run_name, every in ((adam_runs, "adam-run", 10), (sgd_runs, "sgd-run", 25)):
        for (name, a), (_, b) in zip(watched["model"].named_parameters(), plain["model"].named_parameters()):
            assert torch.equal(a, b), f"{run_name}: {name} differs between the watched and the unwatched loop"
        assert watched["watcher"].errors == []
        records = client.run(run_name).records()
        steps = sorted({record["step"] for record in records})
        assert steps == list(range(every, STEPS + 1, every))
        layers = [record["layer"] for record in records if record["step"] == every]
        assert layers == ["features.0", "features.2", "classifier.1", "classifier.3"]
        for record in records:
            grad, weight, update = plain["norms"][record["step"]][record["layer"]]
            assert record["grad_norm"] == pytest.approx(grad, rel=1e-6)
            assert record["weight_norm"] == pytest.approx(weight, rel=1e-6)
            assert record["update_norm"] == pytest.approx(update, rel=1e-6)
            assert record["update_weight_ratio"] == pytest.approx(update / weight, rel=1e-6)
            assert record["loss"] == pytest.approx(plain["losses"][record["step"]], rel=1e-6)
            assert 0 < record["step_size"]["p50"] <= record["step_size"]["p99"] <= record["step_size"]["max"]
    lrs = [step["learning_rates"] for step in client.run("adam-run").steps()]
    assert lrs and all(rates == [pytest.approx(2e-3)] for rates in lrs)
    listed = {run["name"]: run for run in client.runs()}
    assert listed["adam-run"]["steps"] == STEPS // 10 and listed["adam-run"]["optimizer"] == "Adam"


def adam_reference(parameter, state, group, decoupled):
    """The last Adam/AdamW update and the effective learning rate, as torch 2.11 computes them."""
    t = float(state["step"])
    beta1, beta2 = group["betas"]
    lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
    second = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
    denominator = second.double().sqrt() / math.sqrt(1 - beta2 ** t) + eps
    gradient_term = lr / (1 - beta1 ** t) * state["exp_avg"].double() / denominator
    if decoupled and decay:
        before = (parameter.double() + gradient_term) / (1 - lr * decay)
        update = -(gradient_term + lr * decay * before)
    else:
        update = -gradient_term
    return update, lr / denominator


def check_quantiles(reported, values):
    values = values.flatten().double()
    assert reported["p50"] == pytest.approx(float(torch.quantile(values, 0.5)), rel=1e-5)
    assert reported["p99"] == pytest.approx(float(torch.quantile(values, 0.99)), rel=1e-5)
    assert reported["max"] == pytest.approx(float(values.max()), rel=1e-5)


@pytest.mark.parametrize("optimizer_name", ["adam", "adamw", "sgd", "rmsprop"])
def test_the_optimiser_report_is_what_pytorch_computes_from_the_same_state(optimizer_name, client, digits_trainee, adam_runs, sgd_runs):
    if optimizer_name == "adam":
        run = adam_runs[1]
    elif optimizer_name == "sgd":
        run = sgd_runs[1]
    else:
        run = train(optimizer_name, 60, checkpoint_every=60)
    model, optimizer = run["model"], run["optimizer"]
    step = max(run["checkpoints"])
    checkpoint = digits_trainee.add_checkpoint(run["checkpoints"][step])
    assert checkpoint.step == step
    expected_name = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}[optimizer_name]
    assert checkpoint.optimizer == expected_name
    report = digits_trainee.optimizer(checkpoint)
    assert report.optimizer == expected_name and report.step == step
    group = optimizer.param_groups[0]
    named = list(model.named_parameters())
    assert [row["parameter"] for row in report.rows] == [name for name, _ in named]
    for (name, parameter), row in zip(named, report.rows):
        state = optimizer.state[parameter]
        actual = (parameter.detach() - run["before_last"][name]).double()
        if optimizer_name in ("adam", "adamw"):
            update, effective = adam_reference(parameter.detach(), state, group, decoupled=optimizer_name == "adamw")
            check_quantiles(row["effective_lr"], effective)
            assert row["momentum_norm"] == pytest.approx(float(state["exp_avg"].double().norm()), rel=1e-6)
        else:
            update = -group["lr"] * state["momentum_buffer"].double()
            if optimizer_name == "rmsprop":
                average = (state["square_avg"].double() - state["grad_avg"].double() ** 2).sqrt() + group["eps"]
                check_quantiles(row["effective_lr"], group["lr"] / average)
            else:
                assert row["effective_lr"] == {"p50": pytest.approx(group["lr"]), "p99": pytest.approx(group["lr"]), "max": pytest.approx(group["lr"])}
        weight_norm = float(parameter.detach().double().norm())
        assert row["weight_norm"] == pytest.approx(weight_norm, rel=1e-6)
        assert row["update_norm"] == pytest.approx(float(update.norm()), rel=1e-5), name
        # The rebuilt update is the one the optimiser applied (up to float32 rounding).
        assert row["update_norm"] == pytest.approx(float(actual.norm()), rel=2e-3), name
        assert row["update_weight_ratio"] == pytest.approx(float(update.norm()) / weight_norm, rel=1e-5)
        check_quantiles(row["step_size"], update.abs())
    by_layer = {layer["layer"]: layer for layer in report.layers}
    weights = dict(named)
    conv = by_layer["features.0"]
    conv_norms = [float(weights[f"features.0.{kind}"].detach().double().norm()) for kind in ("weight", "bias")]
    assert conv["weight_norm"] == pytest.approx(math.hypot(*conv_norms), rel=1e-6)
    if optimizer_name == "adamw":
        assert all(0 < row["weight_decay_share"] < 1 for row in report.rows)
    assert report.figure is not None and png_size(report.figure)[0] > 100


def test_a_dead_layer_and_a_learning_rate_blow_up_are_found(digits_trainee, adam_runs):
    healthy = digits_trainee.optimizer(digits_trainee.add_checkpoint(adam_runs[1]["checkpoints"][STEPS]))
    assert not [finding for finding in healthy.findings if finding["severity"] == "error"], healthy.findings

    def kill_classifier(model):
        # A bias far below zero: the ReLU after classifier.1 never passes anything, so
        # no gradient reaches classifier.1 or anything before it.
        with torch.no_grad():
            model.classifier[1].bias.fill_(-1e4)

    dead = train("adam", 30, prepare=kill_classifier, checkpoint_every=30)
    report = digits_trainee.optimizer(digits_trainee.add_checkpoint(dead["checkpoints"][30]))
    never = {finding["parameter"]: finding for finding in report.findings if finding["kind"] == "never_updated"}
    assert "classifier.1.weight" in never, report.findings
    assert never["classifier.1.weight"]["layer"] == "classifier.1" and never["classifier.1.weight"]["value"] == 1.0
    assert "100%" in never["classifier.1.weight"]["message"]
    assert "classifier.3.bias" not in never, "the last layer's bias still gets a gradient"

    blown = train("adam", 60, lr_schedule=lambda step: 1.0 if step > 50 else None, checkpoint_every=60)
    report = digits_trainee.optimizer(digits_trainee.add_checkpoint(blown["checkpoints"][60]))
    exploding = [finding for finding in report.findings if finding["kind"] == "exploding_update"]
    assert exploding, report.findings
    for finding in exploding:
        row = report.row(finding["parameter"])
        assert finding["value"] == pytest.approx(row["update_weight_ratio"]) and finding["value"] > 0.1
        assert finding["layer"] in finding["message"] or finding["parameter"] in finding["message"]


def perturbed_loss(state, directions, alpha, beta, x, y):
    model = DigitsCNN().eval()
    model.load_state_dict(state)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            first, second = directions[name]
            parameter += alpha * torch.from_numpy(first).to(parameter.dtype)
            if second is not None:
                parameter += beta * torch.from_numpy(second).to(parameter.dtype)
        return float(nn.functional.cross_entropy(model(x), y))


def test_the_landscape_is_the_loss_pytorch_computes_for_the_same_perturbed_weights(digits_trainee, adam_runs):
    run = adam_runs[1]
    checkpoint = digits_trainee.add_checkpoint(run["checkpoints"][STEPS])
    state = run["model"].state_dict()
    x, y = digits_data()
    x, y = x[:300], y[:300]
    line = digits_trainee.landscape(x.numpy(), y.numpy(), checkpoint=checkpoint, steps=11, range=0.5, seed=3, return_directions=True)
    assert line.losses.shape == (11,) and np.allclose(line.coordinates, np.linspace(-0.5, 0.5, 11))
    with torch.no_grad():
        model = DigitsCNN().eval()
        model.load_state_dict(state)
        centre = float(nn.functional.cross_entropy(model(x), y))
    assert line.center_loss == pytest.approx(centre, rel=1e-5)
    assert line.losses[5] == pytest.approx(centre, rel=1e-5), "the grid's middle is the checkpoint"
    for name, parameter in model.named_parameters():
        first, second = line.directions[name]
        assert second is None
        if parameter.dim() <= 1:
            assert not first.any(), f"{name}: biases get no direction (Li et al.'s ignore='biasbn')"
        else:
            # Filter-normalised: each filter of the direction has the norm of the same filter of the weights.
            norms = np.linalg.norm(first.reshape(first.shape[0], -1), axis=1)
            expected = parameter.detach().reshape(parameter.shape[0], -1).norm(dim=1).numpy()
            assert np.allclose(norms, expected, rtol=1e-4)
    for index, alpha in enumerate(line.coordinates):
        assert line.losses[index] == pytest.approx(perturbed_loss(state, line.directions, alpha, 0.0, x, y), rel=1e-5)
    again = digits_trainee.landscape(x.numpy(), y.numpy(), checkpoint=checkpoint, steps=11, range=0.5, seed=3)
    assert np.array_equal(again.losses, line.losses), "a seed gives the same landscape"

    plane = digits_trainee.landscape(x.numpy(), y.numpy(), checkpoint=checkpoint, dims=2, steps=5, range=0.4, seed=1, return_directions=True)
    assert plane.losses.shape == (5, 5)
    for row, beta in enumerate(plane.coordinates):
        for column, alpha in enumerate(plane.coordinates):
            assert plane.losses[row, column] == pytest.approx(perturbed_loss(state, plane.directions, alpha, beta, x, y), rel=1e-5)
    assert plane.figure is not None and png_size(plane.figure)[0] > 100


def test_a_trajectory_is_projected_on_its_top_two_pca_directions(digits_trainee, adam_runs):
    run = adam_runs[0]
    checkpoints = [digits_trainee.add_checkpoint(run["checkpoints"][step]) for step in sorted(run["checkpoints"])]
    x, y = digits_data()
    x, y = x[:200], y[:200]
    landscape = digits_trainee.landscape(x.numpy(), y.numpy(), checkpoint=checkpoints[-1], trajectory=checkpoints, steps=5, return_directions=True)
    assert landscape.dims == 2 and len(landscape.trajectory) == len(checkpoints)
    names = [name for name, _ in run["model"].named_parameters()]
    flat = [np.concatenate([landscape.directions[name][d].ravel() for name in names]).astype(np.float64) for d in (0, 1)]
    assert abs(np.linalg.norm(flat[0]) - 1) < 1e-4 and abs(np.linalg.norm(flat[1]) - 1) < 1e-4 and abs(flat[0] @ flat[1]) < 1e-4
    final = torch.load(__import__("io").BytesIO(run["checkpoints"][STEPS]), weights_only=True)["model"]
    for (label, step, px, py), checkpoint_step in zip(landscape.trajectory, sorted(run["checkpoints"])):
        state = torch.load(__import__("io").BytesIO(run["checkpoints"][checkpoint_step]), weights_only=True)["model"]
        difference = np.concatenate([(state[name] - final[name]).double().numpy().ravel() for name in names])
        assert step == checkpoint_step and label == f"step {checkpoint_step}"
        assert px == pytest.approx(float(difference @ flat[0]), abs=1e-4) and py == pytest.approx(float(difference @ flat[1]), abs=1e-4)
    assert landscape.trajectory[-1][2:] == (pytest.approx(0.0, abs=1e-9), pytest.approx(0.0, abs=1e-9))
    assert 0.5 < sum(landscape.explained_variance) <= 1.0 + 1e-9 and landscape.explained_variance[0] >= landscape.explained_variance[1]


def test_weight_change_between_checkpoints(digits_trainee, adam_runs):
    run = adam_runs[1]
    first, last = (digits_trainee.add_checkpoint(run["checkpoints"][step]) for step in (50, STEPS))
    change = digits_trainee.weight_change(first, last)
    a = torch.load(__import__("io").BytesIO(run["checkpoints"][50]), weights_only=True)["model"]
    b = torch.load(__import__("io").BytesIO(run["checkpoints"][STEPS]), weights_only=True)["model"]
    for row in change.parameters:
        before, after = a[row["name"]].double(), b[row["name"]].double()
        assert row["change_norm"] == pytest.approx(float((after - before).norm()), rel=1e-6)
        assert row["relative_change"] == pytest.approx(float((after - before).norm() / before.norm()), rel=1e-6)
        assert row["cosine"] == pytest.approx(float(torch.dot(before.flatten(), after.flatten()) / (before.norm() * after.norm())), rel=1e-6)
    assert [layer["name"] for layer in change.layers] == ["features.0", "features.2", "classifier.1", "classifier.3"]
    assert change.figure is not None


class Evil:
    """Pickled as a call of os.system: what a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_checkpoints_are_refused_by_name_and_nothing_is_stored(digits_trainee, client, tmp_path, adam_runs):
    import io

    before = [checkpoint.id for checkpoint in digits_trainee.checkpoints()]
    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"model": adam_runs[1]["model"].state_dict(), "payload": Evil(marker)}, buffer)
    with pytest.raises(layerlens.LayerlensError) as refused:
        digits_trainee.add_checkpoint(buffer.getvalue())
    assert refused.value.code == "INVALID_ARGUMENT" and "system" in str(refused.value), str(refused.value)
    assert not marker.exists(), "the pickle's call ran"

    good = adam_runs[1]["checkpoints"][STEPS]
    with pytest.raises(layerlens.LayerlensError) as truncated:
        digits_trainee.add_checkpoint(good[: len(good) // 2])
    assert truncated.value.code == "INVALID_ARGUMENT" and ("truncated" in str(truncated.value) or "corrupt" in str(truncated.value)), str(truncated.value)

    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    buffer = io.BytesIO()
    torch.save(other.state_dict(), buffer)
    with pytest.raises(layerlens.LayerlensError) as foreign:
        digits_trainee.add_checkpoint(buffer.getvalue())
    message = str(foreign.value)
    assert foreign.value.code == "INVALID_ARGUMENT" and "architecture" in message and "features.0.weight" in message, message

    assert [checkpoint.id for checkpoint in digits_trainee.checkpoints()] == before
    assert client.status() is not None, "the daemon keeps serving"


def test_an_unknown_optimiser_still_gets_its_moments_explained(digits_trainee, adam_runs):
    model = adam_runs[1]["model"]
    n_parameters = len(list(model.parameters()))
    state = {index: {"foo_buffer": torch.full_like(parameter, 0.5)} for index, parameter in enumerate(model.parameters())}
    optimizer_state = {"state": state, "param_groups": [{"lr": 0.1, "params": list(range(n_parameters))}]}
    checkpoint = digits_trainee.add_checkpoint({"model": model.state_dict(), "optimizer": optimizer_state})
    assert checkpoint.optimizer == "unknown"
    report = digits_trainee.optimizer(checkpoint)
    assert report.optimizer == "unknown" and any("unknown optimiser" in note for note in report.notes)
    first = report.rows[0]
    assert first["moments"]["foo_buffer"]["norm"] == pytest.approx(0.5 * math.sqrt(model.features[0].weight.numel()), rel=1e-6)
    assert math.isnan(first["update_norm"])


def test_a_landscape_too_large_for_the_pass_budget_is_refused_by_size(tmp_path_factory, fixtures_dir):
    from conftest import running_daemon

    with running_daemon(tmp_path_factory, ["--pass-budget-bytes", "1000"]) as small:
        tiny = layerlens.connect(f"http://{small.address}", timeout=60)
        model = tiny.add_model(DigitsCNN().eval(), example_input=torch.zeros(2, 1, 8, 8))
        x, y = digits_data()
        with pytest.raises(layerlens.LayerlensError) as refused:
            model.landscape(x[:16].numpy(), y[:16].numpy(), steps=3)
        assert refused.value.code == "RESOURCE_EXHAUSTED" and "bytes" in str(refused.value) and "1000" in str(refused.value)
        assert tiny.models(), "the daemon keeps serving and keeps its models"
        tiny.close()


def test_the_cli_adds_lists_and_explains_checkpoints_and_shows_runs(daemon, digits_trainee, adam_runs, tmp_path):
    import json

    path = tmp_path / "ckpt.pt"
    path.write_bytes(adam_runs[1]["checkpoints"][STEPS])
    added = json.loads(cli(daemon, "--json", "checkpoints", "add", "digits-trainee", str(path)).stdout)
    assert added["step"] == STEPS and added["optimizer"] == "Adam" and added["model"] == digits_trainee.id
    listed = json.loads(cli(daemon, "--json", "checkpoints", "list", "digits-trainee").stdout)
    assert added["id"] in [row["id"] for row in listed]
    report = json.loads(cli(daemon, "--json", "optimizer", "digits-trainee", "--checkpoint", added["id"][:12], "--figure", str(tmp_path / "ratios.png")).stdout)
    python_report = digits_trainee.optimizer(added["id"])
    assert [row["update_norm"] for row in report["rows"]] == [row["update_norm"] for row in python_report.rows]
    assert set(report["rows"][0]) >= {"parameter", "layer", "shape", "weight_norm", "update_norm", "update_weight_ratio", "effective_lr"}
    assert png_size((tmp_path / "ratios.png").read_bytes())[0] > 100
    x, y = digits_data()
    np.savez(tmp_path / "batch.npz", x=x[:100].numpy(), y=y[:100].numpy())
    landscape = json.loads(cli(daemon, "--json", "landscape", "digits-trainee", "--checkpoint", added["id"][:12], "--data", str(tmp_path / "batch.npz"),
                               "--steps", "7", "--range", "0.3", "--out", str(tmp_path / "grid.npy"), "--figure", str(tmp_path / "line.svg")).stdout)
    grid = np.load(tmp_path / "grid.npy")
    assert grid.shape == (7,) and landscape["center_loss"] == pytest.approx(float(grid[3]), rel=1e-6)
    assert "<svg" in (tmp_path / "line.svg").read_text()
    runs = json.loads(cli(daemon, "--json", "runs", "list").stdout)
    assert "adam-run" in [run["name"] for run in runs]
    shown = json.loads(cli(daemon, "--json", "runs", "show", "adam-run").stdout)
    assert {"step", "layer", "grad_norm", "weight_norm", "update_norm", "update_weight_ratio", "loss"} <= set(shown["records"][0])
    for kind in ("ratios", "gradient-flow", "learning-rate", "loss"):
        cli(daemon, "runs", "figure", "adam-run", "--kind", kind, "--figure", str(tmp_path / f"{kind}.png"))
        assert png_size((tmp_path / f"{kind}.png").read_bytes())[0] > 100
    cli(daemon, "runs", "figure", "adam-run", "sgd-run", "--kind", "compare", "--figure", str(tmp_path / "compare.png"))
    missing = cli(daemon, "runs", "show", "no-such-run", check=False)
    assert missing.returncode != 0 and "no-such-run" in missing.stderr
    forbidden = cli(daemon, "optimizer", "digits-trainee", "--checkpoint", "zzzz", check=False)
    assert forbidden.returncode != 0 and "zzzz" in forbidden.stderr


def test_the_learning_rate_schedule_comes_with_the_checkpoint(digits_trainee):
    run = train("sgd", 120, scheduler=True, checkpoint_every=120)
    checkpoint = digits_trainee.add_checkpoint(run["checkpoints"][120])
    assert checkpoint.has_scheduler
    report = digits_trainee.optimizer(checkpoint)
    # StepLR(step_size=50, gamma=0.5) stepped 120 times from lr 0.05.
    assert report.schedule["last_epoch"] == 120
    assert report.schedule["last_lr"] == [pytest.approx(0.05 * 0.25)] and report.schedule["base_lr"] == [pytest.approx(0.05)]
    assert report.param_groups[0]["lr"] == pytest.approx(0.0125) and report.rows[0]["learning_rate"] == pytest.approx(0.0125)


def test_a_run_without_records_has_nothing_to_draw(client):
    from layerlens.v1 import training_pb2

    client._call(client._training.ReportRun, training_pb2.ReportRunRequest(run="empty-run", steps=[training_pb2.RunStep(step=1, learning_rates=[0.1])]))
    assert client.run("empty-run").records() == []
    with pytest.raises(layerlens.LayerlensError) as refused:
        client.run("empty-run").figure("ratios")
    assert refused.value.code == "INVALID_ARGUMENT" and "no records" in str(refused.value)
    with pytest.raises(layerlens.LayerlensError) as missing:
        client.run("never-reported").records()
    assert missing.value.code == "NOT_FOUND" and "never-reported" in str(missing.value)
    assert client.run("empty-run").figure("learning_rate").figure is not None


def test_adagrad_reports_its_effective_learning_rate_and_says_the_update_needs_the_gradient(digits_trainee):
    run = train("adagrad", 40, checkpoint_every=40)
    report = digits_trainee.optimizer(digits_trainee.add_checkpoint(run["checkpoints"][40]))
    assert report.optimizer == "Adagrad" and any("Adagrad" in note for note in report.notes)
    optimizer = run["optimizer"]
    group = optimizer.param_groups[0]
    for (name, parameter), row in zip(run["model"].named_parameters(), report.rows):
        state = optimizer.state[parameter]
        clr = group["lr"] / (1 + (float(state["step"]) - 1) * group["lr_decay"])
        check_quantiles(row["effective_lr"], clr / (state["sum"].double().sqrt() + group["eps"]))
        assert math.isnan(row["update_norm"]), name


def test_a_watched_loop_keeps_training_when_the_daemon_is_unreachable():
    # A port nothing listens on (bound, then released): every report fails to send.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = layerlens.connect(f"http://127.0.0.1:{port}", timeout=2)
    watched = train("sgd", 40, watch=lambda model, optimizer: layerlens.watch(model, optimizer, every=10, run="lost", client=unreachable), every=10)
    plain = train("sgd", 40, every=10)
    for (name, a), (_, b) in zip(watched["model"].named_parameters(), plain["model"].named_parameters()):
        assert torch.equal(a, b), name
    errors = watched["watcher"].errors
    assert len(errors) == 4 and all("UNAVAILABLE" in error or "127.0.0.1" in error for error in errors), errors
    unreachable.close()


@pytest.mark.parametrize("kind", ["torchscript", "exported"])
def test_the_landscape_centre_uses_the_checkpoints_running_statistics(client, kind, tmp_path):
    # A BatchNorm model stored fresh (running mean 0, var 1), trained so its running
    # statistics move: the loss at the centre is the checkpoint's eval-mode loss.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    x, y = digits_data()
    path = tmp_path / ("bn.pt" if kind == "torchscript" else "bn.pt2")
    if kind == "torchscript":
        torch.jit.script(model.eval()).save(str(path))
    else:
        torch.export.save(torch.export.export(model.eval(), (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},), strict=False), str(path))
    stored = client.add_model(path)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for start in range(0, 640, 64):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[start:start + 64]), y[start:start + 64]).backward()
        optimizer.step()
    model.eval()
    assert float(model[1].running_var.sub(1).abs().max()) > 0.05, "training moved the running statistics"
    checkpoint = stored.add_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    landscape = stored.landscape(x[:200].numpy(), y[:200].numpy(), checkpoint=checkpoint, steps=3, range=0.1)
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model(x[:200]), y[:200]))
    assert landscape.center_loss == pytest.approx(expected, rel=1e-5)
