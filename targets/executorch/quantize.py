"""Turn the shared ExportedProgram into the program to lower, for each edgekit precision.

Recipes (what XNNPACK runs fast, the same choices as executorch's own XNNPACK recipes):
- none: the shared program as it is.
- fp16: weights and compute in float16, inputs and outputs float32 (casts at the edges, so app
  code does not change). For Core ML and Vulkan the backend's own fp16 switch is used instead.
- int8: the shared static int8 decision of edgekit.quantize (PT2E with XNNPACK's symmetric
  per-channel scheme plus conv/linear fused with clamp activations; the activation observer chosen
  on held-back calibration samples), lowered as it is.
- int8-dynamic: PT2E with XNNPACKQuantizer's dynamic config: per-channel int8 weights, activations
  quantized per call (linear layers).
- int8-int4: torchao ``quantize_`` with Int8DynamicActivationIntxWeightConfig, int4 weights in groups
  along the input dimension (the XNNPACK "8da4w" recipe), for nn.Linear layers only.

The shared program is never modified: every recipe works on a copy (``copy.deepcopy``), because
``nn.Module.half()`` and PT2E's batch-norm folding would otherwise write into tensors that the
shared ExportedProgram (and so the other targets of the run) still use.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from edgekit.errors import ConversionError, UsageError

QUANTIZED = ("int8", "int8-dynamic", "int8-int4")
DEFAULT_GROUP_SIZE = 32


def _tensors(sample: Sequence[Any]) -> tuple:
    import numpy as np
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample)


def prepare_program(model, precision: str, delegate, calibration, group_size: int = DEFAULT_GROUP_SIZE, options=None):
    """(ExportedProgram to lower, facts for the manifest) for ``precision``."""
    if precision in QUANTIZED and not delegate.quantized:
        why = (
            "the portable kernels in executorch's runtime have no quantized ops" if delegate.name == "none"
            else f"edgekit's quantized recipes use XNNPACK's quantizers; {delegate.name} takes none and fp16"
        )
        raise UsageError(f"--quantize {precision} with --delegate {delegate.name}: {why}; use --delegate xnnpack")
    if precision == "none" or (precision == "fp16" and delegate.name in ("coreml", "vulkan")):
        return model.exported_program(), {}
    if precision == "fp16":
        return _fp16_program(model), {"fp16": "float16 weights and compute, float32 inputs and outputs"}
    if precision in ("int8", "int8-dynamic"):
        return _pt2e_program(model, precision, calibration, options)
    if precision == "int8-int4":
        return _int8_int4_program(model, group_size)
    raise UsageError(f"the executorch target does not support --quantize {precision}")  # pragma: no cover


def _export(module, model, varargs: bool = False):
    import torch

    dynamic = model.dynamic_shapes()
    if dynamic is not None and varargs:
        dynamic = (dynamic,)  # forward(*args): torch.export sees one parameter holding every input
    return torch.export.export(module, model.example_inputs, dynamic_shapes=dynamic, strict=False)


def _fp16_program(model):
    import torch
    from torch.utils import _pytree as pytree

    class Float16Graph(torch.nn.Module):
        """The shared graph with float16 weights, cast to float16 on entry and back on exit."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            args = [a.half() if a.is_floating_point() else a for a in args]
            out = self.inner(*args)
            return pytree.tree_map(
                lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out
            )

    # Tracing the shared program's graph (not the eager model again) keeps one source of truth.
    from edgekit.targets.executorch.convert import float16_graph, half_module

    graph = half_module(model.exported_program())
    float16_graph(graph)  # float32 baked into ops (an LSTM's zero state) would mix dtypes at run time
    return _export(Float16Graph(graph), model, varargs=True)


