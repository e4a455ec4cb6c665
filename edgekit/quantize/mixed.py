"""Automatic mixed precision: when static int8 misses the precision's tolerance, keep the fewest
layers at a higher precision (float, or int16 activations where the target has them: TFLite 16x8)
until it is met, within a size and compute budget.

The order comes from ``edgekit diagnose`` (layers whose own quantization hurts the output most
first). The search takes prefixes of that order: the whole budgeted prefix first (if even that
misses, the best score found is reported), then bisection on the prefix length for the shortest
one that meets the tolerance, then a pruning pass that drops any kept layer the tolerance does not
need. Every candidate is the real thing: prepared, calibrated (statistics reused from the full
int8 calibration where the observers are the same) and converted, then judged on held-out samples
by what verification enforces (``edgekit.verify.compare``: top-1 agreement, cosine, max error).

Entry point for the pipeline::

    decision = search_mixed_precision(graph_module, calibration, heldout, tolerance)
    decision.met, decision.kept            # every layer kept above int8, and why
    decision.overrides                     # node name -> "float" | "int16"
    quantizer = decision.quantizer()       # annotate with it: those nodes stay unquantized
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from edgekit.errors import UsageError

#: what a layer can be kept at instead of plain int8
HIGHER = ("float", "int16")
#: remedies diagnose measures per layer ("observer": the other activation observer, min/max or histogram)
REMEDIES = ("float", "int16", "observer")


# -- variants of the shared int8 program --------------------------------------------------------

def alternative_observer(chosen: str) -> str:
    """The observer the 'observer' remedy tries: min/max, or the histogram search when min/max is
    already the one edgekit chose."""
    return "histogram" if chosen == "minmax" else "minmax"


def _activation_spec(kind: str, chosen_observer: str, config):
    """Activation QuantizationSpec of a remedy: int16 (symmetric, as TFLite 16x8 wants it, min/max
    calibrated) or int8 with the alternative observer."""
    import torch
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    from edgekit.quantize.annotate import quantization_config
    from edgekit.quantize.config import Recipe

    if kind == "int16":
        return QuantizationSpec(dtype=torch.int16, quant_min=-32767, quant_max=32767, qscheme=torch.per_tensor_symmetric,
                                is_dynamic=False, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-20))
    if kind == "observer":
        return quantization_config(Recipe(alternative_observer(chosen_observer)), config).input_activation
    raise UsageError(f"unknown precision override {kind!r}; valid: {', '.join(REMEDIES)}")


def _is_int8_activation_spec(qspec) -> bool:
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    return (isinstance(qspec, QuantizationSpec) and qspec.dtype == torch.int8
            and qspec.qscheme in (torch.per_tensor_affine, torch.per_tensor_symmetric))


def override_quantizer(inner, overrides: Mapping[str, str], chosen_observer: str, config):
    """``inner`` (edgekit's quantizer, float nodes already dropped) with the activations of the
    nodes named in ``overrides`` ("int16" / "observer") re-specified after it annotated them."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    specs = {kind: _activation_spec(kind, chosen_observer, config) for kind in set(overrides.values()) - {"float"}}

    class OverrideQuantizer(Quantizer):
        global_config = getattr(inner, "global_config", None)

        def transform_for_annotation(self, model):
            return inner.transform_for_annotation(model)

        def annotate(self, model):
            inner.annotate(model)
            drop_dangling_shared(model)
            # the remedy applies to the tensor the layer outputs, for every reader of it: its output
            # spec and the input specs of its consumers (else a consumer re-quantizes it to int8)
            points = {}
            for node in model.graph.nodes:
                kind = overrides.get(node.name)
                annotation = node.meta.get("quantization_annotation")
                if kind in specs and annotation is not None and _is_int8_activation_spec(annotation.output_qspec):
                    annotation.output_qspec = specs[kind]
                    points[node] = specs[kind]
            for node in model.graph.nodes:
                annotation = node.meta.get("quantization_annotation")
                if annotation is None:
                    continue
                for arg, qspec in list(annotation.input_qspec_map.items()):
                    if arg in points and _is_int8_activation_spec(qspec):
                        annotation.input_qspec_map[arg] = points[arg]
            return model

        def validate(self, model) -> None:
            inner.validate(model)

    return OverrideQuantizer()


def drop_dangling_shared(model) -> None:
    """Drop pass-through annotations (max_pool, flatten, ...) that share the quantization of a node
    kept float: prepare_pt2e fails on a shared spec whose source has no annotation."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    def resolvable(target) -> bool:
        if isinstance(target, tuple):  # an edge (producer, consumer): the consumer's input spec
            ann = target[1].meta.get("quantization_annotation")
            return ann is not None and target[0] in ann.input_qspec_map
        ann = target.meta.get("quantization_annotation")
        return ann is not None and ann.output_qspec is not None

    changed = True
    while changed:
        changed = False
        for node in model.graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                continue
            specs = list(ann.input_qspec_map.values()) + [ann.output_qspec]
            if any(isinstance(q, SharedQuantizationSpec) and not resolvable(q.edge_or_node) for q in specs):
                node.meta.pop("quantization_annotation")
                changed = True


def variant_quantizer(program, overrides: Mapping[str, str]):
    """The Quantizer that annotates like ``program`` except for ``overrides`` (node name -> "float"
    | "int16" | "observer")."""
    import dataclasses

    from edgekit.quantize.annotate import edgekit_quantizer

    for kind in overrides.values():
        if kind not in REMEDIES:
            raise UsageError(f"unknown precision override {kind!r}; valid: {', '.join(REMEDIES)}")
    recipe = program.choice.recipe
    floats = tuple(sorted(set(program.config.float_nodes) | {n for n, k in overrides.items() if k == "float"}))
    config = dataclasses.replace(program.config, float_nodes=floats)
    quantizer = edgekit_quantizer(recipe, config)
    return override_quantizer(quantizer, overrides, recipe.observer, config)


def prepare_variant(graph, program, overrides: Mapping[str, str], quantizer=None):
    """A prepared (observed) copy of ``graph`` quantized like ``program`` except for ``overrides``
    (node name -> "float" | "int16" | "observer"); not calibrated."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer = quantizer or variant_quantizer(program, overrides)
    with _without_qat_patterns():
        return prepare_pt2e(copy.deepcopy(graph), quantizer)


@contextlib.contextmanager
def _without_qat_patterns():
    """XNNPACK's quantizer tries its QAT conv+BatchNorm patterns even for post-training configs,
    and each try traces the pattern with torch.export (~70% of a prepare_pt2e here). prepare_pt2e
    folds BatchNorm into the convolutions before annotating, so those patterns cannot match: skip
    them while a variant is prepared (a measured 2-3x faster prepare on the digits CNN)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    saved = XNNPACKQuantizer.SUPPORTED_PATTERNS
    XNNPACKQuantizer.SUPPORTED_PATTERNS = [p for p in saved if not p.is_qat]
    try:
        yield
    finally:
        XNNPACKQuantizer.SUPPORTED_PATTERNS = saved


def _recipe_steps():
    """(before_prepare, after_calibrate) of the recipes' algorithms (edgekit.quantize.algorithms),
    or None where this edgekit has none."""
    try:
        from edgekit.quantize.algorithms import after_calibrate, before_prepare
    except ImportError:
        return None
    return before_prepare, after_calibrate


def calibrate(prepared, samples: Sequence[Sequence]) -> None:
    import torch

    from edgekit.quantize.diagnose import _as_tensor

    with torch.no_grad():
        for sample in samples:
            prepared(*[_as_tensor(x) for x in sample])


def transfer_statistics(source, target) -> bool:
    """Copy calibrated observer statistics from ``source`` to the observers of ``target`` that watch
    the same tensor (statistics depend only on the float tensor seen, not on which layers are
    quantized). A min/max observer takes a histogram observer's min/max. False when some observer
    of ``target`` has no counterpart: then calibrate it instead."""
    from edgekit.quantize.diagnose import is_observer

    def watched(gm, node) -> str:
        # an observer may watch another observer (int16 output re-quantized to int8 for a consumer):
        # both see the same float tensor
        arg = node.args[0]
        while is_observer(gm, arg) and arg.args:
            arg = arg.args[0]
        return arg.name

    by_input: dict[str, list] = {}
    for node in source.graph.nodes:
        if is_observer(source, node) and node.args:
            by_input.setdefault(watched(source, node), []).append(source.get_submodule(node.target))
    pending = []
    for node in target.graph.nodes:
        if not is_observer(target, node) or not node.args:
            continue
        obs = target.get_submodule(node.target)
        candidates = by_input.get(watched(target, node), [])
        same = next((c for c in candidates if type(c) is type(obs) and c.dtype == obs.dtype), None)
        if same is not None:
            pending.append((obs, same.state_dict()))
            continue
        ranged = next((c for c in candidates if hasattr(c, "min_val") and c.min_val.dim() == 0), None)
        if ranged is not None and set(obs.state_dict()) <= {"eps", "min_val", "max_val"} and hasattr(obs, "min_val"):
            pending.append((obs, {"min_val": ranged.min_val.clone(), "max_val": ranged.max_val.clone()}))
            continue
        return False
    for obs, state in pending:
        _load_observer_state(obs, state)
    return True


def _load_observer_state(obs, state: Mapping[str, Any]) -> None:
    for key, value in state.items():
        if key == "eps":
            continue
        current = getattr(obs, key, None)
        if hasattr(current, "resize_"):
            current.resize_(value.shape)
            current.copy_(value)
        else:
            setattr(obs, key, value.clone())


def run_outputs(gm, samples: Sequence[Sequence]) -> list[list]:
    """Flat numpy outputs of a graph module for each sample."""
    import torch

    from edgekit.quantize.diagnose import _as_tensor, _leaves

    out = []
    with torch.no_grad():
        for sample in samples:
            result = gm(*[_as_tensor(x) for x in sample])
            out.append([t.detach().float().numpy() if t.is_floating_point() else t.numpy() for t in _leaves(result)])
    return out


@dataclass
class Score:
    """End-to-end agreement of a quantized model with the float model on held-out samples."""

    cosine: float
    snr_db: float
    top1: float | None
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def key(self) -> tuple:
        """Best last: what verification enforces first (top-1 agreement), then cosine."""
        return (-1.0 if self.top1 is None else self.top1, self.cosine)

    def to_json(self) -> dict[str, Any]:
        from edgekit.quantize.diagnose import _clean

        return {"cosine": _clean(float(self.cosine)), "snr_db": _clean(float(self.snr_db)),
                "top1": None if self.top1 is None else round(self.top1, 4), "passed": self.passed, "reasons": self.reasons}


def score(reference: Sequence[Sequence], candidate: Sequence[Sequence], tolerance, real_inputs: bool = True,
          names: Sequence[str] | None = None, roles: Mapping[str, tuple[str, str]] | None = None) -> Score:
    """Judged by edgekit.verify.compare: the same measures and thresholds verification enforces
    (``names`` and ``roles``: the model's output names and declared roles, so that per-output
    tolerances and --output-role apply here as they do in verification)."""
    from edgekit.verify import compare

    if names is None or len(names) != len(reference[0]):
        names = [f"output_{i}" for i in range(len(reference[0]))]
    outputs, reasons = compare(reference, candidate, list(names), tolerance, real_inputs, roles)

    def worst(attr):
        values = [getattr(o, attr, None) for o in outputs]
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return min(values) if values else None

    cosine, snr = worst("cosine"), worst("snr_db")
    return Score(cosine=math.nan if cosine is None else cosine, snr_db=math.nan if snr is None else snr,
                 top1=worst("top1"), passed=not reasons, reasons=reasons)


class Int8Variants:
    """The shared int8 program of a model with its float graph and held-out samples: quantizes and
    scores variants of it (some layers kept float, int16 or with another observer)."""

    def __init__(self, exported_program, program, calibration: Sequence, evaluation: Sequence, tolerance,
                 real_inputs: bool = True, names: Sequence[str] | None = None,
                 roles: Mapping[str, tuple[str, str]] | None = None):
        from edgekit.quantize.pt2e import _tensors, canonical_convolutions, split

        # the graph the shared program was prepared from (same node names, same conv ops, and the
        # recipe's graph transforms, e.g. cross-layer equalization, made on the same samples)
        self.graph = copy.deepcopy(exported_program.module())
        canonical_convolutions(self.graph)
        self.names, self.roles = names, roles
        self.recipe_samples = split([_tensors(s) for s in calibration], program.config)[0]
        self.reference = run_outputs(self.graph, evaluation)  # the float model, before any transform
        transforms = _recipe_steps()
        if transforms is not None:
            transforms[0](self.graph, program.choice.recipe, self.recipe_samples)
        self.program = program
        self.calibration = list(calibration)
        self.evaluation = list(evaluation)
        self.tolerance = tolerance
        self.real_inputs = real_inputs
        self._scores: dict[frozenset, Score] = {}

    def converted(self, overrides: Mapping[str, str] | None = None):
        """The converted (Q/DQ reference) graph of a variant; statistics reused where they can be."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        if not overrides:
            return self.program.converted(fold_quantize=True)
        return convert_pt2e(self.prepared(overrides))

    def prepared(self, overrides: Mapping[str, str], quantizer=None):
        """A calibrated variant: statistics reused where they can be, then the recipe's own
        post-calibration corrections (bias correction) for this variant's quantized layers."""
        prepared = prepare_variant(self.graph, self.program, overrides, quantizer)
        if not transfer_statistics(self.program.prepared, prepared):
            calibrate(prepared, self.calibration)
        transforms = _recipe_steps()
        if transforms is not None:
            transforms[1](prepared, self.program.choice.recipe, self.recipe_samples)
        return prepared

    def evaluate(self, overrides: Mapping[str, str] | None = None) -> Score:
        key = frozenset((overrides or {}).items())
        if key not in self._scores:
            outputs = run_outputs(self.converted(overrides), self.evaluation)
            self._scores[key] = score(self.reference, outputs, self.tolerance, self.real_inputs, self.names, self.roles)
        return self._scores[key]

    @property
    def evaluations(self) -> int:
        return len(self._scores)


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
    precision: str  # float | int16
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
