"""Elementwise, activation, reduction, softmax and normalization ops (iOS15..iOS18 semantics)."""
from __future__ import annotations

import math

import numpy as np

from edgekit.targets.coreml.mil.registry import Args, OpError, op

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "floor_div": np.floor_divide, "mod": np.mod,
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}


def _binary(a: Args):
    x, y = a["x"], a["y"]
    if a.op_type == "real_div" and np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
        return np.floor_divide(x, y)  # MIL real_div on integers rounds toward -inf, like floor_div
    return _BINARY[a.op_type](x, y)


op(*_BINARY)(_binary)


def _erf(x):
    try:
        from scipy.special import erf  # vectorized; scikit-learn (the demo extra) brings scipy
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erf, otypes=[np.float64])(x)
    return erf(np.asarray(x, dtype=np.float64))


_UNARY = {
    "abs": np.abs, "acos": np.arccos, "asin": np.arcsin, "atan": np.arctan, "atanh": np.arctanh,
    "ceil": np.ceil, "cos": np.cos, "cosh": np.cosh, "exp": np.exp, "exp2": np.exp2, "floor": np.floor,
    "round": np.round, "sign": np.sign, "sin": np.sin, "sinh": np.sinh, "sqrt": np.sqrt, "square": np.square,
    "tan": np.tan, "tanh": np.tanh, "logical_not": np.logical_not, "erf": None,
    "relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)), "softsign": lambda x: x / (1 + np.abs(x)),
    "softplus": lambda x: np.logaddexp(0, x), "relu6": lambda x: np.clip(x, 0, 6),
}


@op(*_UNARY)
def _unary(a: Args):
    x = a["x"]
    if a.op_type == "erf":
        return _erf(x)
    return _UNARY[a.op_type](x)


@op("log")
def _log(a: Args):
    return np.log(a["x"] + a.float("epsilon", 1e-45))


@op("rsqrt")
def _rsqrt(a: Args):
    return 1 / np.sqrt(a["x"] + a.float("epsilon", 1e-12))


@op("inverse")
def _inverse(a: Args):
    return 1 / (a["x"] + a.float("epsilon", 1e-4))


@op("clip")
def _clip(a: Args):
    return np.minimum(np.maximum(a["x"], a["alpha"]), a["beta"])


@op("threshold")
def _threshold(a: Args):
    return np.maximum(a["x"], a["alpha"])


@op("gelu")
def _gelu(a: Args):
    x = a["x"].astype(np.float64)
    mode = a.str("mode", "EXACT").upper()
    if mode == "EXACT":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1 + np.exp(-1.702 * x))
    raise OpError(f"gelu: unknown mode {mode!r}")


@op("leaky_relu")
def _leaky_relu(a: Args):
    x = a["x"]
    return np.where(x >= 0, x, a.float("alpha", 0.01) * x)


@op("elu")
def _elu(a: Args):
    x = a["x"]
    return np.where(x > 0, x, a.float("alpha", 1.0) * (np.exp(np.minimum(x, 0)) - 1))


@op("thresholded_relu")
def _thresholded_relu(a: Args):
    x = a["x"]
    return np.where(x >= a.float("alpha", 1.0), x, 0)


def _per_channel(value, x):
    """alpha of prelu / softplus_parametric: a [C] vector on axis 1 (or a scalar)."""
    value = np.asarray(value)
    if value.ndim == 0 or x.ndim < 2:
        return value
    return value.reshape((1, -1) + (1,) * (x.ndim - 2))


@op("prelu")
def _prelu(a: Args):
    x = a["x"]
    return np.where(x > 0, x, _per_channel(a["alpha"], x) * x)


@op("softplus_parametric")
def _softplus_parametric(a: Args):
    x = a["x"]
    return _per_channel(a["alpha"], x) * np.logaddexp(0, _per_channel(a["beta"], x) * x)


@op("sigmoid_hard")
def _sigmoid_hard(a: Args):
    return np.clip(a.float("alpha", 0.2) * a["x"] + a.float("beta", 0.5), 0, 1)


@op("clamped_relu")
def _clamped_relu(a: Args):
    x = a["x"]
    return np.minimum(np.where(x >= 0, x, a.float("alpha", 0.01) * x), a.float("beta", 6.0))


