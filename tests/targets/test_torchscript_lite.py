"""The TorchScript Lite (.ptl) path end to end: real torch.jit capture and quantization, run through
torch's real lite interpreter (the one PyTorch Mobile apps embed)."""
from __future__ import annotations

import io
import json
import os

import pytest
import torch

import edgekit
from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import EXIT_USAGE
from edgekit.options import PRECISIONS
from edgekit.targets.torchscript_lite import TorchScriptLiteTarget
from edgekit.targets.torchscript_lite.runtime import TorchScriptLiteRuntime
from edgekit.targets.torchscript_lite.target import NO_XNNPACK, xnnpack_enabled
from edgekit.ui import Reporter
from tests import models

pytestmark = pytest.mark.slow

MODELS = list(models.FACTORIES)
MATRIX = [(name, "none") for name in MODELS] + [(name, "int8-dynamic") for name in MODELS]


@pytest.fixture(scope="module")
def ptl_convert(model_files, calibration_files, tmp_path_factory):
    """convert(name, precision) -> (Artifact, what the Reporter printed), each done once per module."""
    cache = {}
    root = tmp_path_factory.mktemp("ptl")

    def run(name, precision):
        if (name, precision) not in cache:
            printed = io.StringIO()
            art = edgekit.convert(
                model_files[name], target="torchscript-lite", quantize=precision, arch=models.FACTORIES[name],
                inputs=models.INPUT_SPECS[name], calibration=calibration_files[name],
                output_dir=str(root / str(len(cache))), tolerance="top1=0", reporter=Reporter(stream=printed),
            )[0]
            cache[name, precision] = (art, printed.getvalue())
        return cache[name, precision]

    return run


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_precision_of_the_target_is_tested():
    assert set(TorchScriptLiteTarget.precisions) == {p for _, p in MATRIX}
    assert {n for n, p in MATRIX if p == "none"} == set(MODELS)


@pytest.mark.parametrize("name,precision", MATRIX)
def test_models_and_precisions_verify_in_the_lite_interpreter(ptl_convert, name, precision):
    art, printed = ptl_convert(name, precision)
    tolerance = PRECISIONS[precision].tolerance
    assert art.status == "passed", art.parity["reasons"]
    assert art.parity["cosine"] >= tolerance.cosine and art.parity["real_inputs"]
    assert art.path.endswith(".ptl")
    doc = manifest.read(art.path)
    manifest.validate(doc)
    assert doc["target"] == "torchscript-lite" and doc["precision"] == precision
    assert doc["sha256"] == manifest.file_digest(art.path)[1]
    assert [i["name"] for i in doc["inputs"]] == [s.split(":")[0] for s in models.INPUT_SPECS[name]]
    assert doc["versions"]["runtime"].startswith(f"torch {torch.__version__} lite interpreter")
    details = doc["target_details"]
    assert details["legacy"] is True and details["capture"] == "torch.jit.trace"
    assert details["bytecode_version"] >= 7
    # this torch has no XNNPACK: the step is skipped, said in the manifest and as a warning, not fatal
    if xnnpack_enabled():
        assert details["optimize_for_mobile"] == "applied"
    else:
        assert details["optimize_for_mobile"] == NO_XNNPACK == "skipped: this torch was built without XNNPACK"
        assert "warning: torchscript-lite: optimize_for_mobile skipped: this torch was built without XNNPACK" in printed
    # the archive carries its I/O description and manifest, so the file alone is enough for an app
    info = edgekit.inspect(art.path)
    assert info["metadata"]["precision"] == precision and info["metadata"]["status"] == "passed"
    assert [i["name"] for i in info["inputs"]] == [i["name"] for i in doc["inputs"]]


def test_dict_outputs_keep_their_names(ptl_convert):
    art, _ = ptl_convert("two_input_dict", "none")
    assert [o["name"] for o in art.parity["outputs"]] == ["logits", "embedding"]
    runtime = TorchScriptLiteRuntime().load(art.path)
    assert [(s.name, s.shape) for s in runtime.outputs()] == [("logits", (1, 5)), ("embedding", (1, 4))]


