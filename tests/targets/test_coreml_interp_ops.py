"""Each op of edgekit's MIL reference interpreter against its documented semantics.

The oracle is PyTorch where PyTorch has the same op (conv, pooling, norms, activations, LSTM,
attention), NumPy otherwise, and the worked examples of coremltools' op docstrings (ops/defs/iOS15..
iOS18) for the constexpr decompression and packing rules. Tiny tensors: these run in about a second.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekit.targets.coreml.mil import interpreter
from edgekit.targets.coreml.mil.program import Const, Function, Op, Program, VarType
from edgekit.targets.coreml.mil.registry import OPS, Args

RNG = np.random.default_rng(0)


def run(op_type: str, n_outputs: int = 1, **params):
    """Call one op implementation the way the interpreter does (float16 arrives as float32)."""
    values = {k: (list(v) if isinstance(v, tuple) else [v]) for k, v in params.items()}
    return OPS[op_type](Args(op_type, values, [VarType(f"out{i}", "float32", None) for i in range(n_outputs)]))


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(got, want, tol=1e-5):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("groups,stride,dilation,pad", [(1, 1, 1, (1, 1, 1, 1)), (1, 2, 1, (0, 1, 2, 0)), (2, 1, 2, (2, 2, 2, 2)), (4, 2, 1, (1, 1, 1, 1))])
def test_conv_custom_pad_groups_dilation_against_torch(groups, stride, dilation, pad):
    x, w, b = rand(2, 4, 9, 8), rand(6 if groups != 4 else 8, 4 // groups, 3, 3), None
    b = rand(w.shape[0])
    got = run("conv", x=x, weight=w, bias=b, strides=np.array([stride, stride]), dilations=np.array([dilation, dilation]),
              groups=np.int32(groups), pad_type="custom", pad=np.array(pad))
    padded = F.pad(t(x), (pad[2], pad[3], pad[0], pad[1]))  # torch pads the last axis first
    close(got, F.conv2d(padded, t(w), t(b), stride=stride, dilation=dilation, groups=groups), 1e-4)


def test_conv_same_and_same_lower_pads_follow_the_docs():
    x, w = rand(1, 2, 6, 6), rand(3, 2, 2, 2)  # even kernel: padding 1 in all, split differs
    same = run("conv", x=x, weight=w, pad_type="same")
    lower = run("conv", x=x, weight=w, pad_type="same_lower")
    close(same, F.conv2d(F.pad(t(x), (0, 1, 0, 1)), t(w)), 1e-4)  # extra row/col at the end
    close(lower, F.conv2d(F.pad(t(x), (1, 0, 1, 0)), t(w)), 1e-4)  # extra at the start
    stride2 = run("conv", x=rand(1, 2, 7, 7), weight=rand(3, 2, 3, 3), strides=np.array([2, 2]), pad_type="same")
    assert stride2.shape == (1, 3, 4, 4)  # ceil(7 / 2)


def test_depthwise_and_conv1d_against_torch():
    x, w = rand(1, 6, 10, 10), rand(12, 1, 5, 5)  # depthwise with multiplier 2
    close(run("conv", x=x, weight=w, groups=np.int32(6), pad_type="valid"), F.conv2d(t(x), t(w), groups=6), 1e-4)
    x1, w1 = rand(2, 3, 11), rand(4, 3, 3)
    close(run("conv", x=x1, weight=w1, strides=np.array([2]), pad_type="valid"), F.conv1d(t(x1), t(w1), stride=2), 1e-4)


def test_conv_transpose_against_torch():
    x, w, b = rand(1, 4, 5, 5), rand(4, 3, 3, 3), rand(3)
    got = run("conv_transpose", x=x, weight=w, bias=b, strides=np.array([2, 2]), pad_type="custom", pad=np.array([1, 1, 1, 1]))
    close(got, F.conv_transpose2d(t(x), t(w), t(b), stride=2, padding=1), 1e-4)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pooling_against_torch(ceil_mode):
    x = rand(1, 3, 9, 9)
    common = dict(x=x, kernel_sizes=np.array([3, 3]), strides=np.array([2, 2]), pad_type="custom", pad=np.array([1, 1, 1, 1]),
                  ceil_mode=np.bool_(ceil_mode))
    close(run("max_pool", **common), F.max_pool2d(t(x), 3, 2, 1, ceil_mode=ceil_mode))
    close(run("avg_pool", exclude_padding_from_average=np.bool_(False), **common),
          F.avg_pool2d(t(x), 3, 2, 1, ceil_mode=ceil_mode, count_include_pad=True))
    close(run("avg_pool", exclude_padding_from_average=np.bool_(True), **common),
          F.avg_pool2d(t(x), 3, 2, 1, ceil_mode=ceil_mode, count_include_pad=False))


def test_linear_matmul_einsum():
    x, w, b = rand(2, 3, 5), rand(4, 5), rand(4)
    close(run("linear", x=x, weight=w, bias=b), x @ w.T + b)
    a, c = rand(2, 1, 4, 3), rand(5, 4, 6)
    close(run("matmul", x=a, y=c, transpose_x=np.bool_(True), transpose_y=np.bool_(False)), np.swapaxes(a, -1, -2) @ c)
    v, m = rand(3), rand(3, 2)
    close(run("matmul", x=v, y=m), v @ m)  # rank-1 operands follow NumPy
    e, f = rand(2, 3, 4), rand(4, 6)
    close(run("einsum", values=(e, f), equation="nij,jk->nik"), np.einsum("nij,jk->nik", e, f))


@pytest.mark.parametrize("name,fn", [
    ("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("real_div", np.divide), ("maximum", np.maximum),
    ("minimum", np.minimum), ("greater", np.greater), ("less_equal", np.less_equal), ("equal", np.equal),
])
def test_elementwise_binary_broadcast(name, fn):
    x, y = rand(2, 1, 4), rand(3, 1)
    close(run(name, x=x, y=y), fn(x, y))


def test_pow_floor_div_and_integer_real_div():
    x = np.abs(rand(3, 4)) + 0.1
    close(run("pow", x=x, y=np.float32(2.5)), x**2.5)
    assert run("real_div", x=np.array([7, -7], np.int32), y=np.array([2, 2], np.int32)).tolist() == [3, -4]
    assert run("floor_div", x=np.array([7.0, -7.0]), y=np.array([2.0, 2.0])).tolist() == [3.0, -4.0]


@pytest.mark.parametrize("name,params,oracle", [
    ("relu", {}, F.relu), ("sigmoid", {}, torch.sigmoid), ("tanh", {}, torch.tanh), ("silu", {}, F.silu),
    ("softplus", {}, F.softplus), ("relu6", {}, F.relu6), ("erf", {}, torch.erf), ("exp", {}, torch.exp),
    ("gelu", {"mode": "EXACT"}, F.gelu), ("gelu", {"mode": "TANH_APPROXIMATION"}, lambda x: F.gelu(x, approximate="tanh")),
    ("gelu", {"mode": "SIGMOID_APPROXIMATION"}, lambda x: x * torch.sigmoid(1.702 * x)),
    ("leaky_relu", {"alpha": np.float32(0.2)}, lambda x: F.leaky_relu(x, 0.2)),
    ("elu", {"alpha": np.float32(0.7)}, lambda x: F.elu(x, 0.7)),
    ("sigmoid_hard", {"alpha": np.float32(1 / 6), "beta": np.float32(0.5)}, F.hardsigmoid),
    ("clip", {"alpha": np.float32(0.0), "beta": np.float32(6.0)}, F.relu6),
    ("softsign", {}, F.softsign), ("square", {}, torch.square),
])
def test_activations_against_torch(name, params, oracle):
    x = rand(2, 3, 4, 5) * 3
    close(run(name, x=x, **params), oracle(t(x)), 1e-5)


def test_prelu_softplus_parametric_and_epsilon_ops():
    x, alpha = rand(1, 3, 4, 4), np.array([0.1, 0.2, 0.3], np.float32)
    close(run("prelu", x=x, alpha=alpha), F.prelu(t(x), t(alpha)))
    beta = np.array([1.0, 2.0, 0.5], np.float32)
    close(run("softplus_parametric", x=x, alpha=alpha, beta=beta),
          alpha.reshape(1, 3, 1, 1) * np.log1p(np.exp(beta.reshape(1, 3, 1, 1) * x)))
    pos = np.abs(x) + 0.5
    close(run("rsqrt", x=pos, epsilon=np.float32(1e-3)), 1 / np.sqrt(pos + 1e-3))
    close(run("log", x=pos), np.log(pos))
    close(run("inverse", x=pos), 1 / (pos + 1e-4))  # documented default epsilon


def test_softmax_and_norms_against_torch():
    x = rand(2, 4, 6, 5)
    close(run("softmax", x=x, axis=np.int32(1)), torch.softmax(t(x), 1))
    gamma, beta = rand(6, 5), rand(6, 5)
    close(run("layer_norm", x=x, axes=np.array([-2, -1]), gamma=gamma, beta=beta, epsilon=np.float32(1e-5)),
          F.layer_norm(t(x), (6, 5), t(gamma), t(beta), 1e-5), 1e-4)
    mean, var, g, b = rand(4), np.abs(rand(4)) + 0.5, rand(4), rand(4)
    close(run("batch_norm", x=x, mean=mean, variance=var, gamma=g, beta=b, epsilon=np.float32(1e-3)),
          F.batch_norm(t(x), t(mean), t(var), t(g), t(b), False, 0.0, 1e-3), 1e-4)
    close(run("instance_norm", x=x, gamma=g, beta=b, epsilon=np.float32(1e-5)),
          F.instance_norm(t(x), weight=t(g), bias=t(b), eps=1e-5), 1e-4)


@pytest.mark.parametrize("name,fn", [
    ("reduce_mean", np.mean), ("reduce_sum", np.sum), ("reduce_max", np.max), ("reduce_min", np.min), ("reduce_prod", np.prod),
])
def test_reductions(name, fn):
    x = rand(2, 3, 4)
    close(run(name, x=x, axes=np.array([1, -1]), keep_dims=np.bool_(True)), fn(x, axis=(1, 2), keepdims=True))
    close(run(name, x=x), fn(x))  # no axes: all of them
    close(run("reduce_l2_norm", x=x, axes=np.array([0])), np.sqrt((x**2).sum(0)))
    close(run("reduce_log_sum_exp", x=x, axes=np.array([2])), np.log(np.exp(x).sum(2)))
    assert run("reduce_argmax", x=x, axis=np.int32(1)).tolist() == np.argmax(x, 1).tolist()


def test_reshape_zero_rule_from_the_ios17_doc():
    x = rand(2, 50)
    assert run("reshape", x=x, shape=np.array([1, 0, -1, 0])).shape == (1, 1, 2, 50)  # the docstring's example
    # a 0 matches x's dimension counted from the right: shape[0] of 2 entries pairs with x.shape[1]
    assert run("reshape", x=rand(2, 3, 4), shape=np.array([0, -1])).shape == (3, 8)
    assert run("reshape", x=rand(2, 3, 4), shape=np.array([0, 0, -1])).shape == (2, 3, 4)


def test_shape_ops():
    x = rand(2, 3, 4)
    close(run("transpose", x=x, perm=np.array([2, 0, 1])), x.transpose(2, 0, 1))
    assert run("expand_dims", x=x, axes=np.array([0, -1])).shape == (1, 2, 3, 4, 1)
    assert run("squeeze", x=rand(1, 3, 1), axes=np.array([0])).shape == (3, 1)
    assert run("squeeze", x=rand(1, 3, 1)).shape == (3,)
    close(run("tile", x=x, reps=np.array([1, 2, 1])), np.tile(x, (1, 2, 1)))
    parts = run("split", 2, x=x, split_sizes=np.array([1, 3]), axis=np.int32(2))
    close(parts[0], x[..., :1])
    close(parts[1], x[..., 1:])
    assert [p.shape for p in run("split", 3, x=rand(6, 2), num_splits=np.int32(3), axis=np.int32(0))] == [(2, 2)] * 3


def test_concat_interleave_example_from_the_doc():
    in1, in2 = np.array([[1, 2], [3, 4], [5, 6]]), np.array([[7, 8], [9, 10], [11, 12]])
    assert run("concat", values=(in1, in2), axis=np.int32(0)).tolist() == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]]
    assert run("concat", values=(in1, in2), axis=np.int32(0), interleave=np.bool_(True)).tolist() == \
        [[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]]


def test_slices():
    x = rand(4, 5, 6)
    got = run("slice_by_index", x=x, begin=np.array([1, 0, 5]), end=np.array([3, 4, 0]), stride=np.array([1, 2, -2]),
              begin_mask=np.array([False, True, False]), end_mask=np.array([False, False, True]),
              squeeze_mask=np.array([False, False, False]))
    close(got, x[1:3, :4:2, 5::-2])
    close(run("slice_by_index", x=x, begin=np.array([2, 0, 0]), end=np.array([3, 5, 6]), squeeze_mask=np.array([True, False, False])), x[2])
    close(run("slice_by_size", x=x, begin=np.array([1, 2, 0]), size=np.array([2, -1, 3])), x[1:3, 2:, 0:3])


def test_gathers_select_cast():
    x = rand(3, 4, 5)
    idx = np.array([[0, 2], [1, -1]], np.int32)
    close(run("gather", x=x, indices=idx, axis=np.int32(1)), np.take(x, [[0, 2], [1, 3]], axis=1))
    batched = run("gather", x=x, indices=np.array([[0, 1], [2, 3], [1, 1]], np.int32), axis=np.int32(1), batch_dims=np.int32(1))
    close(batched, np.stack([x[b][[[0, 1], [2, 3], [1, 1]][b]] for b in range(3)]))
    along = RNG.integers(0, 4, (3, 2, 5)).astype(np.int32)
    close(run("gather_along_axis", x=x, indices=along, axis=np.int32(1)), np.take_along_axis(x, along, 1))
    nd = np.array([[0, 1], [2, 3]], np.int32)
    close(run("gather_nd", x=x, indices=nd), x[[0, 2], [1, 3]])
    cond = x > 0
    close(run("select", cond=cond, a=x, b=np.float32(0)), np.where(cond, x, 0))
    assert run("cast", x=np.array([1.7, -1.7]), dtype="int32").tolist() == [1, -1]
    assert run("cast", x=np.array([1.0, 2.0**-12 + 1.0]), dtype="fp16").tolist() == [1.0, 1.0]  # rounded to fp16


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_against_torch(bidirectional):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, bidirectional=bidirectional).eval()
    x = rand(5, 2, 3)
    h0, c0 = rand(2 if bidirectional else 1, 2, 4), rand(2 if bidirectional else 1, 2, 4)
    with torch.no_grad():
        seq, (h, c) = lstm(t(x), (t(h0), t(c0)))

    def mil(weight, suffix=""):  # PyTorch gates [i, f, g, o] -> MIL [i, f, o, z]
        w = getattr(lstm, f"{weight}{suffix}").detach().numpy()
        i, f, g, o = np.split(w, 4)
        return np.concatenate([i, f, o, g])

    params = dict(x=x, weight_ih=mil("weight_ih_l0"), weight_hh=mil("weight_hh_l0"),
                  bias=mil("bias_ih_l0") + mil("bias_hh_l0"), output_sequence=np.bool_(True),
                  direction="bidirectional" if bidirectional else "forward",
                  initial_h=np.concatenate(list(h0), -1), initial_c=np.concatenate(list(c0), -1))
    if bidirectional:
        params.update(weight_ih_back=mil("weight_ih_l0", "_reverse"), weight_hh_back=mil("weight_hh_l0", "_reverse"),
                      bias_back=mil("bias_ih_l0", "_reverse") + mil("bias_hh_l0", "_reverse"))
    out, h_last, c_last = run("lstm", 3, **params)
    close(out, seq, 1e-5)
    close(h_last, torch.cat(list(h), -1), 1e-5)
    close(c_last, torch.cat(list(c), -1), 1e-5)


def test_scaled_dot_product_attention_against_torch():
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 6, 8), rand(1, 2, 6, 3)
    mask = RNG.random((4, 6)) > 0.3
    mask[:, 0] = True
    close(run("scaled_dot_product_attention", query=q, key=k, value=v, attn_mask=mask),
          F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(mask)), 1e-5)
    additive = rand(4, 6)
    close(run("scaled_dot_product_attention", query=q, key=k, value=v, attn_mask=additive),
          F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(additive)), 1e-5)


def test_affine_dequantize_per_channel():
    q = np.array([[-128, 0, 127], [1, 2, 3]], np.int8)
    got = run("constexpr_affine_dequantize", quantized_data=q, zero_point=np.array([0, 1], np.int8),
              scale=np.array([0.5, 2.0], np.float32), axis=np.int32(0))
    assert got.tolist() == [[-64.0, 0.0, 63.5], [0.0, 2.0, 4.0]]  # scale * (q - zero_point) along axis 0


def test_ios16_lut_packing_example_from_the_doc():
    # n_bits = 2, shape (5,): byte 0 = | i3 i2 i1 i0 | (LSB first) = 01 10 11 00, byte 1 = xx xx xx 11
    indices = np.array([0b01101100, 0b00000011], np.uint8)
    lut = np.array([10.0, 11.0, 12.0, 13.0], np.float32)
    got = run("constexpr_lut_to_dense", indices=indices, lut=lut, shape=np.array([5], np.uint32))
    assert got.tolist() == [10.0, 13.0, 12.0, 11.0, 13.0]  # i0=00, i1=11, i2=10, i3=01, i4=11


def test_ios18_per_group_lut_example_from_the_doc():
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1.0, 5.0, 9.0, 13.0, 2.0, 10.0, 18.0, 26.0], np.float32).reshape(2, 1, 4, 1)
    got = run("constexpr_lut_to_dense", indices=indices, lut=lut)
    assert got.tolist() == [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]]  # Case 1 of the docstring


def test_ios18_vector_lut_example_from_the_doc():
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    lut = np.array([a, b], np.float32).reshape(1, 1, 1, 2, 3)
    got = run("constexpr_lut_to_dense", indices=indices, lut=lut, vector_axis=np.int32(1))
    assert got.shape == (2, 6, 2)  # Case 2.1: the vector runs along axis 1
    assert got[0, :, 0].tolist() == a + b and got[0, :, 1].tolist() == a + a


def test_blockwise_shift_scale_and_sparse():
    data = np.arange(-4, 4, dtype=np.int8).reshape(2, 4)
    scale = np.array([[0.5, 2.0], [1.0, 3.0]], np.float32)  # blocks of 1 x 2
    offset = np.array([[1, 0], [0, -1]], np.int8)
    got = run("constexpr_blockwise_shift_scale", data=data, scale=scale, offset=offset)
    want = np.repeat(scale, 2, axis=1) * (data - np.repeat(offset, 2, axis=1))
    close(got, want)
    mask16 = np.array([0b00000101, 0b1], np.uint8)  # iOS16: packed bits, LSB first
    close(run("constexpr_sparse_to_dense", nonzero_data=np.array([7.0, 8.0, 9.0], np.float32), mask=mask16,
              shape=np.array([3, 3], np.uint32)), np.array([[7, 0, 8], [0, 0, 0], [0, 0, 9]], np.float32))
    mask18 = np.array([[1, 0], [0, 1]], np.uint8)  # iOS18: one uint1 per element
    close(run("constexpr_sparse_to_dense", nonzero_data=np.array([4.0, 5.0], np.float32), mask=mask18), np.array([[4, 0], [0, 5]]))


def test_activation_quantize_dequantize_formulas():
    x = np.array([[-300.0, -1.25, 0.75, 2.5]], np.float32)
    q = run("quantize", input=x, scale=np.float32(0.5), zero_point=np.int8(3), output_dtype="int8")
    assert q.dtype == np.int8 and q.tolist() == [[-128, 1, 5, 8]]  # clip(round(x / s) + zp); 1.5 and 5 round to even
    back = run("dequantize", input=q, scale=np.float32(0.5), zero_point=np.int8(3))
    assert back.tolist() == [[-65.5, -1.0, 1.0, 2.5]]
    per_axis = run("quantize", input=np.ones((2, 3), np.float32), scale=np.array([0.5, 0.25], np.float32), axis=np.int32(0),
                   output_dtype="uint8")
    assert per_axis.tolist() == [[2, 2, 2], [4, 4, 4]]


def test_fp16_programs_round_every_intermediate():
    """An fp16 program declares fp16 outputs: each op's result is rounded, so 1 + 2^-11 + 2^-11 stays 1."""
    tiny = np.float32(2.0**-11)
    fn = Function("main", "CoreML7", [VarType("x", "float16", (1,))], ["z"])
    fn.ops = [
        Op("add", "y", {"x": ["x"], "y": [Const(np.float16(tiny))]}, [VarType("y", "float16", (1,))]),
        Op("add", "z", {"x": ["y"], "y": [Const(np.float16(tiny))]}, [VarType("z", "float16", (1,))]),
    ]
    out = interpreter.Interpreter(Program("mem", 8, {"main": fn})).run({"x": np.ones(1, np.float32)})["z"]
    assert out.dtype == np.float16 and out.tolist() == [1.0]  # float32 throughout would give 1.0009765625
    fn.ops = [Op(o.type, o.name, o.inputs, [VarType(v.name, "float32", v.shape) for v in o.outputs]) for o in fn.ops]
    fn.inputs = [VarType("x", "float32", (1,))]
    assert interpreter.Interpreter(Program("mem", 8, {"main": fn})).run({"x": np.ones(1, np.float32)})["z"].tolist() == [1.0 + 2 * tiny]


