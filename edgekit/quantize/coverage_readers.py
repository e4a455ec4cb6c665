"""Artifact coverage readers for ExecuTorch programs, TorchScript Lite archives and Core ML
programs (edgekit.quantize.artifact_coverage holds the model and the TFLite / ONNX readers).

Each reads the file's own description of its tensors without running or unpickling it: the
TorchScript reader walks the archive's pickles with an unpickler that builds nothing (it only
records storage types and tensor shapes), so a hostile archive cannot run code here.
"""
from __future__ import annotations

import pickle
import zipfile

from edgekit.quantize.artifact_coverage import READERS, ArtifactCoverage, ComputeOp

# -- TorchScript Lite (.ptl) ---------------------------------------------------------------------

_STORAGE_DTYPES = {"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
                   "DoubleStorage": "float64", "QInt8Storage": "int8", "QUInt8Storage": "uint8", "CharStorage": "int8",
                   "ByteStorage": "uint8", "QInt32Storage": "int32", "IntStorage": "int32", "LongStorage": "int64",
                   "QUInt4x2Storage": "uint4", "BoolStorage": "bool", "ShortStorage": "int16"}
_TS_COMPUTE = {"aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::_convolution", "aten::convolution",
               "aten::linear", "aten::addmm", "aten::matmul", "aten::mm", "aten::bmm", "aten::lstm", "aten::gru",
               "aten::rnn_tanh", "aten::embedding", "aten::conv_transpose2d", "aten::conv_transpose1d"}
_TS_DYNAMIC = ("quantized::linear_dynamic", "quantized::linear_dynamic_fp16", "quantized::quantized_lstm",
               "quantized::quantized_gru", "quantized::embedding_byte", "quantized::embedding_4bit")


