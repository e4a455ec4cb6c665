"""What can be read from a Core AI asset (.aimodel) on any host, through coreai-core's own Python
bindings: the MLIR program (its main graph's I/O, op histogram, storage types) and the asset summary
(compatibility version, storage and compute types). Nothing is compiled or executed."""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

from edgekit.targets.base import TensorSpec

# MLIR element types -> numpy dtype names
_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "si32": "int32", "si64": "int64", "i32": "int32",
           "i64": "int64", "si8": "int8", "ui8": "uint8", "i1": "bool", "si16": "int16"}
_TENSOR = re.compile(r"tensor<((?:[0-9?]+x)*)([a-z0-9]+)>")


class Asset:
    """A loaded asset and its program; the program is kept here because the MLIR module is freed with it."""

    def __init__(self, path: str):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from coreai.authoring.asset import AIModelAsset

            self.asset = AIModelAsset.load(str(path))
        self.program = self.asset.program  # loads main.mlirb through coreai-core's bindings
        # the file the bindings just parsed (its weight blobs are read from it raw: targets/coreai/bytecode.py)
        self.bytecode_path = str(getattr(self.asset._model_asset, "_program_bytecode_path", "")
                                 or os.path.join(str(path), "main.mlirb"))
        self.module = self.program._module._mlir_module  # coreai.authoring Module -> mlir.ir.Module

    def summary(self):
        return self.asset.summary()


def load_asset(path: str) -> Asset:
    return Asset(path)


def _graph(asset: Asset):
    module = asset.module
    graphs = [op for op in module.body.operations if op.operation.name == "coreai.graph"]
    if not graphs:
        raise ValueError("the asset's program has no coreai.graph")
    named = {str(g.operation.attributes["sym_name"]).strip('"'): g for g in graphs}
    return named.get("main", graphs[0]).operation


def entry_name(asset: Asset) -> str:
    """The name of the program's entry graph (``main``): the function a Core AI app loads."""
    return str(_graph(asset).attributes["sym_name"]).strip('"')


def _tensor_spec(name: str, type_text: str) -> TensorSpec:
    match = _TENSOR.fullmatch(type_text.strip())
    if not match:
        return TensorSpec(name, (), type_text)
    dims = tuple(int(d) if d != "?" else -1 for d in match.group(1).split("x") if d)
    return TensorSpec(name, dims, _DTYPES.get(match.group(2), match.group(2)))


def _names(attr, count: int, prefix: str) -> list[str]:
    found = re.findall(r'coreai\.name = "([^"]*)"', str(attr)) if attr is not None else []
    return found if len(found) == count else [f"{prefix}{i}" for i in range(count)]


def io_specs(asset) -> tuple[list[TensorSpec], list[TensorSpec]]:
    return io_specs_of(_graph(asset))


def io_specs_of(graph) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The named inputs and outputs of one coreai.graph operation."""
    function_type = str(graph.attributes["function_type"])
    ins_text, _, outs_text = function_type.partition(") -> ")
    ins = _TENSOR.findall(ins_text)
    outs = _TENSOR.findall(outs_text)
    attrs = {a.name: a.attr for a in graph.attributes}
    in_names = _names(attrs.get("arg_attrs"), len(ins), "input_")
    out_names = _names(attrs.get("res_attrs"), len(outs), "output_")
    to_text = lambda m: f"tensor<{m[0]}{m[1]}>"  # noqa: E731
    return ([_tensor_spec(n, to_text(m)) for n, m in zip(in_names, ins)],
            [_tensor_spec(n, to_text(m)) for n, m in zip(out_names, outs)])


def op_histogram(asset) -> dict[str, int]:
    graph = _graph(asset)
    counts: Counter = Counter()

    def walk(operation):
        for region in operation.regions:
            for block in region.blocks:
                for op in block.operations:
                    counts[op.operation.name.removeprefix("coreai.")] += 1
                    walk(op.operation)

    walk(graph)
    return dict(counts.most_common())


def summary(asset) -> dict[str, Any]:
    """coreai-core's own summary: compatibility version and the element types stored / computed."""
    info = asset.summary()

    def pairs(values) -> dict[str, int]:
        out = {}
        for text in values:
            kind, _, count = str(text).strip("()").partition(", ")
            out[kind.strip("'\"")] = int(count) if count.isdigit() else count
        return out

    storage = pairs(info.storage_types)
    total = sum(v for v in storage.values() if isinstance(v, int))
    compressed = sum(v for k, v in storage.items() if isinstance(v, int) and k.lower() not in ("float32", "float16", "bfloat16")
                     and k.lower() not in ("uint32", "int32", "uint64", "int64"))
    floats = sum(v for k, v in storage.items() if isinstance(v, int) and k.lower() in ("float32", "float16", "bfloat16"))
    return {
        "compatibility_version": str(info._compatibility_version) if hasattr(info, "_compatibility_version") else None,
        "storage_types": storage,
        "compute_types": [str(t) for t in info.compute_types],
        # elements of stored constants: low-bit integer storage (Int8, Int4, UInt4 lookup indices...) is compressed
        "weights": {"float_elements": floats, "compressed_elements": compressed,
                    "fraction_compressed": round(compressed / (compressed + floats), 4) if compressed + floats else 0.0,
                    "all_constant_elements": total},
    }
