"""The search of automatic mixed precision (edgekit/quantize/mixed.py makes and scores the int8
variants it tries): prefixes of diagnose's ranking within a size and compute budget, the whole
budgeted prefix first, then bisection on the prefix length, then a pruning pass."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edgekit.errors import UsageError

if TYPE_CHECKING:
    from edgekit.quantize.mixed import Int8Variants, Score

#: what a layer can be kept at instead of plain int8
HIGHER = ("float", "int16")


# -- the search -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """How much may leave int8. Size: an int8 model is ~0.25x of FP32; weights kept float cost 4x,
    so ``max_weight_share`` 0.067 keeps the artifact within 0.3x of FP32. Latency: the share of the
    quantized layers' FLOPs that may run above int8 (float kernels are slower)."""

    max_weight_share: float = 0.067
    max_flop_share: float = 0.10

    def __post_init__(self):
        for name in ("max_weight_share", "max_flop_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be between 0 and 1, got {getattr(self, name)}")


@dataclass
class KeptLayer:
    node: str
    module_path: str
    module_type: str
    precision: str  # float | int16; the manifest may say how a target realised it (TFLite: int16x8, targets/tflite/int16x8.py)
    group: tuple[str, ...]
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "module_path": self.module_path, "module_type": self.module_type,
                "precision": self.precision, "group": list(self.group), "why": self.why}


@dataclass
class MixedDecision:
    """What the search decided: every layer kept above int8 and why, and the scores behind it."""

    met: bool
    higher: str
    kept: list[KeptLayer]
    baseline: Score
    final: Score
    budget: Budget
    weight_share: float
    flop_share: float
    evaluations: list[dict[str, Any]]
    summary: str

    @property
    def overrides(self) -> dict[str, str]:
        return {name: k.precision for k in self.kept for name in k.group}

    @property
    def float_nodes(self) -> tuple[str, ...]:
        return tuple(n for n, kind in self.overrides.items() if kind == "float")

    @property
    def int16_nodes(self) -> tuple[str, ...]:
        return tuple(n for n, kind in self.overrides.items() if kind == "int16")

    def config(self, base):
        """``base`` (an edgekit.quantize.QuantConfig) with the kept nodes: what convert quantizes with."""
        import dataclasses

        return dataclasses.replace(base, float_nodes=tuple(sorted(set(base.float_nodes) | set(self.float_nodes))),
                                   int16_nodes=tuple(sorted(set(base.int16_nodes) | set(self.int16_nodes))))

    def to_json(self) -> dict[str, Any]:
        return {
            "met": self.met, "higher": self.higher, "summary": self.summary,
            "kept": [k.to_json() for k in self.kept], "baseline": self.baseline.to_json(), "final": self.final.to_json(),
            "budget": {"max_weight_share": self.budget.max_weight_share, "max_flop_share": self.budget.max_flop_share},
            "weight_share": round(self.weight_share, 4), "flop_share": round(self.flop_share, 4),
            "evaluations": self.evaluations,
        }


def _within_budget(ranked, budget: Budget, higher: str) -> list:
    """The ranked layers, greedily, as far as the budget allows (a layer that does not fit is skipped)."""
    total_w = sum(l.weight_numel for l in ranked) or 1
    total_f = sum(l.flops for l in ranked) or 1
    chosen, w, f = [], 0, 0
    for layer in ranked:
        dw = layer.weight_numel if higher == "float" else 0  # int16 activations keep int8 weights
        if (w + dw) / total_w > budget.max_weight_share or (f + layer.flops) / total_f > budget.max_flop_share:
            continue
        chosen.append(layer)
        w, f = w + dw, f + layer.flops
    return chosen


def search_mixed_precision(variants: Int8Variants, ranked: Sequence, *, higher: str = "float",
                           budget: Budget | None = None, max_evaluations: int = 16,
                           progress: Callable[[str], None] | None = None) -> MixedDecision:
    """The fewest of ``ranked`` (diagnose's order) kept at ``higher`` so that the held-out score meets
    the tolerance; if no mix within the budget meets it, the best one found. ``progress`` gets one
    line before each trial (each is a full prepare, calibrate, convert and run: long work)."""
    if higher not in HIGHER:
        raise UsageError(f"mixed precision keeps layers at {' or '.join(HIGHER)}, not {higher!r}")
    budget = budget or Budget()
    candidates = _within_budget(list(ranked), budget, higher)
    log: list[dict[str, Any]] = []
    # baseline + whole prefix + bisection + pruning: the most trials this search can take
    bound = min(max_evaluations, 2 + math.ceil(math.log2(max(len(candidates), 1))) + max(len(candidates) - 1, 0))

    def trial(layers) -> Score:
        if progress is not None and layers:
            progress(f"mixed precision: trying {len(layers)} layer{'s' if len(layers) != 1 else ''} {higher} "
                     f"({len(log) + 1}/{bound} at most)...")
        result = variants.evaluate({n: higher for l in layers for n in l.group})
        log.append({"kept": [l.node for l in layers], **result.to_json()})
        return result

    baseline = trial([])
    if baseline.passed or not candidates:
        why = "int8 meets the tolerance" if baseline.passed else "no layer fits the budget"
        return _decision(baseline.passed, higher, [], baseline, baseline, budget, ranked, log, why, {})
    best_layers, best = list(candidates), trial(candidates)
    if not best.passed:
        return _decision(False, higher, best_layers, baseline, best, budget, ranked, log,
                         f"no mix within the budget meets the tolerance; best found keeps {len(best_layers)} layers", {})
    lo, hi = 0, len(candidates)  # prefix lengths: lo misses, hi meets
    while hi - lo > 1 and len(log) < max_evaluations:
        mid = (lo + hi) // 2
        result = trial(candidates[:mid])
        if result.passed:
            hi, best = mid, result
        else:
            lo = mid
    kept = list(candidates[:hi])
    needed = {}
    for layer in reversed(list(kept)):  # prune: drop what the tolerance does not need
        if len(kept) <= 1 or len(log) >= max_evaluations:
            break
        rest = [l for l in kept if l is not layer]
        result = trial(rest)
        if result.passed:
            kept, best = rest, result
        else:
            needed[layer.node] = result
    return _decision(True, higher, kept, baseline, best, budget, ranked, log,
                     f"keeping {len(kept)} of {len(ranked)} layers at {higher} meets the tolerance", needed)


def _decision(met, higher, kept, baseline, final, budget, ranked, log, summary, needed) -> MixedDecision:
    total_w = sum(l.weight_numel for l in ranked) or 1
    total_f = sum(l.flops for l in ranked) or 1
    rows = []
    for layer in kept:
        m = layer.metrics
        why = (f"diagnose rank {layer.rank}: quantized alone it brings the output to {m['solo_output_snr_db']:.1f} dB SNR "
               f"(layer-local {m['local_snr_db']:.1f} dB)")
        if layer.node in needed:
            r = needed[layer.node]
            why += f"; without it: cosine {r.cosine:.4f}" + (f", top-1 {r.top1:.3f}" if r.top1 is not None else "")
        rows.append(KeptLayer(layer.node, layer.module_path, layer.module_type, higher, tuple(layer.group), why))
    weight = sum(l.weight_numel for l in kept) / total_w if higher == "float" else 0.0
    flops = sum(l.flops for l in kept) / total_f
    return MixedDecision(met, higher, rows, baseline, final, budget, weight, flops, log, summary)
