"""LiteRT quantization recipes for each edgekit precision, applied by ai-edge-quantizer to the
float .tflite that litert-torch writes.

Choices (and why):
- int8 (static, calibrated): the shared PT2E decision of edgekit.quantize converted by litert-torch,
  or ai-edge-quantizer's static recipe on the float .tflite (``quantize(..., "int8")``), whichever
  agrees better with FP32 on held-back calibration samples (targets/tflite/int8.py). PT2E emits
  int8 I/O; io_types.to_float_io restores float I/O (edgekit's default) so app code does not change.
  ``pt2e_int8_module`` is litert-torch's own PT2E recipe (ReLU-only fusion), kept for
  benchmarks/int8_routes.py as the "before" of the shared layer.
- int4-weight-only: channelwise int4, float compute. ai-edge-quantizer 0.10's policy allows blockwise
  int4 only with dynamic (integer) compute, not for weight-only, so blockwise is not used here.
- fp16: weights cast to float16 (FLOAT_CASTING), float32 compute where the delegate prefers it.
"""
from __future__ import annotations

from typing import Sequence

PRECISIONS = ("int8", "fp16", "int8-dynamic", "int8-weight-only", "int4-weight-only")


def pt2e_int8_module(model, calibration: Sequence[tuple]):
    """The shared ExportedProgram, PT2E-quantized (per-channel symmetric int8) and calibrated.

    Returns (quantized GraphModule, the litert-torch QuantConfig to convert it with).
    """
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(model.exported_program().module(), quantizer)
    with torch.no_grad():
        for sample in calibration:
            prepared(*(torch.from_numpy(a) for a in sample))
    return convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def quantize(float_model: bytes, precision: str, calibration: Sequence[dict] | None, signature: str, io: str = "float") -> bytes:
    """Return the quantized flatbuffer for ``precision`` (one of PRECISIONS)."""
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
    elif precision == "int8":  # static, calibrated; float I/O unless int8 I/O is asked for
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        if io == "float":
            for op in (ops.INPUT, ops.OUTPUT):
                qt.update_quantization_recipe(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    elif precision == "int4-weight-only":
        qt.add_weight_only_config(".*", ops.ALL_SUPPORTED, 4, granularity=qtyping.QuantGranularity.CHANNELWISE)
    else:  # pragma: no cover - guarded by Target.precisions
        raise ValueError(precision)
    calibration_result = None
    if qt.need_calibration:
        calibration_result = qt.calibrate({signature: list(calibration or [])})
    return bytes(qt.quantize(calibration_result).quantized_model)