def _pt2e_program(model, precision: str, calibration, options=None):
    if precision == "int8":
        return _static_int8_program(model, calibration, options)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.targets.executorch import graph_fixes

    # XNNPACK's dynamic config, with integer arithmetic kept integer (attention-mask indices)
    quantizer = graph_fixes.quantizer(is_dynamic=True)
    # PT2E wants the graph torch.export makes before decomposition: that is what the shared
    # program is (torch.export.export), so it is prepared directly, no second export of the model.
    # LSTMs are packed first (targets/executorch/recurrent.py) so that their input projections are
    # linears the quantizer takes; after quantization they would stay float32.
    source, lstm_facts = _packed_lstm_program(model.exported_program())
    graph = copy.deepcopy(source.module())
    prepared = prepare_pt2e(graph, quantizer)
    # Dynamic quantization observes nothing, but convert_pt2e expects one pass through the graph.
    prepared(*model.example_inputs)
    quantized = convert_pt2e(prepared)
    embeddings = graph_fixes.quantize_embeddings(quantized)
    facts = {
        "quantizer": "XNNPACKQuantizer (torchao.quantization.pt2e)",
        "scheme": "symmetric per-channel int8 weights, int8 activations quantized per call",
        # XNNPACK's qd8 x qc8w kernels widen int8 products to int32 on every CPU it targets (ARM
        # NEON dot products, x86 AVX2 pmaddwd on int16, VNNI): nothing saturates, so the full
        # 8-bit range is kept everywhere (onnxruntime's x86 u8 x s8 path is the one that needs 7 bits).
        "weight_range": "full 8-bit [-127, 127] on every CPU (XNNPACK kernels accumulate without saturating)",
    }
    if lstm_facts:
        facts["lstm"] = lstm_facts
    if getattr(quantizer, "float_padded_convs", None):
        facts["float_padded_convs"] = {
            "layers": quantizer.float_padded_convs[:20], "count": len(quantizer.float_padded_convs),
            "why": "a pad followed by a dynamically quantized conv fails at run time in executorch 1.5.1's "
                   "XNNPACK (xnn_status_invalid_parameter); these convs stay float32, delegated",
        }
    if embeddings:
        facts["embeddings"] = {
            "scheme": "int8 weight-only, one symmetric scale per row (quantized_decomposed::embedding_byte)",
            "tables": embeddings,
        }
    # convert_pt2e hands back a GraphModule: exporting it is how PT2E makes the program to lower.
    return _export(quantized, model), facts


def _packed_lstm_program(program):
    """(program with its LSTMs / GRUs / RNNs packed, facts) or (program, {}) when it has none to pack."""
    from edgekit.targets.executorch.recurrent import pack_recurrent_layers, packable_op

    if not any(packable_op(n) for n in program.graph_module.graph.nodes):
        return program, {}
    packed, facts = pack_recurrent_layers(program)
    if packed is None:
        return program, facts
    facts["quantized"] = "input projections int8 (linear); the recurrent bmm stays float32 (XNNPACK's dynamic quantizer takes linears only)"
    return packed, facts


def _static_int8_program(model, calibration, options=None):
    """The shared int8 decision (edgekit.quantize: calibrated once per run, recipe chosen on held-back
    samples), lowered as it is: XNNPACK consumes PT2E's quantize/dequantize graph directly."""
    from edgekit.quantize.shared import checked_int8_program

    result = checked_int8_program(model, calibration, options, "executorch int8")
    from edgekit.quantize.embeddings import embedding_byte

    facts = {
        "quantizer": "edgekit.quantize (PT2E, XNNPACK scheme + fused clamp activations)",
        "scheme": "symmetric per-channel int8 weights, static int8 activations",
        **result.to_manifest(),
    }
    graph = copy.deepcopy(result.converted(fold_quantize=True))
    # int8 tables read row by row (XNNPACK takes no embeddings; a dequantize of the whole table per call otherwise)
    if embedding_byte(graph) and "embeddings" in facts:
        facts["embeddings"]["lookup"] = "quantized_decomposed::embedding_byte (executorch quantized kernels)"
    dynamic = dynamic_inputs_for_float_outputs(graph)
    if dynamic:
        facts["float_output_layers"] = {
            "count": dynamic,
            "lowered_as": "XNNPACK int8-dynamic linear (qd8-f32-qc8w): int8 weights, input quantized per call, float output",
            "why": "XNNPACK's static int8 linear must quantize its output; these layers keep a float output "
                   "(the residual stream: quantization.kept_float)",
        }
    return _export(graph, model), facts


