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

    from edgekit.quantize.observers import fast_histogram_observer_class, percentile_observer_class

    eps = 2**-12  # XNNPACK's quantization configs use the same floor for scales
    if recipe.observer == "minmax":
        return O.MinMaxObserver.with_args(eps=eps)
    if recipe.observer == "histogram":  # L2-error-minimising range search; torchao's, same bins, faster
        return fast_histogram_observer_class().with_args(eps=eps)
    if recipe.observer == "percentile":
        return percentile_observer_class().with_args(eps=eps, percentile=config.percentile)
    if recipe.observer == "moving-average":
        return O.MovingAverageMinMaxObserver.with_args(eps=eps)
    if recipe.observer in ("mse", "mean-minmax"):  # edgekit/quantize/observers_extra.py
        from edgekit.quantize import observers_extra as X

        return (X.mse_observer_class() if recipe.observer == "mse" else X.mean_minmax_observer_class()).with_args(eps=eps)
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
            # XNNPACK's own transform turns integer scalar operands into float tensors too, which
            # breaks attention-mask index arithmetic (IndexError on BERT): the float-only variant
            from edgekit.targets.executorch.graph_fixes import transform_for_annotation

            return transform_for_annotation(model)

        def annotate(self, model):
            annotate_fused_clamps(model, qconfig)
            annotate_embeddings(model, qconfig)
            kept = residual_adds(model)  # claimed first, so XNNPACK's add annotator skips them
            xnnpack.annotate(model)
            unclaim(model, kept)  # the residual stream stays float (see residual_adds)
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


#: embedding tables smaller than this stay float (position / token-type tables: a few KB, no gain)
MIN_EMBEDDING_ELEMENTS = 4096
#: ops that normalise over features: a float op in every runtime's int8 path
_NORMS = ("layer_norm", "native_layer_norm", "rms_norm", "group_norm")


def annotate_embeddings(model, qconfig) -> int:
    """Embedding tables (``aten.embedding`` on a constant weight) get int8 weight-only quantization,
    one symmetric scale per row, output float: a lookup has no arithmetic to run in int8, and the
    token table is a third of a BERT encoder's weights (without it an int8 MiniLM stays ~0.5x FP32).
    Each target stores the table as int8 and dequantizes only the rows it gathers."""
    import torch
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as U
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    count = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        weight = node.args[0]
        val = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
        if weight.op != "get_attr" or val is None or val.dim() != 2 or val.numel() < MIN_EMBEDDING_ELEMENTS:
            continue
        if U._is_annotated([node]):
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={weight: U.get_weight_qspec(qconfig)}, _annotated=True)
        count += 1
    return count


