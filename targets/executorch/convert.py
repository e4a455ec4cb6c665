"""Graph preparation before ExecuTorch lowering, and the checks right after it.

Recurrent layers: ExecuTorch has no LSTM/GRU kernel (neither the portable library nor XNNPACK), so
``aten.lstm`` is decomposed into one cell per time step. PyTorch's decomposition walks the sequence
with ``unbind`` and splits the gates with ``chunk``: in edge IR that is ``squeeze_copy`` and
``split_with_sizes_copy``, which XNNPACK does not take. Each of those cuts the graph, so a BiLSTM
over 32 steps became ~100 delegate partitions (each preprocessed separately by XNNPACK: minutes)
joined by hundreds of portable copy kernels. Here the two are rewritten into what XNNPACK takes
(``view`` for a squeeze of a static shape, one ``slice`` per split piece), so the unrolled cells
land in one or a few partitions. Measured in benchmarks/families.py (``lstm_prepare``).

Mixed dtypes: a program whose portable ops get mixed float16/float32 inputs is found by running it
once right after lowering (seconds), instead of when an app runs it.
"""
from __future__ import annotations

import operator
from typing import Any

RECURRENT_OPS = ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")


def _packet(node) -> str | None:
    import torch

    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return node.target.overloadpacket.__name__
    return None


def prepare_for_lowering(program) -> tuple[Any, dict[str, Any]]:
    """(program to lower, facts): recurrent ops decomposed, squeeze/split rewritten (see module doc).
    The given program is never modified: a rewrite works on ``run_decompositions``' fresh copy."""
    import torch

    recurrent = {
        node.target for node in program.graph_module.graph.nodes if _packet(node) in RECURRENT_OPS
    }
    if not recurrent:
        return program, {}
    table = torch.export.default_decompositions()
    missing = [str(op) for op in recurrent if op not in table]
    if missing:  # lowering will name it; nothing to prepare
        return program, {}
    decomposed = program.run_decompositions({op: table[op] for op in recurrent})
    rewritten = rewrite_squeeze_split(decomposed.graph_module)
    facts = {
        "recurrent_ops": sorted({op.overloadpacket.__name__ for op in recurrent}),
        "unrolled": "one cell per time step (no recurrent kernel in ExecuTorch's runtime or XNNPACK)",
        "rewritten_for_delegation": rewritten,
    }
    return decomposed, facts


def rewrite_squeeze_split(graph_module) -> dict[str, int]:
    """squeeze -> view (static shapes), split/split_with_sizes -> slices, unbind -> slice + view,
    in place."""
    import torch

    aten = torch.ops.aten
    graph = graph_module.graph
    counts = {"squeeze": 0, "split": 0, "unbind": 0}
    for node in list(graph.nodes):
        name = _packet(node)
        if name == "squeeze":
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is None or not all(isinstance(d, int) for d in shape):
                continue
            with graph.inserting_before(node):
                view = graph.call_function(aten.view.default, (node.args[0], list(shape)))
            view.meta = dict(node.meta)
            node.replace_all_uses_with(view)
            graph.erase_node(node)
            counts["squeeze"] += 1
        elif name in ("split_with_sizes", "split"):
            if _split_to_slices(graph, node):
                counts["split"] += 1
        elif name == "unbind":
            if _unbind_to_slices(graph, node):
                counts["unbind"] += 1
    if any(counts.values()):
        graph.eliminate_dead_code()
        graph_module.recompile()
    return counts


def _split_to_slices(graph, node) -> bool:
    import torch

    source = node.args[0]
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    pieces = node.meta.get("val")
    if not isinstance(pieces, (list, tuple)) or not all(u.op == "call_function" and u.target is operator.getitem for u in node.users):
        return False
    sizes = [p.shape[dim] for p in pieces]
    if not all(isinstance(s, int) for s in sizes):
        return False
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for user in list(node.users):
        index = user.args[1]
        with graph.inserting_before(user):
            piece = graph.call_function(
                torch.ops.aten.slice.Tensor, (source, dim, starts[index], starts[index] + sizes[index])
            )
        piece.meta = dict(user.meta)
        user.replace_all_uses_with(piece)
        graph.erase_node(user)
    graph.erase_node(node)
    return True


def _unbind_to_slices(graph, node) -> bool:
    import torch

    aten = torch.ops.aten
    source = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not all(u.op == "call_function" and u.target is operator.getitem for u in node.users):
        return False
    for user in list(node.users):
        shape = getattr(user.meta.get("val"), "shape", None)
        if shape is None or not all(isinstance(d, int) for d in shape):
            return False
    for user in list(node.users):
        index = user.args[1]
        with graph.inserting_before(user):
            piece = graph.call_function(aten.slice.Tensor, (source, dim, index, index + 1))
            view = graph.call_function(aten.view.default, (piece, list(user.meta["val"].shape)))
        view.meta = dict(user.meta)
        user.replace_all_uses_with(view)
        graph.erase_node(user)
    graph.erase_node(node)
    return True


def smoke_run(path: str, example_inputs) -> str | None:
    """Run the written program once on the example inputs; the runtime's error, or None.

    Seconds at conversion time instead of a failure when an app (or a long verification) runs it:
    a portable kernel given mixed float16/float32 inputs, a missing kernel, a bad memory plan."""
    from executorch.runtime import Runtime

    from edgekit.targets.executorch.delegates import load_kernel_libraries

    load_kernel_libraries()
    try:
        method = Runtime.get().load_program(path).load_method("forward")
        method.execute([t.contiguous() for t in example_inputs])
    except Exception as exc:  # the runtime raises RuntimeError carrying an error code
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else 'no message'}"
    return None


def mixed_dtype_nodes(edge_manager) -> list[str]:
    """Portable (non-delegated) ops whose floating-point tensor inputs mix float16 and float32:
    the portable kernels do not promote, and fail at execution ('op_addmm ... dtype mismatch')."""
    import torch

    from edgekit.targets.executorch.report import _where, op_name

    out = []
    graph = edge_manager.exported_program().graph_module.graph
    for node in graph.nodes:
        if node.op != "call_function" or op_name(node.target) in ("getitem", "executorch_call_delegate"):
            continue
        dtypes = set()
        for arg in node.all_input_nodes:
            val = arg.meta.get("val")
            if isinstance(val, torch.Tensor) and val.is_floating_point():
                dtypes.add(val.dtype)
        if torch.float16 in dtypes and torch.float32 in dtypes:
            where = _where(node)
            out.append(f"{op_name(node.target)}" + (f" at {where}" if where else ""))
    return out
