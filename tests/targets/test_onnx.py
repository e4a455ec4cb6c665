"""The ONNX path end to end: real torch.onnx exports, onnxruntime's real quantizers, onnxruntime runs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import edgekit
from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import EXIT_CONVERSION, EXIT_USAGE, MissingDependencyError
from edgekit.options import PRECISIONS
from edgekit.targets.onnx import ONNXTarget
from edgekit.targets.onnx.runtime import ONNXRuntime
from tests import models
from tests.targets.digits_int8 import assert_int8_keeps_digits_accuracy

pytestmark = pytest.mark.slow

MODELS = list(models.FACTORIES)
TESTED_PRECISIONS = ("none", "fp16", "int8-dynamic", "int8")
# float32 on every model, each precision on several; int8 on the toy transformer is left out for time
# (calibrating its 85 activation tensors takes the longest here); its int8-dynamic is kept because it
# exercises shared weights (below)
MATRIX = [(name, "none") for name in MODELS] + [
    ("small_cnn", "fp16"), ("mlp", "fp16"), ("two_input_dict", "fp16"),
    ("small_cnn", "int8-dynamic"), ("mlp", "int8-dynamic"), ("tiny_transformer", "int8-dynamic"), ("two_input_dict", "int8-dynamic"),
    ("small_cnn", "int8"), ("mlp", "int8"), ("two_input_dict", "int8"),
]


@pytest.fixture(scope="module")
def onnx_convert(model_files, calibration_files, tmp_path_factory):
    """convert(name, precision, **options) -> Artifact, each distinct conversion done once per module."""
    cache = {}
    root = tmp_path_factory.mktemp("onnx")

    def run(name, precision, **kw):
        key = (name, precision, json.dumps(kw, sort_keys=True, default=str))
        if key not in cache:
            # Random-init classifiers have near-tied logits: gate on cosine here; top-1 is gated on
            # the trained digits model below.
            cache[key] = edgekit.convert(
                model_files[name], target="onnx", quantize=precision, arch=models.FACTORIES[name],
                inputs=models.INPUT_SPECS[name], calibration=calibration_files[name],
                output_dir=str(root / str(len(cache))), tolerance="top1=0", **kw,
            )[0]
        return cache[key]

    return run


def _initializers(path):
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_precision_of_the_target_is_tested():
    assert set(ONNXTarget.precisions) == set(TESTED_PRECISIONS) == {p for _, p in MATRIX}
    assert {n for n, p in MATRIX if p == "none"} == set(MODELS)


@pytest.mark.parametrize("name,precision", MATRIX)
def test_models_and_precisions_verify(onnx_convert, name, precision):
    art = onnx_convert(name, precision)
    tolerance = PRECISIONS[precision].tolerance
    assert art.status == "passed", art.parity["reasons"]
    assert art.parity["cosine"] >= tolerance.cosine
    assert art.parity["real_inputs"] and art.parity["samples"] >= 20
    assert ("held back" in art.parity["data"]) == PRECISIONS[precision].needs_calibration
    doc = manifest.read(art.path)
    manifest.validate(doc)
    assert doc["target"] == "onnx" and doc["format"] == "onnx" and doc["precision"] == precision
    assert doc["sha256"] == manifest.file_digest(art.path)[1] and doc["size_bytes"] == os.path.getsize(art.path)
    assert [i["name"] for i in doc["inputs"]] == [s.split(":")[0] for s in models.INPUT_SPECS[name]]
    assert all(i["dtype"] == "float32" for i in doc["inputs"] + doc["outputs"])  # fp16 keeps float32 I/O too
    details = doc["target_details"]
    assert details["opset"] == details["opset_requested"] == 18
    assert details["exporter"] == "torch.onnx dynamo exporter, from the shared torch.export program"
    assert doc["versions"]["onnxruntime"] and doc["versions"]["runtime"].startswith("onnxruntime ")
    if precision == "int8-dynamic":
        assert details["preprocess"].startswith("onnxruntime quant_pre_process")
    if precision == "int8":  # the shared PT2E decision (edgekit.quantize) exported as QDQ
        assert details["quantization"]["format"] == "QDQ" and details["quantization"]["tool"].startswith("edgekit.quantize")
    if precision in ("int8", "int8-dynamic"):
        assert details["quantized_tensors"] >= 1 and "full 8-bit range" in details["quantization"]["weights"]
        weight_range = details["quantization"]["weight_range"]
        assert weight_range["bits"] == 8 and weight_range["chosen_for"] == "ARM (phones, boards) and x86 with VNNI"
    # the file carries its own manifest (less size and digest), readable without the sidecar
    embedded = edgekit.inspect(art.path)["metadata"]
    assert embedded["precision"] == precision and embedded["status"] == "passed" and "sha256" not in embedded


def test_dict_outputs_keep_their_names(onnx_convert):
    art = onnx_convert("two_input_dict", "none")
    assert [o["name"] for o in art.parity["outputs"]] == ["logits", "embedding"]
    runtime = ONNXRuntime().load(art.path)
    assert [s.name for s in runtime.outputs()] == ["logits", "embedding"]
    assert [s.shape for s in runtime.outputs()] == [(1, 5), (1, 4)]


def test_sizes_shrink_as_documented(tmp_path):
    arts = {
        p: edgekit.convert(model_factory="tests.models:wide_mlp", target="onnx", quantize=p, inputs=["x:1x256"],
                           calibration="random", output_dir=str(tmp_path), tolerance="top1=0")[0]
        for p in TESTED_PRECISIONS
    }
    assert all(a.status == "passed" for a in arts.values()), {p: a.parity.get("reasons") for p, a in arts.items()}
    sizes = {p: a.size_bytes for p, a in arts.items()}
    assert sizes["int8"] <= 0.35 * sizes["none"]
    assert sizes["int8-dynamic"] <= 0.35 * sizes["none"]
    assert sizes["fp16"] <= 0.55 * sizes["none"]


def test_int8_is_static_qdq_per_channel_with_full_range_weights(onnx_convert):
    art = onnx_convert("small_cnn", "int8")
    info = edgekit.inspect(art.path)
    assert info["ops"]["QuantizeLinear"] >= 3 and info["ops"]["DequantizeLinear"] >= 6
    assert info["ops"]["Conv"] == 2  # BatchNorm folded away
    weights = info["quantized_tensors"]
    assert len(weights) == 3 and all(t["dtype"] == "int8" and t["granularity"] == "per-channel" for t in weights)
    # full 8-bit range by default (exact on ARM and VNNI): per-channel symmetric, so each channel reaches 127
    arrays = _initializers(art.path)
    assert max(int(np.abs(arrays[t["name"]].astype(np.int32)).max()) for t in weights) == 127
    assert info["summary"]["opset"] == 18


def test_reduce_range_flag_gives_7_bit_weights_for_avx2_hosts(onnx_convert, model_files, tmp_path, capsys):
    full = onnx_convert("mlp", "int8-dynamic")
    code, out, err = _cli(
        capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "onnx",
        "--quantize", "int8-dynamic", "--onnx-reduce-range", "--tolerance", "cosine=0.9", "-o", str(tmp_path), "--json",
    )
    assert code == 0, err
    (art,) = json.loads(out)["artifacts"]
    block = manifest.read(art["path"])["target_details"]["quantization"]
    assert "7-bit range" in block["weights"]
    assert block["weight_range"]["bits"] == 7 and block["weight_range"]["chosen_for"].startswith("x86 AVX2 without VNNI")

    def widest(path):
        arrays = _initializers(path)
        return max(int(np.abs(arrays[t["name"]].astype(np.int32)).max()) for t in edgekit.inspect(path)["quantized_tensors"])

    assert widest(full.path) == 127 and widest(art["path"]) <= 64


def test_weight_range_flags_contradicting_is_a_usage_error(model_files, tmp_path, capsys):
    code, _out, err = _cli(
        capsys, "convert", model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "onnx",
        "--quantize", "int8-dynamic", "--onnx-reduce-range", "--onnx-full-range", "-o", str(tmp_path),
    )
    assert code == 2 and "--onnx-reduce-range and --onnx-full-range contradict each other" in err


def test_shared_weights_survive_dynamic_quantization(onnx_convert):
    # nn.TransformerEncoder deep-copies its layer, so both layers start with equal weights, which the
    # exporter stores once: onnxruntime's dynamic quantizer transposed such a weight once per reader
    art = onnx_convert("tiny_transformer", "int8-dynamic")
    details = manifest.read(art.path)["target_details"]
    assert details["quantization"]["shared_weights_copied"] >= 2
    assert art.parity["cosine"] >= 0.999  # 0.73 without the copies


class TiedEmbedding(torch.nn.Module):
    """Token ids in, vocabulary scores out through the embedding matrix itself (a tied LM head)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 16)
        self.proj = torch.nn.Linear(16, 16)

    def forward(self, ids):
        return torch.nn.functional.linear(torch.tanh(self.proj(self.emb(ids).mean(1))), self.emb.weight)


