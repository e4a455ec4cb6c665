"""What can be known about a Core ML model without running it (Linux included): its I/O, the op
histogram, how much of its weights are quantized, palettized or sparse, its metadata and size.

Used after conversion (the manifest's target_details), by ``edgekit inspect`` and by the runtime.
Reads the protobuf spec, and for ML Programs the weights through coremltools' MIL loader; nothing is
compiled.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from edgekit.targets.base import TensorSpec
from edgekit.targets.coreml.library import import_coremltools
from edgekit.targets.coreml.settings import IOS_BY_SPEC, MACOS_BY_SPEC

EDGEKIT_KEY = "com.edgekit"  # prefix of edgekit's user-defined metadata keys
MANIFEST_KEY = f"{EDGEKIT_KEY}.manifest"
IMAGE_KEY = f"{EDGEKIT_KEY}.image_inputs"
COMPUTE_UNITS_KEY = f"{EDGEKIT_KEY}.compute_units"

_ARRAY_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32", "INT8": "int8"}
_COLOR_SPACES = {10: "GRAYSCALE", 20: "RGB", 30: "BGR", 40: "GRAYSCALE_FLOAT16"}


def model_spec_path(path: str | os.PathLike) -> Path:
    """The protobuf inside an .mlpackage (from its Manifest.json), or the .mlmodel file itself."""
    path = Path(path)
    if path.is_file():
        return path
    manifest = json.loads((path / "Manifest.json").read_text(encoding="utf-8"))
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
    return path / "Data" / root


def read_spec(path: str | os.PathLike):
    import_coremltools()
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString(model_spec_path(path).read_bytes())
    return spec


def write_spec(path: str | os.PathLike, spec) -> None:
    """Replace the protobuf in place (weights untouched): used to add metadata after conversion."""
    target = model_spec_path(path)
    tmp = target.with_name(target.name + ".edgekit-tmp")
    tmp.write_bytes(spec.SerializeToString())
    os.replace(tmp, target)


def weights_dir(path: str | os.PathLike) -> Path | None:
    spec_file = model_spec_path(path)
    candidate = spec_file.parent / "weights"
    return candidate if Path(path).is_dir() and candidate.is_dir() else None


def model_type(spec) -> str:
    return spec.WhichOneof("Type")  # mlProgram, neuralNetwork, neuralNetworkClassifier, ...


def deployment_target(spec) -> str:
    version = spec.specificationVersion
    return f"{IOS_BY_SPEC.get(version, f'spec {version}')} / {MACOS_BY_SPEC.get(version, f'spec {version}')}"


def user_metadata(spec) -> dict[str, str]:
    return dict(spec.description.metadata.userDefined)


def image_inputs(spec) -> dict[str, Any]:
    raw = user_metadata(spec).get(IMAGE_KEY)
    return json.loads(raw) if raw else {}


def _feature(feature) -> TensorSpec | None:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        array = feature.type.multiArrayType
        from coremltools.proto import FeatureTypes_pb2

        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
        return TensorSpec(feature.name, tuple(int(d) for d in array.shape), _ARRAY_DTYPES.get(dtype, dtype.lower()))
    if kind == "imageType":
        image = feature.type.imageType
        channels = 1 if image.colorSpace in (10, 40) else 3
        return TensorSpec(feature.name, (1, channels, int(image.height), int(image.width)), "uint8")
    return None  # strings and dictionaries (classifier outputs) are described apart


def fed_io(spec) -> tuple[dict[str, Any], list[TensorSpec], list[TensorSpec]]:
    """(image inputs, inputs, outputs) as a runtime's caller sees them: callers feed the model's own
    float tensors, so an image input is a float32 tensor there (the runtime makes it pixels)."""
    images = image_inputs(spec)
    inputs, outputs = io_specs(spec)
    return images, [TensorSpec(s.name, s.shape, "float32") if s.name in images else s for s in inputs], outputs


def io_specs(spec) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Tensor inputs and outputs; image inputs appear as 1xCxHxW uint8 pixels."""
    description = spec.description
    inputs = [s for s in (_feature(f) for f in description.input) if s is not None]
    outputs = [s for s in (_feature(f) for f in description.output) if s is not None]
    return inputs, outputs


