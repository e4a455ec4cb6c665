"""TFLite realises the layers automatic mixed precision keeps above int8 as 16x8 (int16 activations,
int8 weights) where that meets the tolerance (targets/tflite/int16x8.py), and the manifest says, per
kept layer, which precision it got and why (issue 11 item 3).

The model: the digits CNN of tests/quantize/outlier_model.py with fc2's units 0 and 1 made one unit
OUTLIER times its range, read by fc3 with opposite signs. The float function ignores them, but the
tensor between fc2 and fc3 spans their range: per-tensor int8 leaves the other units under one level
(int8 fails), int16 about a hundred (16x8 passes), and fc3's weights keep their normal range, so
int8 weights lose nothing (unlike tests/quantize/outlier_model.py's fc3 column scaled down, where
16x8 misses the tolerance and the layers stay float: tests/quantize/test_mixed_convert.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.quantize.conftest import convert_outlier

OUTLIER = 300.0


@pytest.fixture(scope="module")
def activation_outlier_files(tmp_path_factory):
    from edgekit.demo import digits_data
    from tests.quantize.outlier_model import train_outlier_cnn

    data = digits_data()
    model = train_outlier_cnn(data, outlier=1.0)
    with torch.no_grad():
        model.fc2.weight[1] = model.fc2.weight[0] * OUTLIER
        model.fc2.bias[1] = model.fc2.bias[0] * OUTLIER
        model.fc2.weight[0] *= OUTLIER
        model.fc2.bias[0] *= OUTLIER
        model.fc3.weight[:, 1] = -model.fc3.weight[:, 0]
    folder = tmp_path_factory.mktemp("activation_outlier")
    paths = {"model": str(folder / "model.pt"), "calibration": str(folder / "calib.npz"), "eval": str(folder / "eval.npz")}
    torch.save(model.state_dict(), paths["model"])
    np.savez(paths["calibration"], x=data.x_train[:200])
    np.savez(paths["eval"], x=data.x_test)
    return paths


@pytest.mark.slow
def test_kept_layers_run_16x8_where_that_meets_the_tolerance(activation_outlier_files, tmp_path):
    [art] = convert_outlier(activation_outlier_files, tmp_path, ["tflite"], "int8")
    assert art.status == "passed"
    block = art.manifest["quantization"]
    mixed = block["mixed_precision"]
    assert mixed["shipped"] == "mixed" and not mixed["baseline"]["passed"]  # plain int8 misses
    # the search's decision (which layers), realised by the target (at which precision), per layer
    assert sorted((k["module_path"], k["precision"]) for k in mixed["kept"]) == [("fc2", "int16x8"), ("fc3", "int16x8")]
    assert all(k["precision_why"].startswith("TFLite 16x8 (int16 activations, int8 weights): 16x8 meets the tolerance")
               for k in mixed["kept"])
    higher = mixed["tflite_higher"]
    assert higher["chosen"] == "int16x8" and higher["heldout_samples"] == 25
    assert higher["int16x8"]["passed"] and higher["int16x8"]["cosine"] > 0.99 and higher["int16x8"]["ops_16x8"] == 2
    assert higher["float"]["cosine"] > 0.9999  # float is closer still, and larger
    assert higher["int16x8"]["p50_ms"] <= 1.1 * higher["float"]["p50_ms"] + 0.05
    assert higher["int16x8"]["bytes"] < higher["float"]["bytes"]
    # the file holds what the manifest says: every weight int8, fc2 and fc3 with int16 activations
    coverage = block["coverage"]
    assert coverage["weights_by_dtype"] == {"int8": 39888}
    assert coverage["ops_by_kind"] == {"int16x8": 2, "int8": 3}
    assert art.parity["cosine"] > 0.99  # verified on the 360 held-out digits
