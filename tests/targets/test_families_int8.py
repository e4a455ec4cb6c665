"""int8-dynamic on ExecuTorch for a CNN with TensorFlow-style "same" padding (EfficientNet-Lite's
``ZeroPad2d((0, 1, 0, 1))`` before a stride-2 conv): dynamically quantized, executorch 1.5.1's XNNPACK
built a program that failed at its first run ("Propagating input shapes failed with code:
xnn_status_invalid_parameter"); those convs now stay float32 and the rest is int8."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgekit

SPEC = "tests.targets.test_families_int8"


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
