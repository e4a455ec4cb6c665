"""What an artifact FILE really holds at its precision: the share of weights stored at it and the
share of compute ops that run at it, read from the file itself (issue 11 item 6).

A manifest that says "int8" or "fp16" is a claim; these readers check it in the bytes that ship:
TFLite flatbuffers (tensor types, DEQUANTIZE chains, hybrid kernels), ONNX graphs (initializer
types, QDQ pairs, integer ops), ExecuTorch programs (XNNPACK payload value types and the program's
own constant tensors), TorchScript Lite archives (storage types, bytecode operators) and Core ML
programs (const / constexpr ops). One reader per file FORMAT (not per target), keyed like the
manifest's ``format``; a format without a reader gets no artifact coverage (the graph's, when the
shared int8 program made it, is reported instead).

Weights are the constant tensors of rank >= 2 (convolution and linear kernels, embedding tables,
recurrent matrices), counted in elements by how they are STORED. A compute op is a convolution,
linear/matmul, recurrent cell or embedding lookup; its kind says how it computes:

- ``int8``: integer activations and integer weights (static int8, int16x8 counted as ``int16x8``)
- ``dynamic-int8``: integer weights, activations quantized at run time (hybrid kernels)
- ``weight-only``: integer weights dequantized to float before a float kernel
- ``float16`` / ``float32``: by the stored type of its weights (float compute)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

INT8ISH = ("int8", "uint8")
INT4ISH = ("int4", "uint4")
LOW_INT = INT8ISH + INT4ISH + ("int2", "lut")
FLOAT16ISH = ("float16", "bfloat16")


@dataclass
class ComputeOp:
    name: str
    activation: str  # int8 | int16 | float | dynamic
    weights: str | None  # stored dtype of its weight (None: both operands are activations)
    dequantized: bool = False  # the weight is dequantized to float before the op

    @property
    def kind(self) -> str:
        if self.activation in INT8ISH:
            return "int8"
        if self.activation == "int16":
            return "int16x8"
        if self.weights in LOW_INT:
            return "weight-only" if self.dequantized else "dynamic-int8"
        if self.activation == "dynamic":
            return "dynamic-int8"
        return "float16" if self.weights in FLOAT16ISH else "float32"


def _weight_ok(precision: str) -> Callable[[str | None], bool]:
    if precision == "fp16":
        return lambda d: d in FLOAT16ISH or d in LOW_INT
    if precision.startswith("int4") or precision == "int8-int4":
        return lambda d: d in INT4ISH or d in ("int2", "lut")
    return lambda d: d in LOW_INT


@dataclass
class ArtifactCoverage:
    precision: str
    source: str  # what was read
    weights_by_dtype: Counter = field(default_factory=Counter)
    ops: list[ComputeOp] = field(default_factory=list)

    def _ops_considered(self) -> list[ComputeOp]:
        # static int8 quantizes activation x activation products too; weight precisions only weights
        return self.ops if self.precision == "int8" else [o for o in self.ops if o.weights is not None]

    def _op_ok(self, op: ComputeOp) -> bool:
        if self.precision == "int8":
            return op.kind in ("int8", "int16x8")
        if self.precision == "int8-int4":
            return op.weights in INT4ISH
        return _weight_ok(self.precision)(op.weights)

    @property
    def weights_total(self) -> int:
        return sum(self.weights_by_dtype.values())

    @property
    def weights_at_precision(self) -> int:
        ok = _weight_ok(self.precision)
        return sum(n for d, n in self.weights_by_dtype.items() if ok(d))

    @property
    def weight_share(self) -> float:
        return self.weights_at_precision / self.weights_total if self.weights_total else 0.0

    @property
    def op_share(self) -> float:
        ops = self._ops_considered()
        return sum(self._op_ok(o) for o in ops) / len(ops) if ops else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``quantization.coverage`` block (stable keys: weight_share, op_share)."""
        ops = self._ops_considered()
        left = [o.name for o in ops if not self._op_ok(o)]
        return {
            "precision": self.precision, "source": self.source,
            "weight_share": round(self.weight_share, 4), "op_share": round(self.op_share, 4),
            "weights_quantized": self.weights_at_precision, "weights_total": self.weights_total,
            "ops_quantized": len(ops) - len(left), "ops_total": len(ops),
            "weights_by_dtype": dict(sorted(self.weights_by_dtype.items())),
            "ops_by_kind": dict(sorted(Counter(o.kind for o in self.ops).items())),
            "float_ops": left[:10],
        }


