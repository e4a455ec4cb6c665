"""The delegation report: how much of a program each backend took, and what falls back to the
portable kernels (and where in the model it sits).

Two sources:
- ``from_edge_program``: the lowered graph, before ``to_executorch``. It sees every node inside
  each delegated subgraph, so it can count nodes and a percentage. The pipeline stores this one in
  the manifest (``target_details.delegation``).
- ``from_pte``: a .pte read back with executorch's program deserializer. Delegate payloads are
  opaque there, so it counts delegate calls per backend and the portable kernel calls by op, not
  nodes; ``edgekit inspect`` shows it, and the node-level report from the manifest when the
  manifest sits beside the artifact.

executorch.devtools.backend_debug.get_delegation_info gives similar counts, but needs pandas (not
a dependency of edgekit) and does not group by backend, so the graph walk is done here.
"""
from __future__ import annotations

import collections
import operator
from typing import Any

# Graph plumbing rather than computation: tuple unpacking and the call into a delegate.
_PLUMBING = {"getitem", "executorch_call_delegate"}


def op_name(target: Any) -> str:
    """'aten.convolution.default' for an edge/aten op; the function's name otherwise."""
    if target is operator.getitem:
        return "getitem"
    name = getattr(target, "__name__", None) or str(target)
    return name


def _where(node) -> str | None:
    from edgekit.export import node_location  # one reading of nn_module_stack for every error message

    return node_location(node)


def from_edge_program(edge_manager, delegate: str) -> dict[str, Any]:
    """The report for a lowered EdgeProgramManager (call it before to_executorch, which rewrites
    the graph into out-variants and memory allocations)."""
    graph_module = edge_manager.exported_program().graph_module
    by_backend: dict[str, dict[str, int]] = {}
    delegated_ops: collections.Counter = collections.Counter()
    portable: dict[str, dict[str, Any]] = {}
    lowered = {name: child for name, child in graph_module.named_children() if hasattr(child, "backend_id")}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.target in lowered:
            child = lowered[node.target]
            entry = by_backend.setdefault(child.backend_id, {"nodes": 0, "subgraphs": 0})
            entry["subgraphs"] += 1
            for inner in child.original_module.graph.nodes:
                if inner.op == "call_function" and op_name(inner.target) not in _PLUMBING:
                    entry["nodes"] += 1
                    delegated_ops[op_name(inner.target)] += 1
        elif node.op == "call_function" and op_name(node.target) not in _PLUMBING:
            name = op_name(node.target)
            info = portable.setdefault(name, {"op": name, "count": 0, "where": []})
            info["count"] += 1
            where = _where(node)
            if where and where not in info["where"] and len(info["where"]) < 5:
                info["where"].append(where)
    delegated = sum(b["nodes"] for b in by_backend.values())
    fallback = sum(p["count"] for p in portable.values())
    total = delegated + fallback
    return {
        "delegate": delegate,
        "nodes": total,
        "delegated_nodes": delegated,
        "portable_nodes": fallback,
        "delegated_percent": round(100.0 * delegated / total, 1) if total else 100.0,
        "backends": by_backend,
        "portable_ops": sorted(portable.values(), key=lambda p: (-p["count"], p["op"])),
        "delegated_ops": dict(delegated_ops.most_common()),
    }


def summary_line(report: dict[str, Any]) -> str:
    """'94.1% of 17 nodes delegated (XnnpackBackend 16); portable: aten.cumsum.default x1'"""
    backends = ", ".join(f"{b} {v['nodes']}" for b, v in report["backends"].items()) or "none"
    text = f"{report['delegated_percent']}% of {report['nodes']} nodes delegated ({backends})"
    if report["portable_ops"]:
        text += "; portable kernels: " + ", ".join(f"{p['op']} x{p['count']}" for p in report["portable_ops"][:8])
        if len(report["portable_ops"]) > 8:
            text += f", ... ({len(report['portable_ops'])} ops)"
    return text


def from_pte(path: str) -> dict[str, Any]:
    """Delegate calls per backend and portable kernel calls per op, read from a .pte file."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    with open(path, "rb") as fh:
        program = deserialize_pte_binary(fh.read()).program
    methods = {}
    for plan in program.execution_plan:
        delegate_calls: collections.Counter = collections.Counter()
        kernel_calls: collections.Counter = collections.Counter()
        for chain in plan.chains:
            for instruction in chain.instructions:
                args = instruction.instr_args
                if isinstance(args, DelegateCall):
                    delegate_calls[plan.delegates[args.delegate_index].id] += 1
                elif isinstance(args, KernelCall):
                    op = plan.operators[args.op_index]
                    kernel_calls[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
        methods[plan.name] = {
            "delegate_calls": dict(delegate_calls.most_common()),
            "portable_kernel_calls": dict(kernel_calls.most_common()),
        }
    return methods


def missing_kernels(kernel_calls: dict[str, int], registered: set[str], report: dict[str, Any]) -> list[str]:
    """'aten.erfinv at gate (Gate) (kernel aten::erfinv.out)' for each kernel the program calls
    that the runtime lacks; the location comes from the edge-level report's portable ops."""
    out = []
    for kernel in kernel_calls:
        if kernel in registered:
            continue
        namespace, _, rest = kernel.partition("::")
        op = f"{namespace}.{rest.split('.')[0]}"
        where = next((p["where"] for p in report["portable_ops"] if p["op"].split(".")[:2] == op.split(".")), [])
        out.append(f"{op}" + (f" at {', '.join(where)}" if where else "") + f" (kernel {kernel})")
    return out
