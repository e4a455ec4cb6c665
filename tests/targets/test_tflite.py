"""The TFLite path end to end: real litert-torch conversions, real ai-edge-quantizer, real LiteRT runs."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

import edgekit
from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import EXIT_CONVERSION, EXIT_MISSING_DEPENDENCY, EXIT_OUTPUT, EXIT_VERIFY_FAILED, MissingDependencyError
from edgekit.options import PRECISIONS
from edgekit.targets.tflite import TFLiteTarget
from tests import models
from tests.targets.digits_int8 import assert_int8_keeps_digits_accuracy

pytestmark = pytest.mark.slow

MODELS = list(models.FACTORIES)
TFLITE_PRECISIONS = TFLiteTarget.precisions  # none, int8, fp16, int8-dynamic, int8-weight-only, int4-weight-only


def _convert(model_files, calibration_files, tmp_path, name, precision, **kw):
    return edgekit.convert(
        model_files[name], target="tflite", quantize=precision, arch=models.FACTORIES[name],
        inputs=models.INPUT_SPECS[name], calibration=calibration_files[name], output_dir=str(tmp_path), **kw,
    )[0]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("precision", TFLITE_PRECISIONS)
def test_every_model_every_precision_verifies(model_files, calibration_files, tmp_path, name, precision):
    # Random-init classifiers have near-tied logits, so one flipped argmax in 24 samples says nothing
    # about the artifact: gate these on cosine; top-1 is gated on the trained digits model below.
    art = _convert(model_files, calibration_files, tmp_path, name, precision, tolerance="top1=0")
    tolerance = PRECISIONS[precision].tolerance
    assert art.status == "passed", art.parity["reasons"]
    assert art.parity["cosine"] >= tolerance.cosine
    assert art.parity["real_inputs"]
    # samples that calibrated int8 are never the ones that verify it
    assert ("held back" in art.parity["data"]) == PRECISIONS[precision].needs_calibration
    doc = manifest.read(art.path)
    manifest.validate(doc)
    assert doc["precision"] == precision and doc["target"] == "tflite"
    assert doc["sha256"] == manifest.file_digest(art.path)[1] and doc["size_bytes"] == os.path.getsize(art.path)
    assert [i["model_input"] for i in doc["inputs"]] == [s.split(":")[0] for s in models.INPUT_SPECS[name]]
    assert all(i["dtype"] == "float32" for i in doc["inputs"])  # float I/O by default, every precision
    assert doc["versions"]["litert-torch"] and doc["versions"]["torch"].startswith("2.")
    assert doc["flops"] > 0


def test_sizes_shrink_as_documented(tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((60, 256)).astype(np.float32))
    sizes = {}
    for p in ("none", "fp16", "int8", "int8-dynamic", "int4-weight-only"):
        art = edgekit.convert(None, model_factory="tests.models:wide_mlp", inputs=["x:1x256"], quantize=p,
                              calibration=str(calib), tolerance="top1=0", output_dir=str(tmp_path))[0]
        # the published file (manifest embedded after verification) must load and match the eager model:
        # ai-edge-quantizer stores large weights after the flatbuffer, which a careless rewrite drops
        runtime = TFLiteTarget().runtime().load(art.path)
        x = np.load(calib)[:1]
        out = runtime.run([x])[0]
        expected = models.wide_mlp()(torch.from_numpy(x)).detach().numpy()
        assert np.dot(out.ravel(), expected.ravel()) / (np.linalg.norm(out) * np.linalg.norm(expected)) > 0.99
        sizes[p] = art.size_bytes
    assert sizes["int8"] <= 0.35 * sizes["none"]
    assert sizes["int8-dynamic"] <= 0.35 * sizes["none"]
    assert sizes["fp16"] <= 0.6 * sizes["none"]
    assert sizes["int4-weight-only"] < sizes["int8-dynamic"]


def test_real_int8_keeps_accuracy_on_digits(digits, tmp_path):
    """A real trained classifier on real held-out images: top-1 agreement and test accuracy."""
    arts = assert_int8_keeps_digits_accuracy(digits, TFLiteTarget(), tmp_path)
    assert arts["int8"].size_bytes <= 0.35 * arts["none"].size_bytes


def test_int8_keeps_the_route_that_agrees_better_on_held_back_samples(model_files, calibration_files, tmp_path):
    art = _convert(model_files, calibration_files, tmp_path, "small_cnn", "int8", tolerance="top1=0")
    detail = manifest.read(art.path)["target_details"]["int8"]
    routes = detail["routes"]
    assert detail["asked"] == "auto" and set(routes) == {"pt2e", "aeq"}
    # both calibrated on the same part, both scored on the same held-back calibration samples
    assert routes["pt2e"]["heldout_inputs"] == routes["aeq"]["heldout_inputs"] == detail["heldout_samples"] > 0
    key = lambda r: (r["top1_confident"], r["cosine"])  # noqa: E731
    assert key(routes[detail["route"]]) == max(key(r) for r in routes.values())
    assert routes[detail["route"]]["cosine"] > 0.99 and "held-back" in detail["route_why"]
    assert [c["name"] for c in detail["candidates"]] == ["histogram", "histogram+bias-correction", "minmax", "percentile"]


@pytest.mark.parametrize("route", ["pt2e", "aeq"])
def test_int8_route_can_be_forced(model_files, calibration_files, tmp_path, capsys, route):
    code, out, err = _cli(capsys, "convert", model_files["small_cnn"], "--arch", models.FACTORIES["small_cnn"],
                          "-i", "x:1x3x32x32", "--quantize", "int8", "--calibration", calibration_files["small_cnn"],
                          "--tflite-int8-route", route, "--tolerance", "top1=0", "-o", str(tmp_path), "-q")
    assert code == 0, err
    details = manifest.read(tmp_path / "small_cnn_int8.tflite")["target_details"]["int8"]
    assert details["route"] == route and details["route_why"] == "asked for" and "routes" not in details


def test_unknown_int8_route_lists_the_valid_ones(model_files, calibration_files, tmp_path):
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="--tflite-int8-route 'fast': choose one of auto, pt2e, aeq"):
        edgekit.convert(model_files["small_cnn"], arch=models.FACTORIES["small_cnn"], inputs=["x:1x3x32x32"],
                        target="tflite", quantize="int8", calibration=calibration_files["small_cnn"],
                        target_options={"tflite": {"int8_route": "fast"}}, output_dir=str(tmp_path))


def test_int8_io_records_scale_and_zero_point(model_files, calibration_files, tmp_path):
    art = _convert(model_files, calibration_files, tmp_path, "two_input_dict", "int8", io="int8", tolerance="top1=0")
    assert art.status == "passed" and art.path.endswith("two_input_dict_int8_io-int8.tflite")
    doc = manifest.read(art.path)
    for tensor in doc["inputs"] + doc["outputs"]:
        assert tensor["dtype"] == "int8"
        assert tensor["quantization"]["scale"] > 0 and -128 <= tensor["quantization"]["zero_point"] <= 127
    assert {o["name"] for o in doc["outputs"]} == {"logits", "embedding"}


def test_preprocessing_and_labels_travel_inside_the_tflite(model_files, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class_{i}" for i in range(10)) + "\n")
    art = edgekit.convert(model_files["small_cnn"], arch=models.FACTORIES["small_cnn"], inputs=["x:1x3x32x32"],
                          output_dir=str(tmp_path), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                          color_layout="BGR", labels=tuple(labels.read_text().split()))[0]
    embedded = edgekit.inspect(art.path)["metadata"]
    assert embedded["labels"][3] == "class_3" and len(embedded["labels"]) == 10
    assert embedded["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert embedded["preprocessing"]["color_layout"] == "BGR"
    assert embedded["inputs"][0]["model_input"] == "x" and embedded["precision"] == "none"
    doc = manifest.read(art.path)
    assert doc["labels"] == embedded["labels"] and doc["preprocessing"] == embedded["preprocessing"]
    assert embedded["parity"]["status"] == "passed" and embedded["sha256"] is None  # the file cannot hold its own digest
    assert doc["sha256"] == manifest.file_digest(art.path)[1]
    assert art.status == "passed"  # the metadata does not disturb the model


def test_dict_outputs_are_matched_by_name(model_files, calibration_files, tmp_path):
    art = _convert(model_files, calibration_files, tmp_path, "two_input_dict", "none")
    names = [o["name"] for o in art.parity["outputs"]]
    assert names == ["logits", "embedding"]  # the model's order, whatever order the flatbuffer uses
    assert all(o["cosine"] > 0.99999 for o in art.parity["outputs"])


@pytest.mark.parametrize("form", ["torchscript", "exported_program", "pickle", "factory"])
def test_every_model_file_form_converts(tmp_path, form):
    cnn = models.small_cnn()
    x = torch.randn(1, 3, 32, 32)
    kwargs = {"inputs": ["x:1x3x32x32"]}
    path = tmp_path / f"m_{form}.pt"
    if form == "torchscript":
        torch.jit.save(torch.jit.trace(cnn, x), path)
    elif form == "exported_program":
        torch.export.save(torch.export.export(cnn, (x,)), path)
        kwargs = {}  # inputs come from the program itself
    elif form == "pickle":
        torch.save(cnn, path)
        kwargs["trust_pickle"] = True
    else:
        path, kwargs["model_factory"] = None, "tests.models:small_cnn"
    art = edgekit.convert(path, target="tflite", output_dir=str(tmp_path / "out"), name=form, **kwargs)[0]
    assert art.status == "passed" and art.parity["cosine"] >= 0.99999
    assert manifest.read(art.path)["source"]["form"] == form


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_and_table(model_files, calibration_files, tmp_path, capsys):
    base = [model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-o", str(tmp_path)]
    code, out, err = _cli(capsys, "convert", *base, "--quantize", "int8-dynamic", "--json")
    assert code == 0
    doc = json.loads(out)  # stdout is exactly one JSON object: converter noise is kept off it
    (art,) = doc["artifacts"]
    assert set(art) >= {"target", "precision", "path", "manifest", "size_bytes", "status", "parity"}
    assert art["status"] == "passed" and art["precision"] == "int8-dynamic"
    code, out, err = _cli(capsys, "convert", *base, "--quantize", "fp16", "-q")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["target", "precision", "size", "cosine", "top-1", "inputs", "quantized", "status", "artifact"]
    assert lines[2].split()[:2] == ["tflite", "fp16"] and "passed" in lines[2] and "100% w, 3/3 ops" in lines[2]
    assert "verified on seeded random inputs" in out  # no --eval-data or --calibration: flagged


def noisy_mlp():
    print("Loaded pretrained weights for mlp")  # what many model packages print while loading
    return models.mlp()


def test_json_stdout_stays_clean_when_model_code_prints(tmp_path, capfd):
    code = main(["convert", "--model", "tests.targets.test_tflite:noisy_mlp", "-i", "x:1x64", "--json",
                 "-o", str(tmp_path)])
    out, err = capfd.readouterr()
    assert code == 0
    assert json.loads(out)["artifacts"][0]["status"] == "passed"
    assert "Loaded pretrained weights for mlp" in err


def test_failed_verification_keeps_artifact_and_exits_1(model_files, calibration_files, tmp_path, capsys):
    code, out, err = _cli(
        capsys, "convert", model_files["small_cnn"], "--arch", models.FACTORIES["small_cnn"], "-i", "x:1x3x32x32",
        "--quantize", "int8", "--calibration", calibration_files["small_cnn"], "--tolerance", "cosine=0.9999999",
        "-o", str(tmp_path),
    )
    assert code == EXIT_VERIFY_FAILED
    assert "FAILED" in out and "cosine" in err and "< 0.9999999" in err
    doc = manifest.read(tmp_path / "small_cnn_int8.tflite")
    assert doc["status"] == "failed" and doc["parity"]["reasons"]


def test_int8_without_calibration_is_a_usage_error(model_files, tmp_path, capsys):
    code, out, err = _cli(capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64",
                          "--quantize", "int8", "-o", str(tmp_path))
    assert code == 2 and "needs --calibration PATH" in err and "Traceback" not in err


def test_unsupported_op_is_named_with_its_module(tmp_path, capsys):
    code, out, err = _cli(capsys, "convert", "--model", "tests.targets.test_tflite:erfinv_net", "-i", "x:1x8",
                          "-o", str(tmp_path))
    assert code == EXIT_CONVERSION
    assert "error: litert-torch cannot convert op aten.erfinv at gate (Gate)" in err
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == ["model.tflite.log"] and "model.tflite.log" in err  # only the log, nothing half-written


def test_dynamic_axes_are_refused_before_any_work(model_files, tmp_path, capsys):
    code, out, err = _cli(capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:2x64",
                          "--dynamic", "x:0:1-8", "-o", str(tmp_path))
    assert code == 2
    assert err.strip().splitlines() == [
        "error: the tflite target does not support --dynamic (litert-torch 0.10 cannot lower dynamic dimensions); "
        "convert one fixed --input shape per size you need"
    ]


def test_unwritable_output_folder(model_files, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out, err = _cli(capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64",
                          "-o", str(blocker / "out"))
    assert code == EXIT_OUTPUT and err.startswith("error: cannot write to output folder")


def test_existing_artifact_is_not_overwritten(model_files, tmp_path, capsys):
    target = tmp_path / "mlp.tflite"
    target.write_bytes(b"a good file")
    args = ["convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-o", str(tmp_path)]
    code, out, err = _cli(capsys, *args)
    assert code == EXIT_OUTPUT and "exists; pass --overwrite" in err
    assert target.read_bytes() == b"a good file"
    assert sorted(os.listdir(tmp_path)) == ["mlp.tflite"]
    code, out, err = _cli(capsys, *args, "--overwrite")
    assert code == 0 and target.stat().st_size > 1000


def test_missing_extra_names_the_install_line(monkeypatch, model_files, tmp_path):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # find_spec now reports it missing
    assert TFLiteTarget.missing() == ["litert_torch"]
    with pytest.raises(MissingDependencyError) as err:
        edgekit.convert(model_files["mlp"], arch=models.FACTORIES["mlp"], inputs=["x:1x64"], output_dir=str(tmp_path))
    assert err.value.exit_code == EXIT_MISSING_DEPENDENCY
    assert str(err.value) == "the tflite target needs litert_torch, which is not installed (pip install 'edgekit[tflite]')"


def test_inspect_reports_ops_and_quantized_tensors(model_files, calibration_files, tmp_path, capsys):
    art = _convert(model_files, calibration_files, tmp_path, "small_cnn", "int8")
    info = edgekit.inspect(art.path)
    assert info["ops"]["CONV_2D"] == 2 and info["ops"]["QUANTIZE"] >= 1
    assert any(t["granularity"] == "per-channel" and t["dtype"] == "int8" for t in info["quantized_tensors"])
    code, out, err = _cli(capsys, "inspect", art.path)
    assert code == 0 and "CONV_2D" in out and "manifest: precision int8, io float, status passed" in out


class Gate(torch.nn.Module):
    def forward(self, x):
        return torch.special.erfinv(torch.tanh(x))


class ErfinvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.fc(x))


def erfinv_net():
    return ErfinvNet()