# -- TFLite ---------------------------------------------------------------------------------------

_TFLITE_COMPUTE = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1, "CONV_3D": 1,
                   "CONV_3D_TRANSPOSE": 1, "BATCH_MATMUL": 1, "EMBEDDING_LOOKUP": 1, "GATHER": 0, "LSTM": 1,
                   "UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "BIDIRECTIONAL_SEQUENCE_LSTM": 1, "RNN": 1,
                   "UNIDIRECTIONAL_SEQUENCE_RNN": 1, "BIDIRECTIONAL_SEQUENCE_RNN": 1}  # op -> weight input


def tflite_coverage(path: str, precision: str) -> ArtifactCoverage:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    with open(path, "rb") as fh:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(fh.read()))
    tname = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    oname = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    cov = ArtifactCoverage(precision, "the .tflite flatbuffer")
    seen_buffers: set[int] = set()

    def constant(tensor) -> bool:
        buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
        return buf is not None and (buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0)))

    for sg in model.subgraphs:
        producer = {out: op for op in sg.operators or [] for out in op.outputs}
        for tensor in sg.tensors:
            if constant(tensor) and tensor.shape is not None and len(tensor.shape) >= 2 and tensor.buffer not in seen_buffers:
                seen_buffers.add(tensor.buffer)
                cov.weights_by_dtype[tname[tensor.type]] += int(_prod(tensor.shape))

        def stored(index: int) -> tuple[str | None, bool]:
            if index < 0:
                return None, False
            tensor = sg.tensors[index]
            if constant(tensor):
                return tname[tensor.type], False
            op = producer.get(index)
            if op is not None and oname.get(_code(model, op)) == "DEQUANTIZE" and constant(sg.tensors[op.inputs[0]]):
                return tname[sg.tensors[op.inputs[0]].type], True
            return None, False

        for i, op in enumerate(sg.operators or []):
            name = oname.get(_code(model, op), "")
            if name not in _TFLITE_COMPUTE or len(op.inputs) <= _TFLITE_COMPUTE[name]:
                continue
            weights, dequantized = stored(op.inputs[_TFLITE_COMPUTE[name]])
            if name == "GATHER" and weights is None:
                continue  # a gather of activations, not an embedding lookup
            act_index = op.inputs[0] if name != "GATHER" else op.outputs[0]
            act = tname[sg.tensors[act_index].type] if act_index >= 0 else "float32"
            if name in ("EMBEDDING_LOOKUP", "GATHER"):
                act = "float32"  # a lookup has no activation to quantize: judged by its table
            activation = act if act in INT8ISH or act == "int16" else "float"
            cov.ops.append(ComputeOp(f"{name.lower()}_{i}", activation, weights, dequantized))
    return cov


def _code(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= max(int(d), 1)
    return out


# -- ONNX -----------------------------------------------------------------------------------------

_ONNX_COMPUTE = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1, "LSTM": 1, "GRU": 1, "RNN": 1, "Gather": 0,
                 "Attention": 1}
_ONNX_INTEGER = {"QLinearConv": ("int8", 3), "QLinearMatMul": ("int8", 3), "ConvInteger": ("dynamic", 1),
                 "MatMulInteger": ("dynamic", 1), "DynamicQuantizeMatMul": ("dynamic", 1),
                 "MatMulIntegerToFloat": ("dynamic", 1), "DynamicQuantizeLSTM": ("dynamic", 1),
                 "QGemm": ("int8", 3), "QAttention": ("dynamic", 1), "MatMulNBits": ("weight-only", 1),
                 "GatherBlockQuantized": ("weight-only", 0)}


