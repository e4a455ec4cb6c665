"""LiteRT quantization recipes for each edgekit precision, applied by ai-edge-quantizer to the
float .tflite that litert-torch writes.

Choices (and why):
- int8: static per-channel int8 weights and int8 activations from calibration (MIN_MAX). With
  ``io="float"`` the INPUT/OUTPUT tensors stay float, so the quantize/dequantize happen inside the
  model and app code does not change; ``io="int8"`` keeps the quantizer's integer I/O (NPUs, Edge TPU).
- int4-weight-only: channelwise int4, float compute. ai-edge-quantizer 0.10's policy allows blockwise
  int4 only with dynamic (integer) compute, not for weight-only, so blockwise is not used here.
- fp16: weights cast to float16 (FLOAT_CASTING), float32 compute where the delegate prefers it.
"""
from __future__ import annotations

from typing import Sequence

RECIPES = ("fp16", "int8-dynamic", "int8", "int8-weight-only", "int4-weight-only")


def quantize(float_model: bytes, precision: str, io: str, calibration: Sequence[dict] | None, signature: str) -> bytes:
    """Return the quantized flatbuffer for ``precision`` (which must be in RECIPES)."""
    from ai_edge_quantizer import quantizer, recipe, qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName
    qt = quantizer.Quantizer(float_model)
    if precision == "fp16":
        qt.add_weight_only_config(".*", ops.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    elif precision == "int8-dynamic":
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    elif precision == "int8-weight-only":
        qt.load_quantization_recipe(recipe.weight_only_wi8_afp32())
    elif precision == "int4-weight-only":
        qt.add_weight_only_config(".*", ops.ALL_SUPPORTED, 4, granularity=qtyping.QuantGranularity.CHANNELWISE)
    elif precision == "int8":
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        if io == "float":
            for op in (ops.INPUT, ops.OUTPUT):
                qt.update_quantization_recipe(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    else:  # pragma: no cover - guarded by Target.precisions
        raise ValueError(precision)
    calibration_result = None
    if qt.need_calibration:
        calibration_result = qt.calibrate({signature: list(calibration or [])})
    return bytes(qt.quantize(calibration_result).quantized_model)