def test_int8_dynamic_quantizes_every_linear_and_shrinks_the_file(ptl_convert):
    fp32, _ = ptl_convert("mlp", "none")
    int8, _ = ptl_convert("mlp", "int8-dynamic")
    assert int8.size_bytes <= 0.4 * fp32.size_bytes
    info = edgekit.inspect(int8.path)
    assert info["ops"]["quantized::linear_dynamic"] == 3 and "aten::linear" not in info["ops"]
    shapes = sorted(t["shape"] for t in info["quantized_tensors"])
    assert shapes == [[10, 128], [128, 64], [128, 128]]
    assert all(t["dtype"] == "int8" for t in info["quantized_tensors"])
    details = manifest.read(int8.path)["target_details"]
    assert details["quantized_ops"] == 3 and "quantize_dynamic_jit" in details["quantization"]["tool"]
    # verified on the ARM engine's kernels (QNNPACK), which this x86 torch also carries
    assert "qnnpack" in TorchScriptLiteRuntime().load(int8.path).version()


def test_int8_dynamic_works_where_eager_quantization_breaks(ptl_convert):
    # eager quantize_dynamic breaks nn.TransformerEncoder ('function' object has no attribute 'device')
    with pytest.raises(AttributeError, match="has no attribute 'device'"):
        quantized = torch.ao.quantization.quantize_dynamic(models.tiny_transformer(), {torch.nn.Linear})
        quantized(torch.randn(1, 16, 32))
    art, _ = ptl_convert("tiny_transformer", "int8-dynamic")
    assert art.status == "passed" and art.parity["cosine"] >= 0.999
    assert manifest.read(art.path)["target_details"]["quantized_ops"] >= 4


@pytest.mark.parametrize("form", ["torchscript", "exported_program"])
def test_other_model_file_forms_convert(tmp_path, form):
    cnn = models.small_cnn()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / f"m_{form}.pt"
    kwargs = {}
    if form == "torchscript":
        torch.jit.save(torch.jit.trace(cnn, x), path)
        kwargs["inputs"] = ["x:1x3x32x32"]
    else:
        torch.export.save(torch.export.export(cnn, (x,)), path)
    art = edgekit.convert(path, target="ptl", output_dir=str(tmp_path / "out"), name=form, **kwargs)[0]
    assert art.status == "passed" and art.parity["cosine"] >= 0.99999
    assert manifest.read(art.path)["source"]["form"] == form


def test_cli_script_capture_json_table_and_inspect(model_files, tmp_path, capsys):
    base = [model_files["two_input_dict"], "--arch", models.FACTORIES["two_input_dict"],
            "-i", "image:1x3x16x16", "-i", "features:1x6", "-t", "torchscript-lite", "-o", str(tmp_path)]
    code, out, err = _cli(capsys, "convert", *base, "--ptl-script", "--json")
    assert code == 0, err
    (art,) = json.loads(out)["artifacts"]  # stdout is exactly one JSON object
    assert art["status"] == "passed" and art["parity"]["cosine"] >= 0.99999
    assert manifest.read(art["path"])["target_details"]["capture"] == "torch.jit.script"
    code, out, err = _cli(capsys, "convert", *base, "--quantize", "int8-dynamic", "-q")
    assert code == 0
    row = out.splitlines()[2].split()
    assert row[:2] == ["torchscript-lite", "int8-dynamic"] and "passed" in row
    code, out, err = _cli(capsys, "inspect", os.path.join(str(tmp_path), "two_input_dict_int8-dynamic.ptl"))
    assert code == 0
    assert "quantized::linear_dynamic" in out and "legacy PyTorch Mobile format" in out
    assert "embedded manifest: precision int8-dynamic, status passed" in out


def test_dynamic_axes_are_a_usage_error_naming_the_target(model_files, tmp_path, capsys):
    code, out, err = _cli(
        capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64",
        "--dynamic", "x:0", "-t", "ptl", "-o", str(tmp_path),
    )
    assert code == EXIT_USAGE
    # refused before the model is even loaded: the only stderr line is the error
    assert err.strip().splitlines() == [
        "error: the torchscript-lite target does not support --dynamic (a TorchScript Lite program is captured "
        "and verified at the --input shapes only; use --target onnx or executorch for dynamic shapes); "
        "convert one fixed --input shape per size you need"
    ]
    assert os.listdir(tmp_path) == []


def test_int8_dynamic_without_linear_layers_says_the_artifact_stays_float(tmp_path, capsys):
    code, out, err = _cli(
        capsys, "convert", "--model", "tests.targets.test_torchscript_lite:conv_only", "-i", "x:1x3x8x8",
        "-t", "ptl", "--quantize", "int8-dynamic", "-o", str(tmp_path),
    )
    assert code == 0
    assert "warning: torchscript-lite int8-dynamic: the model has no linear layers to quantize; the artifact stays float32" in err


def conv_only():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
