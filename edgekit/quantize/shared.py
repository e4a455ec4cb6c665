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
    """The shared QuantizedProgram of ``model`` (an edgekit.export.ExportedModel) for these samples,
    with automatic mixed precision (edgekit.quantize.auto_mixed) when ``options`` carries a
    tolerance and ``--mixed-precision`` is not off."""
    from edgekit.quantize.auto_mixed import parse_mixed_precision
    from edgekit.quantize.pt2e import quantize_program

    config = config or config_from_options(options)
    budget = parse_mixed_precision(getattr(options, "mixed_precision", "auto")) if options is not None else None
    key = (id(model), id(calibration), len(calibration), config, budget)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    exported = model.exported_program()
    result = quantize_program(exported, calibration, config, reporter=reporter)
    exported = result.source or exported  # LSTMs packed before annotation: the search needs the same graph
    if options is not None:
        result = _mixed(model, exported, result, calibration, options, budget, reporter)
    try:
        ref = weakref.ref(model, lambda _: _CACHE.pop(key, None))
    except TypeError:  # an object without weak references: cache nothing rather than leak
        return result
    _CACHE[key] = (ref, result)
    return result


def checked_int8_program(model, calibration: Sequence[tuple], options, what: str):
    """The shared program for one target's ``--quantize int8``: refuses a run without calibration samples,
    and a program whose int8 share is too small to be called int8 (``what`` names the target in the error)."""
    from edgekit.errors import UsageError
    from edgekit.quantize.coverage import require_quantized

    if not calibration:
        raise UsageError("--quantize int8 needs calibration samples (--calibration PATH, or 'random')")
    shared = int8_program(model, calibration, options)
    require_quantized(shared.coverage, what)
    return shared


def _mixed(model, exported, program, calibration, options, budget, reporter):
    """The program with automatic mixed precision applied, judged as verification judges."""
    from edgekit.quantize.auto_mixed import apply_mixed_precision

    judge = judging(model, options)
    try:
        return apply_mixed_precision(exported, program, calibration, judge["tolerance"], budget,
                                     real_inputs=judge["real_inputs"], names=judge["names"], roles=judge["roles"],
                                     say=reporter.info if reporter is not None else None,
                                     warn=reporter.warn if reporter is not None else None)
    except Exception as exc:  # noqa: BLE001 - the search is an improvement: plain int8 still ships, and is verified
        from edgekit.errors import first_line

        why = f"{type(exc).__name__}: {first_line(exc)}"
        if reporter is not None:
            reporter.warn(f"mixed precision search failed ({why}); shipping plain int8")
        program.mixed = {"searched": False, "met": None, "error": why}
        return program


def judging(model, options) -> dict[str, Any]:
    """What the mixed-precision judge (edgekit.quantize.mixed.score) needs to judge as verification
    does: the int8 tolerance, whether the samples are real, the output names and their roles."""
    return {"tolerance": options.tolerance_for("int8"),
            "real_inputs": getattr(options, "calibration", None) != "random",
            "names": list(getattr(model, "output_names", []) or []) or None,
            "roles": _roles(model, options)}


def _roles(model, options):
    """Declared output roles and state outputs, as verification sees them."""
    from edgekit.verify import describe_state
    from edgekit.verify_roles import StatePair, roles_from

    pairs = [StatePair(p["output"], p["input"], p["detected_by"]) for p in describe_state(model, options)]
    return roles_from(options, pairs)
