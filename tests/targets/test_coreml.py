"""The Core ML path end to end: real coremltools conversions and compression, real packages on disk.

Core ML itself executes only on macOS. On Linux these tests check what can be checked structurally (the
package loads without compiling, I/O, op histogram, compressed fraction, sizes, metadata), and that
ML Programs are verified by edgekit's MIL reference interpreter (labelled as such in the manifest),
while what it cannot execute (the legacy .mlmodel) is reported "unverified" with the reason, never
passed. tests/targets/test_coreml_interp*.py check the interpreter itself.
"""
from __future__ import annotations

import json
import os
import platform

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import EXIT_CONVERSION, EXIT_USAGE, EXIT_VERIFY_FAILED, DeviceError, UsageError
from edgekit.options import DynamicAxis
from edgekit.targets.coreml import CoreMLTarget, analysis, mil
from edgekit.targets.coreml import convert as convert_steps
from edgekit.targets.coreml.runtime import NOT_ON_THIS_HOST, CoreMLRuntime
from edgekit.targets.coreml.settings import CoreMLSettings
from edgekit.ui import Reporter
from tests import models

pytestmark = pytest.mark.slow

ON_LINUX = platform.system() != "Darwin"
LABELS = tuple(f"class_{i}" for i in range(10))


class ErfinvActivation(nn.Module):
    def forward(self, x):
        return torch.erfinv(torch.tanh(x) * 0.5)  # aten.erfinv: torch.export takes it, Core ML has no op for it


class ErfinvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.odd = ErfinvActivation()

    def forward(self, x):
        return self.odd(self.fc(x))


def erfinv_net():
    torch.manual_seed(0)
    return ErfinvNet().eval()


def softmax_cnn():
    """A classifier that already ends in softmax: its output is the probabilities."""
    return nn.Sequential(models.small_cnn(), nn.Softmax(dim=-1)).eval()


def _convert(tmp_path, name, precision=None, *, factory=None, inputs=None, **kw):
    return edgekit.convert(
        None, model_factory=factory or models.FACTORIES[name], target="coreml", quantize=precision,
        inputs=inputs or models.INPUT_SPECS[name], output_dir=str(tmp_path), name=name, **kw,
    )[0]


def _details(art):
    return art.manifest["target_details"]


MLMODEL_REASON = (f"{NOT_ON_THIS_HOST}, and edgekit's MIL reference interpreter reads ML Programs (.mlpackage) only, "
                  "not a neuralNetworkClassifier (.mlmodel)")


def _assert_unverified(art, reason=MLMODEL_REASON):
    assert art.status == "unverified"
    assert art.parity["reasons"] == [reason]
    assert art.manifest["status"] == "unverified"


def _assert_verified_on_linux(art, status="passed"):
    """Off macOS an ML Program is executed by the reference interpreter, and the manifest says so."""
    assert art.status == status and art.manifest["status"] == status, art.parity
    assert art.manifest["target_details"]["verification"]["by"] == mil.NAME
    assert art.manifest["versions"]["runtime"].startswith(mil.NAME)


@pytest.fixture(scope="session")
def wide_sizes(tmp_path_factory):
    """Weight bytes of the wide MLP's package per precision (one conversion each, shared)."""
    out = tmp_path_factory.mktemp("coreml-wide")
    sizes = {}
    for precision in ("none", "int8-weight-only", "palettize4"):
        art = _convert(out, "wide", precision, factory="tests.models:wide_mlp", inputs=["x:1x256"])
        sizes[precision] = (_details(art)["weights"]["weights_bytes"], art.size_bytes, _details(art)["weights"])
    return sizes


