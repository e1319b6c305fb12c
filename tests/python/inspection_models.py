"""Small models with planted problems, for the activation anomaly tests.

Each is an ordinary nn.Module; the tests script them to TorchScript and upload them.
"""

import torch
from torch import nn


class DeadReluNet(nn.Module):
    """conv -> ReLU -> linear, where channels 0..4 of the convolution have a bias of
    -100: their ReLU output is never positive for inputs in [0, 1] (dead units)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(8 * 8 * 8, 10)
        with torch.no_grad():
            self.conv.bias[:5] = -100.0

    def forward(self, x):
        return self.head(torch.flatten(self.act(self.conv(x)), 1))


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)


class NanNet(nn.Module):
    """linear -> log -> linear: the log of negative values is NaN, so NaN first
    appears in the output of `log`, then spreads to `head`."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.log = Log()
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.log(self.body(x)))


class SaturatedNet(nn.Module):
    """linear with large weights -> sigmoid: almost every output is 0 or 1; then a
    layer that scales by 1000 (exploding scale)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 16)
        self.squash = nn.Sigmoid()
        self.blow_up = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            self.body.weight.mul_(200.0)
            self.blow_up.weight.mul_(1000.0)

    def forward(self, x):
        return self.head(self.blow_up(self.squash(self.body(x))))
