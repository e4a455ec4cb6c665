"""Per-layer diagnosis of static int8: which layers lose the accuracy, and what each remedy wins.

For every quantized layer of the PT2E graph (a conv, linear, add, mul, ... that the quantizer
annotated), measured on evaluation inputs against the float model at the layer's output point:

- layer-local error: the layer alone quantized (its input, weight and output observers), fed the
  float activations of everything before it: SNR (dB) and cosine;
- propagated error: the fully quantized model's activation at the same point;
- solo impact: the model output when only this layer is quantized (what the ranking sorts on:
  the layers whose own quantization hurts the output most come first);
- remedies, for the top-ranked layers: the end-to-end score of the real quantized model
  (prepare, calibrate, convert) with only that layer kept in float, with int16 activations
  (TFLite 16x8 where the target has it) and with a min/max observer instead of the default.

Everything runs on the calibrated PT2E graph (observers in place, before convert) with an
interpreter that turns chosen observers into fake-quantizers: one float pass per sample, one fully
quantized pass, and one partial pass per layer that recomputes only what depends on that layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edgekit.quantize.annotate import attribute

SCHEMA_VERSION = 1

# ops whose output only re-labels its input (views, pooling by max): quantizing them adds no error
# of their own, so they are not layers of their own
_PASS_THROUGH_QSPEC = "SharedQuantizationSpec"


@dataclass
class Layer:
    """One quantized layer of the PT2E graph."""

    node: str  # fx node name (also the node id Model Explorer shows for the ExportedProgram)
    op: str  # aten.conv2d, aten.linear, aten.add, ...
    module_path: str  # PyTorch module path from nn_module_stack ("" for the root module)
    module_type: str  # class name of that module
    group: tuple[str, ...]  # nodes annotated as one pattern with it (conv + its fused activation)
    observers: tuple[str, ...]  # observer nodes that quantize its inputs, weights and output
    output_node: str  # the node whose value is the layer's output point
    output_observer: str | None  # the observer node at that point (None: output stays float)
    weight_numel: int = 0
    flops: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    remedies: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    graph_index: int = 0  # position among the layers in graph order

    @property
    def where(self) -> str:
        return f"{self.module_path or '<root>'} ({self.module_type})"

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "graph_index": self.graph_index, "node": self.node, "op": self.op, "module_path": self.module_path,
            "module_type": self.module_type, "group": list(self.group), "weight_numel": self.weight_numel,
            "flops": self.flops, **{k: _clean(v) for k, v in self.metrics.items()},
            "remedies": {k: _clean(v) for k, v in self.remedies.items()},
        }


def _clean(value):
    if isinstance(value, float):
        return None if math.isnan(value) else (round(value, 6) if math.isfinite(value) else (999.0 if value > 0 else -999.0))
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


# -- graph structure -------------------------------------------------------------------------------

def is_observer(gm, node) -> bool:
    from torchao.quantization.pt2e import ObserverBase

    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), ObserverBase)


def module_of(node) -> tuple[str, str]:
    """(module path, class name) of the innermost module a node was traced in."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", "?"
    path, cls = list(stack.values())[-1]
    name = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    path = path.replace("L['self'].", "").replace("L__self__.", "")
    return (path if path not in ("L['self']", "") else ""), str(name).rsplit(".", 1)[-1].strip("'>")


def _op_name(node) -> str:
    target = str(node.target)
    for suffix in (".default", ".Tensor"):
        target = target[: -len(suffix)] if target.endswith(suffix) else target
    return target


def _annotation(node):
    return node.meta.get("quantization_annotation")


def _observed_args(gm, node) -> list:
    return [a for a in node.all_input_nodes if is_observer(gm, a)]


def find_layers(prepared) -> list[Layer]:
    """The quantized layers of a prepared (observed) PT2E graph, in graph order."""
    layers = []
    for node in prepared.graph.nodes:
        ann = _annotation(node)
        if node.op != "call_function" or ann is None or not ann.input_qspec_map:
            continue
        if all(type(q).__name__ == _PASS_THROUGH_QSPEC for q in ann.input_qspec_map.values()):
            continue  # max_pool, flatten, ...: shares its input's quantization
        observers = _observed_args(prepared, node)
        if not observers:
            continue
        group, point = [node.name], node
        # follow the pattern to where its output is observed: conv -> relu / hardtanh -> observer
        while True:
            users = list(point.users)
            obs = [u for u in users if is_observer(prepared, u)]
            if obs or len(users) != 1:
                break
            nxt = users[0]
            nann = _annotation(nxt)
            if nxt.op != "call_function" or nann is None or (nann.input_qspec_map and _observed_args(prepared, nxt)):
                break
            group.append(nxt.name)
            point = nxt
        out_obs = next((u for u in point.users if is_observer(prepared, u)), None)
        path, cls = module_of(node)
        weight = _weight_numel(prepared, node)
        layers.append(Layer(
            node=node.name, op=_op_name(node), module_path=path, module_type=cls, group=tuple(group),
            observers=tuple(o.name for o in observers) + ((out_obs.name,) if out_obs is not None else ()),
            output_node=point.name, output_observer=None if out_obs is None else out_obs.name,
            weight_numel=weight, flops=_flops(node, weight), graph_index=len(layers),
        ))
    return layers


