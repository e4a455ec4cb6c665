"""onnxruntime's quantization tools applied to the float ONNX file, one recipe per precision.

Choices (and why), measured on this project's test models with onnxruntime 1.31 on an x86 AVX2 CPU:
- Pre-processing (onnxruntime's quant_pre_process: symbolic shape inference, basic graph
  optimisation such as MatMul+Add -> Gemm, ONNX shape inference) runs before int8 and int8-dynamic,
  as onnxruntime recommends: it gives the quantizer the shapes it needs and folds ops so fewer
  tensors get their own scale. Without it the quantizer stopped on the dynamo exporter's graphs.
- Full 8-bit weights by default, 7-bit (``reduce_range``, ``--onnx-reduce-range``) on request: the
  weight range is a property of the CPU that runs the model (``weight_range`` below, recorded in the
  manifest). edgekit's targets are phones and boards (ARM: int8 dot products SDOT/SMMLA accumulate
  in int32, exact with full-range weights) and x86 with VNNI (VPDPBUSD, int32 accumulation, exact).
  Only x86 AVX2 WITHOUT VNNI multiplies u8 x s8 pairs into int16 (VPMADDUBSW) and saturates with
  full-range weights; that older desktop/cloud x86 is what ``reduce_range`` is for. 7 bits cost
  accuracy wherever they are not needed: EfficientNet-Lite0 static int8 cosine 0.991 -> 0.910,
  MiniLM int8-dynamic top-1 agreement 0.917 (benchmarks/results/sections/int8.md).
- int8: static QDQ, per-channel symmetric int8 weights, int8 activations (S8S8, onnxruntime's
  recommended default for CPUs), MinMax calibration on the calibration samples. Percentile and
  entropy calibration measured no better on the test models (within 0.0001 cosine).
- int8-dynamic: MatMul/Gemm (and Gather, Attention, LSTM) through onnxruntime's dynamic quantizer:
  int8 weights per channel, activations quantized at run time. Conv is NOT given to it: its dynamic
  Conv (ConvInteger) takes one weight scale per tensor, which depthwise filters cannot share
  (EfficientNet-Lite0: cosine 0.824, top-1 agreement 0.44 on 32 photos, and 215 ms against 18 ms at
  fp32, ConvInteger being slow). Conv weights are stored int8 with one scale per output channel and
  dequantized before a float Conv (weight-only): cosine 0.994, 4.90 MB (4.81 MB per tensor), 50 ms.
- fp16: onnxruntime's float16 converter with float32 inputs and outputs kept (Cast nodes at the
  edges), so app code does not change; ops without a float16 kernel on an execution provider run
  in float32 behind inserted casts.
"""
from __future__ import annotations

from edgekit.errors import first_line
import shutil
from typing import Any, Sequence

RECIPES = ("fp16", "int8-dynamic", "int8")


