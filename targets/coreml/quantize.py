"""Core ML quantization recipes for each edgekit precision.

Where each runs, and why:
- Weight-only precisions and pruning run on the converted ML Program with coremltools.optimize.coreml
  (data-free, works on Linux): int8-weight-only = per-channel symmetric int8 (iOS16
  constexpr_affine_dequantize); int4-weight-only = blockwise int4, 32 weights per block (iOS18);
  palettizeN = per-tensor k-means lookup tables of 2^N entries (iOS16); --prune = magnitude pruning to
  the given sparsity, then the precision's compression applied jointly (sparse + quantized / palettized,
  iOS18). As coremltools does by default, tensors under 2048 elements stay float: they save nothing.
- int8 (W8A8) is calibrated on the PyTorch side with coremltools.optimize.torch's LinearQuantizer:
  coremltools' Core-ML-side activation calibration executes the model and so needs macOS. Observers
  see the calibration samples, the model becomes a decomposed reference graph (quantize/dequantize
  ops), weight quantization is folded into int8 constants, and torch.export hands it to Core ML, which
  emits quantize/dequantize ops for activations (iOS17) and int8 weights.
- The legacy neural network (.mlmodel) stores fp16, linear int8 and lookup-table weights itself.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from edgekit.errors import ConversionError, first_line

WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors are left float
INT4_BLOCK_SIZE = 32
PALETTE_BITS = {"palettize8": 8, "palettize6": 6, "palettize4": 4}


def compress_mlprogram(mlmodel, precision: str, prune: float | None, prequantized: bool = False):
    """Apply ``precision``'s weight compression (and pruning) to an ML Program MLModel."""
    import coremltools.optimize.coreml as cto

    def config(op_config):
        return cto.OptimizationConfig(global_config=op_config)

    joint = False
    if prune:
        if prequantized:  # W8A8: weights were pruned in PyTorch; store the zeros sparsely
            pruner = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.0,
                                                 weight_threshold=WEIGHT_THRESHOLD)
            return cto.prune_weights(mlmodel, config(pruner), joint_compression=True)
        pruner = cto.OpMagnitudePrunerConfig(target_sparsity=prune, weight_threshold=WEIGHT_THRESHOLD)
        mlmodel = cto.prune_weights(mlmodel, config(pruner))
        joint = True
    if precision == "int8-weight-only":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights(mlmodel, config(op), joint_compression=joint)
    if precision == "int4-weight-only":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                         block_size=INT4_BLOCK_SIZE, weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights(mlmodel, config(op), joint_compression=joint)
    if precision in PALETTE_BITS:
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=PALETTE_BITS[precision], granularity="per_tensor",
                                    weight_threshold=WEIGHT_THRESHOLD)
        return cto.palettize_weights(mlmodel, config(op), joint_compression=joint)
    return mlmodel  # none / fp16 / int8: nothing (more) to do on the Core ML side


def compress_neuralnetwork(mlmodel, precision: str):
    """The legacy neural network's own weight formats: fp16, linear int8, k-means lookup tables."""
    from coremltools.models.neural_network import quantization_utils

    if precision == "fp16":
        return quantization_utils.quantize_weights(mlmodel, nbits=16)
    if precision == "int8-weight-only":
        return quantization_utils.quantize_weights(mlmodel, nbits=8, quantization_mode="linear_symmetric")
    if precision in PALETTE_BITS:
        # coremltools 9's built-in "kmeans" mode hands the protobuf a (n, 1) table and fails;
        # the same k-means, flattened, goes through its custom lookup-table hook.
        return quantization_utils.quantize_weights(
            mlmodel, nbits=PALETTE_BITS[precision], quantization_mode="custom_lut", lut_function=_kmeans_lut
        )
    return mlmodel


def _kmeans_lut(nbits: int, weights):
    import numpy as np
    from coremltools.models.neural_network import quantization_utils

    lut, indices = quantization_utils._get_kmeans_lookup_table_and_weight(nbits, weights)
    return np.asarray(lut, dtype=np.float32).reshape(-1), np.asarray(indices).reshape(-1)