def dynamic_inputs_for_float_outputs(graph_module) -> int:
    """Linear layers of the shared program with a static int8 input, int8 weights and a FLOAT output
    (edgekit.quantize.annotate keeps a transformer's residual stream float) get their input quantized
    per call instead: XNNPACK runs static int8 linears only with an int8 output, but int8-dynamic
    linears (qd8-f32-qc8w) have a float output, so the weights stay int8 and inside the delegate
    rather than falling to portable kernels that dequantize them on every call. The per-call scale
    covers the actual input, never wider than the calibrated one. Returns the layers rewritten."""
    import torch

    qd = torch.ops.quantized_decomposed
    count = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.linear.default:
            continue
        act, weight = node.args[0], node.args[1]
        if not (_is(weight, qd.dequantize_per_channel.default) and _is(act, qd.dequantize_per_tensor.default)):
            continue
        if any(_is(u, qd.quantize_per_tensor.default) for u in node.users):
            continue  # static output: XNNPACK's static int8 linear
        quant = act.args[0]
        if not _is(quant, qd.quantize_per_tensor.default):
            continue
        source, qmin, qmax = quant.args[0], act.args[3], act.args[4]
        graph = graph_module.graph
        with graph.inserting_before(node):
            qparams = graph.call_function(qd.choose_qparams.tensor, (source, qmin, qmax, 2**-12, torch.int8))
            scale = graph.call_function(operator_getitem(), (qparams, 0))
            zero = graph.call_function(operator_getitem(), (qparams, 1))
            q = graph.call_function(qd.quantize_per_tensor.tensor, (source, scale, zero, qmin, qmax, torch.int8))
            dq = graph.call_function(qd.dequantize_per_tensor.tensor, (q, scale, zero, qmin, qmax, torch.int8))
        node.replace_input_with(act, dq)
        count += 1
    if count:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return count


def _is(node, target) -> bool:
    import torch

    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target is target


def operator_getitem():
    import operator

    return operator.getitem


def _int8_int4_program(model, group_size: int):
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig
    from torchao.utils import unwrap_tensor_subclass

    if group_size < 1:
        raise UsageError("--executorch-group-size must be at least 1")
    quantized_layers, skipped = [], []

    def takes(module, fqn: str) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return False
        # MultiheadAttention reads out_proj.weight directly (F.multi_head_attention_forward), which a
        # quantized tensor subclass cannot serve: PyTorch marks that layer NonDynamicallyQuantizable.
        if isinstance(module, torch.nn.modules.linear.NonDynamicallyQuantizableLinear):
            skipped.append(f"{fqn} (inside MultiheadAttention)")
            return False
        if module.in_features % group_size:
            skipped.append(f"{fqn} (in_features {module.in_features} not a multiple of {group_size})")
            return False
        quantized_layers.append(fqn)
        return True

    # torchao's quantize_ swaps the weights of nn.Linear modules: a source transform on the eager
    # module, which the shared (already traced) program no longer has. So this recipe exports once more.
    module = copy.deepcopy(model.module)
    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size))
    quantize_(module, config, takes)
    if not quantized_layers:
        raise ConversionError(
            f"--quantize int8-int4 found no nn.Linear layer to quantize with group size {group_size}"
            + (f" (skipped: {', '.join(skipped[:5])})" if skipped else " (the model has none as modules)"),
            hint="int8-int4 is for transformer-like models; use int8 or int8-dynamic for this one",
        )
    unwrap_tensor_subclass(module)
    facts = {
        "quantizer": "torchao quantize_ Int8DynamicActivationIntxWeightConfig",
        "scheme": f"int8 dynamic activations, int4 weights in groups of {group_size} (linear layers)",
        "group_size": group_size,
        "quantized_linear_layers": len(quantized_layers),
        "float_linear_layers": skipped,
    }
    return _export(module, model), facts