@pytest.mark.skipif(not ON_LINUX, reason="checks the Linux behaviour; macOS runs parity instead")
@pytest.mark.parametrize("name", list(models.FACTORIES))
@pytest.mark.parametrize("precision", ["none", None])  # None: the default, fp16
def test_every_model_fp32_and_default_fp16(tmp_path, name, precision):
    art = _convert(tmp_path, name, precision)
    _assert_verified_on_linux(art)
    assert art.parity["cosine"] > (0.99999 if precision == "none" else 0.999)
    doc = manifest.read(art.path)
    manifest.validate(doc)
    details = doc["target_details"]
    assert doc["precision"] == (precision or "fp16") and doc["precision_default"] is (precision is None)
    assert doc["format"] == "mlpackage" and art.path.endswith(".mlpackage") and os.path.isdir(art.path)
    assert doc["sha256"] == manifest.file_digest(art.path)[1] and doc["size_bytes"] == manifest.file_digest(art.path)[0]
    assert details["deployment_target"] == "iOS15" and details["deployment_target_default"] is True
    assert details["checks"] == {"loads_without_compiling": True, "io_matches_model": True, "executed": False}
    wanted_inputs = [(s.split(":")[0], [int(d) for d in s.split(":")[1].split("x")]) for s in models.INPUT_SPECS[name]]
    assert [(i["name"], i["shape"]) for i in doc["inputs"]] == wanted_inputs
    assert all(i["dtype"] == "float32" for i in doc["inputs"]) and all(o["dtype"] == "float32" for o in doc["outputs"])
    expected_outputs = ["logits", "embedding"] if name == "two_input_dict" else ["output_0"]
    assert [o["name"] for o in doc["outputs"]] == expected_outputs
    assert all(o["shape"][0] == 1 and len(o["shape"]) == 2 for o in doc["outputs"])
    assert details["ops"]["const"] > 0 and sum(details["ops"].values()) > 3
    assert details["weights"]["compressed"] == 0
    # fp32 stores 4 bytes per weight, fp16 2, plus a 64-byte-aligned header per weight blob
    width = 4 if precision == "none" else 2
    assert width * details["weights"]["total"] <= details["weights"]["weights_bytes"] <= width * details["weights"]["total"] + 4096
    assert doc["versions"]["coremltools"].startswith("9.")


@pytest.mark.parametrize(
    "precision, target, op, kind, dtype",
    [
        ("int8-weight-only", "iOS16", "constexpr_affine_dequantize", "quantized", "int8"),
        ("int4-weight-only", "iOS18", "constexpr_blockwise_shift_scale", "quantized", "int4"),
        ("palettize8", "iOS16", "constexpr_lut_to_dense", "palettized", "lut8"),
        ("palettize6", "iOS16", "constexpr_lut_to_dense", "palettized", "lut6"),
        ("palettize4", "iOS16", "constexpr_lut_to_dense", "palettized", "lut4"),
    ],
)
def test_weight_precisions_pick_the_lowest_deployment_target(tmp_path, precision, target, op, kind, dtype):
    art = _convert(tmp_path, "mlp", precision)
    details = _details(art)
    assert details["deployment_target"] == target and details["specification_version"] == {"iOS16": 7, "iOS18": 9}[target]
    assert details["ops"][op] == 2  # the two MLP weights over 2048 elements; the 128x10 head stays float
    assert details["weights"]["by_kind"] == {kind: 64 * 128 + 128 * 128}
    assert details["weights"]["fraction_compressed"] == pytest.approx(24576 / 26122, abs=1e-4)
    info = CoreMLTarget().inspect(art.path)
    assert {t["dtype"] for t in info["quantized_tensors"]} == {dtype}
    assert info["summary"]["deployment target"] == f"{target} / macOS{ {'iOS16': 13, 'iOS18': 15}[target] }"


@pytest.mark.parametrize("precision", ["int8-weight-only", "palettize4"])
def test_compressed_weights_shrink_the_package(wide_sizes, precision):
    fp32_weights = wide_sizes["none"][0]
    weights, package, stats = wide_sizes[precision]
    limit = {"int8-weight-only": 0.3, "palettize4": 0.2}[precision]
    assert weights <= limit * fp32_weights, f"{precision}: {weights} bytes vs fp32 {fp32_weights}"
    assert package <= limit * wide_sizes["none"][1] + 4096
    assert stats["fraction_compressed"] > 0.99