def preprocess(src: str, dst: str) -> str:
    """quant_pre_process ``src`` into ``dst``; returns what ran (recorded in the manifest)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(src, dst)
        return "onnxruntime quant_pre_process: symbolic shape inference, basic optimisation, ONNX shape inference"
    except Exception as exc:  # symbolic shape inference does not know every op
        first = first_line(exc)
    try:
        quant_pre_process(src, dst, skip_symbolic_shape=True)
        return f"onnxruntime quant_pre_process without symbolic shape inference ({first})"
    except Exception as exc:
        shutil.copyfile(src, dst)
        return f"skipped: onnxruntime quant_pre_process failed ({first_line(exc)})"


def host_int8_dot() -> str:
    """How this host's CPU computes int8 dot products: "vnni" / "arm" (exact with full-range
    weights), "avx2" (u8 x s8 pairs saturate in int16 with full-range weights) or "unknown"."""
    import platform

    machine = platform.machine().lower()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = set(next((line.split(":", 1)[1] for line in fh if line.startswith("flags")), "").split())
    except OSError:
        return "unknown"
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    return "avx2" if "avx2" in flags else "unknown"


def weight_range(reduce_range: bool) -> dict[str, Any]:
    """The manifest's record of the int8 weight range and the CPUs it is exact on, with what that
    means for the verification just run on this host."""
    host = host_int8_dot()
    if reduce_range:
        record = {"bits": 7, "range": "[-64, 64]", "chosen_for": "x86 AVX2 without VNNI (--onnx-reduce-range)",
                  "why": "onnxruntime's AVX2 u8 x s8 kernels sum pairs of products in int16 and saturate "
                         "with full-range weights; 7 bits cost accuracy on every other CPU"}
    else:
        record = {"bits": 8, "range": "[-127, 127]", "chosen_for": "ARM (phones, boards) and x86 with VNNI",
                  "why": "int8 dot products accumulate in int32 there (ARM SDOT/SMMLA, x86 VPDPBUSD): full range "
                         "is exact; --onnx-reduce-range gives 7-bit weights for x86 AVX2 without VNNI"}
    if host == "avx2" and not reduce_range:
        record["host"] = ("this host is x86 AVX2 without VNNI: its onnxruntime may saturate full-range products, "
                          "so host verification can read lower than the device computes")
    else:
        record["host"] = {"vnni": "this host is x86 with VNNI: verification computes what the device computes",
                          "arm": "this host is ARM: verification computes what the device computes",
                          "avx2": "this host is x86 AVX2 without VNNI: 7-bit weights keep its kernels exact",
                          "unknown": "this host's int8 dot-product instructions are unknown"}[host]
    return record


def quantize_dynamic(src: str, dst: str, reduce_range: bool) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    model = onnx.load(src)
    copies = unshare_weights(model)
    onnx.save_model(model, dst)
    # every op of onnxruntime's dynamic registry but Conv (per-tensor ConvInteger: see the module doc)
    ops = sorted(op for op in IntegerOpsRegistry if op != "Conv")
    ort_quantize_dynamic(dst, dst, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         op_types_to_quantize=ops)
    model = onnx.load(dst)
    convs = conv_weights_per_channel(model)
    if convs:
        onnx.save_model(model, dst)
    range_note = ", 7-bit range (reduce_range)" if reduce_range else ", full 8-bit range"
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic (" + ", ".join(ops) + ")",
        "weights": "int8, per-channel" + range_note,
        "activations": "uint8, quantized at run time",
        **({"conv": {"count": convs, "scheme": "weight-only: int8 per output channel, full 8-bit range, "
                                           "DequantizeLinear before a float Conv",
                     "why": "onnxruntime's dynamic Conv (ConvInteger) takes one weight scale per tensor, which "
                            "depthwise filters cannot share (EfficientNet-Lite0 cosine 0.82 that way, 0.994 so)"}}
           if convs else {}),
        "weight_range": weight_range(reduce_range),
        "shared_weights_copied": copies,
    }


def conv_weights_per_channel(model) -> int:
    """Store each Conv's float weight initializer as int8 with one symmetric scale per output channel,
    read through a DequantizeLinear (axis 0; opset 13 and later), in place; returns how many."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 13:
        return 0  # per-axis DequantizeLinear needs opset 13
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer if init.data_type == TensorProto.FLOAT}
    dequantize, count = [], 0
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(initializers.pop(name)).astype(np.float32)
        scale = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        shaped = scale.reshape(-1, *([1] * (weight.ndim - 1)))
        quantized = np.clip(np.round(weight / shaped), -127, 127).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(weight.shape[0], np.int8), f"{name}_zero")])
        dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                           [name], name=f"{name}_dequantize", axis=0))
        count += 1
    if count:  # the dequantized weights keep their names: the Convs read them unchanged
        replaced = {node.output[0] for node in dequantize}
        kept = [init for init in graph.initializer if init.name not in replaced]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        graph_inputs = [i for i in graph.input if i.name not in replaced]  # old IR versions list them too
        del graph.input[:]
        graph.input.extend(graph_inputs)
        nodes = dequantize + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def quantize_static(src: str, dst: str, input_names: Sequence[str], samples: Sequence[tuple], reduce_range: bool) -> dict[str, Any]:
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static as ort_quantize_static

    class SampleReader(CalibrationDataReader):
        """The calibration samples (tuples of arrays in input order) as onnxruntime's feeds."""

        def __init__(self):
            self._feeds = iter([{n: np.ascontiguousarray(a) for n, a in zip(input_names, s)} for s in samples])

        def get_next(self):
            return next(self._feeds, None)

    model = onnx.load(src)
    copies = unshare_weights(model)
    onnx.save_model(model, dst)
    ort_quantize_static(
        dst, dst, SampleReader(),
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8, per-channel symmetric" + (", 7-bit range (reduce_range)" if reduce_range else ", full 8-bit range"),
        "activations": "int8, from calibration (MinMax)",
        "weight_range": weight_range(reduce_range),
        "calibration_samples": len(samples),
        "shared_weights_copied": copies,
    }


