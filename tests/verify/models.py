"""Small models for verification tests (importable as ``tests.verify.models:NAME``)."""
from __future__ import annotations

import torch
import torch.nn as nn


class StatefulLSTM(nn.Module):
    """forward(x, h0, c0) -> (scores, h1, c1): an LSTM step with its state as explicit I/O."""

    def __init__(self, forget_state: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 5)
        self.forget_state = forget_state

    def forward(self, x, h0, c0):
        if self.forget_state:  # what a broken export does: the state inputs are ignored
            h0, c0 = torch.zeros_like(h0), torch.zeros_like(c0)
        y, (h1, c1) = self.lstm(x, (h0, c0))
        return self.head(y[:, -1]), h1, c1


class LogOfInput(nn.Module):
    """NaN wherever the input is negative: a model that produces non-finite values on some inputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.log(x) + self.fc(torch.ones_like(x))


class LogAfterLinear(nn.Module):
    """log(x) after an identity layer: finite on positive inputs in float32, -Inf in an int8 artifact
    wherever a small positive value rounds to the quantized zero."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(8))
            self.fc.bias.zero_()

    def forward(self, x):
        return torch.log(self.fc(x))


class Detector(nn.Module):
    """(class logits, boxes): a detection head whose box output must not be judged by top-1."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.cls = nn.Linear(32, 6)
        self.box = nn.Linear(32, 4)
        with torch.no_grad():
            self.cls.weight.mul_(8.0)  # confident class scores, as a trained head gives

    def forward(self, x):
        h = self.body(x)
        return self.cls(h), torch.sigmoid(self.box(h))


def _seeded(cls, **kw):
    torch.manual_seed(0)
    return cls(**kw).eval()


def lstm():
    return _seeded(StatefulLSTM)


def lstm_forgetting_state():
    model = _seeded(StatefulLSTM, forget_state=True)
    model.load_state_dict(lstm().state_dict())  # the same weights: only the state handling differs
    return model


def log_of_input():
    return _seeded(LogOfInput)


def log_after_linear():
    return _seeded(LogAfterLinear)


def detector():
    return _seeded(Detector)