def tied_embedding():
    torch.manual_seed(0)
    return TiedEmbedding().eval()


@pytest.mark.parametrize("precision", ["int8", "int8-dynamic"])
def test_tied_embedding_quantizes_and_runs(tmp_path, precision):
    # one tensor read by a Gather and a MatMul: quantize_static gave both one per-channel scale and
    # onnxruntime refused to run the result ("scale must be 1D tensor with size 12")
    art = edgekit.convert(model_factory="tests.targets.test_onnx:tied_embedding", target="onnx", quantize=precision,
                          inputs=["ids:1x12:int64"], calibration="random", output_dir=str(tmp_path), tolerance="top1=0")[0]
    assert art.status == "passed" and art.parity["cosine"] >= 0.999
    quantization = manifest.read(art.path)["target_details"]["quantization"]
    if precision == "int8-dynamic":  # onnxruntime's quantizer: the shared tensor is copied per reader
        assert quantization["shared_weights_copied"] >= 1
    else:  # the shared PT2E graph is exported with its own int8 constants, nothing to copy
        assert quantization["tool"].startswith("edgekit.quantize") and quantization["coverage"]["ops_total"] >= 1
    assert manifest.read(art.path)["inputs"][0]["dtype"] == "int64"


def test_real_int8_keeps_accuracy_on_digits(digits, tmp_path):
    """A trained classifier on real held-out images: top-1 agreement and test accuracy."""
    assert_int8_keeps_digits_accuracy(digits, ONNXTarget(), tmp_path)