def onnx_coverage(path: str, precision: str) -> ArtifactCoverage:
    import onnx
    from onnx import TensorProto

    proto = onnx.load(path)
    dtype = {v: k.lower() for k, v in TensorProto.DataType.items()}
    dtype[TensorProto.FLOAT] = "float32"
    cov = ArtifactCoverage(precision, "the .onnx graph")
    graphs = [proto.graph]
    initializers = {}
    nodes = []
    while graphs:  # subgraphs of Loop / If / Scan too
        g = graphs.pop()
        initializers.update({i.name: i for i in g.initializer})
        for node in g.node:
            nodes.append(node)
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else list(attr.graphs))
    for init in initializers.values():
        if len(init.dims) >= 2:
            cov.weights_by_dtype[dtype.get(init.data_type, str(init.data_type))] += int(_prod(init.dims))
    if any(n.op_type == "MatMulNBits" for n in nodes):  # packed 4-bit weights: stored as uint8 pairs
        for n in nodes:
            if n.op_type == "MatMulNBits" and n.input[1] in initializers and dict(_attrs(n)).get("bits", 4) == 4:
                packed = int(_prod(initializers[n.input[1]].dims))
                cov.weights_by_dtype["uint8"] -= packed
                cov.weights_by_dtype["int4"] += 2 * packed
    producer = {out: n for n in nodes for out in n.output}
    constants = {n.output[0]: n for n in nodes if n.op_type == "Constant"}

    def stored(name: str) -> tuple[str | None, bool]:
        if name in initializers:
            return dtype.get(initializers[name].data_type), False
        node = producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and (node.input[0] in initializers or node.input[0] in constants):
            src = initializers.get(node.input[0])
            return (dtype.get(src.data_type) if src is not None else "int8"), True
        if node is not None and node.op_type == "Cast" and node.input[0] in initializers:
            return dtype.get(initializers[node.input[0]].data_type), True
        return None, False

    for i, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in _ONNX_INTEGER:
            activation, w_index = _ONNX_INTEGER[node.op_type]
            weights = stored(node.input[w_index])[0] if len(node.input) > w_index else None
            if node.op_type == "MatMulNBits":
                weights = "int4"
            act = "int8" if activation == "int8" else ("dynamic" if activation == "dynamic" else "float")
            cov.ops.append(ComputeOp(name, act, weights or "int8", activation == "weight-only"))
            continue
        if node.op_type not in _ONNX_COMPUTE or len(node.input) <= _ONNX_COMPUTE[node.op_type]:
            continue
        weights, dequantized = stored(node.input[_ONNX_COMPUTE[node.op_type]])
        if node.op_type == "Gather" and weights is None:
            continue
        act_node = producer.get(node.input[0])
        act_dq = act_node is not None and act_node.op_type == "DequantizeLinear" and node.op_type != "Gather"
        # QDQ: an op between DequantizeLinear pairs runs as an integer kernel (onnxruntime fuses it)
        activation = "int8" if act_dq and weights in LOW_INT else "float"
        if activation == "int8":
            dequantized = False
        cov.ops.append(ComputeOp(name, activation, weights, dequantized))
    return cov


def _attrs(node):
    from onnx import helper

    return [(a.name, helper.get_attribute_value(a)) for a in node.attribute]


READERS: dict[str, Callable[[str, str], ArtifactCoverage]] = {"tflite": tflite_coverage, "onnx": onnx_coverage}


def artifact_coverage(path: str, fmt: str, precision: str) -> ArtifactCoverage | None:
    """The coverage of the artifact at ``path`` (manifest ``format``), or None without a reader."""
    from edgekit.quantize import coverage_readers  # noqa: F401  (registers the ExecuTorch, TorchScript and Core ML readers)

    reader = READERS.get(fmt)
    return None if reader is None else reader(path, precision)
