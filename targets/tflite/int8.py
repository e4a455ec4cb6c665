"""Static int8 for TFLite: the shared PT2E decision (edgekit.quantize) converted by litert-torch,
or ai-edge-quantizer's static recipe on the float .tflite, whichever agrees better with the float
model on held-back calibration samples.

Judging: both routes are calibrated on the same calibration part and scored on the same held-back
part (never on samples they were calibrated on) by what verification enforces: top-1 agreement on
confident inputs, then cosine. The PT2E route's scores come from the shared
search (its int8 graph simulated in PyTorch, the graph litert-torch converts); ai-edge-quantizer's
from its .tflite run in the LiteRT interpreter. The earlier rule (cosine on the calibration samples)
kept a recipe that flipped half the confident predictions of a real CNN (issue 11).
"""
from __future__ import annotations

import os
from typing import Any

from edgekit.errors import ConversionError, EdgekitError, UsageError

INT8_ROUTES = ("auto", "pt2e", "aeq")


def check_route(route: str) -> str:
    if route not in INT8_ROUTES:
        raise UsageError(f"unknown TFLite int8 route {route!r}; valid: {', '.join(INT8_ROUTES)}")
    return route


def static_int8(target, model, options, calibration, workdir: str, route: str) -> tuple[bytes, dict[str, Any]]:
    """(flatbuffer bytes, manifest facts) of the static int8 artifact by ``route``."""
    from edgekit.quantize.config import Candidate, Recipe
    from edgekit.quantize.pt2e import split
    from edgekit.quantize.shared import int8_program

    check_route(route)
    if not calibration:
        raise UsageError("--quantize int8 needs calibration samples (--calibration PATH, or 'random')")
    detail: dict[str, Any] = {"asked": route}
    errors: dict[str, str] = {}
    pt2e_bytes = shared = None
    if route in ("auto", "pt2e"):
        try:
            shared = int8_program(model, calibration, options)
            pt2e_bytes = _pt2e_bytes(target, model, shared, options, workdir)
        except EdgekitError as exc:
            if route == "pt2e":
                raise
            errors["pt2e"] = str(exc)
        except Exception as exc:
            from edgekit.export import describe_conversion_error

            if route == "pt2e":
                raise describe_conversion_error(exc, model, "litert-torch (PT2E int8)") from exc
            errors["pt2e"] = str(describe_conversion_error(exc, model, "litert-torch (PT2E int8)"))
    if shared is not None:
        detail.update(shared.to_manifest())
    calibrate_part, heldout = split(calibration, shared.config if shared else _default_config(options))
    judged = route == "auto" and pt2e_bytes is not None and heldout and shared.heldout_samples
    if route == "pt2e" or (route == "auto" and pt2e_bytes is not None and not judged):
        detail["route"] = "pt2e"
        detail["route_why"] = ("asked for" if route == "pt2e" else
                               "too few calibration samples to hold some back and compare routes: the PT2E default")
        return pt2e_bytes, _with_errors(detail, errors)
    if route == "aeq" or pt2e_bytes is None:
        detail["route"] = "aeq"
        detail["route_why"] = "asked for" if route == "aeq" else f"PT2E failed: {errors.get('pt2e')}"
        return _aeq_bytes(target, model, calibration, options, workdir), _with_errors(detail, errors)
    # auto with both: ai-edge-quantizer calibrated on the same part, scored on the same held-back part
    pt2e_score = shared.choice
    aeq_score = Candidate(Recipe("aeq-static"))
    try:
        aeq_trial = _aeq_bytes(target, model, calibrate_part, options, workdir)
        _score_tflite(aeq_score, aeq_trial, model, heldout, workdir)
    except ConversionError as exc:
        aeq_score.error = str(exc)
    detail["routes"] = {"pt2e": pt2e_score.to_dict(), "aeq": aeq_score.to_dict()}
    if aeq_score.key() > pt2e_score.key():
        detail["route"] = "aeq"
        detail["route_why"] = f"ai-edge-quantizer agreed better with FP32 on {len(heldout)} held-back samples"
        return _aeq_bytes(target, model, calibration, options, workdir), _with_errors(detail, errors)
    detail["route"] = "pt2e"
    detail["route_why"] = f"PT2E agreed at least as well with FP32 on {len(heldout)} held-back samples"
    return pt2e_bytes, _with_errors(detail, errors)


def _default_config(options):
    from edgekit.quantize.shared import config_from_options

    return config_from_options(options)


def _with_errors(detail: dict, errors: dict) -> dict:
    if errors:
        detail["errors"] = errors
    return detail


def _pt2e_bytes(target, model, shared, options, workdir: str) -> bytes:
    from litert_torch.quantize.quant_config import QuantConfig

    from edgekit.quantize.coverage import require_quantized
    from edgekit.targets.tflite.io_types import to_float_io

    require_quantized(shared.coverage, "tflite int8 (PT2E)")
    path = os.path.join(workdir, "pt2e.tflite")
    # litert-torch reads only ``global_config.is_dynamic`` from the quantizer (static QDQ mode)
    target._convert_float(model, path, shared.converted(fold_quantize=False), QuantConfig(pt2e_quantizer=shared.quantizer))
    with open(path, "rb") as fh:
        content = fh.read()
    os.remove(path)
    return to_float_io(content) if options.io == "float" else content


def _aeq_bytes(target, model, calibration, options, workdir: str) -> bytes:
    float_path = os.path.join(workdir, "float.tflite")
    if not os.path.exists(float_path):
        target._convert_float(model, float_path)
    return target._aeq(float_path, "int8", calibration, io=options.io)


def _score_tflite(candidate, content: bytes, model, samples, workdir: str) -> None:
    """Fill ``candidate``'s held-out scores from the .tflite run in the LiteRT interpreter."""
    import numpy as np
    import torch

    from edgekit.quantize.pt2e import agreement
    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.verify import output_order, run_artifact

    path = os.path.join(workdir, "candidate.tflite")
    with open(path, "wb") as fh:
        fh.write(content)
    runtime = TFLiteRuntime().load(path)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    def as_tensors(outputs) -> list:
        return [torch.from_numpy(np.asarray(o, dtype=np.float64)) for o in outputs]

    reference = [as_tensors(r) for r in model.reference_many(samples)]
    got = [as_tensors([out[i] for i in order]) for out in (run_artifact(runtime, s) for s in samples)]
    os.remove(path)
    scores = agreement(reference, got)
    candidate.cosine, candidate.top1 = scores["cosine"], scores["top1"]
    candidate.top1_confident, candidate.confident_inputs = scores["top1_confident"], scores["confident"]
    candidate.heldout_inputs = len(samples)
