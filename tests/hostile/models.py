"""Tiny models for hostile tests (``--model tests.hostile.models:NAME``): cheap to load and convert."""
from __future__ import annotations

import torch
import torch.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)


class Mid(nn.Module):
    """~139 KiB of float32 weights: larger than a 64 KiB disk, a little smaller than a 144 KiB one."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


class LogNet(nn.Module):
    """NaN wherever the linear output is negative: the user's model, not an edgekit bug."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return torch.log(self.fc(x))


class Zeta(nn.Module):
    """An op torch.onnx has no translation for (aten.special_zeta)."""

    def forward(self, x):
        return torch.special.zeta(x, x + 2.0)


def tiny():
    torch.manual_seed(0)
    return Tiny()


def mid():
    torch.manual_seed(0)
    return Mid()


def log_net():
    torch.manual_seed(0)
    return LogNet()


def zeta():
    return Zeta()


def not_a_module():
    return {"weights": [1, 2, 3]}
