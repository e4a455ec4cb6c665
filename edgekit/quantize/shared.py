"""One int8 decision per model and run, handed to every target that consumes it.

``edgekit convert -t tflite -t executorch -t onnx --quantize int8`` calibrates and searches once:
the first target asks, the others get the same QuantizedProgram (same scales, same choice).
"""
from __future__ import annotations

import weakref
from typing import Any, Sequence

from edgekit.quantize.config import QuantConfig

_CACHE: dict[tuple, Any] = {}


def config_from_options(options) -> QuantConfig:
    """The QuantConfig a ConvertOptions asks for (``--int8-calibration``; auto by default)."""
    return QuantConfig(observer=getattr(options, "int8_calibration", None) or "auto", seed=getattr(options, "seed", 0))


def int8_program(model, calibration: Sequence[tuple], options=None, reporter=None, config: QuantConfig | None = None):
    """The shared QuantizedProgram of ``model`` (an edgekit.export.ExportedModel) for these samples."""
    from edgekit.quantize.pt2e import quantize_program

    config = config or config_from_options(options)
    key = (id(model), id(calibration), len(calibration), config)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    result = quantize_program(model.exported_program(), calibration, config, reporter=reporter)
    try:
        ref = weakref.ref(model, lambda _: _CACHE.pop(key, None))
    except TypeError:  # an object without weak references: cache nothing rather than leak
        return result
    _CACHE[key] = (ref, result)
    return result
