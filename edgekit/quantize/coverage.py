"""What was really quantized: the share of weights and of compute ops that are integer.

``--quantize int8`` must not publish a mostly-float artifact as int8 (issue 11 item 6): a
TorchScript-loaded CNN once kept most convolutions float and was shipped as "int8". Counts come
from the quantized graph (PT2E) and, per artifact, from the file itself (targets call
``tflite_coverage`` / ``onnx_coverage``), so the manifest says what the artifact holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import ConversionError

#: below this share of weights stored as integers, an "int8" artifact is refused
MIN_WEIGHT_SHARE = 0.5
@dataclass
class Coverage:
    weights_total: int = 0  # elements of float-or-quantized weight tensors
    weights_quantized: int = 0
    ops_total: int = 0  # compute ops (conv, linear, matmul, embedding, ...)
    ops_quantized: int = 0
    float_ops: list[str] = field(default_factory=list)  # names of compute ops left float (first few)
    recurrent: dict[str, int] = field(default_factory=dict)  # recurrent op (aten.lstm, ...) -> float weight elements
    # packed layer kind (lstm, gru, rnn: targets/executorch/recurrent.py) -> float recurrent-matmul weight elements
    packed_recurrent: dict[str, int] = field(default_factory=dict)

    @property
    def weight_share(self) -> float:
        return self.weights_quantized / self.weights_total if self.weights_total else 0.0

    @property
    def op_share(self) -> float:
        return self.ops_quantized / self.ops_total if self.ops_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_share": round(self.weight_share, 4), "op_share": round(self.op_share, 4),
            "weights_quantized": self.weights_quantized, "weights_total": self.weights_total,
            "ops_quantized": self.ops_quantized, "ops_total": self.ops_total,
            "float_ops": self.float_ops[:10],
            **({"recurrent_float": dict(self.recurrent)} if self.recurrent else {}),
            **({"recurrent_matmul_float": dict(self.packed_recurrent)} if self.packed_recurrent else {}),
        }

    def summary(self) -> str:
        return (f"{100 * self.weight_share:.1f}% of weights and {self.ops_quantized}/{self.ops_total} "
                f"compute ops quantized")


def require_quantized(coverage: Coverage, what: str, minimum: float = MIN_WEIGHT_SHARE) -> None:
    """Refuse to publish a mostly-float artifact under an integer precision."""
    if coverage.weights_total and coverage.weight_share < minimum:
        raise ConversionError(
            f"{what}: only {coverage.summary()} (float: {', '.join(coverage.float_ops[:5]) or 'n/a'}); "
            f"not published as int8",
            hint=advice(coverage.recurrent, coverage.packed_recurrent),
        )


PACKED_WEIGHT = re.compile(r"edgekit_packed_([a-z_]+?)_\d+\.w_hh_\d+")
#: recurrent ops as torch.export writes them; no PT2E quantizer annotates them, so their weights stay float
RECURRENT_OPS = ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")


def advice(recurrent: dict[str, int] | None, packed: dict[str, int] | None = None) -> str:
    """What to do about a mostly-float int8 artifact: true for where the float weights sit."""
    if not recurrent and packed:  # packed layers: int8 input projections, float recurrent matmuls
        where = ", ".join(f"{kind.upper()} ({n:,} weight elements)" for kind, n in sorted(packed.items()))
        return (f"the float weights sit in the recurrent matmuls (state x W_hh, one per time step) of packed "
                f"recurrent layers, {where}: static int8 makes their input projections int8 linears but keeps "
                "the recurrence float32 (no batched-matmul annotation), and here the recurrent weights are the "
                "larger part (a state wider than the layer's input); use --quantize fp16 (half the float size) "
                "or --quantize none")
    if not recurrent:
        return ("the model's layers may not be traceable as conv/linear ops (e.g. a TorchScript archive: "
                "save the eager model as a state_dict or ExportedProgram), or use --quantize int8-dynamic")
    where = ", ".join(f"aten.{op} ({n:,} weight elements)" for op, n in sorted(recurrent.items()))
    lstm_only = all(op.startswith("lstm") for op in recurrent)
    what = ("use --quantize int8-dynamic (its LSTM weights are int8: on ExecuTorch the LSTM is packed so that "
            "its input projections are int8 linears)" if lstm_only else
            "int8-dynamic leaves them float too on ExecuTorch and ONNX (neither quantizer takes them): use "
            "--quantize fp16 (half the float size) or --quantize none")
    return (f"the float weights sit in recurrent ops, {where}, which static int8 leaves float32 (no PT2E "
            f"quantizer annotates them; edgekit packs only static-shape aten.lstm/gru/rnn into int8 linears); {what}")


def graph_coverage(graph_module) -> Coverage:
    """Coverage of a converted PT2E graph (quantize/dequantize ops around float aten ops)."""
    import torch

    aten = torch.ops.aten
    compute = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.linear.default,
               aten.matmul.default, aten.mm.default, aten.bmm.default, aten.addmm.default,
               aten.embedding.default, aten.conv_transpose2d.input, aten.conv_transpose1d.default,
               aten.convolution.default, aten._convolution.default}

    def is_dequant(node) -> bool:
        return isinstance(node, torch.fx.Node) and node.op == "call_function" and "dequantize_per" in str(node.target)

    seen: set[str] = set()

    def weight_numel(node) -> int:
        # follow dequantize <- (quantize <-) get_attr to the stored tensor; each tensor counts once
        # (a packed LSTM's recurrent weight feeds one matmul per time step)
        while isinstance(node, torch.fx.Node) and node.op == "call_function" and "quantize_per" in str(node.target):
            node = node.args[0]
        if isinstance(node, torch.fx.Node) and node.op == "get_attr" and node.target not in seen:
            seen.add(node.target)
            obj = graph_module
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return int(obj.numel())
        return 0

    def packed_kind(node) -> str | None:
        # a packed layer's recurrent weight: "edgekit_packed_<op>_<n>.w_hh_<layer>" (recurrent.py)
        while isinstance(node, torch.fx.Node) and node.op == "call_function" and "quantize_per" in str(node.target):
            node = node.args[0]
        found = PACKED_WEIGHT.search(str(getattr(node, "target", "")))
        return found and {"rnn_tanh": "rnn", "rnn_relu": "rnn"}.get(found.group(1), found.group(1))

    cov = Coverage()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        recurrent = getattr(getattr(node.target, "overloadpacket", None), "__name__", None)
        if recurrent in RECURRENT_OPS:  # weights (a list argument for aten.lstm/gru/rnn) stay float
            numel = sum(weight_numel(a) for a in _flat_nodes(node.args[1:]))
            cov.ops_total += 1
            cov.weights_total += numel
            cov.float_ops.append(node.name)
            cov.recurrent[recurrent] = cov.recurrent.get(recurrent, 0) + numel
            continue
        if node.target not in compute:
            continue
        weight = node.args[1] if node.target != aten.embedding.default else node.args[0]
        act = node.args[0] if node.target != aten.embedding.default else None
        numel = weight_numel(weight) if isinstance(weight, torch.fx.Node) else 0
        quantized = is_dequant(weight) and (act is None or is_dequant(act))
        cov.ops_total += 1
        cov.weights_total += numel
        if quantized:
            cov.ops_quantized += 1
            cov.weights_quantized += numel
        else:
            cov.float_ops.append(node.name)
            kind = packed_kind(weight) if numel else None
            if kind:
                cov.packed_recurrent[kind] = cov.packed_recurrent.get(kind, 0) + numel
    return cov


def _flat_nodes(args) -> list:
    """The fx nodes in ``args``, lists and tuples flattened (a recurrent op's weight list)."""
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.extend(_flat_nodes(a))
        elif hasattr(a, "op"):
            out.append(a)
    return out


def check_artifact(path: str, fmt: str, precision: str, target: str, details: dict | None = None):
    """The ``quantization`` manifest block of a quantized artifact: its coverage read from the FILE
    (edgekit.quantize.artifact_coverage), the mixed-precision decision when the shared int8 program
    made it, and a warning line when most weights are not at the precision (None: nothing to warn).

    Raises ConversionError for ``--quantize int8`` with most weights float: never published as int8.
    ``precision == "none"`` gets no block."""
    from edgekit.quantize.artifact_coverage import artifact_coverage

    if precision == "none":
        return None, None
    block: dict[str, Any] = {}
    try:
        found = artifact_coverage(path, fmt, precision)
    except Exception as exc:  # noqa: BLE001 - a reader that cannot parse a file must not lose the artifact
        found = None
        block["coverage_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    graph = _find(details or {}, "coverage")
    if found is not None:
        block["coverage"] = found.to_dict()
    elif graph is not None:  # the quantized graph's count, when the file has no reader
        block["coverage"] = {"precision": precision, "source": "the quantized PT2E graph", **graph}
    owner = _owner(details or {}, "mixed_precision")
    if owner is not None:
        mixed = dict(owner["mixed_precision"])
        if owner.get("route") not in (None, "pt2e"):  # a target that shipped its own quantizer's file
            mixed["shipped"] = f"not used: the {owner['route']} route was shipped"
        block["mixed_precision"] = mixed
    coverage = block.get("coverage")
    warning = None
    if coverage and coverage.get("weights_total"):
        share = coverage["weight_share"]
        if share < MIN_WEIGHT_SHARE and precision == "int8":
            raise ConversionError(
                f"{target} int8: only {100 * share:.1f}% of weights and {coverage['ops_quantized']}/{coverage['ops_total']} "
                f"compute ops are int8 in the artifact (float: {', '.join(coverage.get('float_ops', [])[:5]) or 'n/a'}); "
                "not published as int8",
                hint=advice((graph or {}).get("recurrent_float"), (graph or {}).get("recurrent_matmul_float")),
            )
        if share < MIN_WEIGHT_SHARE:
            kept = ", ".join(f"{d} {n:,}" for d, n in sorted(coverage.get("weights_by_dtype", {}).items()))
            warning = (f"{target} [{precision}]: only {100 * share:.1f}% of the weights are stored at {precision} "
                       f"(weight elements by type: {kept}); the artifact is mostly unquantized")
    return (block or None), warning


def _owner(block, key: str):
    """The innermost dict holding ``key`` (a dict) in a target's nested details."""
    if isinstance(block, dict):
        if isinstance(block.get(key), dict):
            return block
        for value in block.values():
            found = _owner(value, key)
            if found is not None:
                return found
    return None


def _find(block, key: str):
    from edgekit.manifest_schema import find_nested  # the one nested-key search the readers share

    return find_nested(block, key, dict)


def summary_cell(block: dict | None) -> str:
    """The console table's 'quantized' cell: weight share, then quantized / total compute ops."""
    coverage = (block or {}).get("coverage")
    if not coverage or not coverage.get("weights_total"):
        return "-"
    return f"{100 * coverage['weight_share']:.0f}% w, {coverage['ops_quantized']}/{coverage['ops_total']} ops"