def _weight_numel(gm, node) -> int:
    for arg in node.all_input_nodes:
        if is_observer(gm, arg) and arg.args and getattr(arg.args[0], "op", None) == "get_attr":
            val = arg.args[0].meta.get("val")
            if val is not None:
                return int(val.numel())
            try:
                return int(attribute(gm, arg.args[0].target).numel())
            except AttributeError:
                return 0
    return 0


def _flops(node, weight_numel: int) -> int:
    """Multiply-accumulates x 2 for weighted layers (weights x output positions), else output size."""
    val = node.meta.get("val")
    shape = tuple(getattr(val, "shape", ()) or ())
    if not shape:
        return 0
    numel = int(math.prod(shape))
    if weight_numel and len(shape) >= 2:
        channels = shape[1] if len(shape) == 4 or len(shape) == 3 and "conv" in str(node.target) else shape[-1]
        positions = numel // max(int(channels), 1)
        return 2 * weight_numel * positions
    return numel


# -- fake quantization at chosen observers ----------------------------------------------------------

def fake_quantizer(obs) -> Callable | None:
    """x -> dequantize(quantize(x)) with the observer's calibrated parameters (None: float)."""
    import torch

    dtype = getattr(obs, "dtype", None)
    if dtype is None or not isinstance(dtype, torch.dtype) or dtype.is_floating_point:
        return None
    if getattr(obs, "min_val", None) is not None and obs.min_val.numel() and torch.isinf(obs.min_val).any():
        return None  # never saw data (a branch calibration did not reach): left float, as convert does
    scale, zero_point = obs.calculate_qparams()
    info = torch.iinfo(dtype) if dtype not in (torch.quint8, torch.qint8, torch.qint32) else None
    qmin = obs.quant_min if obs.quant_min is not None else (info.min if info else -128)
    qmax = obs.quant_max if obs.quant_max is not None else (info.max if info else 127)
    if obs.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine):
        s, z, axis = scale.float(), zero_point.int(), int(obs.ch_axis)
        return lambda x: torch.fake_quantize_per_channel_affine(x.float(), s, z, axis, qmin, qmax)
    s, z = float(scale), int(zero_point)
    return lambda x: torch.fake_quantize_per_tensor_affine(x.float(), s, z, qmin, qmax) if x.is_floating_point() else x


