"""Static int8 for ONNX: the shared PT2E decision (edgekit.quantize) exported as a QDQ graph.

The converted PT2E graph (int8 weight constants + per-channel DequantizeLinear, activation
QuantizeLinear/DequantizeLinear pairs) goes through torch.onnx's dynamo exporter, whose torchlib
maps ``quantized_decomposed`` ops to QuantizeLinear/DequantizeLinear; onnxruntime then fuses the
QDQ groups into integer kernels once targets/onnx/qdq_rewrites.py has put the graph in the form its
fusions need. So ONNX gets the same scales as TFLite and ExecuTorch; the manifest's
``onnxruntime_cpu_kernels`` says which kernels onnxruntime really runs.
onnxruntime's own quantize_static (the earlier recipe) stays as the fallback where that export
fails, and is measured beside it (benchmarks/int8_accuracy.py, docs/quantize.md).
"""
from __future__ import annotations

from typing import Any


def halve_weight_range(proto) -> int:
    """Requantize int8 QDQ weights to 7 bits (q / 2, scale x 2); returns the tensors changed.

    onnxruntime's x86 kernels without VNNI (AVX2) multiply u8 x s8 pairs into int16 and saturate
    with full 8-bit weights (targets/onnx/quantize.py): ``--onnx-reduce-range`` (for such CPUs only;
    full range is the default) applies to the shared PT2E weights as to onnxruntime's own quantizer.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    from edgekit.targets.onnx.quantize import all_nodes

    initializers = {init.name: init for init in proto.graph.initializer}
    changed = 0
    halved: dict[str, str] = {}  # weight -> its new scale (a weight read by several nodes is halved once)
    for node in all_nodes(proto.graph):
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        if node.input[0] in halved:
            node.input[1] = halved[node.input[0]]
            continue
        weight, scale = initializers.get(node.input[0]), initializers.get(node.input[1])
        if weight is None or scale is None or weight.data_type != TensorProto.INT8:
            continue
        q = numpy_helper.to_array(weight).astype(np.int32)
        if q.size <= 1 or np.abs(q).max() <= 64:
            continue
        weight.CopyFrom(numpy_helper.from_array(np.clip(np.round(q / 2), -64, 64).astype(np.int8), weight.name))
        # a new scale tensor per weight: the exporter may share one constant between nodes
        doubled = numpy_helper.to_array(scale) * 2
        name = f"{scale.name}__7bit{changed}"
        proto.graph.initializer.append(numpy_helper.from_array(doubled.astype(numpy_helper.to_array(scale).dtype), name))
        node.input[1] = halved[weight.name] = name
        changed += 1
    return changed


def pt2e_qdq(model, options, calibration, opset: int, path: str, reduce_range: bool = False) -> dict[str, Any]:
    """Write the shared int8 program of ``model`` as a QDQ ONNX file; return manifest facts."""
    import copy

    import torch

    from edgekit.errors import ConversionError
    from edgekit.quantize.embeddings import gather_rows
    from edgekit.quantize.shared import checked_int8_program
    from edgekit.targets.onnx.export import _strip_debug_metadata, save
    from edgekit.targets.onnx.qdq_rewrites import for_integer_kernels
    from edgekit.targets.onnx.quantize import weight_range

    shared = checked_int8_program(model, calibration, options, "onnx int8")
    graph = copy.deepcopy(shared.converted(fold_quantize=True))
    gather_rows(graph)  # int8 tables: Gather int8 rows, then scale (edgekit/quantize/embeddings.py)
    names = dict(input_names=[s.name for s in model.inputs], output_names=list(model.output_names))
    try:
        program = torch.export.export(graph, tuple(model.example_inputs), dynamic_shapes=model.dynamic_shapes(), strict=False)
        proto = torch.onnx.export(program, (), opset_version=opset, dynamo=True, verbose=False, **names).model_proto
    except Exception as exc:
        from edgekit.errors import first_line

        raise ConversionError(f"torch.onnx could not export the int8 (QDQ) graph: {first_line(exc)}") from exc
    _strip_debug_metadata(proto)  # stack traces per node: most of a small model's file otherwise
    rewrites = for_integer_kernels(proto, reduce_range)  # targets/onnx/qdq_rewrites.py
    save(proto, path)
    return {
        "tool": "edgekit.quantize (PT2E) exported by torch.onnx as QDQ",
        "format": "QDQ",
        "weights": "int8, per-channel symmetric, "
                   + ("7-bit range (reduce_range: PT2E's weights requantized to [-64, 64])" if reduce_range else "full 8-bit range"),
        "activations": f"8-bit, observer {shared.choice.recipe.observer} (chosen on held-back calibration samples); "
                       "stored as uint8, the int8 grid with its zero point + 128 (onnxruntime's u8 x s8 kernels)",
        "weight_range": weight_range(reduce_range),
        "qdq_rewrites": rewrites,
        "onnxruntime_cpu_kernels": cpu_kernels(path),
        **shared.to_manifest(),
    }


# onnxruntime's integer kernels (contrib ops included) that a QDQ group or a dynamic recipe becomes
_INTEGER_KERNELS = ("QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul",
                    "QAttention", "DynamicQuantizeLSTM", "MatMulNBits", "GatherBlockQuantized")
_WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedGemm", "FusedMatMul")


def cpu_kernels(path: str) -> dict[str, Any]:
    """What onnxruntime's CPU provider runs for ``path`` after its graph optimisation (the level
    where it fuses QDQ groups): integer kernels by type, and the float Conv / MatMul / Gemm still
    fed by a weight DequantizeLinear (weights dequantized at every call: the int8 graph is then
    slower than it should be, often slower than float)."""
    import collections
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # no layout/NCHWc rewrites
    options.log_severity_level = 3
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-ort-") as tmp:
            options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            graph = onnx.load(options.optimized_model_filepath).graph
    except Exception as exc:  # noqa: BLE001 - a fact for the manifest; verification runs the file itself
        from edgekit.errors import first_line

        return {"unavailable": f"onnxruntime could not save its optimized graph: {first_line(exc)}"}
    initializers = {init.name for init in graph.initializer}
    weight_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers}
    integer = collections.Counter(n.op_type for n in graph.node if n.op_type.startswith("QLinear") or n.op_type in _INTEGER_KERNELS)
    dequantized = [n.name or n.op_type for n in graph.node if n.op_type in _WEIGHTED and weight_dq & set(n.input)]
    return {"integer": dict(sorted(integer.items())), "float_on_dequantized_weights": len(dequantized),
            "float_on_dequantized_weights_nodes": dequantized[:10]}


def static_int8(model, options, calibration, settings, float_path: str, final_path: str, workdir: str) -> dict[str, Any]:
    """The shared PT2E program as QDQ; onnxruntime's quantize_static on the float file only where
    that export fails (the reason is kept in the manifest). Returns the facts to merge into details."""
    import os

    from edgekit.errors import ConversionError, UsageError
    from edgekit.targets.onnx import quantize as recipes
    from edgekit.targets.onnx.runtime import ONNXRuntime

    if not calibration:
        raise UsageError("--quantize int8 needs --calibration PATH for the onnx target")
    try:
        return {"quantization": pt2e_qdq(model, options, calibration, settings.opset, final_path, settings.reduce_range)}
    except ConversionError as exc:
        if "not published as int8" in exc.message:
            raise
        pt2e_error = str(exc)
    prepared_path = os.path.join(workdir, "preprocessed.onnx")
    facts: dict[str, Any] = {"preprocess": recipes.preprocess(float_path, prepared_path)}
    names = [value.name for value in ONNXRuntime().load(prepared_path).inputs()]
    facts["quantization"] = recipes.quantize_static(prepared_path, final_path, names, calibration, settings.reduce_range)
    facts["quantization"]["why"] = f"onnxruntime quantize_static, because the shared PT2E graph did not export: {pt2e_error}"
    facts["quantization"]["onnxruntime_cpu_kernels"] = cpu_kernels(final_path)
    return facts