def residual_adds(model) -> list:
    """The adds that feed a normalisation directly: a transformer's residual stream (x + sublayer(x)
    -> LayerNorm). They stay float, decided by op kind, for any model: the residual stream carries
    the few outlier features a transformer relies on (tens of units beside values near 0.1;
    Bondarenko et al. 2021), which one int8 scale per tensor cannot hold both of, and the sum is
    dequantized for the float normalisation right after anyway (no runtime here has an int8
    LayerNorm). Returns the nodes, marked annotated (empty) so that XNNPACK's add pattern skips them."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    adds = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}
    found = []
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in adds or "quantization_annotation" in node.meta:
            continue
        if not any(_op_name(u) in _NORMS for u in node.users):
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
        found.append(node)
    return found


#: ops between a layer and the residual add that do not change values (eval-mode dropout, copies)
_PASS_THROUGH = ("dropout", "clone", "alias", "contiguous", "identity")


def unclaim(model, nodes) -> int:
    """Leave the residual adds float (drop ``residual_adds``' placeholders), and with them the
    OUTPUT quantization of the layer feeding each add (a transformer's attention-output and FFN-output
    projections, through eval-mode dropout): those outputs carry the residual stream's outliers into
    the sum. Their weights and inputs stay int8. Measured on MiniLM (16 calibration sentences, 32
    evaluation): cosine 0.917 (all int8) -> 0.969 (adds float) -> 0.994 (and these outputs float).
    Returns the number of layer outputs left float."""
    count = 0
    for node in nodes:
        node.meta.pop("quantization_annotation", None)
        for arg in node.args:
            chain = []
            while isinstance(arg, _fx_node()) and _op_name(arg) in _PASS_THROUGH and len(arg.users) == 1:
                chain.append(arg)
                arg = arg.args[0]
            annotation = arg.meta.get("quantization_annotation") if isinstance(arg, _fx_node()) else None
            if annotation is None or annotation.output_qspec is None or len(arg.users) != 1:
                continue
            # linear only: every runtime here has an int8-weight linear with a float output (XNNPACK
            # int8-dynamic, TFLite hybrid, onnxruntime DQ -> MatMul); a convolution keeps its int8 output
            if _op_name(arg) != "linear":
                continue
            annotation.output_qspec = None
            for passed in chain:  # they only shared the layer's output quantization
                passed.meta.pop("quantization_annotation", None)
            count += 1
    return count


def _fx_node():
    import torch

    return torch.fx.Node


def _op_name(node) -> str:
    """``aten.layer_norm.default`` -> "layer_norm" (empty for non-calls)."""
    if node.op != "call_function":
        return ""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


#: op kinds the int8 scheme leaves float by design (no runtime here runs them in int8 at accuracy)
FLOAT_BY_KIND = {
    "layer_norm": "normalisation: float in every int8 runtime here (XNNPACK, TFLite, onnxruntime QDQ)",
    "softmax": "exponentials over a wide range: int8 loses the small probabilities",
    "_softmax": "exponentials over a wide range: int8 loses the small probabilities",
    "scaled_dot_product_attention": "attention (QK^T, softmax, xV) runs float; its Q/K/V inputs come from int8 linears",
    "gelu": "float activation; the next linear quantizes its input",
    "matmul": "activation x activation product (attention scores): float",
    "bmm": "activation x activation product (attention scores): float",
}


def float_decisions(converted) -> dict:
    """What the int8 program leaves float on purpose, counted by op kind in the converted graph
    (the manifest's ``quantization.kept_float``)."""
    import torch

    by_kind: dict[str, int] = {}
    residual = producers = 0
    for node in converted.graph.nodes:
        name = _op_name(node)
        if name in FLOAT_BY_KIND:
            by_kind[name] = by_kind.get(name, 0) + 1
        elif node.target in (torch.ops.aten.add.Tensor,) and any(_op_name(u) in _NORMS for u in node.users):
            if not any("quantize_per" in str(u.target) for u in node.users):
                residual += 1
                producers += sum(1 for a in node.args if isinstance(a, torch.fx.Node) and _feeds_float(a))
    out = {kind: {"count": n, "why": FLOAT_BY_KIND[kind]} for kind, n in sorted(by_kind.items())}
    if residual:
        out["residual_add"] = {"count": residual, "why": "x + sublayer(x) before a normalisation: the residual "
                               "stream's outlier features do not fit one int8 scale (annotate.residual_adds)"}
    if producers:
        out["residual_producer_output"] = {"count": producers, "why": "output of the layer feeding a residual add "
                                           "(weights and inputs int8, output float: annotate.unclaim)"}
    return out


def _feeds_float(node) -> bool:
    """``node`` (through pass-through ops) is a compute op whose output is not quantized."""
    while _op_name(node) in _PASS_THROUGH:
        node = node.args[0]
    return _op_name(node) in ("linear", "conv1d", "conv2d", "matmul", "addmm", "mm")


def embedding_tables(converted) -> list[dict]:
    """The embedding tables the converted graph stores as int8 (shape and max abs error per table)."""
    import torch

    qd = torch.ops.quantized_decomposed
    out = []
    for node in converted.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        dq = node.args[0]
        if isinstance(dq, torch.fx.Node) and dq.target is qd.dequantize_per_channel.default:
            stored = dq.args[0]
            tensor = attribute(converted, stored.target) if stored.op == "get_attr" else None
            out.append({"node": node.name, "shape": list(tensor.shape) if tensor is not None else None,
                        "stored": str(tensor.dtype).replace("torch.", "") if tensor is not None else "int8"})
    return out


def attribute(module, dotted: str):
    """The parameter, buffer or submodule at ``dotted`` (what a get_attr node reads)."""
    for part in dotted.split("."):
        module = getattr(module, part)
    return module