class GraphRunner:
    """Runs a prepared PT2E graph node by node with a chosen set of observers fake-quantizing and
    every other observer passing its input through (never updating its statistics)."""

    def __init__(self, prepared):
        self.gm = prepared
        self.nodes = [n for n in prepared.graph.nodes]
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.by_name = {n.name: n for n in self.nodes}
        self.fq = {}
        self.observers = set()
        for n in self.nodes:
            if is_observer(prepared, n):
                self.observers.add(n)
                self.fq[n] = fake_quantizer(prepared.get_submodule(n.target))
        self.output = next(n for n in self.nodes if n.op == "output")

    def run(self, sample: Sequence, quantized: set | None = None) -> dict:
        """Values of every node: ``quantized`` observers fake-quantize (None: all of them)."""
        env: dict = {}
        inputs = iter(sample)
        for node in self.nodes:
            env[node] = self._eval(node, env, inputs, quantized)
        return env

    def run_from(self, base: dict, quantized: set) -> dict:
        """Re-run only what depends on the ``quantized`` observers, on top of a float run ``base``.
        Returns the changed values (node -> value); everything else is as in ``base``."""
        changed: dict = {}
        start = min(self.index[n] for n in quantized)
        for node in self.nodes[start:]:
            if node.op == "placeholder":
                continue
            if node not in quantized and not any(a in changed for a in node.all_input_nodes):
                continue
            env = _Overlay(changed, base)
            changed[node] = self._eval(node, env, iter(()), quantized)
        return changed

    def _eval(self, node, env, inputs, quantized):
        import torch
        from torch.fx.node import map_arg

        if node.op == "placeholder":
            return _as_tensor(next(inputs))
        if node.op == "get_attr":
            return attribute(self.gm, node.target)
        args = map_arg(node.args, lambda a: env[a])
        kwargs = map_arg(node.kwargs, lambda a: env[a])
        if node.op == "output":
            return args[0]
        if node in self.observers:
            fq = self.fq[node]
            on = quantized is None or node in quantized
            return fq(args[0]) if (on and fq is not None and isinstance(args[0], torch.Tensor)) else args[0]
        with torch.no_grad():
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            if node.op == "call_module":
                return self.gm.get_submodule(node.target)(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise RuntimeError(f"unexpected fx node {node.op} {node.name}")

    def outputs(self, env) -> list:
        return _leaves(env[self.output])


class _Overlay(dict):
    """Changed values first, then the float run (a read-only view of both)."""

    def __init__(self, top, base):
        super().__init__()
        self.top, self.base = top, base

    def __getitem__(self, key):
        return self.top[key] if key in self.top else self.base[key]


def _as_tensor(x):
    import numpy as np
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _leaves(out) -> list:
    import torch
    from torch.utils import _pytree as pytree

    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


class ErrorStats:
    """Accumulated over samples: signal energy, error energy and dot products, for SNR and cosine."""

    def __init__(self):
        self.ref2 = self.err2 = self.got2 = self.dot = 0.0

    def add(self, ref, got) -> None:
        r = ref.detach().double().reshape(-1)
        g = got.detach().double().reshape(-1)
        if r.shape != g.shape:
            return
        self.ref2 += float(r @ r)
        self.got2 += float(g @ g)
        self.dot += float(r @ g)
        d = g - r
        self.err2 += float(d @ d)

    @property
    def snr_db(self) -> float:
        if self.err2 == 0:
            return math.inf
        return 10 * math.log10(self.ref2 / self.err2) if self.ref2 > 0 else -math.inf

    @property
    def cosine(self) -> float:
        if self.ref2 == 0 and self.got2 == 0:
            return 1.0
        if self.ref2 == 0 or self.got2 == 0:
            return 0.0
        return self.dot / math.sqrt(self.ref2 * self.got2)


def measure_layers(prepared, layers: Sequence[Layer], samples: Sequence[Sequence], progress=None) -> None:
    """Fill each layer's local, propagated and solo-impact metrics (``layer.metrics``)."""
    import torch

    runner = GraphRunner(prepared)
    local = {l.node: ErrorStats() for l in layers}
    propagated = {l.node: ErrorStats() for l in layers}
    solo = {l.node: ErrorStats() for l in layers}
    for i, sample in enumerate(samples):
        base = runner.run(sample, quantized=set())
        full = runner.run(sample, quantized=None)
        float_out = torch.cat([t.reshape(-1).float() for t in runner.outputs(base)])
        for layer in layers:
            point = runner.by_name[layer.output_node]
            probe = runner.by_name[layer.output_observer] if layer.output_observer else point
            propagated[layer.node].add(base[point], full[probe])
            changed = runner.run_from(base, {runner.by_name[o] for o in layer.observers})
            value = changed.get(probe, base[probe])
            local[layer.node].add(base[point], value)
            out = runner.outputs(changed if runner.output in changed else base)
            solo[layer.node].add(float_out, torch.cat([t.reshape(-1).float() for t in out]))
        if progress:
            progress(i + 1, len(samples))
    for layer in layers:
        layer.metrics = {
            "local_snr_db": local[layer.node].snr_db, "local_cosine": local[layer.node].cosine,
            "propagated_snr_db": propagated[layer.node].snr_db, "propagated_cosine": propagated[layer.node].cosine,
            "solo_output_snr_db": solo[layer.node].snr_db, "solo_output_cosine": solo[layer.node].cosine,
        }


def rank_layers(layers: Sequence[Layer]) -> list[Layer]:
    """Most harmful first: lowest output SNR when quantized alone, then lowest local SNR."""
    ordered = sorted(layers, key=lambda l: (l.metrics["solo_output_snr_db"], l.metrics["local_snr_db"]))
    for i, layer in enumerate(ordered, 1):
        layer.rank = i
    return ordered


# -- the whole diagnosis ---------------------------------------------------------------------------

@dataclass
class Diagnosis:
    """Per-layer int8 diagnosis of one model (``to_json`` is the versioned --json document)."""

    layers: list[Layer]  # ranked, most harmful first
    baseline: Any  # edgekit.quantize.mixed.Score of the full int8 model on the evaluation samples
    quantization: dict[str, Any]  # how the int8 program was made (QuantizedProgram.to_manifest())
    calibration: dict[str, Any]
    evaluation: dict[str, Any]
    layer_samples: int
    remedy_layers: int
    alternative_observer: str
    tolerance: dict[str, Any]
    seconds: float = 0.0
    model: dict[str, Any] = field(default_factory=dict)
    keep_float_top: dict[str, Any] = field(default_factory=dict)  # top-k kept float together: k -> score

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "edgekit.diagnose", "schema_version": SCHEMA_VERSION, "precision": "int8",
            "model": self.model, "quantization": self.quantization, "calibration": self.calibration,
            "evaluation": self.evaluation, "tolerance": self.tolerance, "baseline": self.baseline.to_json(),
            "layer_samples": self.layer_samples, "remedy_layers": self.remedy_layers,
            "remedies": {"float": "layer kept in float", "int16": "int16 activations (TFLite 16x8 only)",
                         "observer": f"{self.alternative_observer} activation observer for the layer"},
            "keep_float_top": self.keep_float_top,
            "ranking": "model-output SNR with only that layer quantized, lowest first",
            "layers": [layer.to_json() for layer in self.layers], "seconds": round(self.seconds, 2),
        }

    def model_explorer(self, metric: str = "local_snr_db") -> dict[str, Any]:
        """Google Model Explorer node data (GraphNodeData: results keyed by node id, a value each),
        for the graph Model Explorer shows for the model's ExportedProgram (node ids = fx node names)."""
        results = {}
        for layer in self.layers:
            value = _clean(float(layer.metrics[metric]))
            for name in layer.group:
                results[name] = {"value": value}
        return {"results": results, "gradient": [
            {"stop": 0, "bgColor": "#d7301f"}, {"stop": 0.5, "bgColor": "#fdcc8a"}, {"stop": 1, "bgColor": "#f0f9e8"}]}


