"""The Core AI op table: op name -> NumPy implementation, following the op definitions that coreai-core
ships (the docstrings of ``coreai._compiler.dialects._coreai_ops_gen``). Where an op means the same
as a MIL op (conv, pooling, softmax, gather_nd, the weight decompression formulas), the MIL reference
interpreter's kernel runs it (targets/coreml/mil), so each semantic lives in one place.

Each implementation takes the evaluated operands (float16 arrive as float32), the op's attributes
(as MLIR text) and its declared result types; the interpreter casts each result to its declared type.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from edgekit.targets.coreml.mil import ops_quant
from edgekit.targets.coreml.mil.registry import OPS as MIL_OPS
from edgekit.targets.coreml.mil.registry import Args, OpError

OPS: dict[str, Callable[..., Any]] = {}


def op(*names: str):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn

    return register


def _mil(op_type: str, **params):
    """Run the MIL interpreter's kernel for ``op_type`` with MIL parameter names."""
    return MIL_OPS[op_type](Args(op_type, {k: [v] for k, v in params.items() if v is not None}, ()))


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _is_int(*values) -> bool:
    return all(np.asarray(v).dtype.kind in "iu" for v in values)


def _divide(x, y):
    if _is_int(x, y):  # integer division truncates toward zero (C semantics)
        return (np.trunc(np.divide(x, y, dtype=np.float64))).astype(np.result_type(x, y))
    return np.divide(x, y)


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "divide": _divide, "maximum": np.maximum,
           "minimum": np.minimum, "pow": np.power, "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
           "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor, "floor_divide": np.floor_divide,
           "modulo": np.fmod, "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor}
for _name, _fn in _BINARY.items():
    # coreai.X takes same-shape operands; coreai.decomposable.broadcasting_X broadcasts: NumPy does both
    op(_name, f"broadcasting_{_name}")(lambda args, attrs, types, _fn=_fn: _fn(args[0], args[1]))

_UNARY = {"abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tan": np.tan,
          "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
          "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "round": np.round, "not": np.logical_not,
          "rsqrt": lambda x: 1.0 / np.sqrt(x), "relu": lambda x: np.maximum(x, 0),
          "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))),
          "silu": lambda x: x / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))}
for _name, _fn in _UNARY.items():
    op(_name)(lambda args, attrs, types, _fn=_fn: _fn(args[0]))


@op("erf")
def _erf(args, attrs, types):
    return _mil("erf", x=args[0])


@op("gelu")
def _gelu(args, attrs, types):
    mode = attrs.get("approximate", "none")
    mil_mode = "TANH_APPROXIMATION" if "tanh" in mode else "SIGMOID_APPROXIMATION" if "sigmoid" in mode else "EXACT"
    return _mil("gelu", x=args[0], mode=mil_mode)


@op("where", "broadcasting_where")
def _where(args, attrs, types):
    return np.where(np.asarray(args[0]).astype(bool), args[1], args[2])


@op("softmax")
def _softmax(args, attrs, types):
    return _mil("softmax", x=args[0], axis=int(np.asarray(args[1]).reshape(-1)[0]))


@op("conv2d", "conv3d")
def _conv(args, attrs, types):
    # padding is an explicit coreai.pad before the conv: the conv itself is "valid"
    return _mil("conv", x=args[0], weight=args[1], strides=args[2], dilations=args[3], groups=args[4], pad_type="valid")


def _no_dilation(dilation, name: str) -> None:
    if any(d != 1 for d in _ints(dilation)):
        raise OpError(f"{name} with dilation {_ints(dilation)} is not implemented")


@op("max_pool_2d", "max_pool_3d")
def _max_pool(args, attrs, types):
    _no_dilation(args[3], "max_pool")
    return _mil("max_pool", x=args[0], kernel_sizes=args[1], strides=args[2], ceil_mode=bool(np.asarray(args[4])),
                pad_type="valid")


@op("sum_pool_2d", "sum_pool_3d")
def _sum_pool(args, attrs, types):
    _no_dilation(args[3], "sum_pool")
    kernel = _ints(args[1])
    mean = _mil("avg_pool", x=args[0], kernel_sizes=args[1], strides=args[2], pad_type="valid")
    return mean * math.prod(kernel)  # valid windows only: every mean is over the full kernel


@op("batch_matmul", "broadcasting_batch_matmul")
def _matmul(args, attrs, types):
    return np.matmul(args[0], args[1])


@op("pad")
def _pad(args, attrs, types):
    x, padding = args[0], _ints(args[1])
    pairs = list(zip(padding[0::2], padding[1::2]))
    mode = attrs.get("padding_mode", "constant")
    for name, numpy_mode in (("constant", "constant"), ("replicate", "edge"), ("reflect", "reflect"),
                             ("symmetric", "symmetric"), ("circular", "wrap")):
        if f"<{name}>" in mode or mode == name:
            if numpy_mode == "constant":
                return np.pad(x, pairs, constant_values=np.asarray(args[2]).reshape(-1)[0])
            return np.pad(x, pairs, mode=numpy_mode)
    raise OpError(f"pad mode {mode} is not implemented")


def _declared(types, index=0):
    if any(d is None for d in types[index].shape):
        raise OpError("a dynamic result shape is not implemented")
    return tuple(types[index].shape)


@op("reshape", "expand_dims", "shrink_dims")
def _reshape(args, attrs, types):
    return np.reshape(args[0], _declared(types))  # element count is checked by NumPy


