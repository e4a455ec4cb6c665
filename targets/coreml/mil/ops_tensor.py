"""Shape, slicing, indexing, selection and cast ops (iOS15..iOS18 semantics)."""
from __future__ import annotations

import numpy as np

from edgekit.targets.coreml.mil.registry import Args, OpError, op

# MIL dtype strings (cast's dtype, quantize's output_dtype) -> numpy
MIL_DTYPES = {
    "fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "int64": np.int64, "uint32": np.uint32,
    "bool": np.bool_,
}


@op("identity")
def _identity(a: Args):
    return a["x"]


@op("cast")
def _cast(a: Args):
    dtype = a.str("dtype")
    if dtype not in MIL_DTYPES:
        raise OpError(f"cast: dtype {dtype!r} is not implemented")
    return np.asarray(a["x"]).astype(MIL_DTYPES[dtype])


@op("reshape")
def _reshape(a: Args):
    x = np.asarray(a["x"])
    shape = a.ints("shape")
    # a 0 copies the matching dimension of x, counted from the right (iOS17; the same as iOS15's
    # position-wise rule when the ranks agree); a 0 beyond x's rank is 1
    out = []
    for i, dim in enumerate(shape):
        j = x.ndim - (len(shape) - i)
        out.append((x.shape[j] if j >= 0 else 1) if dim == 0 else dim)
    return x.reshape(out)


#: ops that apply one NumPy function to x and one integer-list parameter
_X_AND_INTS = {"transpose": (np.transpose, "perm"), "tile": (np.tile, "reps")}


@op(*_X_AND_INTS)
def _x_and_ints(a: Args):
    fn, param = _X_AND_INTS[a.op_type]
    return fn(a["x"], a.ints(param))


@op("squeeze")
def _squeeze(a: Args):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))


@op("expand_dims")
def _expand_dims(a: Args):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(ax % rank for ax in axes))


