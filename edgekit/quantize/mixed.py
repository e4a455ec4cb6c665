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
from typing import Any, Mapping, Sequence

from edgekit.errors import UsageError
# the search over these variants lives in mixed_search (issue 17: modules under 500 lines); its
# names stay importable from here
from edgekit.quantize.mixed_search import HIGHER, Budget, KeptLayer, MixedDecision, search_mixed_precision  # noqa: F401

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