@op("transpose")
def _transpose(args, attrs, types):
    return np.transpose(args[0], _ints(args[1]))


@op("broadcast_to", "broadcast_in_dims")
def _broadcast(args, attrs, types):
    return np.broadcast_to(args[0], _declared(types)).copy()


@op("tile")
def _tile(args, attrs, types):
    return np.tile(args[0], _ints(args[1]))


@op("concat")
def _concat(args, attrs, types):
    return np.concatenate(args[1:], axis=int(np.asarray(args[0]).reshape(-1)[0]))


@op("split")
def _split(args, attrs, types):
    axis = int(np.asarray(args[2]).reshape(-1)[0]) % np.ndim(args[0])
    sizes = [t.shape[axis] for t in types]
    return tuple(np.split(args[0], np.cumsum(sizes)[:-1], axis=axis))


@op("slice")
def _slice(args, attrs, types):
    x = args[0]
    slices = []
    for size, start, end, step in zip(x.shape, _ints(args[1]), _ints(args[2]), _ints(args[3])):
        if step == 0:
            raise OpError("slice with a zero stride")
        start, end = (start + size if start < 0 else start), (end + size if end < -(step < 0) else end)
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
        else:
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
        slices.append(slice(start, None if end < 0 else end, step))
    return x[tuple(slices)]


@op("reverse")
def _reverse(args, attrs, types):
    """result[..., i_d, ...] = input[..., shape[d] - 1 - i_d, ...] for every d in dims (negative d wraps)."""
    x = np.asarray(args[0])
    dims = [d + x.ndim if d < 0 else d for d in _ints(args[1])]
    if len(set(dims)) != len(dims) or any(not 0 <= d < x.ndim for d in dims):
        raise OpError(f"reverse dims {_ints(args[1])} invalid for rank {x.ndim}")
    return np.flip(x, axis=tuple(dims)) if dims else x


@op("gather_along_axis")
def _gather_along_axis(args, attrs, types):
    x, indices = args[0], np.asarray(args[1]).astype(np.int64)
    axis = int(np.asarray(args[2]).reshape(-1)[0]) % x.ndim
    return np.take_along_axis(x, np.where(indices < 0, indices + x.shape[axis], indices), axis=axis)


@op("gather_nd")
def _gather_nd(args, attrs, types):
    return _mil("gather_nd", x=args[0], indices=args[1])


@op("cast")
def _cast(args, attrs, types):
    x = np.asarray(args[0])
    dtype = types[0].dtype
    if dtype is None:
        raise OpError(f"cast to {types[0].element} is not implemented")
    if x.dtype.kind == "f" and np.dtype(dtype).kind in "iu":
        return np.trunc(x).astype(dtype)  # float -> int truncates toward zero
    return x.astype(dtype)


@op("get_shape")
def _get_shape(args, attrs, types):
    return np.asarray(np.shape(args[0]), dtype=types[0].dtype or np.uint32)


@op("range")
def _range(args, attrs, types):
    return np.arange(np.asarray(args[0]).item(), np.asarray(args[1]).item(), np.asarray(args[2]).item())


def _reducer(fn):
    # reduced dimensions are always kept (coreai.reduce_*)
    return lambda args, attrs, types: fn(args[0], axis=tuple(_ints(args[1])), keepdims=True)


for _name, _fn in {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
                   "reduce_product": np.prod, "all": np.all, "any": np.any}.items():
    op(_name)(_reducer(_fn))


@op("argmax")
def _argmax(args, attrs, types):
    return np.argmax(args[0], axis=int(np.asarray(args[1]).reshape(-1)[0])).reshape(_declared(types))


@op("blockwise_shift_scale")
def _blockwise_shift_scale(args, attrs, types):
    data, scale, offset1, offset2 = args
    return ops_quant._shift_scale(data, scale, offset1) + ops_quant._blocks(offset2, np.shape(data))


@op("lut_to_dense")
def _lut_to_dense(args, attrs, types):
    return ops_quant._lut_dense(args[0], np.asarray(args[1]), int(np.asarray(args[2]).reshape(-1)[0]))


def _per_axis(param, rank: int, axis) -> np.ndarray:
    """A 0-D or 1-D quantization parameter shaped to broadcast along ``axis`` (1-D axis: per tensor)."""
    param = np.asarray(param, dtype=np.float64)
    axes = np.asarray(axis)
    if axes.ndim or param.ndim == 0:
        return param.reshape(()) if param.size == 1 else param
    shape = [1] * rank
    shape[int(axes) % rank] = -1
    return param.reshape(shape)


@op("quantize")
def _quantize(args, attrs, types):
    x, scale, offset1, offset2, axis = args
    rank = np.ndim(x)
    q = (np.asarray(x, np.float64) - _per_axis(offset2, rank, axis)) / _per_axis(scale, rank, axis)
    dtype = types[0].dtype
    if dtype is None or np.dtype(dtype).kind not in "iu":
        raise OpError(f"quantize to {types[0].element} is not implemented")
    info = np.iinfo(dtype)
    return np.clip(np.round(q) + _per_axis(offset1, rank, axis), info.min, info.max)


@op("dequantize")
def _dequantize(args, attrs, types):
    x, scale, offset1, offset2, axis = args
    rank = np.ndim(x)
    return ((np.asarray(x, np.float64) - _per_axis(offset1, rank, axis)) * _per_axis(scale, rank, axis)
            + _per_axis(offset2, rank, axis))