@op("flatten2d")
def _flatten2d(a: Args):
    x = np.asarray(a["x"])
    axis = a.int("axis", 1) % max(x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@op("concat")
def _concat(a: Args):
    values = [np.asarray(v) for v in a.list("values")]
    axis = a.int("axis")
    if a.bool("interleave", False):
        if len({v.shape for v in values}) != 1:
            raise OpError("concat: interleave needs inputs of one shape")
        axis %= values[0].ndim
        stacked = np.stack(values, axis=axis + 1)
        return stacked.reshape(values[0].shape[:axis] + (-1,) + values[0].shape[axis + 1:])
    return np.concatenate(values, axis=axis)


@op("stack")
def _stack(a: Args):
    return np.stack([np.asarray(v) for v in a.list("values")], axis=a.int("axis", 0))


@op("split")
def _split(a: Args):
    x = np.asarray(a["x"])
    axis = a.int("axis")
    sizes = a.ints("split_sizes")
    if sizes is None:
        parts = a.int("num_splits")
        if x.shape[axis] % parts:
            raise OpError(f"split: {x.shape[axis]} is not divisible into {parts} parts")
        sizes = [x.shape[axis] // parts] * parts
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@op("slice_by_index")
def _slice_by_index(a: Args):
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", [1] * rank)
    begin_mask = [bool(v) for v in np.asarray(a.get("begin_mask", [False] * rank)).reshape(-1)]
    end_mask = [bool(v) for v in np.asarray(a.get("end_mask", [False] * rank)).reshape(-1)]
    squeeze = [bool(v) for v in np.asarray(a.get("squeeze_mask", [False] * rank)).reshape(-1)]
    index: list = []
    for i in range(rank):
        if squeeze[i]:
            index.append(begin[i])
            continue
        start = None if begin_mask[i] else begin[i]
        stop = None if end_mask[i] else end[i]
        index.append(slice(start, stop, stride[i]))
    return x[tuple(index)]


@op("slice_by_size")
def _slice_by_size(a: Args):
    x = np.asarray(a["x"])
    begin, size = a.ints("begin"), a.ints("size")
    index = []
    for i, (b, s) in enumerate(zip(begin, size)):
        b = b % x.shape[i] if x.shape[i] else 0
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


@op("pad")
def _pad(a: Args):
    x = np.asarray(a["x"])
    pad = a.ints("pad")
    pairs = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    mode = a.str("mode", "constant")
    if mode == "constant":
        return np.pad(x, pairs, constant_values=a.float("constant_val", 0.0))
    if mode in ("reflect", "replicate"):
        return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    raise OpError(f"pad: mode {mode!r} is not implemented")


def _indices(indices, size):
    indices = np.asarray(indices).astype(np.int64)
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise OpError(f"gather: index out of range for a dimension of {size}")
    return np.where(indices < 0, indices + size, indices)


@op("gather")
def _gather(a: Args):
    x = np.asarray(a["x"])
    axis = a.int("axis", 0) % x.ndim
    batch_dims = a.int("batch_dims", 0)
    indices = _indices(a["indices"], x.shape[axis])
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    # per batch (the leading batch_dims axes of x and indices), gather along axis
    batch_shape = x.shape[:batch_dims]
    flat_x = x.reshape((-1,) + x.shape[batch_dims:])
    flat_i = indices.reshape((-1,) + indices.shape[batch_dims:])
    parts = [np.take(flat_x[b], flat_i[b], axis=axis - batch_dims) for b in range(flat_x.shape[0])]
    return np.stack(parts).reshape(batch_shape + parts[0].shape)


@op("gather_along_axis")
def _gather_along_axis(a: Args):
    x = np.asarray(a["x"])
    axis = a.int("axis", 0) % x.ndim
    return np.take_along_axis(x, _indices(a["indices"], x.shape[axis]), axis=axis)


@op("gather_nd")
def _gather_nd(a: Args):
    x = np.asarray(a["x"])
    indices = np.asarray(a["indices"]).astype(np.int64)
    batch_dims = a.int("batch_dims", 0)
    depth = indices.shape[-1]
    batch_shape = x.shape[:batch_dims]
    flat_x = x.reshape((-1,) + x.shape[batch_dims:])
    flat_i = indices.reshape((flat_x.shape[0], -1, depth))
    out = []
    for b in range(flat_x.shape[0]):
        idx = [_indices(flat_i[b][:, k], flat_x.shape[1 + k]) for k in range(depth)]
        out.append(flat_x[b][tuple(idx)])
    result = np.stack(out)
    return result.reshape(batch_shape + indices.shape[batch_dims:-1] + x.shape[batch_dims + depth:])


@op("select")
def _select(a: Args):
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


@op("shape")
def _shape(a: Args):
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


@op("fill")
def _fill(a: Args):
    return np.full(a.ints("shape"), a.float("value", 0.0))


@op("fill_like")
def _fill_like(a: Args):
    return np.full(np.shape(a["ref_tensor"]), a.float("value", 0.0))


@op("range_1d")
def _range_1d(a: Args):
    return np.arange(a["start"], a["end"], a["step"])


@op("one_hot")
def _one_hot(a: Args):
    indices = np.asarray(a["indices"]).astype(np.int64)
    depth = int(a["one_hot_vector_size"])
    axis = a.int("axis", -1)
    on, off = a.float("on_value", 1.0), a.float("off_value", 0.0)
    hot = np.where(np.arange(depth) == indices[..., None], on, off)
    return np.moveaxis(hot, -1, axis)


@op("cumsum")
def _cumsum(a: Args):
    x = np.asarray(a["x"])
    axis = a.int("axis", 0)
    if a.bool("reverse"):
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis)
    if a.bool("exclusive"):
        out = out - x
    return np.flip(out, axis) if a.bool("reverse") else out


@op("band_part")
def _band_part(a: Args):
    x = np.asarray(a["x"])
    lower, upper = a.int("lower", -1), a.int("upper", -1)
    rows, cols = np.indices(x.shape[-2:])
    keep = ((lower < 0) | (rows - cols <= lower)) & ((upper < 0) | (cols - rows <= upper))
    return np.where(keep, x, 0)


@op("topk")
def _topk(a: Args):
    x = np.asarray(a["x"])
    k, axis = a.int("k", 1), a.int("axis", -1)
    ascending = a.bool("ascending", False)
    order = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int32)


@op("argsort")
def _argsort(a: Args):
    x = np.asarray(a["x"])
    return np.argsort(x if a.bool("ascending", False) else -x, axis=a.int("axis", -1), kind="stable").astype(np.int32)


@op("reverse")
def _reverse(a: Args):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


@op("pixel_shuffle")
def _pixel_shuffle(a: Args):
    x = np.asarray(a["x"])
    r = a.int("upscale_factor")
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


@op("upsample_nearest_neighbor")
def _upsample_nearest(a: Args):
    x = np.asarray(a["x"])
    sh, sw = a.float("scale_factor_height", 1.0), a.float("scale_factor_width", 1.0)
    if sh != int(sh) or sw != int(sw):
        raise OpError("upsample_nearest_neighbor: fractional scale factors are not implemented")
    return x.repeat(int(sh), axis=-2).repeat(int(sw), axis=-1)