def test_prune_alone_and_jointly(tmp_path):
    alone = _convert(tmp_path, "mlp", "fp16", target_options={"coreml": {"prune": 0.5}})
    assert _details(alone)["deployment_target"] == "iOS16"
    assert _details(alone)["weights"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert _details(alone)["ops"]["constexpr_sparse_to_dense"] == 2
    joint = _convert(tmp_path, "tiny_transformer", "palettize4", target_options={"coreml": {"prune": 0.75}})
    details = _details(joint)
    assert details["deployment_target"] == "iOS18"  # sparse + palettized needs iOS18
    assert set(details["weights"]["by_kind"]) == {"palettized+sparse"}
    assert details["weights"]["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_image_input_and_classifier(tmp_path):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    art = _convert(tmp_path, "small_cnn", "fp16", labels=LABELS, mean=mean, std=std,
                   target_options={"coreml": {"image_input": True}})
    details = _details(art)
    spec = analysis.read_spec(art.path)
    description = spec.description
    assert description.input[0].type.WhichOneof("Type") == "imageType"
    assert description.input[0].type.imageType.width == 32 and analysis.describe_io(spec)["image_inputs"] == {"x": "RGB"}
    assert art.manifest["inputs"][0]["dtype"] == "uint8" and art.manifest["inputs"][0]["shape"] == [1, 3, 32, 32]
    # per-channel std cannot live in Core ML's one image scale: it moves into the graph, exactly
    assert details["image_input"]["normalization_in_graph"] is True
    assert details["image_input"]["scale"] == pytest.approx([1 / (255 * s) for s in std])
    assert details["image_input"]["bias"] == pytest.approx([-m / s for m, s in zip(mean, std)])
    assert description.predictedFeatureName == "classLabel" and description.predictedProbabilitiesName == "classLabel_probs"
    assert details["classifier"]["classes"] == 10 and details["classifier"]["softmax_added"] is True
    assert [o["name"] for o in art.manifest["outputs"]] == ["output_0"]  # the logits stay, for parity on macOS
    assert list(spec.mlProgram.functions["main"].block_specializations.values())[0].operations[-1].type == "classify"
    assert art.manifest["labels"] == list(LABELS) and art.manifest["preprocessing"]["mean"] == list(mean)


def test_legacy_mlmodel_with_image_classifier(tmp_path):
    art = _convert(tmp_path, "small_cnn", "int8-weight-only", labels=LABELS, mean=(0.5,), std=(0.5,),
                   color_layout="BGR", target_options={"coreml": {"format": "mlmodel", "image_input": True}})
    _assert_unverified(art)
    assert art.path.endswith("small_cnn_int8-weight-only.mlmodel") and os.path.isfile(art.path)
    assert art.manifest["format"] == "mlmodel" and manifest.read(art.path)["status"] == "unverified"
    spec = analysis.read_spec(art.path)
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier" and spec.specificationVersion == 4
    # equal std: Core ML's own preprocessing does it (scale 2/255, bias -1)
    preprocessing = spec.neuralNetworkClassifier.preprocessing[0].scaler
    assert preprocessing.channelScale == pytest.approx(2 / 255) and preprocessing.blueBias == pytest.approx(-1.0)
    assert analysis.describe_io(spec)["image_inputs"] == {"x": "BGR"}
    details = _details(art)
    assert details["deployment_target"] == "iOS13" and details["weights"]["fraction_compressed"] == 1.0
    assert details["weights"]["by_kind"] == {"quantized": details["weights"]["total"]}
    assert _details(art)["image_input"]["normalization_in_graph"] is False
    assert [o["name"] for o in art.manifest["outputs"]] == ["output_0"] and art.manifest["outputs"][0]["shape"] == [1, 10]
    info = CoreMLTarget().inspect(art.path)
    assert info["summary"]["format"] == "neural network (.mlmodel, neuralNetworkClassifier)"
    assert info["summary"]["classifier"] == "classLabel + classLabel_probs" and info["summary"]["image inputs"] == "x (BGR)"
    assert info["ops"]["innerProduct"] == 1 and info["ops"]["softmaxND"] == 1


def test_classifier_keeps_probabilities_it_already_has(tmp_path):
    art = _convert(tmp_path, "softmax_cnn", "none", factory="tests.targets.test_coreml:softmax_cnn",
                   inputs=models.INPUT_SPECS["small_cnn"], labels=LABELS)
    assert _details(art)["classifier"]["softmax_added"] is False
    spec = analysis.read_spec(art.path)
    assert convert_steps._probabilities_source(spec) == "relu"  # an identity on probabilities, not a second softmax
    assert _details(art)["ops"]["softmax"] == 1


@pytest.mark.parametrize("precision", ["fp16", "palettize6"])
def test_legacy_mlmodel_weight_formats(tmp_path, precision):
    art = _convert(tmp_path, "mlp", precision, target_options={"coreml": {"format": "mlmodel"}})
    stats = _details(art)["weights"]
    assert stats["total"] == 26122
    if precision == "fp16":
        assert stats["by_kind"] == {"fp16": 26122} and stats["weights_bytes"] == 2 * 26122
    else:
        assert stats["by_kind"] == {"palettized": 26122} and stats["weights_bytes"] <= 0.2 * 4 * 26122


def test_torchscript_frontend_and_dynamic_axes(tmp_path):
    art = _convert(tmp_path, "two_input_dict", "fp16", target_options={"coreml": {"frontend": "torchscript"}})
    assert [o["name"] for o in art.manifest["outputs"]] == ["logits", "embedding"]
    assert _details(art)["frontend"] == "torchscript"
    dyn = _convert(tmp_path, "mlp", "fp16", inputs=["x:2x64"], dynamic=(DynamicAxis("x", 0, 1, 64),))
    assert _details(dyn)["flexible_shapes"] == {"x": [[1, 64], [64, 64]]}
    assert dyn.manifest["outputs"][0]["shape"] == [2, 10]


def test_metadata_and_embedded_manifest(tmp_path):
    art = _convert(tmp_path, "mlp", "fp16", target_options={"coreml": {
        "description": "digit scorer", "author": "Edge Team", "license": "Apache-2.0", "version": "1.4.0",
        "compute_units": "cpu-and-ne"}})
    meta = analysis.read_spec(art.path).description.metadata
    assert (meta.shortDescription, meta.author, meta.license, meta.versionString) == ("digit scorer", "Edge Team", "Apache-2.0", "1.4.0")
    embedded = json.loads(meta.userDefined[analysis.MANIFEST_KEY])
    assert embedded["name"] == "mlp" and embedded["status"] == "passed" and embedded["precision"] == "fp16"
    assert embedded["source"]["path"] == models.FACTORIES["mlp"]
    assert "sha256" not in embedded and embedded["target_details"]["compute_units"] == "cpu-and-ne"
    assert meta.userDefined[analysis.COMPUTE_UNITS_KEY] == "cpu-and-ne"


@pytest.mark.skipif(not ON_LINUX, reason="on macOS the runtime predicts")
def test_runtime_describes_but_will_not_run_on_linux(tmp_path):
    art = _convert(tmp_path, "two_input_dict", "fp16")
    runtime = CoreMLRuntime().load(art.path)
    assert [(s.name, s.shape) for s in runtime.inputs()] == [("image", (1, 3, 16, 16)), ("features", (1, 6))]
    assert [s.name for s in runtime.outputs()] == ["logits", "embedding"]
    with pytest.raises(DeviceError, match="Core ML executes only on macOS"):
        runtime.run([np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 6), np.float32)])


