"""Read an ML Program (.mlpackage) into plain Python: functions, ops, and decoded constant values.

The structure comes straight from the model's protobuf (``spec.mlProgram``); constant values, inline
or in ``weights/weight.bin``, are decoded by coremltools' own milproto value loader (which reads the
blob file with coremltools' BlobStorageReader and unpacks sub-byte types), so the bytes are read the
way coremltools wrote them. Nothing is type-inferred or folded here: the interpreter executes what the
file says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.targets.coreml import analysis

# MIL DataType enum names -> numpy dtype names (sub-byte types are unpacked to one byte per element)
DTYPES = {
    "BOOL": "bool", "STRING": "str", "FLOAT16": "float16", "FLOAT32": "float32", "FLOAT64": "float64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "INT4": "int8",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "UINT4": "uint8", "UINT2": "uint8", "UINT1": "uint8", "UINT6": "uint8", "UINT3": "uint8",
}


class ProgramError(Exception):
    """The file is not an ML Program this reader understands (said in one line)."""


@dataclass(frozen=True)
class VarType:
    name: str
    dtype: str  # numpy dtype name, "str", or "" for non-tensor types (lists, dictionaries)
    shape: tuple[int | None, ...] | None  # None: unknown rank; None inside: a flexible dimension


@dataclass
class Op:
    type: str
    name: str
    #: parameter -> list of arguments, each a var name (str) or a decoded constant (wrapped in Const)
    inputs: dict[str, list[Any]]
    outputs: list[VarType]
    has_blocks: bool = False


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass
class Function:
    name: str
    opset: str
    inputs: list[VarType]
    outputs: list[str]
    ops: list[Op] = field(default_factory=list)


@dataclass
class Program:
    path: str
    specification_version: int
    functions: dict[str, Function]

    @property
    def main(self) -> Function:
        return self.functions["main"]


def _var_type(named) -> VarType:
    kind = named.type.WhichOneof("type")
    if kind != "tensorType":
        return VarType(named.name, "", None)
    from coremltools.proto import MIL_pb2

    tensor = named.type.tensorType
    dtype = DTYPES.get(MIL_pb2.DataType.Name(tensor.dataType), MIL_pb2.DataType.Name(tensor.dataType).lower())
    if tensor.rank < 0:
        return VarType(named.name, dtype, None)
    shape = tuple(
        int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None for d in tensor.dimensions
    )
    return VarType(named.name, dtype, shape)


class _Values:
    """Decodes MIL Values with coremltools' loader (one blob reader per weight file)."""

    def __init__(self, weights_dir: str | None):
        from coremltools.converters.mil.frontend.milproto import load as milproto

        self._load_value = milproto._load_value
        self._context = milproto.TranscriptionContext(weights_dir or "")

    def __call__(self, value_spec):
        import numpy as np

        kind = value_spec.WhichOneof("value")
        if kind == "immediateValue" and value_spec.immediateValue.WhichOneof("value") == "list":
            return [self(v) for v in value_spec.immediateValue.list.values]
        value = self._load_value(self._context, value_spec)
        if isinstance(value, (str, dict, list)):
            return value
        return np.asarray(value)


def _read_op(op_spec, values: _Values) -> Op:
    inputs: dict[str, list[Any]] = {}
    for key, value in op_spec.attributes.items():
        if key != "name":  # const's val, and the iOS16 constexpr ops' parameters
            inputs[key] = [Const(values(value))]
    for key, argument in op_spec.inputs.items():
        args: list[Any] = []
        for binding in argument.arguments:
            if binding.WhichOneof("binding") == "name":
                args.append(binding.name)
            else:
                args.append(Const(values(binding.value)))
        inputs[key] = args
    outputs = [_var_type(o) for o in op_spec.outputs]
    name = outputs[0].name if outputs else op_spec.type
    return Op(op_spec.type, name, inputs, outputs, has_blocks=bool(op_spec.blocks))


def read_program(path: str | Path, spec=None) -> Program:
    """The ML Program of an .mlpackage (spec may be passed when already parsed)."""
    spec = spec if spec is not None else analysis.read_spec(path)
    if analysis.model_type(spec) != "mlProgram":
        raise ProgramError(f"{Path(path).name} is a Core ML {analysis.model_type(spec)}, not an ML Program")
    folder = analysis.weights_dir(path)
    values = _Values(str(folder) if folder else None)
    functions = {}
    for fname, fspec in spec.mlProgram.functions.items():
        opset = fspec.opset
        if opset not in fspec.block_specializations:
            raise ProgramError(f"function {fname} has no block for its opset {opset}")
        block = fspec.block_specializations[opset]
        function = Function(fname, opset, [_var_type(v) for v in fspec.inputs], list(block.outputs))
        function.ops = [_read_op(op, values) for op in block.operations]
        functions[fname] = function
    if "main" not in functions:
        raise ProgramError(f"{Path(path).name} has no main function (functions: {', '.join(functions)})")
    return Program(str(path), int(spec.specificationVersion), functions)
