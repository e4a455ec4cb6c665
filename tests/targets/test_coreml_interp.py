"""Core ML artifacts verified on Linux by edgekit's MIL reference interpreter: real coremltools
conversions, real packages on disk, executed op by op.

fp32 programs must match eager PyTorch to about 1e-5; fp16 programs must differ from their fp32
execution by fp16 rounding (and still pass); every compressed precision must pass with its weights
really compressed; a package with one wrong weight must fail; an op the interpreter lacks, and the
legacy .mlmodel format, stay unverified with the reason.
"""
from __future__ import annotations

import os
import platform
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.targets.coreml import analysis, mil
from edgekit.targets.coreml.reference import MILReferenceRuntime
from tests import models
from tests.targets.corrupting import corrupt_after_convert

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML itself verifies (tests/targets/test_coreml.py)"),
]


class MaskedEncoder(nn.Module):
    """One transformer encoder block over 12 tokens of width 32, with a padding mask input (1 = token).

    The mask reaches attention as an additive float mask (-1e4 on padding), the form BERT-style models
    export. ``boolean=True`` passes PyTorch's boolean key padding mask instead (True = padding)."""

    def __init__(self, boolean: bool = False):
        super().__init__()
        self.boolean = boolean
        self.block = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, 6)

    def forward(self, x, mask):
        padding = mask < 0.5 if self.boolean else (1.0 - mask) * -1e4
        hidden = self.block(x, src_key_padding_mask=padding)
        weights = mask.unsqueeze(-1)
        return self.head((hidden * weights).sum(1) / weights.sum(1))


class SmallLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class WideCNN(nn.Module):
    """Conv and linear weights of >= 2048 elements, so that every compression really applies."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU6(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Hardswish(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, 40)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def masked_encoder():
    torch.manual_seed(0)
    return MaskedEncoder().eval()


def boolean_masked_encoder():
    torch.manual_seed(0)
    return MaskedEncoder(boolean=True).eval()


def small_lstm():
    torch.manual_seed(0)
    return SmallLSTM().eval()


def wide_cnn():
    torch.manual_seed(0)
    return WideCNN().eval()


MASK_SAMPLES = 4


@pytest.fixture(scope="session")
def eval_files(tmp_path_factory):
    """Real-looking evaluation data per model (the padding masks keep 6..12 tokens)."""
    folder = tmp_path_factory.mktemp("coreml-interp-data")
    rng = np.random.default_rng(3)
    mask = np.zeros((MASK_SAMPLES, 1, 12), np.float32)
    for i, keep in enumerate((12, 9, 7, 6)):
        mask[i, 0, :keep] = 1.0
    files = {
        "encoder": dict(x=rng.standard_normal((MASK_SAMPLES, 1, 12, 32)).astype(np.float32), mask=mask),
        "lstm": dict(x=rng.standard_normal((6, 1, 5, 8)).astype(np.float32)),
        "cnn": dict(x=rng.standard_normal((6, 1, 3, 32, 32)).astype(np.float32)),
        "wide": dict(x=rng.standard_normal((24, 1, 3, 24, 24)).astype(np.float32)),
    }
    out = {}
    for name, arrays in files.items():
        path = folder / f"{name}.npz"
        np.savez(path, **arrays)
        out[name] = str(path)
    return out


def _convert(tmp_path, factory, inputs, precision, data, **kw):
    return edgekit.convert(
        None, model_factory=factory, target="coreml", quantize=precision, inputs=inputs, output_dir=str(tmp_path),
        eval_data=data, overwrite=True, **kw,
    )[0]


def _max_error_against_eager(path, module, data_path):
    """Largest |interpreter - eager PyTorch| over the samples, relative to the output's scale."""
    runtime = MILReferenceRuntime().load(path)
    data = np.load(data_path)
    names = [s.name for s in runtime.inputs()]
    worst = 0.0
    for i in range(len(data[names[0]])):
        sample = [data[n][i] for n in names]
        got = runtime.run(sample)[0].astype(np.float64)
        with torch.no_grad():
            want = module(*(torch.from_numpy(a) for a in sample)).double().numpy()
        worst = max(worst, float(np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))))
    return worst