def diagnose(exported_program, calibration: Sequence, evaluation: Sequence, tolerance, *, real_inputs: bool = True,
             config=None, program=None, layer_samples: int = 16, remedy_layers: int = 8,
             remedies: Sequence[str] | None = None, top_k: Sequence[int] = (1, 3, 5), reporter=None) -> Diagnosis:
    """Diagnose static int8 of ``exported_program`` (see the module docstring).

    ``program``: the shared QuantizedProgram when the caller has one (else it is made here, the way
    ``edgekit convert --quantize int8`` makes it, with ``config``).
    """
    import time

    from edgekit.errors import ConversionError
    from edgekit.quantize.mixed import REMEDIES, Int8Variants, alternative_observer
    from edgekit.quantize.pt2e import quantize_program

    start = time.perf_counter()
    say = reporter.info if reporter is not None else (lambda _msg: None)
    if program is None:
        program = quantize_program(exported_program, calibration, config, reporter=reporter)
    layers = find_layers(program.prepared)
    if not layers:
        raise ConversionError("int8: the quantizer annotated no layer of this model (nothing to diagnose)")
    say(f"diagnose: {len(layers)} quantized layers, measuring on {min(layer_samples, len(evaluation))} samples")
    measure_layers(program.prepared, layers, list(evaluation)[:layer_samples])
    ranked = rank_layers(layers)
    variants = Int8Variants(exported_program, program, calibration, evaluation, tolerance, real_inputs)
    baseline = variants.evaluate({})
    kinds = tuple(remedies or REMEDIES)
    top = ranked[: max(0, remedy_layers)]
    say(f"diagnose: remedies ({', '.join(kinds)}) for the top {len(top)} layers")
    for layer in top:
        for kind in kinds:
            result = variants.evaluate({name: kind for name in layer.group})
            layer.remedies[kind] = {**result.to_json(), **_gains(result, baseline)}
    keep = {}
    for k in sorted({k for k in top_k if 0 < k <= len(ranked)}):
        result = variants.evaluate({name: "float" for l in ranked[:k] for name in l.group})
        keep[str(k)] = {**result.to_json(), **_gains(result, baseline)}
    return Diagnosis(
        layers=ranked, baseline=baseline, quantization=program.to_manifest(),
        calibration={"samples": len(calibration)}, evaluation={"samples": len(evaluation), "real": real_inputs},
        layer_samples=min(layer_samples, len(evaluation)), remedy_layers=len(top),
        alternative_observer=alternative_observer(program.choice.recipe.observer),
        tolerance=dict(tolerance.__dict__), seconds=time.perf_counter() - start, keep_float_top=keep,
    )


def _gains(result, baseline) -> dict[str, Any]:
    gain = {"snr_gain_db": _difference(result.snr_db, baseline.snr_db), "cosine_gain": result.cosine - baseline.cosine}
    if result.top1 is not None and baseline.top1 is not None:
        gain["top1_gain"] = result.top1 - baseline.top1
    return {k: _clean(v) for k, v in gain.items()}


def _difference(a: float, b: float) -> float:
    """a - b for SNRs that may be infinite (a perfect match): capped like the JSON values."""
    cap = lambda v: max(min(v, 999.0), -999.0)  # noqa: E731
    return cap(a) - cap(b)