class _Record:
    """Stands for any class or function an archive names: records its arguments, builds nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _Inert(pickle.Unpickler):
    def __init__(self, fh, storages: dict, tensors: list):
        super().__init__(fh)
        self.storages, self.tensors = storages, tensors

    def find_class(self, module, name):
        if name in ("_rebuild_tensor_v2", "_rebuild_qtensor", "_rebuild_tensor"):
            return self._tensor
        if name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        return _Record

    def _tensor(self, storage, offset, size, *rest):
        self.tensors.append((storage, tuple(size)))
        return _Record()

    def persistent_load(self, pid):
        # ('storage', dtype-or-storage-class, key, location, numel)
        _, kind, key, _location, numel = pid[:5]
        dtype = kind if isinstance(kind, str) else "unknown"
        self.storages[key] = (dtype, int(numel))
        return key


def torchscript_coverage(path: str, precision: str) -> ArtifactCoverage:
    cov = ArtifactCoverage(precision, "the TorchScript archive's pickles and bytecode")
    storages: dict = {}
    tensors: list = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for name in names:
            if name.endswith(("/data.pkl", "/constants.pkl")):
                with archive.open(name) as fh:
                    _Inert(fh, storages, tensors).load()
        bytecode = next((n for n in names if n.endswith("/bytecode.pkl")), None)
        code = None
        if bytecode is not None:
            with archive.open(bytecode) as fh:
                code = _Inert(fh, {}, []).load()
    counted = set()
    for key, shape in tensors:
        if len(shape) >= 2 and key in storages and key not in counted:
            counted.add(key)
            dtype, numel = storages[key]
            cov.weights_by_dtype[dtype] += numel
    for name in _bytecode_ops(code):
        if name.startswith("quantized::") and name in _TS_DYNAMIC:
            cov.ops.append(ComputeOp(name, "dynamic", "float16" if name.endswith("fp16") else "int8"))
        elif name.startswith("quantized::") and any(k in name for k in ("conv", "linear")):
            cov.ops.append(ComputeOp(name, "int8", "int8"))
        elif name in _TS_COMPUTE:
            two_activations = name in ("aten::matmul", "aten::mm", "aten::bmm")
            cov.ops.append(ComputeOp(name, "float", None if two_activations else "float32"))
    return cov


def _bytecode_ops(code) -> list[str]:
    """One operator name per OP instruction of every method in a lite-interpreter bytecode table."""
    out: list[str] = []
    if not isinstance(code, tuple):
        return out
    for method in code[1:]:
        if not (isinstance(method, tuple) and len(method) >= 2 and isinstance(method[1], tuple)):
            continue
        table = {k: v for k, v in (t for t in method[1] if isinstance(t, tuple) and len(t) == 2)}
        instructions = _values(table.get("instructions"))
        operators = _values(table.get("operators"))
        names = [op[0] + (f".{op[1]}" if op[1] else "") for op in operators if isinstance(op, tuple) and len(op) >= 2]
        for ins in instructions:
            if isinstance(ins, tuple) and ins and ins[0] == "OP" and ins[1] < len(names):
                out.append(names[ins[1]].split(".")[0])
    return out


def _values(entry):
    # bytecode tables are (name, (("key", value), ...)) or plain tuples, by bytecode version
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
        return entry[1]
    return entry or ()


READERS["ptl"] = torchscript_coverage


# -- ExecuTorch (.pte) ---------------------------------------------------------------------------

_XNN_DTYPES = {"xnn_datatype_fp32": "float32", "xnn_datatype_fp16": "float16", "xnn_datatype_bf16": "bfloat16",
               "xnn_datatype_qint8": "int8", "xnn_datatype_quint8": "uint8", "xnn_datatype_qcint8": "int8",
               "xnn_datatype_qdint8": "int8", "xnn_datatype_qcint4": "int4", "xnn_datatype_qbint4": "int4",
               "xnn_datatype_qint32": "int32", "xnn_datatype_qcint32": "int32", "xnn_datatype_qpint8": "int8"}
_XNN_COMPUTE = {"XNNConv2d", "XNNDepthwiseConv2d", "XNNFullyConnected", "XNNBatchMatrixMultiply", "XNNConvTranspose2d"}
_ET_COMPUTE = ("aten::convolution", "aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::embedding",
               "quantized_decomposed::embedding_byte", "quantized_decomposed::embedding_4bit", "aten::_weight_int4pack_mm",
               "aten::_weight_int8pack_mm", "torchao::_linear_8bit_act")
_ET_SCALAR = {6: "float32", 5: "float16", 15: "bfloat16", 1: "int8", 0: "uint8", 3: "int32", 4: "int64", 7: "float64"}


def executorch_coverage(path: str, precision: str) -> ArtifactCoverage:
    from executorch.exir._serialize._program import deserialize_pte_binary

    with open(path, "rb") as fh:
        pte = deserialize_pte_binary(fh.read())
    program = pte.program
    cov = ArtifactCoverage(precision, "the .pte program and its XNNPACK payloads")
    for blob in program.backend_delegate_data:
        graph = _xnnpack_graph(bytes(blob.data))
        if graph is not None:
            _count_xnnpack(graph, cov)
    for plan in program.execution_plan:  # what runs outside a delegate (portable / optimized kernels)
        values = plan.values
        for value in values:
            tensor = value.val
            if type(tensor).__name__ == "Tensor" and tensor.data_buffer_idx and len(tensor.sizes) >= 2:
                dtype = _ET_SCALAR.get(int(getattr(tensor.scalar_type, "value", tensor.scalar_type)), "other")
                cov.weights_by_dtype[dtype] += int(_numel(tensor.sizes))
        for chain in plan.chains:
            for ins in chain.instructions:
                call = ins.instr_args
                if type(call).__name__ != "KernelCall":
                    continue
                op = plan.operators[call.op_index].name
                if op in _ET_COMPUTE:
                    integer = op.startswith(("quantized", "torchao")) or "int" in op
                    cov.ops.append(ComputeOp(op, "dynamic" if integer else "float", "int8" if integer else "float32"))
    return cov


def _numel(sizes) -> int:
    out = 1
    for s in sizes:
        out *= max(int(s), 1)
    return out


def _xnnpack_graph(blob: bytes):
    """The XNNPACK payload's flatbuffer as JSON (flatc from the executorch wheel), or None."""
    import json
    import os
    import re
    import subprocess
    import tempfile

    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as serialize
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    if blob[4:8] != serialize.XNNHeader.EXPECTED_MAGIC:
        return None
    header = serialize.XNNHeader.from_bytes(blob[: serialize.XNNHeader.EXPECTED_LENGTH])
    body = blob[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
    schema = os.path.join(os.path.dirname(serialize.__file__), "schema.fbs")
    with tempfile.TemporaryDirectory() as folder:
        raw = os.path.join(folder, "graph.bin")
        with open(raw, "wb") as fh:
            fh.write(body)
        subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "-o", folder, schema, "--", raw],
                       check=True, capture_output=True, timeout=120)
        with open(os.path.join(folder, "graph.json"), encoding="utf-8") as fh:
            text = fh.read()
    # flatc writes non-finite floats bare (output_max: inf), which JSON does not allow
    return json.loads(re.sub(r"(?<=[\s:\[,])(-?)(inf|nan)\b", lambda m: "null", text))


