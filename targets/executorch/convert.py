"""Graph preparation before ExecuTorch lowering, and the checks right after it.

Recurrent layers: ExecuTorch has no LSTM/GRU kernel (neither the portable library nor XNNPACK), so
a recurrent layer is unrolled into one cell per time step. An ``aten.lstm``, ``aten.gru`` or
``aten.rnn_tanh/relu`` with static shapes takes the packed route of recurrent.py (one input matmul
per layer, both directions in one recurrent matmul per step: 2.4x fewer nodes for an LSTM, and the
conversion cost follows the node count); the rest (cells, an LSTM with a projection, dynamic
shapes) takes PyTorch's decomposition, as follows. That one walks
the sequence with ``unbind`` and splits the gates with ``chunk``: in edge IR ``squeeze_copy`` and
``split_with_sizes_copy``, which XNNPACK does not take. Each of those cuts the graph, so a BiLSTM
over 32 steps became ~100 delegate partitions (each preprocessed separately by XNNPACK: minutes)
joined by hundreds of portable copy kernels. Here the two are rewritten into what XNNPACK takes
(``view`` for a squeeze of a static shape, one ``slice`` per split piece), so the unrolled cells
land in one or a few partitions. Measured in benchmarks/families.py (``lstm_prepare``).

Mixed dtypes (fp16): ``.half()`` casts a graph's parameters and buffers, but float32 stays baked into
the graph's own ops: an LSTM's initial state is ``aten.zeros(..., dtype=float32)``, a mask is cast
with ``.to(float32)``. The portable kernels do not promote, so such a program failed only when it
ran ("op_addmm: dtype mismatch {Half, Float, Half}", after a 15-minute conversion). Three guards:
``float16_graph`` rewrites those dtypes before export; ``unify_float16`` casts any float32 input
left beside a float16 one before lowering (recorded in the manifest); ``mixed_dtype_nodes`` and
``smoke_run`` check the lowered program and the written file (seconds), naming the op and module.
"""
from __future__ import annotations

