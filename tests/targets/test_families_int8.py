"""Static int8 of recurrent models (issues 11 + 13): an LSTM is packed before annotation so that its input
projections are int8 linears; a GRU (not packed) is refused with advice that names it.

int8-dynamic on ExecuTorch for a CNN with TensorFlow-style "same" padding (EfficientNet-Lite's
``ZeroPad2d((0, 1, 0, 1))`` before a stride-2 conv): dynamically quantized, executorch 1.5.1's XNNPACK
built a program that failed at its first run ("Propagating input shapes failed with code:
xnn_status_invalid_parameter"); those convs now stay float32 and the rest is int8."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgekit
from edgekit.errors import ConversionError

SPEC = "tests.targets.test_families_int8"
# minmax only and no mixed-precision search: one calibration, so the tests stay cheap
CHEAP_INT8 = dict(quantize="int8", calibration="random", int8_calibration="minmax", mixed_precision="off")


class BiGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        return self.fc(self.gru(x)[0])


def bigru():
    torch.manual_seed(0)
    return BiGRU().eval()


@pytest.mark.slow
def test_bilstm_static_int8_packs_input_projections(tmp_path):
    """tests/targets/test_families.py's 2-layer BiLSTM (8 -> 16) + linear head over 4 steps."""
    art = edgekit.convert(model_factory="tests.targets.test_families:bilstm", target="executorch",
                          inputs=["x:1x4x8"], output_dir=str(tmp_path), **CHEAP_INT8)[0]
    assert art.status == "passed", art.error or art.parity.get("reasons")
    assert art.parity["cosine"] >= 0.99
    coverage = art.manifest["quantization"]["coverage"]
    # int8: 4 input projections (8x64 x2, 32x64 x2) + head 32x5; float: the recurrent weights (2 layers x 2 x 16x64)
    assert coverage["weights_by_dtype"] == {"int8": 5280, "float32": 4096}
    assert coverage["weight_share"] == 0.5631
    quantization = art.manifest["target_details"]["quantization"]
    assert quantization["recurrent"]["packed_lstm_layers"] == 1
    # zero initial state: no recurrent matmul at the first step, so 3 per layer
    assert quantization["kept_float"]["recurrent_matmul"]["count"] == 6
    assert "bmm" not in quantization["kept_float"]


@pytest.mark.slow
def test_bigru_static_int8_refused_naming_the_recurrent_op(tmp_path):
    with pytest.raises(ConversionError) as info:
        edgekit.convert(model_factory=f"{SPEC}:bigru", target="executorch", inputs=["x:1x4x8"],
                        output_dir=str(tmp_path), **CHEAP_INT8)
    message = str(info.value)
    # GRU weights: (8x48 + 16x48 + 2x48) x 2 directions = 2,496 float; the head's 160 int8
    assert "only 6.0% of weights and 1/2 compute ops quantized" in message
    assert "float weights sit in recurrent ops, aten.gru (2,496 weight elements)" in message
    assert "--quantize fp16" in message and "traceable as conv/linear" not in message


class SamePaddedStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.norm = nn.BatchNorm2d(32)
        self.body = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.norm(self.stem(self.pad(x))))
        return self.head(torch.relu(self.body(x)).mean((2, 3)))


def same_padded_stem():
    torch.manual_seed(0)
    return SamePaddedStem().eval()


@pytest.mark.slow
def test_padded_conv_stays_float_and_the_program_runs(tmp_path):
    art = edgekit.convert(model_factory=f"{SPEC}:same_padded_stem", target="executorch", quantize="int8-dynamic",
                          inputs=["x:1x3x32x32"], output_dir=str(tmp_path))[0]
    assert art.status == "passed", art.error or art.parity.get("reasons")
    assert art.parity["cosine"] >= 0.99
    kept = art.manifest["target_details"]["quantization"]["float_padded_convs"]
    assert kept["count"] == 1 and kept["layers"] == ["stem (Conv2d)"]
    delegation = art.manifest["target_details"]["delegation"]
    # the float conv is delegated too; only the spatial mean (not keepdim) is left to a portable kernel
    assert [p["op"] for p in delegation["portable_ops"]] == ["aten.mean.dim"] and delegation["delegated_nodes"] == 10