def test_settings_refuse_what_the_os_cannot_run():
    build = CoreMLSettings.build
    with pytest.raises(UsageError, match="int4-weight-only needs --deployment-target iOS18 or later"):
        build({"deployment_target": "iOS17"}, "int4-weight-only")
    with pytest.raises(UsageError, match="needs --deployment-target macOS14 or later"):
        build({"deployment_target": "macOS13"}, "int8")
    with pytest.raises(UsageError, match="drop --format mlmodel"):
        build({"format": "mlmodel"}, "int4-weight-only")
    with pytest.raises(UsageError, match="with --prune needs --deployment-target iOS18"):
        build({"deployment_target": "iOS16", "prune": 0.5}, "palettize4")
    with pytest.raises(UsageError, match="pass --format mlmodel for older devices"):
        build({"deployment_target": "iOS14"}, "fp16")
    assert build({"deployment_target": "ios17"}, "palettize4").deployment_target == "iOS17"
    assert build({"format": "mlmodel"}, "fp16").deployment_target == "iOS13"


# --- the command line, as a user sees it -------------------------------------------------------------


@pytest.mark.skipif(not ON_LINUX, reason="checks the Linux behaviour; macOS runs Core ML instead")
def test_cli_table_says_passed_on_linux_and_strict_fails_only_the_unverified(tmp_path, capsys):
    args = ["convert", "--model", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "coreml", "-o", str(tmp_path), "--name", "mlp"]
    assert main(args + ["--strict"]) == 0  # verified by the reference interpreter: --strict has nothing to refuse
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("coreml"))
    assert "fp16" in row and "passed" in row and "mlp_fp16.mlpackage" in row
    assert f"coreml [fp16]: verified by {mil.NAME} (Core ML executes only on macOS)" in captured.out
    path = str(tmp_path / "mlp_fp16.mlpackage")

    assert main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "format: ML Program (.mlpackage)" in text and "deployment target: iOS15 / macOS12" in text
    assert f"execution: {mil.NAME} (Core ML executes only on macOS)" in text and "embedded manifest: yes" in text
    assert "linear" in text and "manifest: precision fp16, io float, status passed" in text

    legacy = args + ["--format", "mlmodel", "--strict", "--json", "--overwrite"]
    assert main(legacy) == EXIT_VERIFY_FAILED
    result = json.loads(capsys.readouterr().out)["artifacts"][0]
    reason = MLMODEL_REASON.replace("neuralNetworkClassifier", "neuralNetwork")
    assert result["status"] == "unverified" and result["parity"]["reasons"] == [reason]
    assert os.path.isfile(result["path"])  # kept, marked unverified