@pytest.mark.parametrize("name,dynamic", [
    ("small_cnn", ["x:0:1-16"]),
    ("two_input_dict", ["image:0", "features:0"]),
])
def test_dynamic_batch_runs_at_two_sizes(onnx_convert, name, dynamic):
    from edgekit.options import DynamicAxis

    art = onnx_convert(name, "none", dynamic=tuple(DynamicAxis.parse(d) for d in dynamic))
    assert art.status == "passed"
    doc = manifest.read(art.path)
    assert all(i["shape"][0] == -1 for i in doc["inputs"]) and all(o["shape"][0] == -1 for o in doc["outputs"])
    first = dynamic[0].split(":")[0]
    assert doc["target_details"]["dynamic_dims"][first] == {"0": f"{first}_0"}
    runtime = ONNXRuntime().load(art.path)
    module = getattr(models, name)()
    specs = [s.split(":") for s in models.INPUT_SPECS[name]]
    for batch in (1, 5):
        rng = np.random.default_rng(batch)
        feeds = [rng.standard_normal((batch, *map(int, shape.split("x")[1:]))).astype(np.float32) for _, shape in specs]
        got = runtime.run(feeds)
        with torch.no_grad():
            want = [t.numpy() for t in torch.utils._pytree.tree_leaves(module(*map(torch.from_numpy, feeds)))]
        assert [g.shape[0] for g in got] == [batch] * len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-4)


