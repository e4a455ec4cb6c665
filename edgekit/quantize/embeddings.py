"""Int8 embedding tables in the artifact: gather the int8 rows, then scale them.

The shared quantizer annotates each large embedding table int8 weight-only, one symmetric scale per
row (edgekit.quantize.annotate.annotate_embeddings), so convert_pt2e leaves
``embedding(dequantize_per_channel(table_int8, scales, ...), ids)``. Lowered as it is, every call would
dequantize the WHOLE table (11.7M values on MiniLM) to read 64 rows, and some converters fold the
dequantize into a float32 constant (the file keeps the float table). These rewrites make the
runtime read int8 rows and scale only those:

- ``gather_rows``: ``embedding(table_int8, ids).float() * embedding(scales[:, None], ids)``, plain aten
  ops every exporter maps (ONNX Gather + Cast + Mul; TFLite GATHER + CAST + MUL).
- ``embedding_byte``: ``quantized_decomposed::embedding_byte``, the op executorch's own LLM exports
  use, with a kernel in its quantized-ops library (XNNPACK takes no embeddings).

Both give bit-for-bit the simulation's values (same int8 rows, same scales), so what the search
judged is what ships.
"""
from __future__ import annotations

from typing import Any

from edgekit.quantize.annotate import attribute


def _quantized_tables(graph_module):
    """(embedding node, dequantize node, int8 table tensor, scales tensor) for each int8 table."""
    import torch

    qd = torch.ops.quantized_decomposed
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        dq = node.args[0]
        if not isinstance(dq, torch.fx.Node) or dq.target is not qd.dequantize_per_channel.default:
            continue
        source, scales, _zero, axis, qmin, qmax, dtype = dq.args[:7]
        if axis != 0 or dtype != torch.int8 or not isinstance(scales, torch.fx.Node) or scales.op != "get_attr":
            continue
        scale_t = attribute(graph_module, scales.target).detach().float()
        if source.op == "get_attr":  # fold_quantize=True: the int8 table is stored
            table = attribute(graph_module, source.target)
        elif source.target is qd.quantize_per_channel.default and source.args[0].op == "get_attr":
            w = attribute(graph_module, source.args[0].target).detach().float()  # fold_quantize=False
            zero = torch.zeros(scale_t.shape, dtype=torch.int64)
            table = qd.quantize_per_channel.default(w, scale_t, zero, 0, qmin, qmax, torch.int8)
        else:
            continue
        if table.dtype != torch.int8 or table.dim() != 2:
            continue
        yield node, dq, table.detach(), scale_t, (qmin, qmax)


def _register(graph_module, stem: str, tensor) -> str:
    name = stem
    k = 0
    while hasattr(graph_module, name):
        k += 1
        name = f"{stem}_{k}"
    graph_module.register_buffer(name, tensor)
    return name


def _finish(graph_module) -> None:
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()


def gather_rows(graph_module) -> list[dict[str, Any]]:
    """Rewrite each int8 table lookup into gather-int8-rows-then-scale, in place; one record per table."""
    import torch

    aten = torch.ops.aten
    done = []
    for node, dq, table, scales, _range in list(_quantized_tables(graph_module)):
        ids = node.args[1]
        graph = graph_module.graph
        t_name = _register(graph_module, "edgekit_embedding_int8", table)
        s_name = _register(graph_module, "edgekit_embedding_scales", scales.reshape(-1, 1).contiguous())
        dtype = node.meta["val"].dtype if "val" in node.meta else torch.float32
        with graph.inserting_before(node):
            rows = graph.call_function(aten.embedding.default, (graph.get_attr(t_name), ids))
            row_scales = graph.call_function(aten.embedding.default, (graph.get_attr(s_name), ids))
            as_float = graph.call_function(aten._to_copy.default, (rows,), {"dtype": dtype})
            new = graph.call_function(aten.mul.Tensor, (as_float, row_scales))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        done.append({"shape": list(table.shape), "stored": "int8", "lookup": "gather int8 rows, then x row scale"})
    if done:
        _finish(graph_module)
    return done


def embedding_byte(graph_module) -> list[dict[str, Any]]:
    """Rewrite each int8 table lookup into executorch's ``embedding_byte``, in place."""
    import torch
    from executorch.exir.passes import _quant_patterns_and_replacements  # noqa: F401  (defines the op)

    done = []
    for node, dq, table, scales, (qmin, qmax) in list(_quantized_tables(graph_module)):
        ids = node.args[1]
        graph = graph_module.graph
        t_name = _register(graph_module, "edgekit_embedding_int8", table)
        s_name = _register(graph_module, "edgekit_embedding_scales", scales.contiguous())
        with graph.inserting_before(node):
            new = graph.call_function(torch.ops.quantized_decomposed.embedding_byte.default,
                                      (graph.get_attr(t_name), graph.get_attr(s_name), None, qmin, qmax, ids))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        done.append({"shape": list(table.shape), "stored": "int8",
                     "lookup": "quantized_decomposed::embedding_byte (executorch quantized kernels)"})
    if done:
        _finish(graph_module)
    return done
