"""Convolution, pooling, linear/matmul, attention and recurrent ops (iOS15..iOS18 semantics)."""
from __future__ import annotations

import itertools
import math

import numpy as np

from edgekit.targets.coreml.mil.registry import Args, OpError, op


def _pads(pad_type: str, spatial, kernel, strides, dilations, custom) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dimension, as MIL's conv/pool docs define pad_type."""
    pad_type = (pad_type or "valid").lower()
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    if pad_type == "custom":
        custom = list(custom) if custom is not None else [0] * (2 * len(spatial))
        return [(custom[2 * i], custom[2 * i + 1]) for i in range(len(spatial))]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            effective = (k - 1) * d + 1
            total = max(0, s * math.ceil(size / s) - size + effective - s)
            small, large = total // 2, total - total // 2
            out.append((small, large) if pad_type == "same" else (large, small))
        return out
    raise OpError(f"unknown pad_type {pad_type!r}")


def _taps(x, kernel, strides, dilations, out_sizes):
    """Every kernel tap's strided view of the padded input: an array (N, C, taps, *out)."""
    views = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None), slice(None)]
        for o, d, s, n in zip(offsets, dilations, strides, out_sizes):
            start = o * d
            index.append(slice(start, start + s * (n - 1) + 1, s))
        views.append(x[tuple(index)])
    return np.stack(views, axis=2)


def _out_size(size, before, after, k, s, d, ceil_mode=False):
    effective = (k - 1) * d + 1
    span = size + before + after - effective
    if span < 0:
        raise OpError(f"window {effective} is larger than the padded input {size + before + after}")
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + before and (before or after):
        out -= 1
    return out


