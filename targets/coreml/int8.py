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

``--prune`` with int8: the shared program's int8 weights are pruned on the Core ML side (magnitude,
jointly with their int8 quantization, iOS18), after calibration.
"""
from __future__ import annotations

import copy
from typing import Any

from edgekit.errors import ConversionError, UsageError

TOOL = "edgekit.quantize (PT2E, shared with tflite/executorch/onnx) converted by coremltools' torch.export frontend"


def shared_int8_module(model, settings, options, calibration) -> tuple[Any, dict[str, Any]]:
    """(the converted PT2E graph to hand to ct.convert, manifest facts)."""
    from edgekit.quantize.coverage import require_quantized
    from edgekit.quantize.shared import int8_program

    if not calibration:
        raise UsageError("--quantize int8 needs calibration samples (--calibration PATH, or 'random')")
    shared = int8_program(model, calibration, options)
    require_quantized(shared.coverage, "coreml int8")
    graph = copy.deepcopy(shared.converted(fold_quantize=True))
    facts = {
        "tool": TOOL,
        "weights": "int8, per-channel symmetric (constexpr_affine_dequantize)",
        "activations": f"int8 quantize/dequantize ops (iOS17), observer {shared.choice.recipe.observer} "
                       "(chosen on held-back calibration samples)",
        "quantizer_choice": "the same scales as the other targets; coremltools.optimize.torch's LinearQuantizer (the earlier "
                            "recipe) failed verification on EfficientNet-Lite0 (cosine 0.21) and cannot trace BERT",
        **shared.to_manifest(),
    }
    if settings.prune:
        facts["pruning"] = f"magnitude, {settings.prune:g} sparsity, applied on the Core ML side to the int8 weights after calibration"
    return graph, facts


def prune_quantized(mlmodel, sparsity: float, threshold: int):
    """Magnitude-prune the int8 weights of a W8A8 program, keeping their quantization (joint)."""
    import coremltools.optimize.coreml as cto

    pruner = cto.OpMagnitudePrunerConfig(target_sparsity=sparsity, weight_threshold=threshold)
    try:
        return cto.prune_weights(mlmodel, cto.OptimizationConfig(global_config=pruner), joint_compression=True)
    except (ValueError, NotImplementedError) as exc:
        raise ConversionError(f"coremltools could not prune the int8 weights: {str(exc).splitlines()[0][:300]}") from exc
