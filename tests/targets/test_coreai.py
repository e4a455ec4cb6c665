"""The Core AI target end to end: real coreai-torch conversions and coreai-opt compression, real
.aimodel assets read back through coreai-core's bindings. The Core AI runtime executes only on iOS /
macOS 27 and edgekit does not execute Core AI programs, so every artifact is `unverified` with the
reason, never passed."""
from __future__ import annotations

import json
import os

import pytest

import edgekit
from edgekit.cli import main
from edgekit.errors import EXIT_VERIFY_FAILED, DeviceError
from edgekit.registry import get_target_class
from edgekit.targets.coreai import CoreAITarget
from edgekit.targets.coreai.runtime import NOT_ON_THIS_HOST, CoreAIRuntime
from tests import models

pytestmark = pytest.mark.slow


def _convert(tmp_path, precision):
    return edgekit.convert(None, model_factory=models.FACTORIES["small_cnn"], target="coreai", quantize=precision,
                           inputs=models.INPUT_SPECS["small_cnn"], output_dir=str(tmp_path), name="cnn", eval_samples=2)[0]


@pytest.mark.parametrize("precision,storage,compression_op", [
    ("none", "Float32", None),
    ("fp16", "Float16", None),
    ("palettize4", "UInt4", "lut_to_dense"),
])
def test_converts_and_stays_unverified_with_the_reason(tmp_path, precision, storage, compression_op):
    art = _convert(tmp_path, precision)
    assert art.status == "unverified" and art.parity["reasons"] == [NOT_ON_THIS_HOST]
    assert art.path.endswith(f"cnn{'' if precision == 'none' else '_' + precision}.aimodel") and os.path.isdir(art.path)
    assert {"main.mlirb", "metadata.json"} <= set(os.listdir(art.path))
    doc = art.manifest
    details = doc["target_details"]
    assert doc["format"] == "aimodel" and doc["status"] == "unverified"
    assert details["deployment_target"] == "iOS27 / macOS27" and details["compatibility_version"] == "27.0"
    assert details["ops"]["conv2d"] == 2 and details["ops"]["relu"] == 2
    assert max(details["storage_types"], key=details["storage_types"].get) == storage
    if compression_op:
        assert details["ops"][compression_op] >= 1 and details["weights"]["fraction_compressed"] > 0.8
    else:
        assert details["weights"]["compressed_elements"] == 0
    assert [(i["name"], i["shape"]) for i in doc["inputs"]] == [("x", [1, 3, 32, 32])]
    assert doc["outputs"][0]["shape"] == [1, 10]
    assert doc["versions"]["coreai-torch"] == "0.4.3" and doc["versions"]["coreai-core"] == "1.0.0b3"


def test_runtime_describes_but_does_not_execute(tmp_path):
    art = _convert(tmp_path, "none")
    runtime = CoreAIRuntime().load(art.path)
    assert [(s.name, s.shape, s.dtype) for s in runtime.inputs()] == [("x", (1, 3, 32, 32), "float32")]
    with pytest.raises(DeviceError, match="edgekit does not execute Core AI programs"):
        runtime.run([None])


def test_cli_inspect_and_strict(tmp_path, capsys):
    args = ["convert", "--model", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32", "-t", "coreai",
            "-o", str(tmp_path), "--name", "cnn", "--strict", "--json"]
    assert main(args) == EXIT_VERIFY_FAILED  # unverified under --strict
    result = json.loads(capsys.readouterr().out)["artifacts"][0]
    assert result["status"] == "unverified" and os.path.isdir(result["path"])
    assert main(["inspect", result["path"]]) == 0
    text = capsys.readouterr().out
    assert "format: Core AI asset (.aimodel: main.mlirb + metadata.json)" in text
    assert "deployment target: iOS27 / macOS27 (compatibility version 27.0)" in text
    assert "storage types: Float32 " in text and "conv2d" in text and f"execution: {NOT_ON_THIS_HOST}" in text


def test_registered_with_every_precision_coreai_opt_builds_on_linux():
    assert get_target_class("coreai") is CoreAITarget
    assert set(CoreAITarget.precisions) == {"none", "fp16", "int8", "int8-weight-only", "int4-weight-only",
                                            "palettize8", "palettize6", "palettize4"}
    assert CoreAITarget.suffix == ".aimodel" and CoreAITarget.available()
