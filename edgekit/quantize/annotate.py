"""The PT2E quantizer edgekit uses for static int8, shared by every target.

XNNPACK's symmetric scheme (per-channel int8 weights, int8 activations, int32 bias), plus one
pattern XNNPACK's and litert-torch's quantizers lack: a convolution or linear layer followed by a
clamp activation (ReLU6 is ``aten.hardtanh(x, 0, 6)``; ``aten.clamp`` too) is annotated as ONE
fused op whose output is observed after the clamp. Without it the clamp "shares" the observer of
its input, so the conv output is quantized over its whole pre-clamp range (often tens of units on
a BatchNorm-folded network) although only [0, 6] survives: on EfficientNet-Lite0 that alone took
the int8 simulation from cosine 0.815 to 0.991 (docs/quantize.md). Every runtime fuses the clamp
into the conv (XNNPACK output_min/max, TFLite fused RELU6, onnxruntime QDQ Conv+Clip), so the
fused annotation is also what the kernels compute.
"""
from __future__ import annotations

from typing import Iterable

from edgekit.quantize.config import QuantConfig, Recipe


def _observer(recipe: Recipe, config: QuantConfig):
    from torchao.quantization.pt2e import observer as O

    from edgekit.quantize.observers import percentile_observer_class

    eps = 2**-12  # XNNPACK's quantization configs use the same floor for scales
    if recipe.observer == "minmax":
        return O.MinMaxObserver.with_args(eps=eps)
    if recipe.observer == "histogram":  # L2-error-minimising range search (the MSE observer)
        return O.HistogramObserver.with_args(eps=eps)
    if recipe.observer == "percentile":
        return percentile_observer_class().with_args(eps=eps, percentile=config.percentile)
    if recipe.observer == "moving-average":
        return O.MovingAverageMinMaxObserver.with_args(eps=eps)
    raise ValueError(recipe.observer)  # pragma: no cover - QuantConfig validates observers


def quantization_config(recipe: Recipe, config: QuantConfig):
    """XNNPACK's symmetric per-channel static config with the recipe's activation observer."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    base = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    activation = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=_observer(recipe, config))
    return dataclasses.replace(base, input_activation=activation, output_activation=activation)


def edgekit_quantizer(recipe: Recipe, config: QuantConfig):
    """A torchao Quantizer: fused clamp patterns first, then XNNPACK's own annotators, then the
    nodes the caller keeps in float (``config.float_nodes``) lose their annotations."""
    import types

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import Quantizer

    qconfig = quantization_config(recipe, config)
    xnnpack = XNNPACKQuantizer().set_global(qconfig)
    float_nodes = frozenset(config.float_nodes)

    class EdgekitQuantizer(Quantizer):
        # litert-torch reads only ``global_config.is_dynamic`` (its own config type has the flag at
        # the top level; XNNPACK's keeps it per activation spec) to pick its static QDQ conversion
        global_config = types.SimpleNamespace(is_dynamic=False, quantization_config=qconfig)
        quantization_config = qconfig

        def transform_for_annotation(self, model):
            return xnnpack.transform_for_annotation(model)

        def annotate(self, model):
            annotate_fused_clamps(model, qconfig)
            xnnpack.annotate(model)
            if float_nodes:
                keep_float(model, float_nodes)
            return model

        def validate(self, model) -> None:
            xnnpack.validate(model)

    return EdgekitQuantizer()


def _clamp_ops():
    import torch

    ops = torch.ops.aten
    return {ops.hardtanh.default, ops.hardtanh_.default, ops.clamp.default, ops.clamp_.default,
            ops.relu.default, ops.relu_.default}


def _producer_ops():
    import torch

    ops = torch.ops.aten
    return {ops.conv1d.default, ops.conv2d.default, ops.conv3d.default, ops.linear.default,
            getattr(ops.conv1d, "padding", None), getattr(ops.conv2d, "padding", None)} - {None}


def annotate_fused_clamps(model, qconfig) -> int:
    """Annotate conv/linear -> clamp as one quantized op (output observed after the clamp)."""
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as U
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    clamps, producers = _clamp_ops(), _producer_ops()
    count = 0
    for clamp in model.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in clamps:
            continue
        producer = clamp.args[0]
        if not isinstance(producer, Node) or producer.op != "call_function" or producer.target not in producers:
            continue
        if len(producer.users) > 1:  # another reader needs the unclamped value
            continue
        act, weight = producer.args[0], producer.args[1]
        if not isinstance(act, Node) or not isinstance(weight, Node):
            continue
        bias = producer.args[2] if len(producer.args) > 2 else None
        partition = [clamp, producer, weight] + ([bias] if isinstance(bias, Node) else [])
        if U._is_annotated(partition):
            continue
        qspecs = {act: U.get_input_act_qspec(qconfig), weight: U.get_weight_qspec(qconfig)}
        if isinstance(bias, Node):
            qspecs[bias] = U.get_bias_qspec(qconfig)
        producer.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
        clamp.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=U.get_output_act_qspec(qconfig), _annotated=True
        )
        U._mark_nodes_as_annotated(partition)
        count += 1
    return count


def keep_float(model, names: Iterable[str]) -> list[str]:
    """Drop the quantization annotations of the named nodes (and of a clamp fused to them, which
    only has meaning together with its producer); returns the names found."""
    names = set(names)
    found = []
    clamps = _clamp_ops()
    for node in model.graph.nodes:
        if node.name not in names:
            continue
        found.append(node.name)
        node.meta.pop("quantization_annotation", None)
        for user in node.users:
            annotation = user.meta.get("quantization_annotation")
            if user.target in clamps and annotation is not None and not annotation.input_qspec_map:
                user.meta.pop("quantization_annotation")
    return found
