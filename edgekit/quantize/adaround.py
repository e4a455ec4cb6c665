"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization") on
the calibrated PT2E graph, before convert: each conv/linear weight is rounded up or down per element,
whichever reconstructs the layer's output best, instead of to the nearest int8 level.

Per layer, with its per-channel weight scale s from the PT2E weight observer (the scale convert
will use, so the learned integers are exactly what every target stores):
- rows: the layer's input as matrix rows (im2col patches of a convolution, tokens of a linear),
  ROWS of them drawn at random from the calibration samples, float as the float model computes them;
- target: the float layer's output on those rows (through its fused ReLU/ReLU6, whose output is
  what the next layer reads); the rounded layer is fed the same rows through the layer's own int8
  input quantization (its calibrated input observer), so the rounding also absorbs the input's error;
- soft weight: s * clamp(floor(W / s) + h(V)), h the rectified sigmoid, V initialised so that h
  starts at the fractional part (= W exactly); Adam on V minimises the squared output error plus
  REGULARIZATION * sum(1 - |2h - 1|^beta), beta annealed BETA_START -> BETA_END after a warm-up
  without the term, which pushes every h to 0 or 1;
- hard weight: floor(W / s) + [V >= 0], written back as s * integer (convert reproduces the
  integers exactly; every integer stays within one step of W / s and inside the observer's range).
A fifth of the rows is held out of the fit: a layer whose learned rounding reconstructs those rows
worse than nearest rounding keeps nearest rounding (a few hundred rows can be overfit by thousands of
rounding choices), and a layer with fewer than MIN_ROWS rows (a classifier fed one vector per sample)
is left alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edgekit.quantize.annotate import attribute

ITERATIONS = 500  # per layer; the paper uses 10k on GPU, 500 keep the gain on CPU (docs/quantize.md)
ROWS = 4096  # input rows (output positions) kept per layer
BATCH = 256  # rows per Adam step
MIN_ROWS = 256
HOLDOUT = 0.2
#: AIMET's default is 1e-3 over 10k iterations; over 500, 1e-3 lets only weights near a half step
#: move (digits CNN: held-out layer error 0.905 of nearest rounding's with 1e-3, 0.882 with 1e-2)
LEARNING_RATE = 1e-2
REGULARIZATION = 0.01  # AIMET's default weight of the rounding term
BETA_START, BETA_END = 20.0, 2.0
WARMUP = 0.2  # share of the iterations without the rounding term
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's values)
MEMORY_BUDGET = 256 * 2**20  # bytes of stored rows per collecting pass over the calibration samples
_CACHE_LIMIT = 4096
#: learned integers by (weight, scale) digest: mixed-precision variants re-run the recipe on the same
#: float weights and scales and get the same rounding without another optimisation
_ROUNDED: dict[tuple, Any] = {}


@dataclass
class RoundedLayer:
    node: str
    rows: int
    checked_rows: int  # rows held out of the fit, on which the two errors are measured
    error_nearest: float  # mean squared output error on the held-out rows, nearest rounding
    error_adaround: float  # the same with the learned rounding (what ships, unless "kept nearest")
    changed: int  # weights rounded the other way from nearest
    weights: int
    kept: str  # "adaround", "nearest" (learned rounding was worse on held-out rows), "cached"


@dataclass
class _Layer:
    node: Any
    weight_name: str
    weight_observer: Any
    input_observer: Any
    activation: str | None  # "relu" / "relu6": the fused clamp the output goes through


def _ops():
    import torch

    aten = torch.ops.aten
    return {aten.conv1d.default: 1, aten.conv2d.default: 2, aten.linear.default: 0}


def _observer(gm, node):
    from torchao.quantization.pt2e import ObserverBase

    if node is None or getattr(node, "op", None) != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if isinstance(module, ObserverBase) else None


def find_layers(prepared) -> list[_Layer]:
    """conv1d/conv2d/linear nodes of a prepared graph whose weight (a parameter) has an int8 observer."""
    from edgekit.quantize.equalize import _activation_kind

    layers = []
    for node in prepared.graph.nodes:
        if node.op != "call_function" or node.target not in _ops() or len(node.args) < 2:
            continue
        weight_observer = _observer(prepared, node.args[1])
        if weight_observer is None or getattr(node.args[1].args[0], "op", None) != "get_attr":
            continue
        if getattr(weight_observer, "ch_axis", 0) != 0 or weight_observer.dtype not in _int_dtypes():
            continue
        users = list(node.users)
        activation = _activation_kind(users[0]) if len(users) == 1 and users[0].op == "call_function" else None
        layers.append(_Layer(node, node.args[1].args[0].target, weight_observer, _observer(prepared, node.args[0]), activation))
    return layers


def _int_dtypes():
    import torch

    return (torch.qint8, torch.int8, torch.quint8, torch.uint8)


def _rows(node, x, arguments, generator, count: int):
    """``count`` random rows (R, groups, K) of the layer's input matrix, and the weight as (groups, Cout/g, K)."""
    import torch

    kind = _ops()[node.target]
    weight = arguments[1]
    if kind == 0:
        rows = x.reshape(-1, 1, x.shape[-1])
    else:
        stride, padding, dilation = (list(a) if isinstance(a, (list, tuple)) else [a] for a in arguments[3:6])
        groups = int(arguments[6])
        dims = weight.dim() - 2  # one value given for every spatial dimension
        stride, padding, dilation = (v * dims if len(v) == 1 else v for v in (stride, padding, dilation))
        if kind == 1:  # conv1d as a conv2d of height 1
            x, stride, padding, dilation = x.unsqueeze(2), [1] + stride, [0] + padding, [1] + dilation
            weight = weight.unsqueeze(2)
        patches = torch.nn.functional.unfold(x, weight.shape[2:], dilation=dilation, padding=padding, stride=stride)
        rows = patches.transpose(1, 2).reshape(-1, groups, patches.shape[1] // groups)
    pick = torch.randperm(rows.shape[0], generator=generator)[:count]
    return rows[pick].clone()


def _arguments(node) -> list:
    """conv/linear arguments with the schema's defaults (stride 1, padding 0, dilation 1, groups 1)."""
    defaults = [None, None, None, [1], [0], [1], 1] if _ops()[node.target] else [None, None, None]
    return list(node.args) + defaults[len(node.args):]


def collect_rows(prepared, layers: Sequence[_Layer], samples: Sequence[tuple], rows: int = ROWS, seed: int = 0) -> dict:
    """{node name: (rows float (R, groups, K), bias or None)} from float runs of ``prepared`` (observers
    pass values through untouched and learn nothing), in passes that each store at most MEMORY_BUDGET."""
    import torch
    from torchao.quantization.pt2e import ObserverBase

    per_sample = max(1, math.ceil(rows / max(1, len(samples))))
    found: dict[str, Any] = {}
    for chunk in _chunks(layers, per_sample * len(samples)):
        wanted = {layer.node: layer for layer in chunk}
        parts: dict[str, list] = {layer.node.name: [] for layer in chunk}
        biases: dict[str, Any] = {}
        generator = torch.Generator().manual_seed(seed)

        class Recorder(torch.fx.Interpreter):
            def call_module(self, target, args, kwargs):
                if isinstance(self.fetch_attr(target), ObserverBase):
                    return args[0]
                return super().call_module(target, args, kwargs)

            def run_node(self, n):
                if n in wanted:
                    arguments, _ = self.fetch_args_kwargs_from_env(n)
                    arguments = list(arguments) + _arguments(n)[len(arguments):]
                    parts[n.name].append(_rows(n, arguments[0].detach(), arguments, generator, per_sample))
                    biases[n.name] = arguments[2]
                return super().run_node(n)

        with torch.no_grad():
            recorder = Recorder(prepared)
            for sample in samples:
                recorder.run(*sample)
        for name, pieces in parts.items():
            found[name] = (torch.cat(pieces), biases.get(name))
    return found


def _chunks(layers: Sequence[_Layer], rows: int) -> list[list[_Layer]]:
    """Groups of layers whose stored rows fit MEMORY_BUDGET together."""
    chunks, current, used = [], [], 0
    for layer in layers:
        weight = layer.node.args[1].args[0].meta.get("val")
        k = int(weight[0].numel()) if weight is not None else 1024
        size = 4 * rows * k
        if current and used + size > MEMORY_BUDGET:
            chunks.append(current)
            current, used = [], 0
        current.append(layer)
        used += size
    return chunks + ([current] if current else [])


def _h(v):
    import torch

    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _output(rows, weight, bias, activation):
    """(R, groups, K) x (groups, Cout/g, K) -> (R, Cout), through the fused activation."""
    import torch

    out = torch.einsum("rgk,gok->rgo", rows, weight).reshape(rows.shape[0], -1)
    if bias is not None:
        out = out + bias
    if activation == "relu":
        out = out.clamp_min(0.0)
    elif activation == "relu6":
        out = out.clamp(0.0, 6.0)
    return out


def _error(rows, weight, bias, activation, target) -> float:
    return float((_output(rows, weight, bias, activation) - target).pow(2).sum(1).mean())


def round_layer(layer: _Layer, weight, rows, bias, iterations: int = ITERATIONS, seed: int = 0):
    """(integers, RoundedLayer) for one layer: the learned int8 weight as a float tensor of integers."""
    import torch

    scale, zero_point = (t.detach().to(torch.float32) for t in layer.weight_observer.calculate_qparams())
    low, high = layer.weight_observer.quant_min, layer.weight_observer.quant_max
    groups = rows.shape[1]
    shape = (groups, weight.shape[0] // groups, -1)
    scale = scale.reshape(-1).expand(weight.shape[0]).reshape(groups, -1, 1)  # per-tensor observers: one scale
    zero_point = zero_point.reshape(-1).expand(weight.shape[0]).reshape(groups, -1, 1)
    w = weight.detach().to(torch.float32).reshape(shape)
    floor = torch.floor(w / scale)
    nearest = torch.clamp(torch.round(w / scale) + zero_point, low, high) - zero_point
    quantized_rows = rows
    if layer.input_observer is not None and layer.input_observer.dtype in _int_dtypes():
        in_scale, in_zero = layer.input_observer.calculate_qparams()
        quantized_rows = torch.fake_quantize_per_tensor_affine(
            rows, float(in_scale), int(in_zero), layer.input_observer.quant_min, layer.input_observer.quant_max)
    bias = None if bias is None else bias.detach().to(torch.float32)
    target = _output(rows, w, bias, layer.activation)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(rows.shape[0], generator=generator)
    n_check = max(1, int(rows.shape[0] * HOLDOUT))
    check, fit = order[:n_check], order[n_check:]

    def soft_weight(h):
        return scale * (torch.clamp(floor + h + zero_point, low, high) - zero_point)

    rest = (w / scale - floor).clamp(0.01, 0.99)
    v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)
    warm = int(iterations * WARMUP)
    # saturated sigmoids make denormal gradients, tens of times slower on a CPU: flush them to zero
    flushed = torch.set_flush_denormal(True)
    try:
        _optimise(v, fit, quantized_rows, target, soft_weight, bias, layer.activation, iterations, warm, generator)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    learned = torch.clamp(floor + (v.detach() >= 0).to(torch.float32) + zero_point, low, high) - zero_point
    with torch.no_grad():
        e_near = _error(quantized_rows[check], scale * nearest, bias, layer.activation, target[check])
        e_learned = _error(quantized_rows[check], scale * learned, bias, layer.activation, target[check])
    kept = "adaround" if e_learned <= e_near else "nearest"
    integers = learned if kept == "adaround" else nearest
    record = RoundedLayer(layer.node.name, int(rows.shape[0]), n_check, e_near, e_learned, int((learned != nearest).sum()),
                          int(w.numel()), kept)
    return (integers * scale).reshape(weight.shape), record


def _optimise(v, fit, rows, target, soft_weight, bias, activation, iterations: int, warm: int, generator) -> None:
    """Adam on V: output error of the soft-rounded layer, plus the annealed rounding term after ``warm``."""
    import torch

    optimizer = torch.optim.Adam([v], lr=LEARNING_RATE)
    with torch.enable_grad():
        for step in range(iterations):
            batch = fit[torch.randint(len(fit), (min(BATCH, len(fit)),), generator=generator)]
            h = _h(v)
            loss = (_output(rows[batch], soft_weight(h), bias, activation) - target[batch]).pow(2).sum(1).mean()
            if step >= warm:
                beta = BETA_END + (BETA_START - BETA_END) * (1 - (step - warm) / max(1, iterations - warm))
                loss = loss + REGULARIZATION * (1 - (2 * h - 1).abs().pow(beta)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _digest(*tensors) -> str:
    digest = hashlib.sha1()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def adaround(prepared, samples: Sequence[tuple], iterations: int = ITERATIONS, seed: int = 0,
             say: Callable[[str], None] | None = None) -> list[RoundedLayer]:
    """Round every conv/linear weight of the calibrated ``prepared`` graph adaptively, in place."""
    import torch

    layers = find_layers(prepared)
    todo, records = [], []
    for layer in layers:
        weight = attribute(prepared, layer.weight_name)
        key = (layer.weight_name, _digest(weight, layer.weight_observer.calculate_qparams()[0]), iterations, seed)
        if key in _ROUNDED:
            with torch.no_grad():
                weight.copy_(_ROUNDED[key][0])
            records.append(dataclasses.replace(_ROUNDED[key][1], kept="cached"))
        else:
            todo.append((layer, weight, key))
    if not todo:
        return records
    data = collect_rows(prepared, [t[0] for t in todo], samples, seed=seed)
    for index, (layer, weight, key) in enumerate(todo, 1):
        rows, bias = data.pop(layer.node.name)
        start = time.perf_counter()
        if rows.shape[0] < MIN_ROWS:
            if say is not None:
                say(f"int8: adaround {index}/{len(todo)} {layer.node.name}: {rows.shape[0]} input rows "
                    f"(< {MIN_ROWS}), nearest rounding kept")
            continue
        rounded, record = round_layer(layer, weight, rows, bias, iterations, seed)
        with torch.no_grad():
            weight.copy_(rounded.to(weight.dtype))
        records.append(record)
        if len(_ROUNDED) >= _CACHE_LIMIT:
            _ROUNDED.clear()
        _ROUNDED[key] = (rounded.to(weight.dtype).clone(), record)
        if say is not None:
            say(f"int8: adaround {index}/{len(todo)} {layer.node.name}: output error {record.error_nearest:.3g} -> "
                f"{record.error_adaround:.3g} on {record.checked_rows} held-out rows, "
                f"{record.changed} of {record.weights} weights rounded the other way"
                + (" (worse: nearest kept)" if record.kept == "nearest" else "") + f" ({time.perf_counter() - start:.1f}s)")
    return records
