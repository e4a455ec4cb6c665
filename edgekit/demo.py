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


def train_classifier(model, x, y, *, epochs: int, batch_size: int = 128, lr: float = 2e-3,
                     weight_decay: float = 0.01, one_cycle: bool = False):
    """Supervised training with cross-entropy on shuffled minibatches (AdamW; a one-cycle learning
    rate on request): how the demo model and the benchmarks' teachers are trained. ``x``, ``y``:
    numpy arrays of samples and integer labels. Seed torch before building the model to repeat a run."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if one_cycle else None
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            if sched is not None:
                sched.step()
    return model.eval()


def train_digits(data: DigitsData, epochs: int = 8, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return train_classifier(digits_cnn(), data.x_train, data.y_train, epochs=epochs, batch_size=64, lr=3e-3)


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
