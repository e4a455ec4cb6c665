"""Automatic mixed precision inside ``edgekit convert --quantize int8`` (issue 11 item 3).

The shared int8 program is judged on the calibration samples it held back (never on the
``--eval-data`` that verification uses afterwards) by what verification enforces. When it misses
the tolerance: rank the layers by their own harm (``edgekit.quantize.diagnose``), search the fewest
to keep in float within the budget (``edgekit.quantize.mixed``), and hand every target the program
with those layers left float. The search, every layer kept and why, and every trial with its scores
go into the program's manifest block (``mixed_precision``). When no mix within the budget meets the
tolerance, the plain int8 program is kept (verification then fails it, exit 1, as without the
search) and the best mix found is reported.

Layers are kept in float in the shared program: the decision is shared by every target that consumes
it, and XNNPACK (ExecuTorch) has no int16-activation kernels. A target may realise a kept layer at a
higher precision of its own: TFLite tries 16x8 (int16 activations, int8 weights) for kept linears and
ships it where it meets the tolerance and is not slower (targets/tflite/int16x8.py).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

#: evaluation samples the per-layer ranking measures on (the search itself scores on all held back)
RANK_SAMPLES = 16
#: layers listed with their diagnose scores in the manifest
LISTED_LAYERS = 10


#: what ``--mixed-precision`` accepts besides a budget (``weights=0.1,flops=0.2``)
MIXED_MODES = ("auto", "off")


def parse_mixed_precision(text: str | None) -> Budget | None:
    """``--mixed-precision``: "auto" (the default Budget), "off" (None), or a budget
    ``weights=W,flops=F`` (shares of the quantized layers' weights and FLOPs that may stay float;
    a key left out keeps its default)."""
    from edgekit.errors import UsageError
    from edgekit.quantize.mixed_search import Budget

    text = (text or "auto").strip()
    if text == "off":
        return None
    if text == "auto":
        return Budget()
    values = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        field_name = {"weights": "max_weight_share", "flops": "max_flop_share"}.get(key.strip())
        try:
            number = float(value) if sep and field_name else None
        except ValueError:
            number = None
        if number is None:
            raise UsageError(f"--mixed-precision {text!r}: expected auto, off, or weights=SHARE,flops=SHARE "
                             "(shares between 0 and 1, e.g. weights=0.2,flops=0.25)")
        values[field_name] = number
    return Budget(**values)


def apply_mixed_precision(exported_program, program, samples: Sequence, tolerance, budget, *, real_inputs: bool = True,
                          names: Sequence[str] | None = None, roles=None, say: Callable[[str], None] | None = None,
                          warn: Callable[[str], None] | None = None):
    """``program`` (a QuantizedProgram) as it should ship: itself when int8 meets ``tolerance`` on the
    held-back samples (or nothing can be judged, or the search finds no mix), else a program with the
    fewest layers kept float. Either way ``.mixed`` says what was decided and why. ``warn`` gets the
    line saying the held-back split is too small to decide the top-1 tolerance."""
    from edgekit.quantize.pt2e import split

    say = say or (lambda _msg: None)
    warn = warn or say
    start = time.perf_counter()
    _, heldout = split(list(samples), program.config)
    if not heldout:
        program.mixed = {"searched": False, "met": None, "shipped": "int8",
                         "why": "too few calibration samples to hold some back and judge int8 (pass more --calibration samples)"}
        return program
    from edgekit.quantize.mixed import Int8Variants

    variants = Int8Variants(exported_program, program, samples, heldout, tolerance, real_inputs, names, roles)
    baseline = variants.evaluate({})
    unresolved = unresolved_top1(tolerance, len(heldout), program.config.heldout_fraction) if baseline.top1 is not None else None
    if unresolved:
        warn(unresolved)
    if baseline.passed:
        program.mixed = {"searched": False, "met": True, "shipped": "int8", "heldout_samples": len(heldout),
                         "why": f"int8 meets the tolerance on {len(heldout)} held-back calibration samples",
                         "baseline": baseline.to_json(), **({"warning": unresolved} if unresolved else {})}
        return program
    if budget is None:
        program.mixed = {"searched": False, "met": False, "shipped": "int8", "why": "--mixed-precision off",
                         "baseline": baseline.to_json()}
        return program
    say(f"mixed precision: int8 misses the tolerance on {len(heldout)} held-back calibration samples "
        f"({'; '.join(baseline.reasons[:2])}); ranking layers")
    decision, ranked = _search(program, variants, heldout, budget, say)
    block = {"searched": True, **decision.to_json(), "heldout_samples": len(heldout),
             "ranked_layers": len(ranked), "ranking": [_layer_row(l) for l in ranked[:LISTED_LAYERS]],
             **({"warning": unresolved} if unresolved else {})}
    if not (decision.met and decision.kept):
        say(f"mixed precision: {decision.summary} (cosine {decision.final.cosine:.4f}"
            + (f", top-1 {decision.final.top1:.3f}" if decision.final.top1 is not None else "")
            + "); shipping plain int8")
        program.mixed = {**block, "shipped": "int8", "seconds": round(time.perf_counter() - start, 1)}
        return program
    mixed = _program_with(program, variants, decision, samples, heldout)
    mixed.mixed = {**block, "shipped": "mixed", "seconds": round(time.perf_counter() - start, 1)}
    kept = ", ".join(f"{k.module_path or k.node} ({k.module_type})" for k in decision.kept)
    say(f"mixed precision: {len(decision.kept)} of {len(ranked)} layers kept float: {kept} "
        f"({100 * decision.weight_share:.1f}% of weights, {100 * decision.flop_share:.1f}% of FLOPs)")
    return mixed


def heldout_needed(tolerance) -> int | None:
    """Held-back samples for one top-1 flip (1/n of top-1) to stay within the top-1 tolerance:
    n >= 1 / (1 - top1), 50 for int8's 0.98. None: a tolerance of 1.0 allows no flip at any count."""
    import math

    top1 = max([tolerance.top1] + [v for _, key, v in tolerance.per_output if key == "top1"])
    if top1 >= 1.0:
        return None
    return math.ceil(1.0 / (1.0 - top1) - 1e-9)


