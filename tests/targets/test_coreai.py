"""The Core AI target end to end: real coreai-torch conversions and coreai-opt compression, real
.aimodel assets read back through coreai-core's bindings and executed by edgekit's Core AI reference
interpreter (the Core AI runtime itself runs only on iOS / macOS 27). A wrong weight written into the
asset must fail; an op the interpreter lacks leaves the artifact unverified, with the op named."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.cli import main
from edgekit.errors import DeviceError
from edgekit.registry import get_target_class
from edgekit.targets.coreai import CoreAITarget, analysis, interpreter, program
from edgekit.targets.coreai.runtime import CoreAIRuntime
from tests import models
from tests.targets.corrupting import corrupt_after_convert

pytestmark = pytest.mark.slow


def _convert(tmp_path, precision, factory="small_cnn", **kw):
    return edgekit.convert(None, model_factory=models.FACTORIES.get(factory, factory), target="coreai", quantize=precision,
                           inputs=kw.pop("inputs", models.INPUT_SPECS.get(factory)), output_dir=str(tmp_path),
                           name="cnn", eval_samples=4, **kw)[0]


@pytest.mark.parametrize("precision,storage,compression_op,floor", [
    ("none", "Float32", None, 0.999999),
    ("fp16", "Float16", None, 0.99999),
    ("palettize4", "UInt4", "lut_to_dense", 0.999),
])
def test_converts_and_the_reference_interpreter_verifies(tmp_path, precision, storage, compression_op, floor):
    art = _convert(tmp_path, precision)
    assert art.status == "passed" and art.parity["cosine"] >= floor, art.parity
    assert art.path.endswith(f"cnn{'' if precision == 'none' else '_' + precision}.aimodel") and os.path.isdir(art.path)
    assert {"main.mlirb", "metadata.json"} <= set(os.listdir(art.path))
    doc = art.manifest
    details = doc["target_details"]
    assert doc["format"] == "aimodel" and doc["status"] == "passed"
    assert details["verification"]["by"] == interpreter.NAME and details["verification"]["reference"] is True
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


def test_fp32_program_matches_eager_pytorch_and_composites_are_invoked(tmp_path):
    """The transformer's layer_norm and attention are private graphs called by coreai.invoke."""
    art = _convert(tmp_path, "none", "tiny_transformer")
    runtime = CoreAIRuntime().load(art.path)
    assert [(s.name, s.shape, s.dtype) for s in runtime.inputs()] == [("x", (1, 16, 32), "float32")]
    assert art.manifest["target_details"]["ops"]["invoke"] >= 2
    module = models.tiny_transformer()
    x = np.random.default_rng(1).standard_normal((1, 16, 32)).astype(np.float32)
    with torch.no_grad():
        eager = module(torch.from_numpy(x)).numpy()
    ours = runtime.run([x])[0]
    assert ours.dtype == np.float32 and np.max(np.abs(ours - eager)) < 1e-5 * max(1.0, np.abs(eager).max())


def _corrupt_largest_weight(asset_path: str) -> tuple:
    """Negate the bytes of the largest float weight inside main.mlirb, in place; return its shape."""
    graph = program.read_program(analysis.load_asset(asset_path)).entry
    value = max((c for c in graph.constants.values() if c.dtype.kind == "f"), key=lambda c: c.size)
    path = os.path.join(asset_path, "main.mlirb")
    blob = open(path, "rb").read()
    assert blob.count(value.tobytes()) == 1
    where = blob.find(value.tobytes())
    with open(path, "wb") as f:
        f.write(blob[:where] + (-value).tobytes() + blob[where + value.nbytes:])
    return value.shape


def test_a_wrong_weight_in_the_asset_fails_verification(tmp_path, monkeypatch, capsys):
    corrupted = corrupt_after_convert(monkeypatch, CoreAITarget, _corrupt_largest_weight)
    code = main(["convert", "--model", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32", "-t", "coreai",
                 "-o", str(tmp_path), "--name", "broken", "--eval-samples", "4"])
    out = capsys.readouterr().out
    assert corrupted == [(32, 16, 3, 3)] and code == 1
    row = next(line for line in out.splitlines() if line.startswith("coreai"))
    assert "FAILED" in row and "broken.aimodel" in row
    doc = edgekit.manifest.read(str(tmp_path / "broken.aimodel"))
    assert doc["status"] == "failed" and doc["parity"]["cosine"] < 0.99


def cumulative():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=-1)

    return Cumulative().eval()


def test_an_op_the_interpreter_lacks_leaves_the_artifact_unverified(tmp_path):
    art = _convert(tmp_path, "none", "tests.targets.test_coreai:cumulative", inputs=["x:1x8"])
    reason = art.parity["reasons"][0]
    assert art.status == "unverified"
    assert reason == ("numerical parity not run: the Core AI runtime executes only on iOS / macOS 27, and "
                      "edgekit's Core AI reference interpreter does not implement op scan")
    with pytest.raises(DeviceError, match="does not implement op scan"):
        CoreAIRuntime().load(art.path)


def test_cli_strict_passes_and_inspect_names_the_interpreter(tmp_path, capsys):
    args = ["convert", "--model", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32", "-t", "coreai",
            "-o", str(tmp_path), "--name", "cnn", "--strict", "--json", "--eval-samples", "4"]
    assert main(args) == 0  # verified, so --strict accepts it
    result = json.loads(capsys.readouterr().out)["artifacts"][0]
    assert result["status"] == "passed" and os.path.isdir(result["path"])
    assert main(["inspect", result["path"]]) == 0
    text = capsys.readouterr().out
    assert "format: Core AI asset (.aimodel: main.mlirb + metadata.json)" in text
    assert "deployment target: iOS27 / macOS27 (compatibility version 27.0)" in text
    assert "storage types: Float32 " in text and "conv2d" in text
    assert f"execution: {interpreter.NAME} (the Core AI runtime needs iOS / macOS 27)" in text
    copy = str(tmp_path / "copy.aimodel")
    shutil.copytree(result["path"], copy)
    assert CoreAIRuntime().load(copy).version().startswith(interpreter.NAME)