@op("linear_activation")
def _linear_activation(a: Args):
    return a["x"] * a.float("alpha", 1.0) + a.float("beta", 0.0)


@op("scaled_tanh")
def _scaled_tanh(a: Args):
    return a.float("alpha", 1.0) * np.tanh(a.float("beta", 1.0) * a["x"])


@op("softmax")
def _softmax(a: Args):
    x = a["x"].astype(np.float64)
    axis = a.int("axis", -1)
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def _axes(a: Args, x):
    axes = a.ints("axes")
    return tuple(range(x.ndim)) if axes is None else tuple(v % max(x.ndim, 1) for v in axes)


def _reduce(fn):
    def run(a: Args):
        x = a["x"]
        return fn(x, _axes(a, x), a.bool("keep_dims", False))

    return run


_REDUCTIONS = {
    "reduce_sum": lambda x, ax, k: np.sum(x, axis=ax, keepdims=k),
    "reduce_mean": lambda x, ax, k: np.mean(x, axis=ax, keepdims=k, dtype=np.float64),
    "reduce_max": lambda x, ax, k: np.max(x, axis=ax, keepdims=k),
    "reduce_min": lambda x, ax, k: np.min(x, axis=ax, keepdims=k),
    "reduce_prod": lambda x, ax, k: np.prod(x, axis=ax, keepdims=k),
    "reduce_l1_norm": lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k),
    "reduce_l2_norm": lambda x, ax, k: np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=ax, keepdims=k)),
    "reduce_sum_square": lambda x, ax, k: np.sum(np.square(x, dtype=np.float64), axis=ax, keepdims=k),
    "reduce_log_sum": lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)),
    "reduce_log_sum_exp": lambda x, ax, k: _logsumexp(x, ax, k),
}


def _logsumexp(x, axes, keep):
    peak = np.max(x, axis=axes, keepdims=True)
    out = np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return out if keep else np.squeeze(out, axis=axes)


for _name, _fn in _REDUCTIONS.items():
    op(_name)(_reduce(_fn))


@op("reduce_argmax", "reduce_argmin")
def _reduce_arg(a: Args):
    x = a["x"]
    axis = a.int("axis", -1)
    out = (np.argmax if a.op_type == "reduce_argmax" else np.argmin)(x, axis=axis)
    return np.expand_dims(out, axis) if a.bool("keep_dims", False) else out


@op("layer_norm")
def _layer_norm(a: Args):
    x = a["x"].astype(np.float64)
    axes = _axes(a, x)
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + a.float("epsilon", 1e-5))
    gamma, beta = a.get("gamma"), a.get("beta")
    # gamma/beta have the shape of x over the normalized axes (trailing, as PyTorch emits them)
    if gamma is not None:
        y = y * _over_axes(gamma, x.shape, axes)
    if beta is not None:
        y = y + _over_axes(beta, x.shape, axes)
    return y


def _over_axes(param, shape, axes):
    view = [1] * len(shape)
    for axis in axes:
        view[axis] = shape[axis]
    return np.asarray(param).reshape(view)


def _channel(param, rank):
    return np.asarray(param).reshape((1, -1) + (1,) * (rank - 2))


def _scale_shift(a: Args, y):
    """The optional per-channel gamma and beta of batch_norm and instance_norm."""
    if a.get("gamma") is not None:
        y = y * _channel(a["gamma"], y.ndim)
    if a.get("beta") is not None:
        y = y + _channel(a["beta"], y.ndim)
    return y


@op("batch_norm")
def _batch_norm(a: Args):
    x = a["x"].astype(np.float64)
    y = (x - _channel(a["mean"], x.ndim)) / np.sqrt(_channel(a["variance"], x.ndim) + a.float("epsilon", 1e-5))
    return _scale_shift(a, y)


@op("instance_norm")
def _instance_norm(a: Args):
    x = a["x"].astype(np.float64)
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + a.float("epsilon", 1e-5))
    return _scale_shift(a, y)


@op("l2_norm")
def _l2_norm(a: Args):
    x = a["x"].astype(np.float64)
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))  # the last three (spatial) dimensions
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + a.float("epsilon", 1e-6))
