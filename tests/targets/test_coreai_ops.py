"""Each op of edgekit's Core AI reference interpreter against its documented semantics: the worked
examples of coreai-core's own op definitions (coreai._compiler.dialects._coreai_ops_gen docstrings),
and PyTorch where PyTorch has the same op. Tiny tensors, no conversion: about a second."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekit.targets.coreai import interpreter
from edgekit.targets.coreai.ops import OPS
from edgekit.targets.coreai.program import Graph, Op, Program, TensorType, _unpack

RNG = np.random.default_rng(0)


def call(name, *args, shape=None, element="f32", results=1, **attrs):
    types = [TensorType(tuple(s) if s is not None else (), element) for s in (shape if results > 1 else [shape])]
    return OPS[name]([np.asarray(a) for a in args], attrs, types)


def test_blockwise_shift_scale_documented_example():
    out = call("blockwise_shift_scale", np.array([[100, 110], [90, 105]], np.int8), np.array([[2.0]], np.float32),
               np.array([[100]], np.int8), np.array([[0.5]], np.float32))
    np.testing.assert_allclose(out, [[0.5, 20.5], [-19.5, 10.5]])


def test_dequantize_per_tensor_documented_example_and_quantize_inverts_it():
    q = np.array([[8, 4, 7], [13, 18, 5]], np.int8)
    out = call("dequantize", q, np.float32(0.1245), np.int8(2), np.float32(0.0), np.array([0, 1]))
    np.testing.assert_allclose(out, [[0.747, 0.249, 0.6225], [1.3695, 1.992, 0.3735]], rtol=1e-6)
    back = call("quantize", out.astype(np.float32), np.float32(0.1245), np.int8(2), np.float32(0.0), np.array([0, 1]),
                shape=(2, 3), element="si8")
    np.testing.assert_array_equal(back, q)


def test_quantize_per_axis_clips_to_the_output_type():
    x = np.array([[1.0, 300.0], [-1.0, -300.0]], np.float32)
    q = call("quantize", x, np.array([1.0, 0.5], np.float32), np.array([0, 10], np.int8), np.array([0.0, 0.0], np.float32),
             np.int32(0), shape=(2, 2), element="si8")
    # axis 0: row 0 has scale 1 and zero point 0; row 1 scale 0.5 and zero point 10 (-1 / 0.5 + 10 = 8)
    np.testing.assert_array_equal(q, [[1, 127], [8, -128]])


@pytest.mark.parametrize("mode,expected", [
    ("constant", [7, 1, 2, 3, 7, 7]), ("replicate", [1, 1, 2, 3, 3, 3]), ("reflect", [2, 1, 2, 3, 2, 1]),
    ("symmetric", [1, 1, 2, 3, 3, 2]), ("circular", [3, 1, 2, 3, 1, 2]),
])
def test_pad_documented_modes(mode, expected):
    out = call("pad", np.array([1, 2, 3], np.float32), np.array([1, 2], np.uint32), np.float32(7),
               padding_mode=f"#coreai.padding_mode<{mode}>")
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("start,end,step,expected", [
    (2, 8, 1, [2, 3, 4, 5, 6, 7]), (7, 0, -1, [7, 6, 5, 4, 3, 2, 1]), (0, 10, 2, [0, 2, 4, 6, 8]),
    (-3, 100, 1, [7, 8, 9]), (9, -100, -3, [9, 6, 3, 0]),
])
def test_slice_resolves_and_clamps_as_documented(start, end, step, expected):
    out = call("slice", np.arange(10), np.array([start]), np.array([end]), np.array([step]))
    np.testing.assert_array_equal(out, expected)


def test_split_by_size_gives_the_remainder_last():
    parts = call("split", np.arange(10.0), np.uint32(3), np.int32(0), shape=[(3,), (3,), (3,), (1,)], results=4)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_integer_divide_truncates_and_modulo_is_the_truncated_remainder():
    x, y = np.array([10, -10, 10, -10], np.int32), np.array([3, 3, -3, -3], np.int32)
    assert call("divide", x, y).tolist() == [3, -3, -3, 3]
    assert call("modulo", x, y).tolist() == [1, -1, 1, -1]
    assert call("broadcasting_divide", np.float32(1.0), np.array([2.0, 4.0], np.float32)).tolist() == [0.5, 0.25]


def test_round_half_to_even_and_cast_truncates():
    assert call("round", np.array([0.5, 1.5, 2.5, -0.5, 4.7], np.float32)).tolist() == [0, 2, 2, -0.0, 5]
    assert call("cast", np.array([-1.7, 1.7, 0.0], np.float32), shape=(3,), element="si32").tolist() == [-1, 1, 0]
    assert call("cast", np.array([0.0, 2.5], np.float32), shape=(2,), element="i1").tolist() == [False, True]


def test_reductions_keep_dims_and_broadcast_in_dims():
    x = np.array([[1, 5, 3], [4, 2, 6]], np.float32)
    np.testing.assert_array_equal(call("reduce_sum", x, np.array([0])), [[5, 7, 9]])
    np.testing.assert_array_equal(call("reduce_sum", x, np.array([0, 1])), [[21]])
    out = call("broadcast_in_dims", np.ones((2, 1, 4)), np.array([3], np.uint32), np.array([-2]), shape=(2, 3, 4))
    assert out.shape == (2, 3, 4)


def test_lut_to_dense_per_group_and_vector_examples():
    indices = np.array([[0, 1], [2, 3], [1, 0], [3, 2], [0, 0], [1, 1]], np.uint8)  # ui2, 6x2, two groups of 3 rows
    lut = np.arange(8, dtype=np.float32).reshape(2, 1, 4, 1)
    out = call("lut_to_dense", indices, lut, np.int16(0))
    np.testing.assert_array_equal(out, [[0, 1], [2, 3], [1, 0], [7, 6], [4, 4], [5, 5]])
    vectors = np.array([[10, 11, 12], [20, 21, 22]], np.float32).reshape(1, 1, 1, 2, 3)
    out = call("lut_to_dense", np.zeros((2, 2, 2), np.uint8), vectors, np.int16(1))
    assert out.shape == (2, 6, 2) and out[0, :3, 0].tolist() == [10, 11, 12]


def test_sub_byte_storage_unpacks_least_significant_bits_first():
    assert _unpack(bytes([0x21, 0x43]), 4, False, 4).tolist() == [1, 2, 3, 4]
    assert _unpack(bytes([0xF8]), 4, True, 2).tolist() == [-8, -1]
    assert _unpack(bytes([0b11100100]), 2, False, 4).tolist() == [0, 1, 2, 3]


def test_conv_and_pools_match_pytorch():
    x, w = RNG.standard_normal((1, 4, 9, 9)).astype(np.float32), RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
    ours = call("conv2d", x, w, np.array([2, 1], np.uint32), np.array([1, 2], np.uint32), np.uint32(2))
    theirs = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=(2, 1), dilation=(1, 2), groups=2).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    two = np.array([2, 2], np.uint32)
    pooled = call("max_pool_2d", x, np.array([3, 3], np.uint32), two, np.array([1, 1], np.uint32), np.bool_(True))
    np.testing.assert_array_equal(pooled, F.max_pool2d(torch.from_numpy(x), 3, 2, ceil_mode=True).numpy())
    summed = call("sum_pool_2d", x, two, two, np.array([1, 1], np.uint32))
    np.testing.assert_allclose(summed, 4 * F.avg_pool2d(torch.from_numpy(x), 2).numpy(), atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_modes_match_pytorch(approximate):
    x = RNG.standard_normal(64).astype(np.float32)
    ours = call("gelu", x, approximate=f'"{approximate}"')
    np.testing.assert_allclose(ours, F.gelu(torch.from_numpy(x), approximate=approximate).numpy(), atol=1e-6)


def test_unsupported_ops_and_missing_graphs_are_named():
    f32 = TensorType((4,), "f32")
    main = Graph([("x", 0, f32)], [("y", 2)], [Op("sort", [0], [1], [f32]), Op("invoke", [1], [2], [f32], {"callee": "@gone"})], {})
    assert interpreter.unsupported(Program({"main": main})) == ["invoke of a missing graph gone", "sort"]
    with pytest.raises(interpreter.InterpreterError, match="does not implement invoke of a missing graph gone, sort"):
        interpreter.Interpreter(Program({"main": main}))


def test_fp16_results_are_rounded_to_the_declared_type():
    f16 = TensorType((1,), "f16")
    graph = Graph([("x", 0, f16)], [("y", 1)], [Op("mul", [0, 2], [1], [f16])], {2: np.array([3.0], np.float16)})
    out = interpreter.Interpreter(Program({"main": graph})).run([np.array([1 / 3], np.float16)])[0]
    assert out.dtype == np.float16 and out[0] == np.float16(np.float16(1 / 3).astype(np.float32) * 3)


def test_reverse_documented_examples_and_negative_and_several_axes():
    np.testing.assert_array_equal(call("reverse", np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32), np.array([0], np.int32)),
                                  [5.0, 4.0, 3.0, 2.0, 1.0])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(call("reverse", x, np.array([1], np.int32)), x[:, ::-1])  # each row reversed
    y = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(call("reverse", y, np.array([-1, 0], np.int16)), torch.flip(torch.from_numpy(y), [2, 0]).numpy())
    np.testing.assert_array_equal(call("reverse", y, np.array([], np.int32)), y)
    with pytest.raises(interpreter.OpError, match="invalid for rank 2"):
        call("reverse", x, np.array([1, -1], np.int32))  # the same axis twice
