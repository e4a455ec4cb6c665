"""Core ML quantization recipes for each edgekit precision.

Where each runs, and why:
- Weight-only precisions and pruning run on the converted ML Program with coremltools.optimize.coreml
  (data-free, works on Linux): int8-weight-only = per-channel symmetric int8 (iOS16
  constexpr_affine_dequantize); int4-weight-only = blockwise int4, 32 weights per block (iOS18);
  palettizeN = per-tensor k-means lookup tables of 2^N entries (iOS16); --prune = magnitude pruning to
  the given sparsity, then the precision's compression applied jointly (sparse + quantized / palettized,
  iOS18). As coremltools does by default, tensors under 2048 elements stay float: they save nothing.
- int8 (W8A8) is the run's shared PT2E program (edgekit.quantize, the same scales as TFLite,
  ExecuTorch and ONNX), converted by coremltools' torch.export frontend: targets/coreml/int8.py.
  Core ML's own activation calibration executes the model and so needs macOS.
- The legacy neural network (.mlmodel) stores fp16, linear int8 and lookup-table weights itself.
"""
from __future__ import annotations

WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors are left float
INT4_BLOCK_SIZE = 32
PALETTE_BITS = {"palettize8": 8, "palettize6": 6, "palettize4": 4}


def compress_mlprogram(mlmodel, precision: str, prune: float | None):
    """Apply ``precision``'s weight compression (and pruning) to an ML Program MLModel."""
    import coremltools.optimize.coreml as cto

    def config(op_config):
        return cto.OptimizationConfig(global_config=op_config)

    joint = False
    if prune:
        if precision == "int8":  # W8A8: the weights already are int8 constants; prune them jointly
            from edgekit.targets.coreml.int8 import prune_quantized

            return prune_quantized(mlmodel, prune, WEIGHT_THRESHOLD)
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
