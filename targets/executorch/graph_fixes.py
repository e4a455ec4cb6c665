"""Graph fixes that make transformer graphs quantize and lower on ExecuTorch.

- ``transform_for_annotation``: XNNPACKQuantizer turns every scalar operand of ``aten.add`` /
  ``aten.mul`` into a float32 tensor attribute before annotating (so that scalars can be quantized).
  It does so for integer arithmetic too: Hugging Face attention masks add an integer offset to
  ``arange`` positions and index the mask with the result, which then is a float tensor, and the
  graph stops running ("IndexError: tensors used as indices must be long, int, byte or bool
  tensors", seen on all-MiniLM-L6-v2). Only floating-point arithmetic is converted here; the quant
  helper's static int8 quantizer calls this function too.
- ``quantize_embeddings``: int8 weight-only embeddings (one symmetric scale per row), as
  ``quantized_decomposed::embedding_byte``: the op executorch's Llama export uses, with a kernel in
  the runtime's quantized-ops library (Android/iOS builds and ``executorch.kernels.quantized`` in
  Python). XNNPACK does not take embeddings, so without it a transformer's token table (a third of
  MiniLM's weights) stays float32 in an int8 program.
"""
from __future__ import annotations

from typing import Any

#: embedding tables smaller than this stay float (position/type tables: a few KB, no gain)
MIN_EMBEDDING_ELEMENTS = 4096


def transform_for_annotation(model):
    """XNNPACK's scalar-to-attribute conversion, for floating-point add/mul only (see module doc)."""
    import torch
    from torchao.quantization.pt2e.utils import get_new_attr_name_with_prefix

    ops = (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in ops or not _is_float(node):
            continue
        new_args = []
        for arg in node.args:
            if isinstance(arg, torch.fx.Node) or not isinstance(arg, (int, float)):
                new_args.append(arg)
                continue
            name = get_new_attr_name_with_prefix("_tensor_constant_")(model)
            value = torch.tensor(float(arg))
            model.register_buffer(name, value)
            with model.graph.inserting_before(node):
                attr = model.graph.create_node("get_attr", name, (), {})
            attr.meta["val"] = node.meta["val"].fake_mode.from_tensor(value, static_shapes=True)
            new_args.append(attr)
        node.args = tuple(new_args)
    model.recompile()
    return model


def _is_float(node) -> bool:
    val = node.meta.get("val")
    dtype = getattr(val, "dtype", None)
    return dtype is not None and dtype.is_floating_point


def quantizer(is_dynamic: bool):
    """XNNPACKQuantizer (symmetric per-channel int8) with ``transform_for_annotation`` above."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    class TransformerSafeXNNPACKQuantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            return transform_for_annotation(model)

        def annotate(self, model):
            model = super().annotate(model)
            if is_dynamic:
                self.float_padded_convs = keep_padded_convs_float(model)
            return model

    return TransformerSafeXNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=is_dynamic)
    )


def keep_padded_convs_float(model) -> list[str]:
    """Drop the dynamic int8 annotation of convolutions fed by an explicit pad (TensorFlow-style
    "same" padding: ``ZeroPad2d((0, 1, 0, 1))`` before a stride-2 conv, as in EfficientNet-Lite).
    executorch 1.5.1's XNNPACK lowers that pair, dynamically quantized, into a program that fails
    at its first run ("Propagating input shapes failed with code: xnn_status_invalid_parameter";
    the same conv without the pad, or float, runs). Those convs stay float32, still delegated.
    Returns the layers kept float, by module."""
    import torch

    from edgekit.export import node_location

    kept = []
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default):
            continue
        source = node.args[0]
        if getattr(source, "target", None) not in (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default):
            continue
        if node.meta.pop("quantization_annotation", None) is not None:
            kept.append(node_location(node) or node.name)
    return kept


def quantize_embeddings(graph_module, min_elements: int = MIN_EMBEDDING_ELEMENTS) -> list[dict[str, Any]]:
    """Rewrite ``aten.embedding(weight, ids)`` on a constant weight into int8 per-row
    ``embedding_byte`` in place; returns one record per table (name, shape, max abs error)."""
    import torch
    from executorch.exir.passes import _quant_patterns_and_replacements  # noqa: F401  (defines the op)

    done = []
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        weight_node, ids = node.args[0], node.args[1]
        if weight_node.op != "get_attr":
            continue
        weight = _attr(graph_module, weight_node.target)
        if weight.dim() != 2 or not weight.is_floating_point() or weight.numel() < min_elements:
            continue
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        error = float((q.float() * scales[:, None] - w).abs().max())
        stem = str(weight_node.target).replace(".", "_")
        names = (f"{stem}_int8", f"{stem}_scales")
        graph_module.register_buffer(names[0], q)
        graph_module.register_buffer(names[1], scales)
        with graph_module.graph.inserting_before(node):
            q_node = graph_module.graph.get_attr(names[0])
            s_node = graph_module.graph.get_attr(names[1])
            new = graph_module.graph.call_function(
                torch.ops.quantized_decomposed.embedding_byte.default, (q_node, s_node, None, -127, 127, ids)
            )
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph_module.graph.erase_node(node)
        done.append({"table": str(weight_node.target), "shape": list(weight.shape), "max_abs_error": round(error, 6)})
    if done:
        graph_module.graph.eliminate_dead_code()
        graph_module.delete_all_unused_submodules()
        graph_module.recompile()
    return done


def _attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module