def _count_xnnpack(graph: dict, cov: ArtifactCoverage) -> None:
    values = {}
    for value in graph.get("xvalues") or []:
        body = value.get("xvalue_union") or {}
        tensor = body.get("tensor_value", body)
        values[tensor.get("id_out", len(values))] = tensor
    for tensor in values.values():
        if tensor.get("constant_buffer_idx") and len(tensor.get("dims") or []) >= 2:
            cov.weights_by_dtype[_XNN_DTYPES.get(tensor.get("datatype", "xnn_datatype_fp32"), "other")] += _numel(tensor["dims"])
    for i, node in enumerate(graph.get("xnodes") or []):
        kind = node.get("xnode_union_type")
        if kind not in _XNN_COMPUTE:
            continue
        body = node.get("xnode_union") or {}
        act = values.get(body.get("input1_id"), {}).get("datatype", "xnn_datatype_fp32")
        weight_id = body.get("filter_id", body.get("input2_id"))
        weight = values.get(weight_id, {})
        stored = _XNN_DTYPES.get(weight.get("datatype", "xnn_datatype_fp32")) if weight.get("constant_buffer_idx") else None
        activation = {"xnn_datatype_qint8": "int8", "xnn_datatype_quint8": "uint8",
                      "xnn_datatype_qdint8": "dynamic", "xnn_datatype_qpint8": "dynamic"}.get(act, "float")
        cov.ops.append(ComputeOp(f"{kind}_{i}", activation, stored))


READERS["pte"] = executorch_coverage


# -- Core ML (.mlpackage / .mlmodel ML programs) --------------------------------------------------

_MIL_COMPUTE = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "matmul": "y", "einsum": None,
                "lstm": "weight_ih", "gru": "weight_ih", "rnn": "weight_ih", "gather": "x"}
_MIL_DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8", "uint8": "uint8", "int4": "int4", "uint4": "uint4"}


def coreml_coverage(path: str, precision: str) -> ArtifactCoverage | None:
    from coremltools.converters.mil.mil import types

    from edgekit.targets.coreml.analysis import constexpr_chain, model_type, program_ops, read_spec, weights_dir

    spec = read_spec(path)
    if model_type(spec) != "mlProgram":
        return None  # a legacy neural network: its weight stats stay in target_details
    cov = ArtifactCoverage(precision, "the Core ML program (const and constexpr ops)")
    ops = program_ops(spec, weights_dir(path))

    def stored(op) -> tuple[str | None, bool]:
        """Stored dtype of the weight an op output carries, and whether it is decompressed at load."""
        if op is None:
            return None, False
        if op.op_type == "const":
            val = op.outputs[0]
            return (_MIL_DTYPES.get(types.builtin_to_string(val.dtype), "other") if types.is_tensor(val.sym_type) else None), False
        if op.op_type.startswith("constexpr_"):
            for inner in constexpr_chain(op):
                if inner.op_type in ("constexpr_lut_to_dense", "constexpr_lut_to_sparse"):
                    return "lut", True
                data = getattr(inner, "quantized_data", None) or getattr(inner, "data", None)
                if inner.op_type == "constexpr_sparse_blockwise_shift_scale":  # pruned + quantized (iOS18)
                    data = inner.nonzero_data
                if data is not None and inner.op_type not in ("constexpr_cast", "constexpr_sparse_to_dense"):
                    return _MIL_DTYPES.get(types.builtin_to_string(data.dtype), "other"), True
            return "float16", True
        if op.op_type == "cast":
            return stored(getattr(op.x, "op", None))
        return None, False

    for op in ops:
        out = op.outputs[0] if op.outputs else None
        if out is None or not types.is_tensor(out.sym_type) or len(out.shape) < 2:
            continue
        consumers = [c.op_type for c in out.child_ops]
        if consumers and all(c.startswith("constexpr_") for c in consumers):
            continue  # an input of a decompression: counted once, by the constexpr that uses it
        if op.op_type == "const" or (op.op_type.startswith("constexpr_") and op.op_type != "constexpr_cast"):
            dtype, _ = stored(op)
            if dtype is not None:
                cov.weights_by_dtype[dtype] += int(_numel(out.shape))
    for i, op in enumerate(ops):
        if op.op_type not in _MIL_COMPUTE:
            continue
        key = _MIL_COMPUTE[op.op_type]
        weight_var = op.inputs.get(key) if key else None
        weights, dequantized = stored(getattr(weight_var, "op", None)) if weight_var is not None else (None, False)
        if op.op_type == "gather" and weights is None:
            continue
        act_var = op.inputs.get("x") if op.op_type != "gather" else None
        producer = getattr(act_var, "op", None)
        activation = "int8" if producer is not None and producer.op_type == "dequantize" else "float"
        cov.ops.append(ComputeOp(op.name or f"{op.op_type}_{i}", activation, weights,
                                 dequantized and activation != "int8"))
    return cov


READERS["mlpackage"] = coreml_coverage
READERS["mlmodel"] = coreml_coverage