def test_registered_with_every_precision_coreai_opt_builds_on_linux():
    assert get_target_class("coreai") is CoreAITarget
    assert set(CoreAITarget.precisions) == {"none", "fp16", "int8", "int8-weight-only", "int4-weight-only",
                                            "palettize8", "palettize6", "palettize4"}
    assert CoreAITarget.suffix == ".aimodel" and CoreAITarget.available()


def test_int8_takes_the_shared_pt2e_scales_and_equals_their_pytorch_simulation(tmp_path):
    """The shared int8 program's quantize / dequantize ops, rewritten as coreai-torch's, convert to a
    program whose interpreter output equals the PT2E graph run in PyTorch (the same scales, the same
    integers), with int8 weight constants behind per-channel dequantize."""
    import copy

    from edgekit.quantize.config import QuantConfig
    from edgekit.quantize.pt2e import quantize_program
    from edgekit.targets.coreai import convert as steps
    from edgekit.targets.coreai.int8 import to_coreai_ops

    rng = np.random.default_rng(3)
    module = models.small_cnn()
    samples = [(rng.standard_normal((1, 3, 32, 32)).astype(np.float32),) for _ in range(8)]
    exported = torch.export.export(module, (torch.from_numpy(samples[0][0]),), strict=False)
    shared = quantize_program(exported, samples, QuantConfig(observer="minmax"))
    graph = copy.deepcopy(shared.converted(fold_quantize=True))
    assert to_coreai_ops(graph) == sum(1 for n in shared.converted().graph.nodes
                                       if getattr(n.target, "namespace", None) == "quantized_decomposed")
    path = str(tmp_path / "q.aimodel")
    steps.convert_program(torch.export.export(graph, (torch.from_numpy(samples[0][0]),), strict=False), path)
    info = analysis.summary(analysis.load_asset(path))
    assert info["storage_types"]["Int8"] >= sum(p.numel() for p in module.parameters() if p.dim() > 1)
    runtime = CoreAIRuntime().load(path)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        simulated = shared.converted()(torch.from_numpy(x))[0].numpy()
        eager = module(torch.from_numpy(x)).numpy()
    ours = runtime.run([x])[0]
    assert np.max(np.abs(ours - simulated)) < 1e-4 * np.abs(simulated).max()
    assert np.max(np.abs(ours - eager)) > 1e-4 * np.abs(eager).max()  # quantized: not the float model


def test_int8_convert_records_the_shared_recipe(tmp_path):
    art = _convert(tmp_path, "int8", "tiny_transformer", calibration="random", calibration_samples=8,
                   int8_calibration="minmax", mixed_precision="off")  # one recipe, no search: a cheap test
    recipe = art.manifest["target_details"]["precision_recipe"]
    assert art.status == "passed" and art.parity["cosine"] >= 0.999, art.parity
    assert recipe["tool"].startswith("edgekit.quantize (PT2E") and recipe["quantize_ops_rewritten"] > 20
    ops = art.manifest["target_details"]["ops"]
    assert ops["quantize"] >= 10 and ops["dequantize"] >= ops["quantize"]


class MaskedScores(nn.Module):
    """A decoder's attention mask: made from integer positions and Python numbers only, so PyTorch
    computes it in its default dtype (float32) even in an fp16 program."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(8, 8)

    def forward(self, x, pos):
        mask = torch.where(torch.arange(8) <= pos, 0.0, -1e4)
        return torch.softmax(self.proj(x) + mask, dim=-1)


def masked_scores():
    return MaskedScores().eval()


def test_fp16_casts_default_dtype_results_so_a_masked_decoder_converts(tmp_path):
    art = _convert(tmp_path, "fp16", "tests.targets.test_coreai:masked_scores", inputs=["x:1x8", "pos:1:int64"])
    assert art.status == "passed" and art.parity["cosine"] >= 0.999, art.parity
    assert art.manifest["target_details"]["precision_recipe"]["default_dtype_results_cast"] == 1
    assert max(art.manifest["target_details"]["storage_types"], key=art.manifest["target_details"]["storage_types"].get) != "Float32"


def test_the_ios_app_packages_an_aimodel_for_its_core_ai_runner(tmp_path):
    """`edgekit package --app ios` copies the .aimodel and names the runtime and the function that
    sample_apps/ios/EdgekitDemo/CoreAIRunner.swift loads."""
    from pathlib import Path

    from edgekit.package import APPS, MODEL_INFO_FILE, package

    art = _convert(tmp_path / "out", "none")
    app = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "sample_apps" / "ios", tmp_path / "ios",
                               ignore=shutil.ignore_patterns("build")))
    package([art.path], "ios", app)
    (entry,) = json.loads((app / APPS["ios"].models_dir / MODEL_INFO_FILE).read_text())["models"]
    assert (entry["runtime"], entry["format"], entry["method"]) == ("coreai", "aimodel", "main")
    assert (app / APPS["ios"].models_dir / os.path.basename(art.path) / "main.mlirb").is_file()
    assert [(t["name"], t["dtype"]) for t in entry["inputs"]] == [("x", "float32")]
    swift = (app / "EdgekitDemo" / "ModelRunner.swift").read_text()
    assert 'case "coreai":' in swift and "CoreAIRunner.load(entry: entry, url: url)" in swift