def to_fp16(src: str, dst: str) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(src), keep_io_types=True)
    onnx.save_model(model, dst)
    return {"tool": "onnxruntime.transformers.float16", "weights": "float16", "io": "float32 (kept; Cast nodes at the edges)"}


def unshare_weights(model) -> int:
    """Give each node its own copy of a float initializer that several nodes read; returns the
    number of copies made.

    Exporters store equal tensors once (tied weights; ``nn.TransformerEncoder`` deep-copies its layer,
    so its layers start out equal), and onnxruntime's quantizers assume one reader per weight:
    ``quantize_dynamic`` transposes a Gemm weight in place once per reader (the toy transformer's
    cosine fell to 0.73), and ``quantize_static`` gives an embedding tied to its output projection
    one per-channel scale for both uses, which onnxruntime then refuses to run ("scale must be 1D
    tensor with size 12"). Copies cost file size only where weights really are shared.
    """
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    initializers = {
        init.name: init for init in model.graph.initializer
        if init.data_type in floats and _elements(init) > 1
    }
    readers: dict[str, list[tuple]] = {}
    for node in all_nodes(model.graph):
        for slot, name in enumerate(node.input):
            if name in initializers:
                readers.setdefault(name, []).append((node, slot))
    copies = 0
    for name, uses in readers.items():
        for k, (node, slot) in enumerate(uses[1:], start=1):
            copy = type(initializers[name])()
            copy.CopyFrom(initializers[name])
            copy.name = f"{name}__copy{k}"
            model.graph.initializer.append(copy)
            node.input[slot] = copy.name
            copies += 1
    return copies


def _elements(tensor) -> int:
    count = 1
    for d in tensor.dims:
        count *= d
    return count


def all_nodes(graph):
    """Every node of a graph, including those in If/Loop/Scan bodies (which may read outer tensors)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == attr.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def remove_unused_initializers(model) -> None:
    graph = model.graph
    used = {name for node in all_nodes(graph) for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    if len(keep) != len(graph.initializer):
        removed = {init.name for init in graph.initializer} - {init.name for init in keep}
        del graph.initializer[:]
        graph.initializer.extend(keep)
        # old IR versions list initializers among the graph inputs too
        graph_inputs = [i for i in graph.input if i.name not in removed]
        del graph.input[:]
        graph.input.extend(graph_inputs)


def tidy(path: str) -> None:
    """Drop what the quantizer and pre-processing leave behind: unused initializers, and opset
    imports for domains no node uses (pre-processing imports every onnxruntime domain, e.g.
    ai.onnx.training, which other runtimes refuse)."""
    import onnx

    model = onnx.load(path)
    remove_unused_initializers(model)
    used = {node.domain for node in all_nodes(model.graph)}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save_model(model, path)
