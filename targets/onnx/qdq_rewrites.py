"""Rewrites of the exported QDQ graph so that onnxruntime runs integer kernels where its own
quantize_static graphs do (QLinearConv, QGemm, QLinearAdd ...), each one exact or within the
rounding an integer kernel makes anyway. Measured on EfficientNet-Lite0 and MiniLM
(benchmarks/results/sections/int8.md): without them onnxruntime ran 14 of 49 convolutions, 9 adds,
17 pads and 12 of 37 linears in float, on weights dequantized at every call.
"""
from __future__ import annotations


def for_integer_kernels(proto, reduce_range: bool = False) -> dict[str, int]:
    """Rewrite the exported QDQ graph so that onnxruntime fuses every quantized Conv / Gemm / MatMul
    into an integer kernel, as it does for its own quantize_static graphs; returns what was rewritten
    (the manifest's ``qdq_rewrites``). Weights are halved to 7 bits first (``reduce_range``), so
    that int32 biases use the final weight scales."""
    from edgekit.targets.onnx.int8 import halve_weight_range
    from edgekit.targets.onnx.quantize import remove_unused_initializers

    rewrites = {"pads_folded_into_convs": fold_pads_into_convs(proto)}
    if reduce_range:
        rewrites["weights_7bit"] = halve_weight_range(proto)
    rewrites["biases_int32"] = quantize_biases(proto)
    rewrites["activation_pairs_uint8"] = activations_to_uint8(proto)
    remove_unused_initializers(proto)
    return rewrites


def _consumers(graph) -> dict:
    """{tensor: nodes reading it}, If/Loop/Scan bodies included: a tensor read inside a body is
    not rewritten as if its visible readers were all."""
    from edgekit.targets.onnx.quantize import all_nodes

    readers: dict[str, list] = {}
    for node in all_nodes(graph):
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _constant(name: str, initializers: dict, producers: dict):
    """The value of an initializer or Constant-node output, or None."""
    from onnx import helper, numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(helper.get_attribute_value(attr))
    return None


def _zero_pad_amounts(pad, rank: int, initializers: dict, producers: dict):
    """(begins, ends) of a constant-zero Pad over the spatial axes only, or None when it pads N or C,
    reflects/replicates, pads with a non-zero value, crops (negative) or is not constant."""
    import numpy as np

    mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
    pads = _constant(pad.input[1], initializers, producers) if len(pad.input) > 1 else None
    if mode != "constant" or pads is None:
        return None
    if len(pad.input) > 2 and pad.input[2]:
        value = _constant(pad.input[2], initializers, producers)
        if value is None or np.any(value != 0):
            return None
    full = np.zeros(2 * rank, dtype=np.int64)
    if len(pad.input) > 3 and pad.input[3]:  # opset 18: pads list only these axes
        axes = _constant(pad.input[3], initializers, producers)
        if axes is None:
            return None
        axes = [int(a) % rank for a in axes]
    else:
        axes = list(range(rank))
    if len(pads) != 2 * len(axes):
        return None
    for k, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[k], pads[len(axes) + k]
    if np.any(full < 0) or full[0] or full[1] or full[rank] or full[rank + 1]:
        return None
    return [int(v) for v in full[2:rank]], [int(v) for v in full[rank + 2:]]


