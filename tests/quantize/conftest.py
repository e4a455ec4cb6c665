"""Small real models for the quantization layer: the demo's digits CNN and a depthwise CNN with
ReLU6 (the MobileNet / EfficientNet-Lite block) trained here on scikit-learn's digits in seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from edgekit.demo import train_classifier


def depthwise_cnn():
    """Conv -> depthwise -> pointwise blocks with BatchNorm and ReLU6, on 1x8x8 digits."""
    def block(cin, cout, stride):
        return [
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
        ]

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        *block(16, 32, 1), *block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


@pytest.fixture(scope="session")
def digits_split():
    from edgekit.demo import digits_data

    return digits_data()


@pytest.fixture(scope="session")
def depthwise_model(digits_split):
    """The depthwise CNN trained for 8 epochs (about 5 s on 2 cores), in eval mode."""
    torch.manual_seed(0)
    model = depthwise_cnn()
    return train_classifier(model, digits_split.x_train, digits_split.y_train, epochs=8, batch_size=64, lr=5e-3)


@pytest.fixture(scope="session")
def depthwise_exported(depthwise_model):
    return torch.export.export(depthwise_model, (torch.zeros(1, 1, 8, 8),))


@pytest.fixture(scope="session")
def calibration(digits_split):
    """64 real digits as one-sample input tuples."""
    return [(digits_split.x_train[i : i + 1],) for i in range(64)]


def logits(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(x[i : i + 1])).numpy() for i in range(len(x))])


# diagnose and mixed precision build on one int8 program and one diagnosis of the depthwise CNN,
# made once per session


def _int8_tolerance():
    from edgekit.options import get_precision

    return get_precision("int8").tolerance


@pytest.fixture(scope="session")
def evaluation(digits_split):
    """64 held-out digits (never calibrated on)."""
    return [(digits_split.x_test[i : i + 1],) for i in range(64)]


@pytest.fixture(scope="session")
def depthwise_program(depthwise_exported, calibration):
    from edgekit.quantize import QuantConfig
    from edgekit.quantize.pt2e import quantize_program

    return quantize_program(depthwise_exported, calibration, QuantConfig(observer="minmax"))


@pytest.fixture(scope="session")
def depthwise_diagnosis(depthwise_exported, calibration, evaluation, depthwise_program):
    from edgekit.quantize.diagnose import diagnose

    return diagnose(depthwise_exported, calibration, evaluation, _int8_tolerance(), program=depthwise_program,
                    layer_samples=16, remedy_layers=2, top_k=(2,))


@pytest.fixture(scope="session")
def depthwise_variants(depthwise_exported, calibration, evaluation, depthwise_program):
    from edgekit.quantize.mixed import Int8Variants

    return Int8Variants(depthwise_exported, depthwise_program, calibration, evaluation, _int8_tolerance())


# the outlier CNN (tests/quantize/outlier_model.py): static int8 misses the default tolerance, so
# `edgekit convert --quantize int8` has to find the layers to keep float


@pytest.fixture(scope="session")
def outlier_files(tmp_path_factory, digits_split):
    from tests.quantize.outlier_model import train_outlier_cnn

    folder = tmp_path_factory.mktemp("outlier")
    paths = {"model": str(folder / "outlier.pt"), "calibration": str(folder / "calib.npz"), "eval": str(folder / "eval.npz")}
    torch.save(train_outlier_cnn(digits_split).state_dict(), paths["model"])
    np.savez(paths["calibration"], x=digits_split.x_train[:200])
    np.savez(paths["eval"], x=digits_split.x_test)
    return paths


OUTLIER_ARCH = "tests.quantize.outlier_model:outlier_cnn"


def convert_outlier(files, folder, targets, precision, stream=None, **options):
    """edgekit.convert of the outlier CNN, as `edgekit convert outlier.pt --arch ... --input x:1x1x8x8` does."""
    import edgekit
    from edgekit.ui import Reporter

    return edgekit.convert(files["model"], target=targets, quantize=precision, arch=OUTLIER_ARCH, inputs=["x:1x1x8x8"],
                           calibration=files["calibration"], eval_data=files["eval"], output_dir=str(folder),
                           reporter=Reporter(quiet=stream is None, stream=stream), **options)


@pytest.fixture(scope="session")
def outlier_int8(outlier_files, tmp_path_factory):
    """`edgekit convert --quantize int8 -t tflite -t executorch` of the outlier CNN: artifacts and console."""
    import io

    stream = io.StringIO()
    artifacts = convert_outlier(outlier_files, tmp_path_factory.mktemp("outlier_int8"), ["tflite", "executorch"], "int8", stream)
    return artifacts, stream.getvalue()
