"""Core ML static int8 (W8A8) from the run's shared int8 decision (edgekit.quantize).

The PT2E program that TFLite, ExecuTorch and ONNX lower (calibrated once, recipe chosen on
held-back samples, same scales) is converted by coremltools' torch.export frontend, which maps
``quantized_decomposed`` quantize/dequantize ops to MIL ``quantize``/``dequantize`` (iOS17) and int8
weight constants behind a dequantize to ``constexpr_affine_dequantize``.

Why not coremltools.optimize.torch's LinearQuantizer (the earlier recipe): its converted program failed
verification on EfficientNet-Lite0 (cosine 0.21 by the MIL reference interpreter, 0.78 in its own
PyTorch simulation), and it traces with torch.fx, which cannot prepare BERT-style models and leaves
nn.TransformerEncoder / MultiheadAttention float; PT2E works on the torch.export graph.
(benchmarks/results/sections/apple_linux.md)

A coremltools defect worked around here (measured on the GPT decoder step): the torch.export frontend
folds the dequantize of a rank-0 int8 constant as ``scale * (q - zero_point)`` in int8 arithmetic
(``_dequantize_general``), which wraps around. PT2E quantizes a float scalar operand (attention's
``* 1/sqrt(d)``: q=127, zero point -128) to exactly such a constant, so 255 became -1 and the scores
were multiplied by -0.0007 instead of 0.177 (cosine 0.90 on the decoder's outputs; Core ML on a device
would compute the same program). ``fold_scalar_dequantize`` folds those in PyTorch first, with the
graph's own dequantize op, so coremltools receives the float value the PT2E program computes.

``--prune`` with int8: the shared program's int8 weights are pruned on the Core ML side (magnitude,
jointly with their int8 quantization, iOS18), after calibration.
"""
from __future__ import annotations

import copy
from typing import Any

from edgekit.errors import ConversionError
from edgekit.quantize.annotate import attribute

TOOL = "edgekit.quantize (PT2E, shared with tflite/executorch/onnx) converted by coremltools' torch.export frontend"


def shared_int8_module(model, settings, options, calibration) -> tuple[Any, dict[str, Any]]:
    """(the converted PT2E graph to hand to ct.convert, manifest facts)."""
    from edgekit.quantize.shared import checked_int8_program

    shared = checked_int8_program(model, calibration, options, "coreml int8")
    graph = copy.deepcopy(shared.converted(fold_quantize=True))
    folded = fold_scalar_dequantize(graph)
    facts = {
        "tool": TOOL,
        "weights": "int8, per-channel symmetric (constexpr_affine_dequantize)",
        "activations": f"int8 quantize/dequantize ops (iOS17), observer {shared.choice.recipe.observer} "
                       "(chosen on held-back calibration samples)",
        "quantizer_choice": "the same scales as the other targets; coremltools.optimize.torch's LinearQuantizer (the earlier "
                            "recipe) failed verification on EfficientNet-Lite0 (cosine 0.21) and cannot trace BERT",
        **shared.to_manifest(),
    }
    if folded:
        facts["scalar_constants_folded"] = folded
    if settings.prune:
        facts["pruning"] = f"magnitude, {settings.prune:g} sparsity, applied on the Core ML side to the int8 weights after calibration"
    return graph, facts


def fold_scalar_dequantize(graph) -> int:
    """Replace ``dequantize(rank-0 int8 constant)`` in a converted PT2E graph by its float value.

    coremltools 9 (``frontend/torch/quantization_ops._dequantize_general``) folds such a node as
    ``scale * (q - zero_point)`` with q and zero_point both int8, which overflows whenever
    ``q - zero_point`` leaves [-128, 127]: a positive scalar quantized with zero point -128 (q=127)
    gives -scale instead of 255*scale. The value here is the graph's own op applied to the constant,
    i.e. exactly what the PT2E program (and every other target) computes. Tensors of rank >= 1 are
    not affected (they become constexpr_affine_dequantize, dequantized in float). Returns the count."""
    import torch

    ops = torch.ops.quantized_decomposed
    dequantize = {ops.dequantize_per_tensor.default, ops.dequantize_per_channel.default}
    fx = graph.graph
    count = 0
    for node in list(fx.nodes):
        if node.op != "call_function" or node.target not in dequantize:
            continue
        source, rest = node.args[0], node.args[1:]
        if not isinstance(source, torch.fx.Node) or source.op != "get_attr":
            continue
        if any(isinstance(a, torch.fx.Node) for a in (*rest, *node.kwargs.values())):
            continue
        value = attribute(graph, source.target)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            continue
        name = f"_edgekit_scalar_{count}"
        while hasattr(graph, name):
            name += "_"
        graph.register_buffer(name, node.target(value, *rest, **node.kwargs).detach().clone())
        with fx.inserting_before(node):
            folded = fx.get_attr(name)
        folded.meta = dict(node.meta)
        node.replace_all_uses_with(folded)
        fx.erase_node(node)
        if not source.users:
            fx.erase_node(source)
        count += 1
    if count:
        fx.lint()
        graph.recompile()
    return count


def prune_quantized(mlmodel, sparsity: float, threshold: int):
    """Magnitude-prune the int8 weights of a W8A8 program, keeping their quantization (joint)."""
    import coremltools.optimize.coreml as cto

    pruner = cto.OpMagnitudePrunerConfig(target_sparsity=sparsity, weight_threshold=threshold)
    try:
        return cto.prune_weights(mlmodel, cto.OptimizationConfig(global_config=pruner), joint_compression=True)
    except (ValueError, NotImplementedError) as exc:
        raise ConversionError(f"coremltools could not prune the int8 weights: {str(exc).splitlines()[0][:300]}") from exc
