"""A digits CNN with one outlier-heavy activation, the failure automatic mixed precision exists for.

Trained on scikit-learn's digits, then one hidden unit of ``fc2`` is scaled up by OUTLIER and the
matching column of ``fc3`` scaled down by the same factor. ReLU is positively homogeneous, so the
float model computes the same function; but the tensor between ``fc2`` and ``fc3`` now spans a range
set by one unit (an "outlier feature", as transformers grow in training), and per-tensor int8
activations leave the other units a handful of levels: static int8 misses the default tolerance.
Keeping ``fc2`` and ``fc3`` float (about 6% of the weights, under 1% of the FLOPs) fixes it.

``--arch tests.quantize.outlier_model:outlier_cnn`` builds the architecture for a saved state_dict.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edgekit.demo import train_classifier

OUTLIER = 300.0


class OutlierCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(self.features(x), 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def outlier_cnn() -> OutlierCNN:
    return OutlierCNN()


class Probabilities(nn.Module):
    """A classifier ending in softmax: the output --io int8 must make integer too."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), -1)


def train_outlier_cnn(data, epochs: int = 10, seed: int = 0, unit: int = 0, outlier: float | None = None) -> OutlierCNN:
    """Train on ``data`` (edgekit.demo.DigitsData), then make ``unit`` of fc2 an outlier (``outlier``
    times its range; 1.0 leaves the trained model as it is)."""
    outlier = OUTLIER if outlier is None else outlier
    torch.manual_seed(seed)
    model = OutlierCNN()
    train_classifier(model, data.x_train, data.y_train, epochs=epochs, batch_size=64, lr=3e-3)
    with torch.no_grad():  # the same function, one unit's range OUTLIER times the others'
        model.fc2.weight[unit] *= outlier
        model.fc2.bias[unit] *= outlier
        model.fc3.weight[:, unit] /= outlier
    return model.eval()