def calibrated_int8(module, example_inputs: tuple, calibration: Sequence[tuple], prune: float | None) -> tuple[Any, dict[str, Any]]:
    """W8A8 on the PyTorch side: returns (module with quantize/dequantize ops and int8 weights, facts).

    Layers inside torch.nn containers that torch.fx treats as opaque (TransformerEncoder,
    MultiheadAttention, LSTM, ...) stay float: LinearQuantizer cannot observe them. The facts say how
    many layers were quantized and which containers stayed float.
    """
    import torch
    import torch.ao.quantization as ao
    from coremltools.optimize.torch.quantization import LinearQuantizer, LinearQuantizerConfig, ModuleLinearQuantizerConfig
    from coremltools.optimize.torch.quantization._backend_config import get_backend_config
    from torch.ao.quantization.quantize_fx import _convert_to_reference_decomposed_fx

    module = copy.deepcopy(module).eval()
    if prune:
        _magnitude_prune(module, prune)
    opaque = _opaque_containers(module, LinearQuantizer)
    skipped = {name: None for name, _ in module.named_modules() if any(name == p or name.startswith(p + ".") for p in opaque)}
    config = LinearQuantizerConfig(
        # min/max observers: calibration sees each sample once, and the QAT default (a moving
        # average) would clip the ranges it has not caught up with
        global_config=ModuleLinearQuantizerConfig(
            quantization_scheme="symmetric", milestones=None, activation_observer="min_max", weight_observer="min_max",
        ),
        module_name_configs=skipped,
    )
    quantizer = LinearQuantizer(module, config)
    # LinearQuantizer is built for quantization-aware training and traces the model in train mode;
    # calibration must capture the inference graph (dropout, drop-connect and BatchNorm differ), so
    # the private copy ignores that switch
    module.train = lambda mode=True: module
    try:
        prepared = quantizer.prepare(example_inputs=example_inputs, inplace=True)
    except Exception as exc:
        raise ConversionError(
            f"coremltools.optimize.torch could not prepare the model for int8 calibration: {first_line(exc)}",
            hint="int8 needs a torch.fx-traceable nn.Module; try --quantize int8-weight-only",
        ) from exc
    prepared.eval()
    prepared.apply(ao.enable_observer)
    prepared.apply(ao.disable_fake_quant)
    with torch.no_grad():
        for sample in calibration:
            prepared(*(torch.from_numpy(_contiguous(a)) for a in sample))
    prepared.apply(ao.disable_observer)
    prepared.apply(ao.enable_fake_quant)
    reference = _convert_to_reference_decomposed_fx(
        prepared, qconfig_mapping=quantizer._qconfig_mapping, backend_config=get_backend_config()
    )
    quantized, folded = _fold_weight_quantization(reference)
    if folded == 0:
        raise ConversionError(
            "int8 found no Conv or Linear layer that coremltools.optimize.torch can quantize"
            + (f" (float containers: {', '.join(opaque)})" if opaque else ""),
            hint="models loaded as TorchScript or .pt2 graphs have no nn layers left; try --quantize int8-weight-only",
        )
    return quantized, {"quantized_layers": folded, "float_containers": opaque, "calibration_samples": len(calibration)}


def simulated_cosine(float_module, quantized_module, samples: Sequence[tuple]) -> float | None:
    """Cosine between the float model and its PyTorch int8 simulation on ``samples`` (all outputs)."""
    import torch
    from torch.utils import _pytree as pytree

    ref, got = [], []
    with torch.no_grad():
        for sample in samples:
            tensors = tuple(torch.from_numpy(_contiguous(a)) for a in sample)
            ref += [t.flatten().double() for t in pytree.tree_leaves(float_module(*tensors)) if isinstance(t, torch.Tensor)]
            got += [t.flatten().double() for t in pytree.tree_leaves(quantized_module(*tensors)) if isinstance(t, torch.Tensor)]
    if not ref:
        return None
    a, b = torch.cat(ref), torch.cat(got)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def _opaque_containers(module, quantizer_cls) -> list[str]:
    """torch.nn modules with children that torch.fx keeps as leaves and LinearQuantizer does not know."""
    import torch

    known = tuple(c for c in quantizer_cls._supported_modules if isinstance(c, type))
    containers = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
    out: list[str] = []
    for name, sub in module.named_modules():
        if not name or isinstance(sub, containers) or isinstance(sub, known) or not any(True for _ in sub.children()):
            continue
        if type(sub).__module__.startswith(("torch.nn.", "torch.ao.nn.")) and not any(name.startswith(p + ".") for p in out):
            out.append(name)
    return out


def _magnitude_prune(module, sparsity: float) -> None:
    """Zero the smallest-magnitude weights of each Conv / Linear weight (same threshold as Core ML)."""
    import torch

    with torch.no_grad():
        for sub in module.modules():
            weight = getattr(sub, "weight", None)
            if isinstance(sub, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and weight is not None and weight.numel() >= WEIGHT_THRESHOLD:
                k = int(weight.numel() * sparsity)
                if k:
                    cutoff = weight.abs().flatten().kthvalue(k).values
                    weight.masked_fill_(weight.abs() <= cutoff, 0.0)


def _fold_weight_quantization(reference):
    """Trace into the reference quantized layers and replace quantize(weight) by its int8 result.

    The decomposed reference graph quantizes float weights at run time; Core ML wants int8 constants
    behind a dequantize (which becomes constexpr_affine_dequantize).
    """
    import torch
    from torch.ao.nn.quantized.reference.modules.utils import ReferenceQuantizedModule

    class _IntoReferenceLayers(torch.fx.Tracer):
        def is_leaf_module(self, mod, qualified_name):
            return super().is_leaf_module(mod, qualified_name) and not isinstance(mod, ReferenceQuantizedModule)

    graph_module = torch.fx.GraphModule(reference, _IntoReferenceLayers().trace(reference))

    def value(arg):
        if not isinstance(arg, torch.fx.Node):
            return arg
        obj = graph_module
        for part in arg.target.split("."):
            obj = getattr(obj, part)
        return obj

    folded = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or not str(node.target).startswith("quantized_decomposed.quantize_per_"):
            continue
        if not all(a.op == "get_attr" for a in node.args if isinstance(a, torch.fx.Node)):
            continue  # an activation: stays a run-time quantize
        int8_weight = node.target(*(value(a) for a in node.args))
        name = f"edgekit_int8_weight_{folded}"
        graph_module.register_buffer(name, int8_weight)
        with graph_module.graph.inserting_before(node):
            constant = graph_module.graph.get_attr(name)
        node.replace_all_uses_with(constant)
        graph_module.graph.erase_node(node)
        folded += 1
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module.eval(), folded


def _contiguous(array):
    import numpy as np

    return np.ascontiguousarray(array)