@op("conv")
def _conv(a: Args):
    x, weight = a["x"], a["weight"]
    spatial = x.shape[2:]
    kernel = weight.shape[2:]
    strides = a.ints("strides", [1] * len(spatial))
    dilations = a.ints("dilations", [1] * len(spatial))
    groups = a.int("groups", 1)
    pads = _pads(a.str("pad_type", "valid"), spatial, kernel, strides, dilations, a.ints("pad"))
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    outs = [_out_size(n, b, e, k, s, d) for n, (b, e), k, s, d in zip(spatial, pads, kernel, strides, dilations)]
    n, c = x.shape[:2]
    o = weight.shape[0]
    if c % groups or o % groups or weight.shape[1] != c // groups:
        raise OpError(f"conv: weight {weight.shape} does not fit {c} input channels in {groups} groups")
    taps = math.prod(kernel)
    if taps == 1 and all(s == 1 for s in strides):
        cols = x.reshape(n, groups, c // groups, -1)
    else:
        cols = _taps(x, kernel, strides, dilations, outs).reshape(n, groups, (c // groups) * taps, -1)
    w = weight.reshape(groups, o // groups, -1)
    y = np.matmul(w[None], cols).reshape((n, o, *outs))
    bias = a.get("bias")
    return y if bias is None else y + bias.reshape((1, -1) + (1,) * len(outs))


@op("conv_transpose")
def _conv_transpose(a: Args):
    """Scatter each input position's kernel into the output (the adjoint of conv), then crop the pads."""
    x, weight = a["x"], a["weight"]  # weight: (C_in, C_out/groups, *K)
    spatial = x.shape[2:]
    kernel = weight.shape[2:]
    strides = a.ints("strides", [1] * len(spatial))
    dilations = a.ints("dilations", [1] * len(spatial))
    groups = a.int("groups", 1)
    pad_type = a.str("pad_type", "valid").lower()
    n, c = x.shape[:2]
    og = weight.shape[1]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(spatial, strides, kernel, dilations)]
    y = np.zeros((n, groups * og, *full), dtype=np.float64)
    xg = x.reshape(n, groups, c // groups, *spatial)
    wg = weight.reshape(groups, c // groups, og, *kernel)
    for offsets in itertools.product(*(range(k) for k in kernel)):
        contribution = np.einsum("ngc...,gco->ngo...", xg, wg[(slice(None), slice(None), slice(None), *offsets)])
        index = [slice(None), slice(None)] + [
            slice(o * d, o * d + s * (i - 1) + 1, s) for o, d, s, i in zip(offsets, dilations, strides, spatial)
        ]
        y[tuple(index)] += contribution.reshape(n, groups * og, *spatial)
    wanted = a.ints("output_shape")
    if pad_type == "custom" or pad_type == "valid":
        pads = _pads(pad_type, spatial, kernel, strides, dilations, a.ints("pad"))
    else:  # same: the output is input * stride; crop the excess evenly (extra at the end for "same")
        target = wanted[2:] if wanted else [i * s for i, s in zip(spatial, strides)]
        pads = []
        for f, t in zip(full, target):
            total = max(f - t, 0)
            pads.append((total // 2, total - total // 2) if pad_type == "same" else (total - total // 2, total // 2))
    index = [slice(None), slice(None)] + [slice(b, f - e) for (b, e), f in zip(pads, full)]
    y = y[tuple(index)]
    if wanted:  # output_shape may ask for trailing rows that no input reaches (zeros)
        extra = [(0, max(0, t - s)) for t, s in zip(wanted[2:], y.shape[2:])]
        y = np.pad(y, [(0, 0), (0, 0)] + extra)[(slice(None), slice(None), *(slice(0, t) for t in wanted[2:]))]
    bias = a.get("bias")
    return y if bias is None else y + bias.reshape((1, -1) + (1,) * len(spatial))


def _pool(a: Args, kind: str):
    x = a["x"]
    spatial = x.shape[2:]
    kernel = a.ints("kernel_sizes")
    strides = a.ints("strides", [1] * len(spatial))
    ceil_mode = a.bool("ceil_mode", False)
    pads = _pads(a.str("pad_type", "valid"), spatial, kernel, strides, [1] * len(spatial), a.ints("pad"))
    outs = [_out_size(n, b, e, k, s, 1, ceil_mode) for n, (b, e), k, s in zip(spatial, pads, kernel, strides)]
    # ceil mode: windows may run past the explicit padding; those cells never count
    overhang = [max(0, (o - 1) * s + k - (n + b + e)) for o, s, k, n, (b, e) in zip(outs, strides, kernel, spatial, pads)]
    full = [(b, e + h) for (b, e), h in zip(pads, overhang)]
    if kind == "max":
        padded = np.pad(x, [(0, 0), (0, 0)] + full, constant_values=-np.inf)
        return _taps(padded, kernel, strides, [1] * len(spatial), outs).max(axis=2)
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + full)
    if kind == "l2":
        return np.sqrt(np.square(_taps(padded, kernel, strides, [1] * len(spatial), outs)).sum(axis=2))
    sums = _taps(padded, kernel, strides, [1] * len(spatial), outs).sum(axis=2)
    if a.bool("exclude_padding_from_average", False):
        ones = np.pad(np.ones((1, 1, *spatial)), [(0, 0), (0, 0)] + full)
    else:  # explicit padding counts, the ceil-mode overhang does not (as in PyTorch)
        ones = np.pad(np.ones((1, 1, *(n + b + e for n, (b, e) in zip(spatial, pads)))), [(0, 0), (0, 0)] + [(0, h) for h in overhang])
    counts = _taps(ones, kernel, strides, [1] * len(spatial), outs).sum(axis=2)
    return sums / counts


@op("max_pool")
def _max_pool(a: Args):
    return _pool(a, "max")


@op("avg_pool")
def _avg_pool(a: Args):
    return _pool(a, "avg")


@op("l2_pool")
def _l2_pool(a: Args):
    return _pool(a, "l2")


@op("linear")
def _linear(a: Args):
    y = np.matmul(a["x"], a["weight"].T)
    bias = a.get("bias")
    return y if bias is None else y + bias


@op("matmul")
def _matmul(a: Args):
    x, y = a["x"], a["y"]
    if a.bool("transpose_x") and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if a.bool("transpose_y") and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@op("einsum")
def _einsum(a: Args):
    values = a.list("values")
    return np.einsum(a.str("equation"), *values)


@op("scaled_dot_product_attention")
def _sdpa(a: Args):
    q, k, v = a["query"], a["key"], a["value"]
    scores = np.matmul(q.astype(np.float64), np.swapaxes(k, -1, -2)) / math.sqrt(q.shape[-1])
    mask = a.get("attn_mask")
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return np.matmul(scores / scores.sum(axis=-1, keepdims=True), v)


_RNN_ACTIVATIONS = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0),
    "linear": lambda x: x, "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0, 1), "scaled_tanh": np.tanh,
}


def _activation(a: Args, name: str, default: str):
    kind = a.str(name, default).lower()
    if kind not in _RNN_ACTIVATIONS or kind == "scaled_tanh":
        raise OpError(f"{a.op_type}: {name} {kind!r} is not implemented")
    return _RNN_ACTIVATIONS[kind]


def _lstm_direction(x, h, c, w_ih, w_hh, bias, peephole, clip, acts, reverse):
    rec, cell, out_act = acts
    hidden = h.shape[-1]
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = [None] * x.shape[0]
    projected = np.matmul(x, w_ih.T) + bias  # (s, b, 4H), gates in MIL order [i, f, o, z]
    for t in steps:
        gates = projected[t] + h @ w_hh.T
        i, f, o, z = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        if peephole is not None:
            i = i + c * peephole[:hidden]
            f = f + c * peephole[hidden:2 * hidden]
        i, f, z = rec(i), rec(f), cell(z)
        c = f * c + i * z
        if clip is not None:
            c = np.clip(c, -clip, clip)
        if peephole is not None:
            o = o + c * peephole[2 * hidden:]
        h = rec(o) * out_act(c)
        outputs[t] = h
    return np.stack(outputs), h, c


@op("lstm")
def _lstm(a: Args):
    x = a["x"].astype(np.float64)  # (s, b, I)
    direction = a.str("direction", "forward").lower()
    acts = (_activation(a, "recurrent_activation", "sigmoid"), _activation(a, "cell_activation", "tanh"),
            _activation(a, "activation", "tanh"))
    h0, c0 = a["initial_h"].astype(np.float64), a["initial_c"].astype(np.float64)
    hidden = a["weight_hh"].shape[-1]
    clip = a.float("clip")
    four_h = 4 * hidden

    def bias(name):
        value = a.get(name)
        return np.zeros(four_h) if value is None else value

    if direction in ("forward", "reverse"):
        seq, h, c = _lstm_direction(x, h0, c0, a["weight_ih"], a["weight_hh"], bias("bias"), a.get("peephole"),
                                    clip, acts, direction == "reverse")
    elif direction == "bidirectional":
        fwd = _lstm_direction(x, h0[:, :hidden], c0[:, :hidden], a["weight_ih"], a["weight_hh"], bias("bias"),
                              a.get("peephole"), clip, acts, False)
        bwd = _lstm_direction(x, h0[:, hidden:], c0[:, hidden:], a["weight_ih_back"], a["weight_hh_back"],
                              bias("bias_back"), a.get("peephole_back"), clip, acts, True)
        seq = np.concatenate([fwd[0], bwd[0]], axis=-1)
        h = np.concatenate([fwd[1], bwd[1]], axis=-1)
        c = np.concatenate([fwd[2], bwd[2]], axis=-1)
    else:
        raise OpError(f"lstm: unknown direction {direction!r}")
    if not a.bool("output_sequence", False):
        seq = h[None] if direction != "bidirectional" else np.concatenate([seq[-1:, :, :hidden], seq[:1, :, hidden:]], axis=-1)
    return seq, h, c
