"""The ONNX target's options (``target_options["onnx"]``: --opset, --onnx-reduce-range), typed and
checked before any model is loaded. The newest opset is asked of the installed torch and onnx only
when an opset is given. Imports no ML framework at module level."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UsageError
from edgekit.targets.base import TargetSettings, number, switch
from edgekit.targets.onnx import export as onnx_export

# onnxruntime writes QDQ with int32 biases and per-channel axes, which opset 13 introduced; below it
# the quantizer emits a graph onnxruntime itself refuses to load
QDQ_MIN_OPSET = 13


@dataclass(frozen=True)
class ONNXSettings(TargetSettings):
    opset: int = number(onnx_export.DEFAULT_OPSET, "--opset")
    #: 7-bit weights for int8 / int8-dynamic, for x86 AVX2 without VNNI only (--onnx-reduce-range);
    #: full 8-bit range by default: exact on ARM and VNNI (targets/onnx/quantize.py weight_range)
    reduce_range: bool = switch(False, "reduce_range (--onnx-reduce-range sets it true)")

    def validate(self) -> None:
        if self.opset != onnx_export.DEFAULT_OPSET:  # the newest opset is torch's and onnx's to say
            top = onnx_export.max_opset()
            if not onnx_export.MIN_OPSET <= self.opset <= top:
                raise UsageError(f"--opset {self.opset}: the onnx target writes opsets {onnx_export.MIN_OPSET} to {top}")

    def check_precision(self, precision: str) -> None:
        if precision == "int8" and self.opset < QDQ_MIN_OPSET:
            raise UsageError(f"--quantize int8 on the onnx target needs --opset {QDQ_MIN_OPSET} or newer (got {self.opset})")