def test_an_unknown_op_is_named_and_refused():
    fn = Function("main", "CoreML7", [VarType("x", "float32", (2,))], ["y"])
    fn.ops = [Op("erfinv_custom", "y", {"x": ["x"]}, [VarType("y", "float32", (2,))]),
              Op("resample", "w", {"x": ["x"]}, [VarType("w", "float32", (2,))])]
    assert interpreter.unsupported(fn) == ["erfinv_custom", "resample"]
    with pytest.raises(interpreter.InterpreterError, match="does not implement ops erfinv_custom, resample"):
        interpreter.Interpreter(Program("mem", 8, {"main": fn}))


def test_a_wrong_shape_from_an_op_is_caught():
    fn = Function("main", "CoreML7", [VarType("x", "float32", (2, 3))], ["y"])
    fn.ops = [Op("transpose", "y", {"x": ["x"], "perm": [Const(np.array([0, 1]))]}, [VarType("y", "float32", (3, 2))])]
    with pytest.raises(interpreter.InterpreterError, match=r"op transpose \(y\) produced shape \(2, 3\), the program declares \(3, 2\)"):
        interpreter.Interpreter(Program("mem", 8, {"main": fn})).run({"x": rand(2, 3)})


BRIEF_OPS = (
    "conv linear matmul add sub mul real_div pow maximum minimum relu relu6 clip sigmoid tanh gelu silu softplus "
    "leaky_relu prelu sigmoid_hard softmax layer_norm batch_norm instance_norm avg_pool max_pool reduce_mean reduce_sum "
    "reduce_max reshape transpose concat split slice_by_index slice_by_size squeeze expand_dims tile gather gather_nd "
    "gather_along_axis select cast lstm constexpr_affine_dequantize constexpr_blockwise_shift_scale constexpr_lut_to_dense "
    "constexpr_sparse_to_dense constexpr_cast quantize dequantize scaled_dot_product_attention"
).split()


def test_every_op_edgekit_conversions_emit_is_implemented():
    assert [name for name in BRIEF_OPS if name not in OPS] == []