@pytest.mark.parametrize("factory,inputs,data,options", [
    ("tests.models:small_cnn", ["x:1x3x32x32"], "cnn", {}),
    ("tests.targets.test_coreml_interp:masked_encoder", ["x:1x12x32", "mask:1x12"], "encoder", {}),
    ("tests.targets.test_coreml_interp:small_lstm", ["x:1x5x8"], "lstm", {"frontend": "torchscript"}),
])
def test_fp32_programs_match_eager_pytorch(tmp_path, eval_files, factory, inputs, data, options):
    extra = {"target_options": {"coreml": options}} if options else {}
    art = _convert(tmp_path, factory, inputs, "none", eval_files[data], **extra)
    assert art.status == "passed", art.parity
    assert art.parity["cosine"] > 0.9999999
    details = art.manifest["target_details"]
    assert details["verification"]["by"] == mil.NAME and details["verification"]["unverifiable_reason"] is None
    assert art.manifest["versions"]["runtime"].startswith(f"{mil.NAME} (NumPy ")
    assert _max_error_against_eager(art.path, _factory(factory), eval_files[data]) < 1e-5
    if data == "encoder":  # the mask really reaches attention: padding changes the answer
        assert details["ops"].get("select", 0) + details["ops"].get("add", 0) > 0
    if data == "lstm":
        assert details["ops"]["lstm"] == 1


def test_boolean_key_padding_mask_converts_right(tmp_path, eval_files):
    """Measured: coremltools 9's torch.export frontend drops zeros_like's dtype, so PyTorch's boolean key
    padding mask arrived in attention as a boolean "attend here" mask (real tokens -30000, padding 0):
    cosine 0.81, found by the interpreter. edgekit casts the mask before zeros_like
    (convert.cast_like_inputs), and the program now computes the model."""
    art = _convert(tmp_path, "tests.targets.test_coreml_interp:boolean_masked_encoder", ["x:1x12x32", "mask:1x12"],
                   "none", eval_files["encoder"])
    assert art.status == "passed", art.parity
    assert art.parity["cosine"] > 0.99999 and art.parity["outputs"][0]["max_abs"] < 1e-4


def test_like_ops_read_their_dtype_in_the_core_ml_graph():
    """The rewrite itself: zeros_like(bool, dtype=float32) reads a float32 cast; a same-dtype like is left."""
    import torch

    from edgekit.targets.coreml.convert import cast_like_inputs

    program = torch.export.export(boolean_masked_encoder(), (torch.randn(1, 12, 32), torch.ones(1, 12)), strict=False)
    program = program.run_decompositions({})
    likes = [n for n in program.graph.nodes if n.target is torch.ops.aten.zeros_like.default]
    assert [n.kwargs.get("dtype") for n in likes] == [torch.float32] and likes[0].args[0].meta["val"].dtype == torch.bool
    assert cast_like_inputs(program) == 1
    assert "dtype" not in likes[0].kwargs and likes[0].args[0].target is torch.ops.aten._to_copy.default
    assert likes[0].args[0].meta["val"].dtype == torch.float32
    assert cast_like_inputs(program) == 0  # idempotent


