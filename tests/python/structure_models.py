"""Small models for the structure tests: batch norm buffers, a tuple output, a module
called twice, and blocks in a ModuleList."""

import torch
from torch import nn


class BlockNet(nn.Module):
    """conv -> batch norm -> ReLU, then two identical residual blocks held in a
    ModuleList, then a linear head returning (logits, features)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.act(self.norm(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        features = x.mean((2, 3))
        return self.head(features), features


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.act(self.conv(x)) + x)
