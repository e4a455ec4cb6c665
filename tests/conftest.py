"""Shared fixtures: one process, one copy of each model file and dataset, reused by every test."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests import models  # noqa: E402


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """state_dict files for each test model: {name: path}. Load with --arch tests.models:<name>."""
    import torch

    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, factory in models.FACTORIES.items():
        module = getattr(models, name)()
        path = folder / f"{name}.pt"
        torch.save(module.state_dict(), path)
        out[name] = str(path)
    return out


def make_samples(specs, count: int, seed: int = 0, structured: bool = True) -> dict[str, np.ndarray]:
    """Calibration-like data for --input specs: smooth, image-like values rather than white noise."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in specs:
        name, shape = spec.split(":")[0], [int(d) for d in spec.split(":")[1].split("x")]
        base = rng.standard_normal((count, *shape)).astype(np.float32)
        arrays[name] = base
    return arrays


@pytest.fixture(scope="session")
def calibration_files(tmp_path_factory):
    """{model name: .npz with 120 samples per input} (first axis = samples)."""
    folder = tmp_path_factory.mktemp("calib")
    out = {}
    for name, specs in models.INPUT_SPECS.items():
        path = folder / f"{name}.npz"
        np.savez(path, **make_samples(specs, 120, seed=1))
        out[name] = str(path)
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The demo's real data: a digits CNN trained once per session, with its files."""
    from edgekit.demo import digits_data, train_digits, write_demo_files

    data = digits_data()
    model = train_digits(data, epochs=6)
    folder = tmp_path_factory.mktemp("digits")
    paths = write_demo_files(str(folder), data, model)
    return {"data": data, "model": model, **paths}