class TokenBag(nn.Module):
    """Token ids into a 30,000-row embedding: ids above 2048 are not exact in float16."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(30000, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        return self.head(self.embedding(ids).mean(1))


def token_bag():
    return TokenBag().eval()


def test_token_ids_stay_int32_in_ios16_programs(tmp_path):
    """int8-weight-only needs iOS16, where coremltools would take int64 ids as float16 (14405 -> 14408)."""
    ids = np.random.default_rng(0).integers(2049, 30000, size=(6, 1, 12)).astype(np.int64)
    data = tmp_path / "ids.npz"
    np.savez(data, ids=ids)
    art = _convert(tmp_path, "tests.targets.test_coreml_interp:token_bag", ["ids:1x12:int64"], "int8-weight-only", str(data))
    assert art.manifest["target_details"]["deployment_target"] == "iOS16"
    assert [(i["name"], i["dtype"]) for i in art.manifest["inputs"]] == [("ids", "int32")]
    assert art.status == "passed" and art.parity["cosine"] > 0.9999
    program = mil.read_program(art.path)
    assert [v.dtype for v in program.main.inputs] == ["int32"]
    assert not any(o.type == "cast" and o.outputs[0].dtype == "float16" for o in program.main.ops)


def _factory(spec):
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)()


def test_fp16_rounds_like_the_device_and_passes(tmp_path, eval_files):
    art = _convert(tmp_path, "tests.models:small_cnn", ["x:1x3x32x32"], None, eval_files["cnn"])
    assert art.precision == "fp16" and art.status == "passed"
    assert 0.999 < art.parity["cosine"] < 1.0  # within the fp16 tolerance
    error = _max_error_against_eager(art.path, models.small_cnn(), eval_files["cnn"])
    assert 1e-5 < error < 5e-3  # fp16 rounding shows: 10x more than an fp32 program's error


@pytest.fixture(scope="session")
def compressed(tmp_path_factory, eval_files):
    """The wide CNN at each compressed precision (one conversion each, shared)."""
    out = tmp_path_factory.mktemp("coreml-interp-compressed")
    arts = {}
    for precision, kw in (("int8-weight-only", {}), ("int4-weight-only", {}), ("palettize4", {}),
                          # pruning changes the model itself: judged against a cosine floor of its own
                          ("fp16", {"target_options": {"coreml": {"prune": 0.3}}, "tolerance": "cosine=0.95,top1=0.5"}),
                          ("int8", {"calibration": eval_files["wide"], "calibration_samples": 16})):
        key = precision if precision != "fp16" else "prune"
        arts[key] = _convert(out / key, "tests.targets.test_coreml_interp:wide_cnn", ["x:1x3x24x24"], precision,
                             None if precision == "int8" else eval_files["wide"], **kw)
    return arts


@pytest.mark.parametrize("key,constexpr,floor", [
    ("int8-weight-only", "constexpr_affine_dequantize", 0.999),
    ("int4-weight-only", "constexpr_blockwise_shift_scale", 0.97),
    ("palettize4", "constexpr_lut_to_dense", 0.97),
    ("prune", "constexpr_sparse_to_dense", 0.95),
    ("int8", "quantize", 0.97),
])
def test_compressed_precisions_are_decompressed_and_verified(compressed, key, constexpr, floor):
    art = compressed[key]
    details = art.manifest["target_details"]
    assert details["ops"].get(constexpr, 0) >= 1, details["ops"]
    assert details["weights"]["fraction_compressed"] > 0.5
    assert art.status == "passed", art.parity
    assert floor <= art.parity["cosine"] < 0.99999999, art.parity  # compression shows, and stays within the tolerance


def test_constexpr_weights_match_coremltools_own_decompression(compressed):
    """Each decompressed weight equals what coremltools' op definitions compute from the same file."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    checked = 0
    for key in ("int8-weight-only", "int4-weight-only", "palettize4", "prune"):
        path = compressed[key].path
        spec = analysis.read_spec(path)
        reference = load_program(spec, spec.specificationVersion, str(analysis.weights_dir(path)))
        ops = {op.outputs[0].name: op for op in reference.functions["main"].operations}
        interpreter = mil.Interpreter(mil.read_program(path, spec))
        for name, value in interpreter._constants.items():
            op = ops.get(name)
            if op is None or not op.op_type.startswith("constexpr_") or len(op.outputs) != 1:
                continue
            np.testing.assert_array_equal(value, np.asarray(op.materialized_val_inference()).astype(value.dtype))
            checked += 1
    assert checked >= 8


def _corrupt_largest_weight(package: str) -> str:
    """Negate the bytes of the largest float weight in weights/weight.bin, in place; return its name."""
    from edgekit.targets.coreml.mil.program import read_program

    program = read_program(package)
    consts = [(o.outputs[0].name, o.inputs["val"][0].value) for o in program.main.ops if o.type == "const"]
    name, value = max(((n, v) for n, v in consts if isinstance(v, np.ndarray) and v.dtype.kind == "f"), key=lambda nv: nv[1].size)
    weights = analysis.weights_dir(package) / "weight.bin"
    blob = weights.read_bytes()
    where = blob.find(value.tobytes())
    assert where > 0 and blob.count(value.tobytes()) == 1
    weights.write_bytes(blob[:where] + (-value).tobytes() + blob[where + value.nbytes:])
    return name