import contextlib
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
    facts: dict[str, Any] = {
        "recurrent_ops": sorted({op.overloadpacket.__name__ for op in recurrent}),
        "unrolled": "one cell per time step (no recurrent kernel in ExecuTorch's runtime or XNNPACK)",
    }
    from edgekit.targets.executorch import recurrent as packing

    if any(packing.packable_op(n) for n in program.graph_module.graph.nodes):
        packed, pack_facts = packing.pack_recurrent_layers(program)
        facts.update(pack_facts)
        if packed is not None:
            program = packed
            recurrent = {n.target for n in program.graph_module.graph.nodes if _packet(n) in RECURRENT_OPS}
    if recurrent:
        table = torch.export.default_decompositions()
        if any(op not in table for op in recurrent):  # lowering will name it; nothing to prepare
            return program, facts if "route" in facts else {}
        program = program.run_decompositions({op: table[op] for op in recurrent})
        facts["rewritten_for_delegation"] = rewrite_squeeze_split(program.graph_module)
        facts.setdefault("route", "PyTorch's decomposition (one cell per step and direction)")
    facts["unrolled_nodes"] = sum(1 for n in program.graph_module.graph.nodes if n.op == "call_function")
    return program, facts


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
    a portable kernel given mixed float16/float32 inputs, a missing kernel, a bad memory plan. The
    runtime's own log (native, on file descriptor 2) names the failing kernel; its check lines are
    kept in the message."""
    from executorch.runtime import Runtime

    from edgekit.targets.executorch.delegates import load_kernel_libraries
    from edgekit.ui import captured_native_output

    load_kernel_libraries()
    log: list[str] = []
    try:
        with captured_native_output(True, into=log):
            method = Runtime.get().load_program(path).load_method("forward")
            method.execute([t.contiguous() for t in example_inputs])
    except Exception as exc:  # the runtime raises RuntimeError carrying an error code
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no message"
        checks = [line.strip() for line in "".join(log).splitlines() if "Check failed" in line or "error" in line.lower()]
        return f"{type(exc).__name__}: {first}" + (f" ({' / '.join(checks[:2])[:400]})" if checks else "")
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


def float16_graph(graph_module) -> dict[str, int]:
    """After ``graph_module.half()``: float32 dtypes in op arguments (factories, casts, metadata
    asserts) become float16, and tensor constants that are neither parameter nor buffer (which
    ``.half()`` skips) are cast too; in place. Returns what was rewritten."""
    import torch

    counts = {"dtype_arguments": 0, "constants": 0}
    names = {n for n, _ in graph_module.named_parameters()} | {n for n, _ in graph_module.named_buffers()}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.target not in names:
            owner, _, leaf = node.target.rpartition(".")
            parent = graph_module.get_submodule(owner) if owner else graph_module
            value = getattr(parent, leaf, None)
            if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
                value = value.detach().clamp(-_FLOAT16_MAX, _FLOAT16_MAX)  # finfo(float32).min -> a finite float16
                setattr(parent, leaf, value.half())  # a TorchScript constant may carry autograd history
                counts["constants"] += 1
        if node.op != "call_function":
            continue
        args = tuple(torch.float16 if a is torch.float32 else a for a in node.args)
        kwargs = {k: torch.float16 if v is torch.float32 else v for k, v in node.kwargs.items()}
        changed = sum(a is torch.float32 for a in node.args) + sum(v is torch.float32 for v in node.kwargs.values())
        if node.target is torch.ops.aten.layer_norm.default:
            _layer_norm_in_float32(graph_module.graph, node)
            counts["layer_norms_in_float32"] = counts.get("layer_norms_in_float32", 0) + 1
            continue
        clamped = _clamp_float16_scalars(node)
        if clamped:
            counts["scalars_clamped_to_float16_range"] = counts.get("scalars_clamped_to_float16_range", 0) + clamped
            args = tuple(_clamp_scalar(a) for a in args)
            kwargs = {k: _clamp_scalar(v) for k, v in kwargs.items()}
        if changed or clamped:
            node.args, node.kwargs = args, kwargs
            counts["dtype_arguments"] += changed
        elif _new_float32(node):
            _cast_after(graph_module.graph, node, torch.float16)
            counts["float32_sources_cast"] = counts.get("float32_sources_cast", 0) + 1
    graph_module.recompile()
    return counts


_FLOAT16_MAX = 65504.0


def _layer_norm_in_float32(graph, node) -> None:
    """Layer norm computed in float32 inside an fp16 program (input, weight and bias cast up, the
    result cast back). ExecuTorch's portable layer norm accumulates in the tensor's own dtype, and a
    transformer's residual stream squared and summed over 384 features reaches float16's 65504 (seen:
    48,900 on all-MiniLM-L6-v2): every output of the fp16 program was NaN. Eager PyTorch
    accumulates in float32, which is what this restores."""
    import torch

    casts = []
    with graph.inserting_before(node):
        for index, arg in enumerate(node.args[:4]):
            if index != 1 and isinstance(arg, torch.fx.Node):
                casts.append((arg, graph.call_function(torch.ops.aten._to_copy.default, (arg,), {"dtype": torch.float32})))
    for arg, cast in casts:
        node.replace_input_with(arg, cast)
    _cast_after(graph, node, torch.float16)


def _clamp_scalar(value):
    """A float beyond float16's range (``torch.finfo(torch.float32).min``, the additive attention
    mask of Hugging Face models) becomes float16's largest finite value of the same sign: as -inf,
    ``0 * mask`` is NaN and every output of the program is NaN."""
    import math

    if isinstance(value, float) and math.isfinite(value) and abs(value) > _FLOAT16_MAX:
        return math.copysign(_FLOAT16_MAX, value)
    return value


def _clamp_float16_scalars(node) -> int:
    return sum(_clamp_scalar(v) is not v for v in (*node.args, *node.kwargs.values()))


def _new_float32(node) -> bool:
    """A float32 tensor made from no floating-point input and no dtype argument: ``torch.where(c,
    0.0, -1e4)`` (an attention mask), a scalar tensor. Its float32 would promote the float16
    tensors it meets (and a bmm refuses the mix)."""
    import torch

    val = node.meta.get("val")
    if node.target is operator.getitem or not isinstance(val, torch.Tensor) or val.dtype != torch.float32:
        return False  # a getitem's float32 comes from its (multi-output) producer
    return not any(_float_dtype(arg) is not None for arg in node.all_input_nodes)


def _cast_after(graph, node, dtype) -> None:
    import torch

    with graph.inserting_after(node):
        cast = graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": dtype})
    node.replace_all_uses_with(cast, delete_user_cb=lambda user: user is not cast)


def unify_float16(program) -> list[str]:
    """Cast to float16 every float32 input of an op that also takes a float16 one (the portable
    kernels do not promote); in place on ``program``'s graph. Returns the ops, with their modules."""
    import torch

    from edgekit.export import node_location

    graph = program.graph_module.graph
    fixed = []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        floats = [a for a in node.all_input_nodes if _float_dtype(a) is not None]
        if {_float_dtype(a) for a in floats} != {torch.float16, torch.float32}:
            continue
        for arg in floats:
            if _float_dtype(arg) is not torch.float32:
                continue
            with graph.inserting_before(node):
                cast = graph.call_function(torch.ops.aten._to_copy.default, (arg,), {"dtype": torch.float16})
            val = arg.meta["val"]
            with val.fake_mode:
                cast.meta["val"] = val.to(torch.float16)
            node.replace_input_with(arg, cast)
        where = node_location(node)
        fixed.append(f"{_packet(node) or node.target}" + (f" at {where}" if where else ""))
    if fixed:
        program.graph_module.recompile()
    return fixed