def test_opset_is_honoured_on_both_exporters(onnx_convert):
    old = onnx_convert("two_input_dict", "int8-dynamic", target_options={"onnx": {"opset": 13}})
    new = onnx_convert("small_cnn", "none", target_options={"onnx": {"opset": 21}})
    for art, opset, exporter in ((old, 13, "TorchScript exporter"), (new, 21, "dynamo exporter")):
        assert art.status == "passed", art.parity["reasons"]
        details = manifest.read(art.path)["target_details"]
        assert details["opset"] == details["opset_requested"] == opset and exporter in details["exporter"]
        assert edgekit.inspect(art.path)["summary"]["opset"] == opset


def test_cli_opset_flag_json_and_table(model_files, tmp_path, capsys):
    base = [model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "onnx", "-o", str(tmp_path)]
    code, out, err = _cli(capsys, "convert", *base, "--opset", "17", "--json")
    assert code == 0, err
    (art,) = json.loads(out)["artifacts"]  # stdout is exactly one JSON object
    assert art["status"] == "passed" and art["path"].endswith("mlp.onnx")
    assert manifest.read(art["path"])["target_details"]["opset"] == 17
    code, out, err = _cli(capsys, "convert", *base, "--quantize", "fp16", "-q")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["target", "precision", "size"]
    assert lines[2].split()[:2] == ["onnx", "fp16"] and "passed" in lines[2]
    code, out, err = _cli(capsys, "inspect", art["path"])
    assert code == 0 and "opset: 17" in out and "Gemm" in out and "embedded manifest: precision none, status passed" in out


def test_bad_opset_requests_are_usage_errors(model_files, tmp_path, capsys):
    base = [model_files["mlp"], "--arch", models.FACTORIES["mlp"], "-i", "x:1x64", "-t", "onnx", "-o", str(tmp_path)]
    code, out, err = _cli(capsys, "convert", *base, "--opset", "99")
    assert code == EXIT_USAGE and "error: --opset 99: the onnx target writes opsets 7 to 23" in err
    code, out, err = _cli(capsys, "convert", *base, "--opset", "11", "--quantize", "int8", "--calibration", "random")
    assert code == EXIT_USAGE and "error: --quantize int8 on the onnx target needs --opset 13 or newer (got 11)" in err
    assert "Traceback" not in err and os.listdir(tmp_path) == []


def test_op_missing_from_an_old_opset_is_named(model_files, tmp_path, capsys):
    code, out, err = _cli(
        capsys, "convert", model_files["tiny_transformer"], "--arch", models.FACTORIES["tiny_transformer"],
        "-i", "x:1x16x32", "-t", "onnx", "--opset", "13", "-o", str(tmp_path),
    )
    assert code == EXIT_CONVERSION
    assert "'aten::scaled_dot_product_attention' to ONNX opset version 13 is not supported" in err
    # one error line, no traceback on the console (the log beside the output keeps the converter's own)
    assert "Traceback" not in err and os.listdir(tmp_path) == ["tiny_transformer.onnx.log"]


def test_missing_onnxscript_names_the_install_line(monkeypatch, model_files, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # find_spec now reports it missing
    with pytest.raises(MissingDependencyError) as err:
        edgekit.convert(model_files["mlp"], target="onnx", arch=models.FACTORIES["mlp"], inputs=["x:1x64"],
                        output_dir=str(tmp_path))
    assert str(err.value) == "the onnx target needs onnxscript, which is not installed (pip install 'edgekit[onnx]')"