def unresolved_top1(tolerance, heldout: int, heldout_fraction: float) -> str | None:
    """The warning when ``heldout`` samples cannot decide the top-1 tolerance, else None. Measured
    why: on 8 held-back EfficientNet-Lite0 views the search met top-1 1.0 and verification on 30
    others failed by one flip (docs/quantize.md)."""
    import math

    needed = heldout_needed(tolerance)
    if needed is None or heldout >= needed:
        return None
    top1 = max([tolerance.top1] + [v for _, key, v in tolerance.per_output if key == "top1"])
    return (f"mixed precision judges on {heldout} held-back calibration samples: one top-1 flip moves top-1 by "
            f"{1 / heldout:.3f}, more than the {1 - top1:.3f} the tolerance (top1={top1:g}) allows, so this decision "
            f"is noise; hold back at least {needed} (--calibration-samples {math.ceil(needed / heldout_fraction)} or more)")


def _search(program, variants, heldout, budget, say):
    from edgekit.quantize.diagnose import find_layers, measure_layers, rank_layers
    from edgekit.quantize.mixed_search import search_mixed_precision

    layers = find_layers(program.prepared)
    measure_layers(program.prepared, layers, heldout[:RANK_SAMPLES])
    ranked = rank_layers(layers)
    decision = search_mixed_precision(variants, ranked, higher="float", budget=budget, progress=say)
    return decision, ranked


def _program_with(program, variants, decision, samples, heldout):
    """The shipped program: ``program``'s recipe and statistics with ``decision``'s layers left float."""
    from edgekit.quantize.config import Candidate
    from edgekit.quantize.coverage import graph_coverage
    from edgekit.quantize.mixed import variant_quantizer
    from edgekit.quantize.pt2e import _tensors, agreement, run_graph

    overrides = decision.overrides
    quantizer = variant_quantizer(program, overrides)
    prepared = variants.prepared(overrides, quantizer)
    # the choice's held-out scores describe what ships (a TFLite route comparison reads them)
    choice = Candidate(program.choice.recipe, heldout_inputs=len(heldout),
                       notes={**program.choice.notes, "mixed_precision": f"{len(decision.kept)} layers kept float"})
    mixed = dataclasses.replace(program, prepared=prepared, quantizer=quantizer, choice=choice,
                                config=decision.config(program.config), _converted={})
    held = [_tensors(s) for s in heldout]
    reference = [[t.double() for t in _flat(r)] for r in variants.reference]
    scores = agreement(reference, run_graph(mixed.converted(fold_quantize=True), held))
    choice.cosine, choice.top1 = scores["cosine"], scores["top1"]
    choice.top1_confident, choice.confident_inputs = scores["top1_confident"], scores["confident"]
    mixed.coverage = graph_coverage(mixed.converted(fold_quantize=True))
    return mixed


def _flat(outputs) -> list:
    import numpy as np
    import torch

    return [torch.from_numpy(np.asarray(o)) for o in outputs if np.asarray(o).dtype.kind == "f"]


def _layer_row(layer) -> dict[str, Any]:
    from edgekit.quantize.diagnose import _clean

    m = layer.metrics
    return {"rank": layer.rank, "node": layer.node, "module_path": layer.module_path, "module_type": layer.module_type,
            "solo_output_snr_db": _clean(float(m["solo_output_snr_db"])), "local_snr_db": _clean(float(m["local_snr_db"])),
            "weight_numel": layer.weight_numel, "flops": layer.flops}
