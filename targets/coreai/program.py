"""A Core AI program read into plain data: the main graph's inputs, its ops in order (operands and
results as value ids, declared result types, attributes as text) and every constant as a NumPy array.

Read through coreai-core's own bindings (the MLIR module that ``AIModelAsset.load`` parses from
main.mlirb). Dense constants are read with MLIR's ``DenseElementsAttr`` buffer; large weights are
``dense_resource`` blobs, which the bindings do not expose, so they are read raw from main.mlirb's
bytecode (targets/coreai/bytecode.py), or, where that fails, from the module's own textual form
(``dialect_resources``: hex, a 4-byte alignment word, then the raw little-endian data).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.targets.coreai import analysis

#: MLIR element types -> NumPy dtypes the interpreter computes with
DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i1": np.bool_,
          "si8": np.int8, "ui8": np.uint8, "si16": np.int16, "ui16": np.uint16, "si32": np.int32, "ui32": np.uint32,
          "si64": np.int64, "ui64": np.uint64, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64}
_TYPE = re.compile(r"tensor<((?:[0-9?]+x)*)([a-z0-9]+)>")
_RESOURCE = re.compile(r'^\s*([A-Za-z0-9_.$-]+): "0x([0-9A-Fa-f]*)"', re.M)


class ProgramError(Exception):
    """The asset's program cannot be read into plain data (one line)."""


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int | None, ...]
    element: str  # the MLIR element type, e.g. f16, si32, ui4

    @property
    def dtype(self):
        return DTYPES.get(self.element)


@dataclass
class Op:
    name: str  # without the dialect prefixes: conv2d, broadcasting_add, ...
    operands: list[int]
    results: list[int]
    types: list[TensorType]
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Graph:
    inputs: list[tuple[str, int, TensorType]]  # (name, value id, type)
    outputs: list[tuple[str, int]]
    ops: list[Op]
    constants: dict[int, np.ndarray]


@dataclass
class Program:
    """Every graph of the module by name; ``main`` is the entry, the others are what ``invoke`` calls
    (coreai-torch emits composites such as batch_norm, layer_norm and attention as private graphs)."""
    graphs: dict[str, Graph]
    main: str = "main"

    @property
    def entry(self) -> Graph:
        return self.graphs[self.main]

    @property
    def ops(self) -> list[Op]:
        return [o for g in self.graphs.values() for o in g.ops]


def parse_type(text: str) -> TensorType:
    match = _TYPE.fullmatch(str(text).strip())
    if not match:
        raise ProgramError(f"unsupported value type {text}")
    dims = tuple(None if d == "?" else int(d) for d in match.group(1).split("x") if d)
    return TensorType(dims, match.group(2))


def short_name(name: str) -> str:
    return name.removeprefix("coreai.").removeprefix("decomposable.")


def read_program(asset: "analysis.Asset") -> Program:
    """Every graph of a loaded asset as plain data (constants decoded)."""
    module = asset.module
    main = analysis._graph(asset)
    resources = _Resources(module, getattr(asset, "bytecode_path", None))
    graphs: dict[str, Graph] = {}
    main_name = "main"
    for item in module.body.operations:
        graph = item.operation
        if graph.name != "coreai.graph":
            continue
        name = str(graph.attributes["sym_name"]).strip('"')
        if graph == main:
            main_name = name
        graphs[name] = _read_graph(graph, analysis.io_specs_of(graph), resources)
    return Program(graphs, main_name)


def _read_graph(graph, specs, resources: "_Resources") -> Graph:
    blocks = list(graph.regions[0].blocks)
    if len(blocks) != 1:
        raise ProgramError(f"a graph has {len(blocks)} blocks; edgekit reads single-block graphs")
    block = blocks[0]
    ids: dict[Any, int] = {}

    def vid(value) -> int:
        return ids.setdefault(value, len(ids))

    input_specs, output_specs = specs
    inputs = [(spec.name, vid(arg), parse_type(arg.type)) for spec, arg in zip(input_specs, block.arguments)]
    ops: list[Op] = []
    constants: dict[int, np.ndarray] = {}
    outputs: list[tuple[str, int]] = []
    for item in block.operations:
        operation = item.operation
        if operation.name == "coreai.output":
            outputs = [(spec.name, vid(v)) for spec, v in zip(output_specs, operation.operands)]
            continue
        results = [vid(r) for r in operation.results]
        types = [parse_type(r.type) for r in operation.results]
        if operation.name == "coreai.constant":
            constants[results[0]] = _constant(operation.attributes["value"], types[0], resources)
            continue
        attributes = {a.name: str(a.attr) for a in operation.attributes}
        if any(len(r.blocks) for r in operation.regions):
            attributes["__regions__"] = "yes"  # control flow: reported as unsupported by the interpreter
        ops.append(Op(short_name(operation.name), [vid(v) for v in operation.operands], results, types, attributes))
    if not outputs:
        raise ProgramError("a graph has no coreai.output")
    return Graph(inputs, outputs, ops, constants)


