"""The embedded demo model: a small CNN trained in seconds on scikit-learn's digits (real images,
real labels, shipped inside scikit-learn), then taken through convert + verify for every installed
target. The held-out 20 % of the digits both verifies each artifact and scores its test accuracy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def digits_cnn():
    """The demo architecture (also usable as ``--arch edgekit.demo:digits_cnn``)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


@dataclass
class DigitsData:
    x_train: "object"
    y_train: "object"
    x_test: "object"
    y_test: "object"


def digits_data(seed: int = 0) -> DigitsData:
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5) / 0.5  # pixels 0..16 -> [-1, 1]
    x = x[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(len(x) * 0.8)
    tr, te = order[:split], order[split:]
    return DigitsData(x[tr], y[tr], x[te], y[te])


def train_digits(data: DigitsData, epochs: int = 8, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    model = digits_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(logits, labels) -> float:
    import numpy as np

    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def artifact_accuracy(target, path: str, data: DigitsData) -> float:
    """Test accuracy of an artifact on the held-out digits, through its target's runtime."""
    import numpy as np

    from edgekit.verify import run_artifact

    runtime = target.runtime().load(path)
    logits = np.concatenate([run_artifact(runtime, (data.x_test[i : i + 1],))[0] for i in range(len(data.x_test))])
    return accuracy(logits, data.y_test)


def write_demo_files(folder: str, data: DigitsData, model) -> dict[str, str]:
    import numpy as np
    import torch

    paths = {
        "model": os.path.join(folder, "digits_cnn.pt"),
        "calibration": os.path.join(folder, "digits_train.npz"),
        "eval": os.path.join(folder, "digits_test.npz"),
    }
    torch.save(model.state_dict(), paths["model"])
    np.savez(paths["calibration"], x=data.x_train[:200])
    np.savez(paths["eval"], x=data.x_test)
    return paths