def fold_pads_into_convs(proto) -> int:
    """Move each zero Pad that feeds convolutions through a QDQ pair into the convolutions' ``pads``;
    returns the Pads removed.

    PyTorch's explicit padding (``F.pad`` before a Conv, as TF-"same" models such as EfficientNet-Lite
    do) is annotated by PT2E like any other op, so the QDQ graph reads ``DQ -> Pad -> Q -> DQ -> Conv``.
    The float exporter folds such a Pad into the Conv; with the Q/DQ pair in between it cannot, and
    onnxruntime then runs a float Pad plus a dequantize and a quantize on the full activation before
    every such Conv (EfficientNet-Lite0: 17 of them, on its largest tensors). Padding with real 0 and
    quantizing equals quantizing and padding with the zero point, which the Conv's own padding
    dequantizes back to 0: the rewrite changes no value.
    """
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers = _consumers(graph)
    graph_outputs = {value.name for value in graph.output}
    removed, stale = [], set()
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx") or pad.output[0] in graph_outputs:
            continue
        quants = readers.get(pad.output[0], [])
        deqs = [d for q in quants for d in readers.get(q.output[0], [])]
        convs = [c for d in deqs for c in readers.get(d.output[0], [])]
        if (not quants or any(q.op_type != "QuantizeLinear" for q in quants) or not deqs
                or any(d.op_type != "DequantizeLinear" for d in deqs) or not convs
                or any(c.op_type != "Conv" for c in convs)
                or any(c.input[0] not in {d.output[0] for d in deqs} or c.input[0] in c.input[1:] for c in convs)
                or {q.output[0] for q in quants} & graph_outputs or {d.output[0] for d in deqs} & graph_outputs):
            continue
        ranks = {_conv_rank(c, initializers, producers) for c in convs}
        amounts = _zero_pad_amounts(pad, ranks.pop(), initializers, producers) if len(ranks) == 1 and None not in ranks else None
        if amounts is None or any(_attr(c, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") for c in convs):
            continue
        begins, ends = amounts
        for conv in convs:
            old = list(_attr(conv, "pads", [0] * 2 * len(begins)))
            _set_ints(conv, "pads", [o + p for o, p in zip(old, begins + ends)])
        for quant in quants:
            quant.input[0] = pad.input[0]
        removed.append(pad)
        stale.update([pad.output[0], *(q.output[0] for q in quants), *(d.output[0] for d in deqs)])
    for pad in removed:
        graph.node.remove(pad)
    _drop_value_info(graph, stale)  # their recorded shapes were the padded ones
    return len(removed)


def quantize_biases(proto) -> int:
    """Store each float bias of a quantized Conv, Gemm or MatMul + Add as int32 behind a
    DequantizeLinear (scale = input scale x weight scale, zero point 0); returns the biases rewritten.

    onnxruntime fuses a QDQ group into an integer kernel only when EVERY input comes from a
    DequantizeLinear. The PT2E graph leaves biases float; onnxruntime quantizes a float bias itself
    only in some positions (a Conv or Gemm whose inputs are DequantizeLinear outputs at that point of
    its optimisation), not for a linear exported as MatMul + Add whose output stays float (a
    transformer's residual-stream producers: attention output and FFN down projections, MiniLM's
    12 largest matmuls), which then ran in float on weights dequantized at every call. int32 with
    that scale is what the integer kernel computes with anyway (error <= half a product step).
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers = _consumers(graph)
    top = {id(node) for node in graph.node}
    done = 0
    for node in list(graph.node):
        site = _bias_site(node, readers, producers, initializers)
        if site is None or id(site[0]) not in top:
            continue
        consumer, slot, x_dq, w_scale, channels = site
        bias = numpy_helper.to_array(initializers[consumer.input[slot]]).astype(np.float64)
        x_scale = numpy_helper.to_array(initializers[x_dq.input[1]])
        if bias.shape != (channels,) or x_scale.size != 1 or w_scale.size not in (1, bias.size):
            continue
        scale = (x_scale.astype(np.float32).reshape(()) * w_scale.astype(np.float32)).astype(np.float32)
        q = np.round(bias / scale.astype(np.float64))
        if not np.all(np.isfinite(q)) or np.abs(q).max(initial=0) >= 2**31 - 1 or np.any(scale <= 0):
            continue
        stem = f"{consumer.input[slot]}__int32_{done}"
        graph.initializer.extend([numpy_helper.from_array(q.astype(np.int32), stem),
                                  numpy_helper.from_array(scale, f"{stem}_scale")])
        kwargs = {"axis": 0} if scale.ndim == 1 else {}
        dq = helper.make_node("DequantizeLinear", [stem, f"{stem}_scale"], [f"{stem}_dq"], name=f"{stem}_dq", **kwargs)
        graph.node.insert(list(graph.node).index(consumer), dq)
        consumer.input[slot] = dq.output[0]
        done += 1
    return done


def _bias_site(node, readers, producers, initializers):
    """(node reading the bias, its input slot, activation DQ, weight scales, output channels) for a
    quantized Conv / Gemm / MatMul + Add with a float initializer bias; else None."""
    from onnx import numpy_helper

    def dq_of(name):
        found = producers.get(name)
        return found if found is not None and found.op_type == "DequantizeLinear" else None

    if node.op_type in ("Conv", "Gemm"):
        if len(node.input) < 3 or node.input[2] not in initializers:
            return None
        consumer, slot, weight_in = node, 2, node.input[1]
        out_axis = 0 if node.op_type == "Conv" or _attr(node, "transB", 0) else 1
    elif node.op_type == "MatMul":
        adds = readers.get(node.output[0], [])
        if len(adds) != 1 or adds[0].op_type != "Add":
            return None
        consumer = adds[0]
        slot = 1 if consumer.input[0] == node.output[0] else 0
        if consumer.input[slot] not in initializers:
            return None
        weight_in, out_axis = node.input[1], 1
        transpose = producers.get(weight_in)
        if transpose is not None and transpose.op_type == "Transpose":
            if list(_attr(transpose, "perm", [1, 0])) != [1, 0]:
                return None
            weight_in, out_axis = transpose.input[0], 0
    else:
        return None
    x_dq, w_dq = dq_of(node.input[0]), dq_of(weight_in)
    if x_dq is None or w_dq is None or w_dq.input[0] not in initializers or w_dq.input[1] not in initializers:
        return None
    if x_dq.input[1] not in initializers or len(initializers[w_dq.input[0]].dims) < 2:
        return None
    w_scale = numpy_helper.to_array(initializers[w_dq.input[1]])
    dims = list(initializers[w_dq.input[0]].dims)
    if node.op_type == "MatMul" and len(dims) != 2:
        return None  # a batched weight: no bias of one row
    if w_scale.size > 1 and _attr(w_dq, "axis", 1) % len(dims) != out_axis:
        return None  # per-channel scales that do not run along the output channels
    return consumer, slot, x_dq, w_scale.reshape(-1) if w_scale.size > 1 else w_scale.reshape(()), int(dims[out_axis])


def activations_to_uint8(proto) -> int:
    """Store each activation QuantizeLinear -> DequantizeLinear pair as uint8 with zero point + 128;
    returns the pairs changed. Same scale, same 256 levels: every dequantized value is unchanged.

    onnxruntime's x86 integer kernels take uint8 activations (u8 x s8, VPDPBUSD / VPMADDUBSW); it
    converts int8 pairs to uint8 itself, but only pairs whose readers it fuses, so an op between
    a converted and an unconverted pair (a residual Add's producer: 14 of EfficientNet-Lite0's 49
    convolutions) keeps one uint8 input and one int8 output and is not fused: it runs in float, and
    the Add beside it too. ARM kernels take uint8 as well (UDOT), and so do NNAPI and QNN.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    readers = _consumers(graph)
    graph_outputs = {value.name for value in graph.output}
    changed, stale = 0, set()
    for quant in list(graph.node):
        if quant.op_type != "QuantizeLinear" or len(quant.input) < 3 or quant.output[0] in graph_outputs:
            continue
        zero = initializers.get(quant.input[2])
        deqs = readers.get(quant.output[0], [])
        if zero is None or zero.data_type != TensorProto.INT8 or not deqs:
            continue
        if any(d.op_type != "DequantizeLinear" or d.input[0] != quant.output[0] or len(d.input) < 3
               or not _same_constant(d.input[1], quant.input[1], initializers)
               or not _same_constant(d.input[2], quant.input[2], initializers) or _attr(d, "axis", 1) != _attr(quant, "axis", 1)
               for d in deqs):
            continue
        shifted = (numpy_helper.to_array(zero).astype(np.int16) + 128).astype(np.uint8)
        name = f"{quant.input[2]}__uint8_{changed}"
        graph.initializer.append(numpy_helper.from_array(shifted, name))
        for node in [quant, *deqs]:
            node.input[2] = name
        stale.add(quant.output[0])
        changed += 1
    _drop_value_info(graph, stale)  # their recorded element type was int8
    return changed


def _drop_value_info(graph, names: set) -> None:
    if names:
        keep = [v for v in graph.value_info if v.name not in names]
        del graph.value_info[:]
        graph.value_info.extend(keep)


def _same_constant(a: str, b: str, initializers: dict) -> bool:
    from onnx import numpy_helper

    if a == b:
        return True
    if a not in initializers or b not in initializers:
        return False
    x, y = numpy_helper.to_array(initializers[a]), numpy_helper.to_array(initializers[b])
    return x.dtype == y.dtype and x.shape == y.shape and bool((x == y).all())


def _conv_rank(conv, initializers: dict, producers: dict):
    """The rank of a Conv's input (2 + spatial dims), from its kernel_shape or its weight."""
    kernel = _attr(conv, "kernel_shape", None)
    if kernel is not None:
        return 2 + len(kernel)
    weight = producers.get(conv.input[1])
    name = weight.input[0] if weight is not None and weight.op_type == "DequantizeLinear" else conv.input[1]
    return len(initializers[name].dims) if name in initializers else None


def _attr(node, name: str, default):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _set_ints(node, name: str, values) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, [int(v) for v in values])])
