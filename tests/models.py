"""The test model set every target is checked against (importable as ``tests.models:NAME`` factories).

Small, but each stresses something real: BatchNorm folding, plain linear layers, attention, and
several inputs with a dict output. ``input_specs`` holds the --input strings for each.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)


class TinyTransformer(nn.Module):
    """A 2-layer transformer encoder over 16 tokens of width 32, mean-pooled to 8 classes."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 8)
        # TransformerEncoder deep-copies its layer: give each copy its own weights, as training would
        for name, p in self.encoder.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


class TwoInputDict(nn.Module):
    """Two inputs (an image and a feature vector), a dict output of two heads."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 + 6, 16)
        self.cls = nn.Linear(16, 5)
        self.emb = nn.Linear(16, 4)

    def forward(self, image, features):
        pooled = torch.relu(self.conv(image)).mean(dim=(2, 3))
        h = torch.relu(self.fc(torch.cat([pooled, features], dim=1)))
        return {"logits": self.cls(h), "embedding": self.emb(h)}


def _init(cls, seed: int = 0) -> nn.Module:
    """Deterministic weights (the same on every call), with non-trivial BatchNorm statistics so that
    folding is really exercised."""
    torch.manual_seed(seed)
    model = cls()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


def small_cnn():
    return _init(SmallCNN)


def mlp():
    return _init(MLP)


def tiny_transformer():
    return _init(TinyTransformer)


def two_input_dict():
    return _init(TwoInputDict)


class WideMLP(nn.Module):
    """0.4M weights: enough that weight bytes, not graph structure or an embedded manifest, set the
    file size. Not in FACTORIES: the targets' size checks use it (tests.models:wide_mlp)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, x):
        return self.net(x)


def wide_mlp():
    return _init(WideMLP)


FACTORIES = {
    "small_cnn": "tests.models:small_cnn",
    "mlp": "tests.models:mlp",
    "tiny_transformer": "tests.models:tiny_transformer",
    "two_input_dict": "tests.models:two_input_dict",
}
INPUT_SPECS = {
    "small_cnn": ["x:1x3x32x32"],
    "mlp": ["x:1x64"],
    "tiny_transformer": ["x:1x16x32"],
    "two_input_dict": ["image:1x3x16x16", "features:1x6"],
}
