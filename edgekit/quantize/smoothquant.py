"""SmoothQuant-style scaling (Xiao et al. 2023) of the linear layers that read a LayerNorm, on the
exported graph before PT2E prepares it.

Transformer activations after a LayerNorm carry a few channels with outliers tens of times larger
than the rest; one per-tensor int8 scale for the whole tensor then leaves the other channels a
handful of levels. Per input channel j, s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha) moves that
range into the weights (quantized per output channel, where it costs little): the LayerNorm's
weight and bias are divided by s (free: folded), every linear reading it has its column j
multiplied by s_j. A LayerNorm output that also feeds something else (the residual of a post-LN
block such as BERT's) gets one elementwise ``mul`` by s on that path, so the function is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from edgekit.quantize.annotate import attribute

DEFAULT_ALPHA = 0.5  # the paper's default; it is what balances activation and weight ranges


@dataclass
class SmoothedNorm:
    norm: str
    linears: tuple[str, ...]
    restored_users: int  # non-linear readers that got a compensating mul
    max_scale: float
    min_scale: float


def _norm_nodes(gm) -> list[tuple[Any, list, list]]:
    """(layer_norm node, linear users, other users) for LayerNorms with weight and bias tensors."""
    import torch

    aten = torch.ops.aten
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target != aten.layer_norm.default or len(node.args) < 4:
            continue
        if not all(isinstance(a, torch.fx.Node) and a.op == "get_attr" for a in node.args[2:4]):
            continue
        linears = [u for u in node.users if u.op == "call_function" and u.target == aten.linear.default
                   and u.args[0] is node and isinstance(u.args[1], torch.fx.Node) and u.args[1].op == "get_attr"]
        if linears:
            out.append((node, linears, [u for u in node.users if u not in linears]))
    return out


def has_norm_linear(gm) -> bool:
    """Whether ``gm`` has a LayerNorm (with weight and bias) read by a linear layer: where
    SmoothQuant can act, so where ``auto`` tries it."""
    return bool(_norm_nodes(gm))


def _channel_absmax(gm, nodes, samples: Sequence[tuple]) -> dict:
    """Per-channel (last dim) max |x| of each node's output over the samples."""
    from edgekit.quantize.equalize import channel_maxima

    return channel_maxima(gm, nodes, samples, lambda n, out: out.abs().reshape(-1, out.shape[-1]).amax(0))


def smooth(gm, samples: Sequence[tuple], alpha: float = DEFAULT_ALPHA) -> list[SmoothedNorm]:
    """Apply the scaling to every LayerNorm -> linear group of ``gm`` in place."""
    import torch

    aten = torch.ops.aten
    groups = _norm_nodes(gm)
    if not groups or not samples:
        return []
    act_max = _channel_absmax(gm, [g[0] for g in groups], samples)
    report = []
    with torch.no_grad():
        for index, (norm, linears, others) in enumerate(groups):
            weights = [attribute(gm, lin.args[1].target) for lin in linears]
            w_max = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0)
            a_max = act_max[norm.name]
            scale = (a_max.clamp_min(1e-5) ** alpha / w_max.clamp_min(1e-5) ** (1 - alpha)).clamp_min(1e-5)
            scale = torch.where((a_max > 0) & (w_max > 0), scale, torch.ones_like(scale))
            attribute(gm, norm.args[2].target).div_(scale)
            attribute(gm, norm.args[3].target).div_(scale)
            for w in weights:
                w.mul_(scale.view(1, -1))
            if others:
                name = f"_edgekit_smoothquant_{index}"
                gm.register_buffer(name, scale.to(torch.float32).clone())
                with gm.graph.inserting_after(norm):
                    restore = gm.graph.get_attr(name)
                with gm.graph.inserting_after(restore):
                    restored = gm.graph.call_function(aten.mul.Tensor, (norm, restore))
                for user in others:
                    user.replace_input_with(norm, restored)
            report.append(SmoothedNorm(norm.name, tuple(lin.name for lin in linears), len(others),
                                       float(scale.max()), float(scale.min())))
    gm.graph.lint()
    gm.recompile()
    return report