def describe_io(spec) -> dict[str, Any]:
    """Everything about I/O that TensorSpecs do not carry: image formats, flexible shapes, classifier."""
    description = spec.description
    out: dict[str, Any] = {}
    images = {}
    for feature in description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            images[feature.name] = _COLOR_SPACES.get(feature.type.imageType.colorSpace, "unknown")
        elif feature.type.WhichOneof("Type") == "multiArrayType":
            ranges = feature.type.multiArrayType.shapeRange.sizeRanges
            if ranges and any(r.lowerBound != r.upperBound for r in ranges):
                out.setdefault("flexible_shapes", {})[feature.name] = [
                    [int(r.lowerBound), int(r.upperBound)] for r in ranges
                ]
    if images:
        out["image_inputs"] = images
    if description.predictedFeatureName:
        out["classifier"] = {
            "label_output": description.predictedFeatureName,
            "probabilities_output": description.predictedProbabilitiesName,
        }
    return out


def op_histogram(spec) -> dict[str, int]:
    counts: Counter = Counter()
    if model_type(spec) == "mlProgram":
        def walk(block):
            for op in block.operations:
                counts[op.type] += 1
                for inner in op.blocks:
                    walk(inner)

        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                walk(block)
    else:
        for layer in _nn_layers(spec):
            counts[layer.WhichOneof("layer")] += 1
    return dict(counts.most_common())


def _nn_layers(spec):
    for field in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        if spec.HasField(field):
            return list(getattr(spec, field).layers)
    return []