def test_a_wrong_weight_in_the_package_fails_verification(tmp_path, eval_files, monkeypatch, capsys):
    """The converter is made to write a package whose largest weight is negated: verification must fail."""
    from edgekit.targets.coreml.target import CoreMLTarget

    corrupted = corrupt_after_convert(monkeypatch, CoreMLTarget, _corrupt_largest_weight)
    from edgekit.cli import main

    code = main([
        "convert", "--model", "tests.models:small_cnn", "-i", "x:1x3x32x32", "-t", "coreml", "--quantize", "none",
        "--eval-data", eval_files["cnn"], "-o", str(tmp_path), "--name", "broken",
    ])
    out = capsys.readouterr()
    assert corrupted and code == 1
    row = next(line for line in out.out.splitlines() if line.startswith("coreml"))
    assert "FAILED" in row and "broken.mlpackage" in row
    assert "coreml [none]: output_0: cosine" in out.out
    doc = edgekit.manifest.read(str(tmp_path / "broken.mlpackage"))
    assert doc["status"] == "failed" and doc["parity"]["cosine"] < 0.99


def test_same_package_unbroken_passes_and_runtime_sees_the_corruption(tmp_path, eval_files):
    art = _convert(tmp_path / "good", "tests.models:small_cnn", ["x:1x3x32x32"], "none", eval_files["cnn"])
    assert art.status == "passed"
    broken = str(tmp_path / "broken.mlpackage")
    shutil.copytree(art.path, broken)
    _corrupt_largest_weight(broken)
    x = np.load(eval_files["cnn"])["x"][0]
    good_out = MILReferenceRuntime().load(art.path).run([x])[0]
    bad_out = MILReferenceRuntime().load(broken).run([x])[0]
    assert np.max(np.abs(good_out - bad_out)) > 1e-2


class Upsampler(nn.Module):
    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def upsampler():
    return Upsampler().eval()


def test_an_op_the_interpreter_lacks_leaves_the_artifact_unverified(tmp_path):
    art = edgekit.convert(None, model_factory="tests.targets.test_coreml_interp:upsampler", target="coreml",
                          inputs=["x:1x3x8x8"], output_dir=str(tmp_path), eval_samples=2)[0]
    assert art.status == "unverified"
    [reason] = art.parity["reasons"]
    assert reason.startswith("numerical parity not run: Core ML executes only on macOS, and edgekit's MIL reference "
                             "interpreter does not implement op upsample_bilinear")
    assert art.manifest["target_details"]["verification"]["by"] is None


def test_mlmodel_format_stays_unverified_with_the_reason(tmp_path):
    art = edgekit.convert(None, model_factory="tests.models:mlp", target="coreml", inputs=["x:1x64"],
                          output_dir=str(tmp_path), eval_samples=2, target_options={"coreml": {"format": "mlmodel"}})[0]
    assert art.status == "unverified"
    assert art.parity["reasons"] == [
        "numerical parity not run: Core ML executes only on macOS, and edgekit's MIL reference interpreter reads ML "
        "Programs (.mlpackage) only, not a neuralNetwork (.mlmodel)"
    ]


def test_image_input_is_fed_as_pixels(tmp_path, eval_files):
    """With --image-input the program sees 0..255 pixels and scales them itself; the interpreter feeds
    pixels exactly as Core ML would, so parity holds up to the 8-bit quantization of the image."""
    data = np.load(eval_files["cnn"])["x"]
    pixels = np.clip(np.round((data * 0.25 + 0.5) * 255), 0, 255) / 255  # on the pixel grid, so exact
    path = tmp_path / "images.npz"
    np.savez(path, x=((pixels - 0.5) / 0.25).astype(np.float32))
    art = edgekit.convert(None, model_factory="tests.models:small_cnn", target="coreml", quantize="none",
                          inputs=["x:1x3x32x32"], output_dir=str(tmp_path), eval_data=str(path),
                          mean=(0.5,), std=(0.25,), target_options={"coreml": {"image_input": True}})[0]
    assert art.manifest["target_details"]["image_input"]["name"] == "x"
    assert art.status == "passed" and art.parity["cosine"] > 0.99999
    assert os.path.isdir(art.path)