def test_cli_rejects_int4_before_ios18_before_loading(tmp_path, capsys):
    code = main(["convert", "--model", "no.such:model", "-i", "x:1x64", "-t", "coreml", "--quantize", "int4-weight-only",
                 "--deployment-target", "iOS17", "-o", str(tmp_path)])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "error: --quantize int4-weight-only needs --deployment-target iOS18 or later (iOS18 / macOS15); got iOS17"
    )


def test_cli_names_the_op_coremltools_cannot_convert(tmp_path, capsys):
    code = main(["convert", "--model", "tests.targets.test_coreml:erfinv_net", "-i", "x:1x8", "-t", "coreml",
                 "--quantize", "none", "-o", str(tmp_path)])
    assert code == EXIT_CONVERSION
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: coremltools cannot convert op aten.erfinv at odd (ErfinvActivation)")
    # both frontends were tried automatically: the advice no longer sends the user to the other one
    assert "tried: torch.export: erfinv unsupported; torchscript: " in err
    assert "a later --deployment-target (e.g. iOS18), or rewrite that layer" in err and "--coreml-frontend" not in err
    # nothing half-written: only the converter's log, which the error line names
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".edgekit-probe")] == ["model.coreml.log"]
    assert "model.coreml.log" in err


def test_cli_labels_must_match_the_output(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    code = main(["convert", "--model", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32", "-t", "coreml",
                 "--labels", str(labels), "-o", str(tmp_path / "out")])
    assert code == EXIT_USAGE
    assert "--labels has 3 labels but the model's first output output_0 has shape 1x10" in capsys.readouterr().err


def test_every_precision_is_covered():
    assert set(CoreMLTarget.precisions) == {"none", "fp16", "int8", "int8-weight-only", "int4-weight-only",
                                            "palettize8", "palettize6", "palettize4"}
    assert CoreMLTarget.default_precision == "fp16"