def weight_stats(path: str | os.PathLike, spec=None) -> dict[str, Any]:
    """Weight elements in all, how many are compressed and how, sparsity, bytes of weights on disk.

    ``tensors`` lists each compressed weight (name, kind, dtype, shape) for ``edgekit inspect``.
    """
    spec = spec if spec is not None else read_spec(path)
    if model_type(spec) == "mlProgram":
        stats = _mlprogram_weights(spec, weights_dir(path))
        folder = weights_dir(path)
        stats["weights_bytes"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder else 0
    else:
        stats = _nn_weights(spec)
    total = stats["total"]
    stats["fraction_compressed"] = round(stats["compressed"] / total, 4) if total else 0.0
    return stats


def program_ops(spec, folder) -> list:
    """Every MIL op of an ML Program (nested blocks included), loaded with coremltools' reader."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    program = load_program(spec, spec.specificationVersion, str(folder) if folder else None)
    ops = []

    def walk(block):
        for op in block.operations:
            ops.append(op)
            for inner in op.blocks:
                walk(inner)

    for function in program.functions.values():
        walk(function)
    return ops


def _mlprogram_weights(spec, folder) -> dict[str, Any]:
    from coremltools.converters.mil.mil import types

    ops = program_ops(spec, folder)
    total = compressed = nonzero = sparse_elements = 0
    kinds: Counter = Counter()
    tensors = []
    for op in ops:
        output = op.outputs[0]
        consumers = [c.op_type for c in output.child_ops]
        feeds_constexpr = bool(consumers) and all(c.startswith("constexpr_") for c in consumers)
        if op.op_type == "const":
            if feeds_constexpr or output.val is None or not types.is_tensor(output.sym_type):
                continue
            if types.builtin_to_string(output.dtype) in ("fp32", "fp16") and math.prod(output.shape) > 1:
                total += math.prod(output.shape)
            continue
        if not op.op_type.startswith("constexpr_") or feeds_constexpr or op.op_type == "constexpr_cast":
            continue
        chain = constexpr_chain(op)
        elements = math.prod(output.shape)
        kind = _compression_kind(chain, types)
        total += elements
        compressed += elements
        kinds[kind["kind"]] += elements
        sparse = next((o for o in chain if o.op_type in ("constexpr_sparse_to_dense",)), None)
        if sparse is not None:
            sparse_elements += elements
            nonzero += math.prod(sparse.nonzero_data.shape)
        tensors.append({"name": output.name, **kind, "shape": [int(d) for d in output.shape]})
    return {
        "total": total,
        "compressed": compressed,
        "by_kind": dict(kinds),
        "sparsity": round(1 - nonzero / sparse_elements, 4) if sparse_elements else None,
        "tensors": tensors,
    }


def constexpr_chain(op) -> list:
    """``op`` and every constexpr op it reads from, transitively (how a compressed weight is rebuilt)."""
    chain, todo = [], [op]
    while todo:
        current = todo.pop()
        chain.append(current)
        for var in current.inputs.values():
            producer = getattr(var, "op", None)
            if producer is not None and producer.op_type.startswith("constexpr_") and producer not in chain:
                todo.append(producer)
    return chain


def _compression_kind(chain, types) -> dict[str, Any]:
    names = {o.op_type for o in chain}
    sparse = "constexpr_sparse_to_dense" in names
    for o in chain:
        if o.op_type in ("constexpr_lut_to_dense", "constexpr_lut_to_sparse"):
            lut_shape = o.lut.shape
            entries = lut_shape[-2] if len(lut_shape) > 1 else lut_shape[0]
            return {"kind": "palettized" + ("+sparse" if sparse else ""), "dtype": f"lut{int(math.log2(entries))}",
                    "granularity": "per-tensor" if math.prod(lut_shape[:-2] or (1,)) == 1 else "grouped"}
        if o.op_type in ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_sparse_blockwise_shift_scale"):
            # the sparse form stores only the non-zero int8 values (pruned int8 weights, iOS18)
            data = {"constexpr_affine_dequantize": "quantized_data", "constexpr_sparse_blockwise_shift_scale": "nonzero_data"}.get(o.op_type, "data")
            data = getattr(o, data)
            granularity = "per-channel" if o.op_type == "constexpr_affine_dequantize" else "per-block"
            if o.op_type != "constexpr_affine_dequantize" and o.scale.shape and o.scale.shape[-1] == 1:
                granularity = "per-channel"
            return {"kind": "quantized" + ("+sparse" if sparse else ""), "dtype": types.builtin_to_string(data.dtype),
                    "granularity": granularity}
    return {"kind": "sparse" if sparse else chain[0].op_type, "dtype": "fp16/fp32", "granularity": "-"}


def _nn_weights(spec) -> dict[str, Any]:
    """Legacy neural network: weights live inline as WeightParams messages."""
    total = compressed = 0
    weights_bytes = 0
    kinds: Counter = Counter()
    tensors = []

    def visit(message, path):
        nonlocal total, compressed, weights_bytes
        if message.DESCRIPTOR.name == "WeightParams":
            if message.floatValue:
                elements = len(message.floatValue)
                weights_bytes += 4 * elements
            elif message.float16Value:
                elements = len(message.float16Value) // 2
                weights_bytes += len(message.float16Value)
                kinds["fp16"] += elements
            elif message.rawValue and message.HasField("quantization"):
                bits = message.quantization.numberOfBits
                elements = len(message.rawValue) * 8 // bits  # packing pads the last byte: whole weights only
                weights_bytes += len(message.rawValue)
                kind = "palettized" if message.quantization.HasField("lookupTableQuantization") else "quantized"
                compressed += elements
                kinds[kind] += elements
                tensors.append({"name": path, "kind": kind, "dtype": f"lut{bits}" if kind == "palettized" else f"int{bits}",
                                "granularity": "per-tensor", "shape": [elements]})
            else:
                return
            total += elements
            return
        for field, value in message.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            items = [value] if hasattr(value, "DESCRIPTOR") else value  # one message, or a repeated field
            for item in items:
                visit(item, f"{path}.{field.name}")

    for layer in _nn_layers(spec):
        visit(layer, layer.name)
    return {"total": total, "compressed": compressed, "by_kind": dict(kinds), "sparsity": None,
            "tensors": tensors, "weights_bytes": weights_bytes}


def metadata(spec) -> dict[str, Any]:
    meta = spec.description.metadata
    out = {
        "description": meta.shortDescription or None,
        "author": meta.author or None,
        "license": meta.license or None,
        "version": meta.versionString or None,
    }
    user = user_metadata(spec)
    out["user_defined_keys"] = sorted(user)
    out["embedded_manifest"] = MANIFEST_KEY in user
    return out
