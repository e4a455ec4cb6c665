"""Core AI static int8 (W8A8) from the run's shared int8 decision (edgekit.quantize).

The PT2E program that TFLite, ExecuTorch, ONNX and Core ML lower (calibrated once, recipe chosen on
held-back samples, the same scales) is handed to coreai-torch with its ``quantized_decomposed``
quantize / dequantize ops rewritten as coreai-torch's own ``coreai::quantize`` / ``coreai::dequantize``
custom ops (the ops coreai-opt's finalize emits; coreai-torch lowers them to ``coreai.quantize`` /
``coreai.dequantize``, coreai_torch/_custom_to_core.py). Folded int8 weights stay int8 constants behind
a per-channel ``coreai.dequantize``. Nothing else of the graph changes.

Why not coreai-opt's own ``Quantizer(QuantizerConfig())`` (the earlier recipe): its default W8A8 lost
real models (families matrix: EfficientNet-Lite0 cosine 0.949, MiniLM 0.769, the decoder 0.89) while
the shared program passes on the other targets; the interpreter equals coreai-opt's own PyTorch
simulation, so the loss was the recipe's, not the conversion's.
"""
from __future__ import annotations

import copy
from typing import Any

from edgekit.errors import ConversionError

TOOL = "edgekit.quantize (PT2E, shared with tflite/executorch/onnx/coreml) as coreai::quantize / dequantize ops"
_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def shared_int8_program(model, options, calibration) -> tuple[Any, dict[str, Any]]:
    """(the ExportedProgram for coreai-torch, manifest facts) of the shared int8 decision."""
    import torch

    from edgekit.quantize.shared import checked_int8_program

    shared = checked_int8_program(model, calibration, options, "coreai int8")
    graph = copy.deepcopy(shared.converted(fold_quantize=True))
    rewritten = to_coreai_ops(graph)
    try:
        exported = torch.export.export(graph, tuple(model.example_inputs), strict=False)
    except Exception as exc:
        from edgekit.errors import first_line

        raise ConversionError(f"torch.export could not export the Core AI int8 graph: {first_line(exc)}") from exc
    facts = {
        "tool": TOOL,
        "weights": "int8, per-channel symmetric (int8 constants + coreai.dequantize)",
        "activations": f"int8 coreai.quantize / coreai.dequantize, observer {shared.choice.recipe.observer} "
                       "(chosen on held-back calibration samples)",
        "quantize_ops_rewritten": rewritten,
        "why": "the same scales as the other targets; coreai-opt's default W8A8 lost EfficientNet-Lite0 (cosine 0.949) "
               "and MiniLM (0.769) in its own PyTorch simulation",
        **shared.to_manifest(),
    }
    return exported, facts


def to_coreai_ops(graph_module) -> int:
    """Rewrite every ``quantized_decomposed`` (de)quantize of ``graph_module`` in place as coreai-torch's
    ``coreai::quantize`` / ``coreai::dequantize``; return how many were rewritten. Scales and zero points
    become buffers (coreai's ops take tensors); a quantize whose range is narrower than its dtype's gets
    its input clamped to that range first, which gives the same integers."""
    import coreai_torch._compression.custom_layers  # noqa: F401  (registers the coreai:: custom ops, as coreai-opt does)
    import torch

    qd = torch.ops.quantized_decomposed
    kinds = {qd.quantize_per_tensor.default: ("quantize", False), qd.quantize_per_tensor.tensor: ("quantize", False),
             qd.dequantize_per_tensor.default: ("dequantize", False), qd.dequantize_per_tensor.tensor: ("dequantize", False),
             qd.quantize_per_channel.default: ("quantize", True), qd.dequantize_per_channel.default: ("dequantize", True)}
    graph, count = graph_module.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target not in kinds:
            if getattr(node.target, "namespace", None) == "quantized_decomposed":
                raise ConversionError(f"coreai int8: no Core AI form for {node.target} (node {node.name})")
            continue
        kind, per_channel = kinds[node.target]
        with graph.inserting_before(node):
            _replace(graph_module, node, kind, per_channel)
        graph.erase_node(node)
        count += 1
    graph.lint()
    graph_module.recompile()
    return count


def _replace(graph_module, node, kind: str, per_channel: bool) -> None:
    import torch

    graph = graph_module.graph
    if per_channel:
        source, scale, zero, axis, qmin, qmax, dtype = node.args[:7]
    else:
        (source, scale, zero, qmin, qmax, dtype), axis = node.args[:6], 0
    scale_node = _tensor_arg(graph_module, node, "scale", scale, torch.float32)
    zero_node = _tensor_arg(graph_module, node, "zero_point", zero, dtype)
    if kind == "quantize":
        low, high = _RANGES.get(str(dtype).removeprefix("torch."), (qmin, qmax))
        if (qmin, qmax) != (low, high):  # coreai.quantize clips to the dtype: clip to the narrower range first
            source = _clamp_to(graph_module, node, source, scale, zero, qmin, qmax, per_channel, axis)
        new = graph.call_function(torch.ops.coreai.quantize.default, (source, scale_node, dtype),
                                  {"zero_point": zero_node, "axis": axis})
    else:
        out_dtype = node.kwargs.get("out_dtype") or torch.float32
        new = graph.call_function(torch.ops.coreai.dequantize.default, (source, scale_node),
                                  {"zero_point": zero_node, "axis": axis, "input_dtype": dtype, "output_dtype": out_dtype})
    new.meta.update(node.meta)
    node.replace_all_uses_with(new)


def _tensor_arg(graph_module, node, what: str, value, dtype):
    """A scale / zero point as a graph tensor: PT2E passes per-tensor ones as Python numbers."""
    import torch

    if isinstance(value, torch.fx.Node):
        if value.op == "get_attr":  # per-channel parameters: stored as they are, in the dtype coreai wants
            tensor = _attr(graph_module, value.target)
            return _buffer(graph_module, f"{node.name}_{what}", tensor.to(dtype).reshape(-1))
        raise ConversionError(f"coreai int8: the {what} of {node.name} is computed in the graph, not a constant")
    return _buffer(graph_module, f"{node.name}_{what}", torch.tensor(value, dtype=dtype))


def _clamp_to(graph_module, node, source, scale, zero, qmin, qmax, per_channel: bool, axis: int):
    import torch

    if per_channel or not all(isinstance(v, (int, float)) for v in (scale, zero)):
        raise ConversionError(f"coreai int8: quantize {node.name} has a range [{qmin}, {qmax}] narrower than its dtype "
                              "and scales that are not plain numbers")
    low, high = (qmin - zero) * scale, (qmax - zero) * scale
    return graph_module.graph.call_function(torch.ops.aten.clamp.default, (source, low, high))


def _attr(graph_module, target: str):
    value = graph_module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _buffer(graph_module, name: str, tensor):
    name = name.replace(".", "_")
    graph_module.register_buffer(name, tensor)
    return graph_module.graph.get_attr(name)
