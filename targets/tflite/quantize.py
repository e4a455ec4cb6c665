"""LiteRT quantization recipes for each edgekit precision, applied by ai-edge-quantizer to the
float .tflite that litert-torch writes.

Choices (and why):
- int8 (static, calibrated) does NOT go through ai-edge-quantizer: litert-torch's PT2E route
  (``pt2e_int8_module`` below, quantized in PyTorch before conversion) kept far more accuracy on every
  model we measured (benchmarks/int8_routes.py: e.g. cosine 0.9992 vs 0.952 on a two-input model,
  0.9999 vs 0.982 on a transformer encoder). It emits int8 I/O; io_types.to_float_io restores float
  I/O (edgekit's default) so app code does not change.
- int4-weight-only: channelwise int4, float compute. ai-edge-quantizer 0.10's policy allows blockwise
  int4 only with dynamic (integer) compute, not for weight-only, so blockwise is not used here.
- fp16: weights cast to float16 (FLOAT_CASTING), float32 compute where the delegate prefers it.
"""
from __future__ import annotations

from typing import Sequence

RECIPES = ("fp16", "int8-dynamic", "int8-weight-only", "int4-weight-only")  # applied after conversion
PT2E_PRECISIONS = ("int8",)  # applied in PyTorch before conversion


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


def quantize(float_model: bytes, precision: str, calibration: Sequence[dict] | None, signature: str) -> bytes:
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
    else:  # pragma: no cover - guarded by Target.precisions
        raise ValueError(precision)
    calibration_result = None
    if qt.need_calibration:
        calibration_result = qt.calibrate({signature: list(calibration or [])})
    return bytes(qt.quantize(calibration_result).quantized_model)