def _float_dtype(node):
    import torch

    val = node.meta.get("val") if hasattr(node, "meta") else None
    if isinstance(val, torch.Tensor) and val.is_floating_point():
        return val.dtype
    return None


@contextlib.contextmanager
def float16_filters():
    """While lowering an fp16 program to XNNPACK: keep float16 convolution filters and biases
    float16 in the file. XNNPACK's serializer (operators/op_conv2d.py, ``force_fp32=True``) widens
    them to float32, and its runtime packs them back to float16 at load: an "fp16" CNN's .pte was
    as large as fp32 (measured 161,576 vs 160,788 bytes; 83.07 vs 83.06 MB on a real model). The
    runtime takes float16 filters as they are (checked by the smoke run and by verification), so
    the file holds them at half the size. Quantized tensors and float32 ones are not touched."""
    import torch

    try:
        from executorch.backends.xnnpack.operators import node_visitor
    except ImportError:
        yield False
        return
    original = node_visitor.NodeVisitor.define_tensor

    def define_tensor(self, tensor, *args, **kwargs):
        if kwargs.get("force_fp32") and kwargs.get("quant_params") is None:
            val = tensor.meta.get("val") if hasattr(tensor, "meta") else None
            if isinstance(val, torch.Tensor) and val.dtype == torch.float16:
                kwargs["force_fp32"] = False
        return original(self, tensor, *args, **kwargs)

    node_visitor.NodeVisitor.define_tensor = define_tensor
    try:
        yield True
    finally:
        node_visitor.NodeVisitor.define_tensor = original


def half_module(program):
    """``program.module()`` with float16 parameters and buffers, the program itself untouched.
    ``module()`` copies the graph but shares the state tensors, and ``.half()`` would write into
    them; ``copy.deepcopy`` fails on the non-leaf tensors of a TorchScript-converted program. With
    PyTorch's overwrite switch, ``.half()`` makes new tensors instead."""
    import torch

    module = program.module()
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        with torch.no_grad():  # a TorchScript archive's weights come back as buffers that require grad
            return module.half()
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