class _Resources:
    """name -> raw bytes of every ``dense_resource`` blob of the program (alignment word dropped).

    Read from main.mlirb's bytecode (targets/coreai/bytecode.py: raw, no copy of the text); if that file
    cannot be followed, or lacks a blob the module names, from the module's textual form, which holds
    every weight in hex (about 180 MB of text for MiniLM, so only as the fallback)."""

    def __init__(self, module, bytecode_path: str | None = None):
        self.module = module
        self.bytecode_path = bytecode_path
        self._raw: dict[str, Any] | None = None
        self._hex: dict[str, str] | None = None

    def __getitem__(self, name: str) -> bytes:
        if self._raw is None:
            self._raw = self._from_bytecode()
        if name in self._raw:
            return self._raw[name]
        if self._hex is None:
            text = self.module.operation.get_asm(enable_debug_info=False)
            start = text.find("dialect_resources")
            self._hex = dict(_RESOURCE.findall(text[start:])) if start >= 0 else {}
        if name not in self._hex:
            raise ProgramError(f"the weight blob {name} is missing from the program")
        return bytes.fromhex(self._hex[name])[4:]

    def _from_bytecode(self) -> dict[str, Any]:
        from edgekit.targets.coreai import bytecode

        if not self.bytecode_path:
            return {}
        try:
            return bytecode.read_blobs(self.bytecode_path)
        except (OSError, bytecode.BytecodeError):
            return {}


def _sub_byte(element: str) -> tuple[int, bool] | None:
    """(bits, signed) of a sub-byte integer element type (ui4, si4, ui6, ui2...), else None."""
    match = re.fullmatch(r"(u?)(s?)i([1-7])", element)
    if not match or element == "i1":
        return None
    return int(match.group(3)), not match.group(1)


def _unpack(blob: bytes, bits: int, signed: bool, count: int) -> np.ndarray:
    """Sub-byte integers packed densely, least significant bit first (the layout of MIL's packed
    indices; checked end to end: a palettized program then matches its PyTorch model)."""
    raw = np.frombuffer(blob, dtype=np.uint8)
    if raw.size == count:  # one element per byte
        values = raw.astype(np.int64) & ((1 << bits) - 1)
        return (np.where(values >= 1 << (bits - 1), values - (1 << bits), values) if signed else values).astype(
            np.int8 if signed else np.uint8)
    flat = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), bitorder="little")[: bits * count]
    values = (flat.reshape(count, bits).astype(np.int64) << np.arange(bits)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.astype(np.int8 if signed else np.uint8)


def _constant(attr, declared: TensorType, resources: "_Resources") -> np.ndarray:
    from coreai._compiler.ir import DenseElementsAttr

    shape = tuple(declared.shape)
    text = str(attr)
    packed = _sub_byte(declared.element)
    if packed and text.startswith("dense_resource<"):
        blob = resources[text[len("dense_resource<"):].split(">")[0]]
        return _unpack(blob, *packed, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
    if packed and text.startswith("dense<"):  # small sub-byte constants (zero points): integers in the text
        values = np.array([int(v) for v in re.findall(r"-?\d+", text[len("dense<"):text.index(">")])],
                          dtype=np.int8 if packed[1] else np.uint8)
        return np.broadcast_to(values if values.size > 1 else values.reshape(()), shape).reshape(shape).copy()
    if declared.dtype is None:
        raise ProgramError(f"a constant of element type {declared.element} stored as {text[:16]}... is not readable here")
    if text.startswith("dense_resource<"):
        blob = resources[text[len("dense_resource<"):].split(">")[0]]
        return np.frombuffer(blob, dtype=declared.dtype).reshape(shape).copy()
    if not DenseElementsAttr.isinstance(attr):
        raise ProgramError(f"unsupported constant attribute {text[:60]}")
    dense = DenseElementsAttr(attr)
    if dense.is_splat:
        value = np.array(dense.get_splat_value()) if declared.dtype is not np.bool_ else np.array("true" in text)
        return np.full(shape, value, dtype=declared.dtype)
    return np.array(dense).astype(declared.dtype, copy=False).reshape(shape)
