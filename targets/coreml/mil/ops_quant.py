"""Compressed weights (constexpr_* ops, iOS16 and iOS18 forms) and activation quantize / dequantize
(iOS17). The constexpr ops depend only on constants: the interpreter evaluates them once, at load."""
from __future__ import annotations

import numpy as np

from edgekit.targets.coreml.mil.ops_tensor import MIL_DTYPES
from edgekit.targets.coreml.mil.registry import Args, OpError, op


def _along(param, rank: int, axis: int | None):
    """A scalar, or a vector laid along ``axis`` of a rank-``rank`` tensor."""
    param = np.asarray(param)
    if param.ndim == 0 or axis is None:
        return param
    shape = [1] * rank
    shape[axis % rank] = -1
    return param.reshape(shape)


def _as_float(values):
    return np.asarray(values).astype(np.float64)


@op("constexpr_affine_dequantize")
def _affine_dequantize(a: Args):
    data = np.asarray(a["quantized_data"])
    axis = a.int("axis", 0)
    zero = _along(a["zero_point"], data.ndim, axis)
    return (_as_float(data) - _as_float(zero)) * _along(a["scale"], data.ndim, axis)


@op("constexpr_cast")
def _constexpr_cast(a: Args):
    return np.asarray(a["source_val"]).astype(MIL_DTYPES[a.str("output_dtype")])


def _blocks(param, shape):
    """Repeat a per-block parameter so that it covers ``shape`` (block size = shape / param shape)."""
    param = np.asarray(param)
    if param.ndim != len(shape):
        raise OpError(f"block parameter of rank {param.ndim} for data of rank {len(shape)}")
    for axis, (size, blocks) in enumerate(zip(shape, param.shape)):
        if size % blocks:
            raise OpError(f"{blocks} blocks do not divide a dimension of {size}")
        param = np.repeat(param, size // blocks, axis=axis)
    return param


def _shift_scale(data, scale, offset):
    data = _as_float(data)
    if offset is not None:
        data = data - _as_float(_blocks(offset, data.shape))
    return data * _blocks(scale, data.shape)


@op("constexpr_blockwise_shift_scale")
def _blockwise_shift_scale(a: Args):
    return _shift_scale(a["data"], a["scale"], a.get("offset"))


def _unpack_bits(packed, nbits: int, count: int):
    """iOS16 packing: bit fields fill each byte from its least significant bit up."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: nbits * count]
    return (bits.reshape(count, nbits).astype(np.uint32) << np.arange(nbits, dtype=np.uint32)).sum(axis=1)


def _lut_dense(indices, lut, vector_axis):
    """iOS18: lut (*groups, palette, vector) over indices of rank K; per-group tables by block."""
    indices = np.asarray(indices).astype(np.int64)
    rank = indices.ndim
    palette, vector = lut.shape[-2], lut.shape[-1]
    groups = lut.shape[:rank]
    # the table of every element: tables repeat over blocks of shape indices.shape / groups
    table_index = np.zeros(indices.shape, dtype=np.int64)
    for axis in range(rank):
        block = indices.shape[axis] // groups[axis]
        position = np.arange(indices.shape[axis]) // block
        shape = [1] * rank
        shape[axis] = -1
        table_index = table_index * groups[axis] + position.reshape(shape)
    tables = lut.reshape(-1, palette, vector)
    values = tables[table_index, indices]  # (*indices.shape, vector)
    if vector == 1:
        return values[..., 0]
    axis = vector_axis % rank
    values = np.moveaxis(values, -1, axis + 1)  # the vector follows its index along vector_axis
    shape = list(indices.shape)
    shape[axis] *= vector
    return values.reshape(shape)


@op("constexpr_lut_to_dense")
def _lut_to_dense(a: Args):
    lut = np.asarray(a["lut"])
    if "shape" in a:  # iOS16: one flat table, packed indices, the shape given
        shape = a.ints("shape")
        nbits = int(np.log2(lut.size))
        count = int(np.prod(shape))
        return lut[_unpack_bits(a["indices"], nbits, count)].reshape(shape)
    return _lut_dense(a["indices"], lut, a.int("vector_axis"))


def _scatter_mask(nonzero, mask):
    dense = np.zeros(np.shape(mask), dtype=np.asarray(nonzero).dtype)
    dense[np.asarray(mask) != 0] = np.asarray(nonzero).reshape(-1)
    return dense


@op("constexpr_sparse_to_dense")
def _sparse_to_dense(a: Args):
    if "shape" in a:  # iOS16: a packed bit mask (LSB first) over the flattened shape
        shape = a.ints("shape")
        count = int(np.prod(shape))
        mask = np.unpackbits(np.asarray(a["mask"], dtype=np.uint8), bitorder="little")[:count]
        return _scatter_mask(a["nonzero_data"], mask).reshape(shape)
    return _scatter_mask(a["nonzero_data"], a["mask"])


@op("constexpr_lut_to_sparse")
def _lut_to_sparse(a: Args):
    mask = np.asarray(a["indices_mask"])
    indices = _scatter_mask(a["indices_nonzero_data"], mask)
    vector_axis = a.int("vector_axis")
    dense = _lut_dense(indices, np.asarray(a["lut"]), vector_axis)
    if vector_axis is not None and np.asarray(a["lut"]).shape[-1] > 1:
        mask = np.repeat(mask, np.asarray(a["lut"]).shape[-1], axis=vector_axis)
    return mask, dense[mask != 0].reshape(-1)


@op("constexpr_sparse_blockwise_shift_scale")
def _sparse_shift_scale(a: Args):
    mask = np.asarray(a["data_mask"])
    dense = _shift_scale(_scatter_mask(a["nonzero_data"], mask), a["scale"], a.get("offset"))
    return mask, dense[mask != 0].reshape(-1)


@op("quantize")
def _quantize(a: Args):
    x = _as_float(a["input"])
    axis = a.int("axis")
    dtype = MIL_DTYPES[a.str("output_dtype")]
    q = np.round(x / _along(a["scale"], x.ndim, axis))  # round half to even, as coremltools evaluates it
    if a.get("zero_point") is not None:
        q = q + _along(a["zero_point"], x.ndim, axis)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@op("dequantize")
def _dequantize(a: Args):
    x = _as_float(a["input"])
    axis = a.int("axis")
    if a.get("zero_point") is not None:
        x = x - _along(a["zero_point"], x.ndim, axis)
    return x * _along(a["scale"], x.ndim, axis)
