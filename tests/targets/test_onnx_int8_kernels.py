"""onnxruntime runs edgekit's static int8 ONNX as integer kernels, not as float ops on weights it
dequantizes at every call (issue 11: the int8 artifacts were 1.27x-1.47x slower than onnxruntime's
own quantize_static ones). Two small models trained on the digits, each with the op patterns that
kept onnxruntime's QDQ fusion from firing on EfficientNet-Lite0 and MiniLM: TF-"same" explicit
padding and a residual add (a CNN), and a linear whose output stays float because it feeds a
residual add into a LayerNorm (a transformer's feed-forward sublayer). The count of fused kernels
is the manifest's ``onnxruntime_cpu_kernels``, as a user reads it.
"""
from __future__ import annotations

import collections

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgekit
from edgekit import manifest

pytestmark = pytest.mark.slow


class SamePadResidualCNN(nn.Module):
    """An inverted-residual (MBConv) block as EfficientNet-Lite and MobileNetV2 build it: convs
    padded by F.pad (TF "same" padding), ReLU6, a linear bottleneck read by both the block's first
    conv and its residual add; on 1x8x8 digits."""

    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(1, 16, 3, stride=2), nn.BatchNorm2d(16)
        self.bottleneck, self.bottleneck_bn = nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8)
        self.expand, self.expand_bn = nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16)
        self.dw, self.dw_bn = nn.Conv2d(16, 16, 3, groups=16), nn.BatchNorm2d(16)
        self.project, self.project_bn = nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.bottleneck_bn(self.bottleneck(F.relu6(self.stem_bn(self.stem(F.pad(x, (0, 1, 0, 1)))))))
        h = F.relu6(self.expand_bn(self.expand(x)))
        h = self.project_bn(self.project(F.relu6(self.dw_bn(self.dw(F.pad(h, (1, 1, 1, 1)))))))
        return self.head((x + h).mean(dim=(2, 3)))


class TokenFFN(nn.Module):
    """Each digit as 8 tokens (its rows) through a transformer feed-forward sublayer:
    LayerNorm(x + fc2(gelu(fc1(x)))), mean-pooled to 10 classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        t = self.embed(x.flatten(1, 2))  # 1x1x8x8 -> 1x8 tokens x 32
        return self.head(self.norm(t + self.fc2(F.gelu(self.fc1(t)))).mean(dim=1))


@pytest.fixture(scope="module")
def kernels(digits, tmp_path_factory):
    """{model name: (Artifact, its manifest's quantization block)}, each trained for 6 epochs."""
    from edgekit.demo import train_classifier

    data = digits["data"]
    out = {}
    for cls in (SamePadResidualCNN, TokenFFN):
        torch.manual_seed(0)
        model = train_classifier(cls(), data.x_train, data.y_train, epochs=6, batch_size=64, lr=3e-3)
        art = edgekit.convert(model, target="onnx", quantize="int8", inputs=["x:1x1x8x8"],
                              calibration=digits["calibration"], eval_data=digits["eval"], int8_calibration="histogram",
                              output_dir=str(tmp_path_factory.mktemp(cls.__name__)))[0]
        out[cls.__name__] = (art, manifest.read(art.path)["target_details"]["quantization"])
    return out


def test_same_padding_and_residual_add_run_as_integer_kernels(kernels):
    art, block = kernels["SamePadResidualCNN"]
    assert art.status == "passed" and art.parity["top1"] >= 0.98, art.parity.get("reasons")
    ran = block["onnxruntime_cpu_kernels"]
    # all 5 convolutions, the residual add and the head fused; nothing float on dequantized weights
    assert ran["float_on_dequantized_weights"] == 0, ran["float_on_dequantized_weights_nodes"]
    assert ran["integer"] == {"QGemm": 1, "QLinearAdd": 1, "QLinearConv": 5}
    ops = collections.Counter(edgekit.inspect(art.path)["ops"])
    assert ops["Pad"] == 0 and ops["Conv"] == 5
    # both F.pad folded into their convs; biases int32 (5 convs + the head)
    assert block["qdq_rewrites"]["pads_folded_into_convs"] == 2
    assert block["qdq_rewrites"]["biases_int32"] == 6


def test_linear_with_float_output_runs_as_an_integer_kernel(kernels):
    """fc2 feeds the residual add into the LayerNorm, so its output is not quantized: onnxruntime
    fuses it (QGemm with a float output) only with an int32 bias."""
    art, block = kernels["TokenFFN"]
    assert art.status == "passed" and art.parity["top1"] >= 0.98, art.parity.get("reasons")
    ran = block["onnxruntime_cpu_kernels"]
    assert ran["integer"].get("QGemm") == 4  # embed, fc1, fc2, head
    assert ran["float_on_dequantized_weights"] == 0 and ran["float_on_dequantized_weights_nodes"] == []
    assert block["qdq_rewrites"]["biases_int32"] == 4
