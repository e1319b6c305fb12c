"""Real training runs of the digits CNN for the training tests: a few hundred optimiser
steps on scikit-learn's digits, with or without `layerlens.watch`, keeping what the tests
recompute from (checkpoints, the weights before and after the last step, and the
per-layer norms at every step `watch` records).
"""

import io
import pathlib
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fixtures"))
from make_fixtures import DigitsCNN  # noqa: E402

BATCH = 64


def digits_data():
    """All 1797 digits, (n, 1, 8, 8) float32 in 0..1, and their labels (int64)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None]), torch.from_numpy(digits.target.astype(np.int64))


def make_optimizer(name, parameters, lr=None):
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr or 2e-3)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr or 2e-3, weight_decay=0.05, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr or 0.05, momentum=0.9, weight_decay=1e-4)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr or 1e-3, momentum=0.5, centered=True)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=lr or 1e-2)
    raise ValueError(name)


def layer_norms(model, before):
    """Per layer (the module owning the parameters): grad, weight and update norms of the
    step that just ran, computed plainly in PyTorch."""
    sums = {}
    for name, parameter in model.named_parameters():
        layer = name.rpartition(".")[0]
        entry = sums.setdefault(layer, [0.0, 0.0, 0.0])
        entry[0] += float(parameter.grad.double().square().sum())
        entry[1] += float(parameter.detach().double().square().sum())
        entry[2] += float((parameter.detach() - before[name]).double().square().sum())
    return {layer: tuple(value ** 0.5 for value in entry) for layer, entry in sums.items()}


def checkpoint_bytes(model, optimizer, step, scheduler=None):
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def train(optimizer_name, steps, *, watch=None, every=10, checkpoint_every=None, seed=0, prepare=None, lr_schedule=None, scheduler=False):
    """Trains a fresh DigitsCNN for `steps` optimiser steps (mini-batches of 64 in a
    seeded order). `watch(model, optimizer)` starts a layerlens watcher (or None);
    `prepare(model)` plants something before training; `lr_schedule(step) -> lr or None`
    changes the learning rate. Answers a dict: model, optimizer, watcher, checkpoints
    {step: bytes}, before_last {name: tensor}, norms {step: layer_norms} at every
    `every`-th step, losses {step: loss}."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    if prepare is not None:
        prepare(model)
    optimizer = make_optimizer(optimizer_name, model.parameters())
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.5) if scheduler else None
    watcher = watch(model, optimizer) if watch is not None else None
    x, y = digits_data()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    result = {"model": model, "optimizer": optimizer, "watcher": watcher, "checkpoints": {}, "norms": {}, "losses": {}}
    for step in range(1, steps + 1):
        start = ((step - 1) * BATCH) % (len(x) - BATCH)
        batch = order[start:start + BATCH]
        if lr_schedule is not None:
            lr = lr_schedule(step)
            if lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        if watcher is not None:
            watcher.log(loss=loss)
        before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        if step % every == 0:
            result["norms"][step] = layer_norms(model, before)
            result["losses"][step] = float(loss.detach())
        if checkpoint_every and step % checkpoint_every == 0:
            result["checkpoints"][step] = checkpoint_bytes(model, optimizer, step, lr_scheduler)
        result["before_last"] = before
    if watcher is not None:
        watcher.close()
    return result
