"""Core ML static int8 (W8A8) is the run's shared PT2E program (targets/coreml/int8.py): the same
activation scales as the other targets, verified on Linux by the MIL reference interpreter.

The residual CNN is the pattern that coremltools.optimize.torch's LinearQuantizer got wrong on
EfficientNet-Lite0 (quantize scales after residual adds that did not cover their outputs): here the
scale after every add must be the one the ONNX artifact of the same run carries.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.errors import UsageError
from edgekit.targets.coreml import mil
from edgekit.targets.coreml.settings import CoreMLSettings

pytestmark = pytest.mark.slow

CHEAP_INT8 = dict(quantize="int8", int8_calibration="minmax", mixed_precision="off")


class _Block(nn.Module):
    """Depthwise conv, BatchNorm, ReLU6, pointwise conv, and a residual add (MobileNet / EfficientNet)."""

    def __init__(self, channels: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.bn = nn.BatchNorm2d(channels)
        self.pw = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x + self.pw(nn.functional.relu6(self.bn(self.dw(x))))


def residual_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6(), _Block(16), _Block(16), _Block(16),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for block in model[2:5]:  # trained-looking BatchNorm statistics: the residual branches differ in range
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def residual_int8(tmp_path_factory):
    """One run, two targets, one shared int8 decision: {target: Artifact}."""
    work = tmp_path_factory.mktemp("coreml-int8")
    np.savez(work / "cal.npz", x=np.random.default_rng(3).standard_normal((32, 1, 3, 32, 32)).astype(np.float32))
    arts = edgekit.convert(None, model_factory="tests.targets.test_coreml_int8:residual_cnn", target=["coreml", "onnx"],
                           inputs=["x:1x3x32x32"], calibration=str(work / "cal.npz"), output_dir=str(work / "out"),
                           name="residual", **CHEAP_INT8)
    return {a.target: a for a in arts}


def _coreml_add_scales(path: str) -> list[float]:
    """The scale that quantizes each residual add's output, in the units of the float model.

    coremltools' distributive_quantized_binary_op_scale_normalization pass rewrites
    dequantize(x, s_x) + dequantize(y, s_y) -> quantize(s_z) as dequantize(x, s_x/s_y) +
    dequantize(y, 1) -> quantize(s_z/s_y) (equivalent, one scale fewer): multiply back by s_y, read from
    the quantize op that made y."""
    fn = mil.read_program(path).main
    producer = {op.outputs[0].name: op for op in fn.ops if op.outputs}
    consts = {op.outputs[0].name: op.inputs["val"][0].value for op in fn.ops if op.type == "const"}

    def scale(op):
        arg = op.inputs["scale"][0]
        return float(np.asarray(consts[arg] if isinstance(arg, str) else arg.value))

    scales = []
    for op in fn.ops:
        add = producer.get(op.inputs["input"][0]) if op.type == "quantize" else None
        if add is None or add.type != "add":
            continue
        y = producer[add.inputs["y"][0]]
        assert y.type == "dequantize"
        scales.append(scale(op) * scale(producer[y.inputs["input"][0]]) / scale(y))
    return scales


def _onnx_add_scales(path: str) -> list[float]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    init.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    producer = {out: n for n in graph.node for out in n.output}
    return [float(init[n.input[1]]) for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] in producer and producer[n.input[0]].op_type == "Add"]


def test_residual_cnn_int8_carries_the_shared_scales_and_passes(residual_int8):
    coreml, onnx_art = residual_int8["coreml"], residual_int8["onnx"]
    assert coreml.status == "passed", coreml.parity
    details = coreml.manifest["target_details"]
    assert details["verification"]["by"] == mil.NAME
    assert coreml.parity["cosine"] >= 0.999 and coreml.parity["real_inputs"]
    # the same program as ONNX's: interpreter and onnxruntime agree on its accuracy
    assert abs(coreml.parity["cosine"] - onnx_art.parity["cosine"]) < 2e-3
    scales = _coreml_add_scales(coreml.path)
    assert len(scales) == 3  # every residual add is requantized
    # fp16 program: its scales are float16 constants
    np.testing.assert_allclose(sorted(scales), sorted(_onnx_add_scales(onnx_art.path)), rtol=2e-3)
    quant = details["quantization"]
    assert quant["tool"].startswith("edgekit.quantize (PT2E, shared with tflite/executorch/onnx)")
    assert quant["observer"] == "minmax" and quant["coverage"]["weight_share"] == 1.0
    assert details["deployment_target"] == "iOS17"
    assert details["ops"]["constexpr_affine_dequantize"] == 8  # every conv and the linear: int8 weights
    assert details["ops"]["quantize"] >= 10 and details["ops"]["add"] == 3


def test_int8_mlp_passes_with_int8_weights(tmp_path):
    calib = tmp_path / "mlp.npz"
    np.savez(calib, x=np.random.default_rng(1).standard_normal((40, 1, 64)).astype(np.float32))
    art = edgekit.convert(None, model_factory="tests.models:mlp", target="coreml", inputs=["x:1x64"], calibration=str(calib),
                          calibration_samples=32, output_dir=str(tmp_path), name="mlp", **CHEAP_INT8)[0]
    assert art.status == "passed" and art.parity["real_inputs"] and 0.99 < art.parity["cosine"] < 0.99999
    details = art.manifest["target_details"]
    assert details["ops"]["constexpr_affine_dequantize"] == 3 and details["ops"]["linear"] == 3
    assert details["quantization"]["calibration_samples"] + details["quantization"]["heldout_samples"] == 32
    assert art.manifest["calibration"]["samples"] == 32
    # --prune: the same int8 weights magnitude-pruned on the Core ML side, jointly (sparse + int8, iOS18)
    pruned = edgekit.convert(None, model_factory="tests.models:mlp", target="coreml", inputs=["x:1x64"], calibration=str(calib),
                             calibration_samples=32, output_dir=str(tmp_path / "pruned"), name="mlp",
                             target_options={"coreml": {"prune": 0.5}}, **CHEAP_INT8)[0]
    details = pruned.manifest["target_details"]
    assert details["deployment_target"] == "iOS18" and details["quantization"]["pruning"].startswith("magnitude, 0.5 sparsity")
    assert details["weights"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert details["ops"]["quantize"] >= 3  # activations still int8
    # executed and judged by the interpreter: half of a random MLP's weights zeroed costs accuracy (0.876 measured)
    assert pruned.manifest["target_details"]["verification"]["by"] == mil.NAME and pruned.parity["cosine"] > 0.8
    assert details["weights"]["by_kind"]["quantized+sparse"] == 24576  # the weights of >= 2048 elements: sparse int8


def test_int8_transformer_quantizes_every_linear(tmp_path):
    """nn.TransformerEncoder was opaque to coremltools.optimize.torch (1.5% of the weights int8, refused);
    the shared PT2E program reaches every linear inside it."""
    from tests import models

    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(2).standard_normal((24, 1, 16, 32)).astype(np.float32))
    art = edgekit.convert(None, model_factory=models.FACTORIES["tiny_transformer"], target="coreml",
                          inputs=models.INPUT_SPECS["tiny_transformer"], calibration=str(calib),
                          output_dir=str(tmp_path), **CHEAP_INT8)[0]
    assert art.status == "passed" and art.parity["cosine"] > 0.99, art.parity
    details = art.manifest["target_details"]
    assert details["ops"]["linear"] == details["ops"]["constexpr_affine_dequantize"] == 9
    assert details["quantization"]["coverage"]["weight_share"] == 1.0
    assert details["quantization"]["kept_float"]["layer_norm"]["count"] == 4  # said, not hidden


class _ScaledScores(nn.Module):
    """A linear, a float scalar multiplier (attention's ``* 1/sqrt(d)``), a linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 8)

    def forward(self, x):
        return self.fc2(self.fc1(x) * 0.25)


def scaled_scores():
    torch.manual_seed(0)
    return _ScaledScores().eval()


def test_int8_scalar_multiplier_keeps_its_sign(tmp_path):
    """PT2E quantizes the scalar 0.25 to a rank-0 int8 constant q=127 with zero point -128; coremltools
    folded its dequantize in int8 arithmetic (127 - -128 wraps to -1), so Core ML multiplied by -scale:
    cosine 0.70 against PyTorch (GPT decoder step: 0.90), ONNX of the same program 0.999. edgekit folds
    it in PyTorch before ct.convert (targets/coreml/int8.py, fold_scalar_dequantize)."""
    calib = tmp_path / "cal.npz"
    np.savez(calib, x=np.random.default_rng(1).standard_normal((24, 1, 32)).astype(np.float32))
    arts = edgekit.convert(None, model_factory="tests.targets.test_coreml_int8:scaled_scores", target=["coreml", "onnx"],
                           inputs=["x:1x32"], calibration=str(calib), output_dir=str(tmp_path), **CHEAP_INT8)
    coreml, onnx_art = (next(a for a in arts if a.target == t) for t in ("coreml", "onnx"))
    assert coreml.status == "passed" and coreml.parity["cosine"] > 0.998, coreml.parity
    assert abs(coreml.parity["cosine"] - onnx_art.parity["cosine"]) < 2e-3
    assert coreml.manifest["target_details"]["quantization"]["scalar_constants_folded"] == 1
    fn = mil.read_program(coreml.path).main
    consts = {op.outputs[0].name: op.inputs["val"][0].value for op in fn.ops if op.type == "const"}
    (mul,) = [op for op in fn.ops if op.type == "mul"]
    factor = [np.asarray(consts[arg]) for arg in (mul.inputs["x"][0], mul.inputs["y"][0]) if arg in consts]
    assert len(factor) == 1 and factor[0].size == 1  # the dequantized scalar: 255 * (0.25 / 255), in fp16
    assert float(factor[0]) == pytest.approx(0.25, rel=1e-3)


def test_int8_refuses_the_torchscript_frontend():
    with pytest.raises(UsageError, match="--quantize int8 with --coreml-frontend torchscript"):
        CoreMLSettings.build({"frontend": "torchscript"}, "int8")
