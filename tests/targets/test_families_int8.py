"""Static int8 of recurrent models (issues 11 + 13): an LSTM or GRU is packed before annotation so that its
input projections are int8 linears; the recurrence stays a float32 batched matmul, so a layer whose
recurrent weights are most of the model's is refused with advice that says so.

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
from tests.targets.families_common import SPEC as MODELS
from tests.targets.families_common import converted, seeded

SPEC = "tests.targets.test_families_int8"
# minmax only and no mixed-precision search: one calibration, so the tests stay cheap
CHEAP_INT8 = dict(quantize="int8", calibration="random", int8_calibration="minmax", mixed_precision="off")


@pytest.mark.slow
def test_bilstm_static_int8_packs_input_projections(tmp_path):
    """The 2-layer BiLSTM (8 -> 16) + linear head over 4 steps."""
    art = converted(tmp_path, "bilstm", "executorch", ["x:1x4x8"], 0.99, **CHEAP_INT8)
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
def test_bigru_static_int8_packs_input_projections(tmp_path):
    """2-layer BiGRU 32 -> 16 over 4 steps: GRU gates (r, z, n) packed, b_hn kept inside r * (...)."""
    art = converted(tmp_path, "bigru_on_features", "executorch", ["x:1x4x32"], 0.99, **CHEAP_INT8)
    coverage = art.manifest["quantization"]["coverage"]
    # int8: input projections 32x48 x 2 directions x 2 layers + head 32x5 + b_hn (2x1x16 per layer, the constant
    # operand of r * (W_hn h + b_hn), quantized with the multiply); float: recurrent 16x48 x 2 directions x 2 layers
    assert coverage["weights_by_dtype"] == {"int8": 6368, "float32": 3072}
    quantization = art.manifest["target_details"]["quantization"]
    assert quantization["recurrent"]["route"].startswith("packed GRU")
    assert quantization["recurrent"]["packed_gru_layers"] == 1
    assert quantization["kept_float"]["recurrent_matmul"]["count"] == 6  # 3 steps after the zero state, 2 layers


@pytest.mark.slow
def test_bigru_with_mostly_recurrent_weights_refused_saying_where(tmp_path):
    with pytest.raises(ConversionError) as info:
        edgekit.convert(model_factory=f"{MODELS}:bigru", target="executorch", inputs=["x:1x4x8"],
                        output_dir=str(tmp_path), **CHEAP_INT8)
    message = str(info.value)
    # int8: input projections 8x48 x 2 + head 32x5 = 928; float: recurrent 16x48 x 2 = 1,536
    assert "only 37.7% of weights and 3/6 compute ops quantized (float: bmm, bmm_1, bmm_2)" in message
    assert "recurrent matmuls (state x W_hh, one per time step) of packed recurrent layers, GRU (1,536" in message
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
    return seeded(SamePaddedStem)


@pytest.mark.slow
def test_padded_conv_stays_float_and_the_program_runs(tmp_path):
    art = converted(tmp_path, f"{SPEC}:same_padded_stem", "executorch", ["x:1x3x32x32"], 0.99, quantize="int8-dynamic")
    kept = art.manifest["target_details"]["quantization"]["float_padded_convs"]
    assert kept["count"] == 1 and kept["layers"] == ["stem (Conv2d)"]
    delegation = art.manifest["target_details"]["delegation"]
    # the float conv is delegated too; only the spatial mean (not keepdim) is left to a portable kernel
    assert [p["op"] for p in delegation["portable_ops"]] == ["aten.mean.dim"] and delegation["delegated_nodes"] == 10
