"""onnxruntime's quantization tools applied to the float ONNX file, one recipe per precision.

Choices (and why), measured on this project's test models with onnxruntime 1.31 on an x86 AVX2 CPU:
- Pre-processing (onnxruntime's quant_pre_process: symbolic shape inference, basic graph
  optimisation such as MatMul+Add -> Gemm, ONNX shape inference) runs before int8 and int8-dynamic,
  as onnxruntime recommends: it gives the quantizer the shapes it needs and folds ops so fewer
  tensors get their own scale. Without it the quantizer stopped on the dynamo exporter's graphs.
- 7-bit weights (``reduce_range``) by default: onnxruntime's x86 int8 kernels without VNNI
  (AVX2, most cloud and desktop CPUs) multiply u8 x s8 pairs into int16 and saturate with full 8-bit
  weights. Measured cosine to the float model, full range -> reduce range: mlp int8 0.972 -> 0.9996,
  tiny_transformer int8 0.980 -> 0.9998, small_cnn int8-dynamic 0.992 -> 0.9999. ARM and VNNI
  kernels do not saturate: ``reduce_range=False`` (``--onnx-full-range``) keeps the 8th bit there.
- int8: static QDQ, per-channel symmetric int8 weights, int8 activations (S8S8, onnxruntime's
  recommended default for CPUs), MinMax calibration on the calibration samples. Percentile and
  entropy calibration measured no better on the test models (within 0.0001 cosine).
- int8-dynamic: int8 weights (per-channel for MatMul/Gemm; onnxruntime quantizes Conv per tensor),
  activations quantized at run time.
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


def quantize_dynamic(src: str, dst: str, reduce_range: bool) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic

    model = onnx.load(src)
    copies = unshare_weights(model)
    onnx.save_model(model, dst)
    ort_quantize_dynamic(dst, dst, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8)
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        # onnxruntime quantizes MatMul/Gemm weights per channel, Conv (ConvInteger) weights per tensor
        "weights": "int8; per-channel for MatMul/Gemm, per-tensor for Conv" + (", 7-bit range (reduce_range)" if reduce_range else ", full 8-bit range"),
        "activations": "uint8, quantized at run time",
        "shared_weights_copied": copies,
    }


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
