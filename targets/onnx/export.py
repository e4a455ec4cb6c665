"""PyTorch -> float ONNX file, with the opset asked for, named dynamic axes and no debug payload.

Two exporters, chosen by opset:
- opset >= 18 (the default): torch.onnx's dynamo exporter, fed the run's shared torch.export
  ExportedProgram, so ``--target all`` exports once. When the shared export fails (a model
  torch.export rejects non-strictly, or a dynamic axis whose example size is 1, which torch.export
  specialises), it falls back to ``torch.onnx.export(module)``: torch.onnx then tries its own
  capture strategies (strict, non-strict with size-oblivious shapes, draft export), which succeed
  on more models than one plain export. The fallback is recorded in the manifest.
- opset < 18: the dynamo exporter implements opset 18 and up only; asked for less it silently writes
  18, and onnx's version converter cannot step common graphs down (no adapter for Relu-14,
  ReduceMean-18 or LayerNormalization). torch's TorchScript-based exporter does write opsets 7-17,
  so it is used there, and it names the op that needs a newer opset when one does.
"""
from __future__ import annotations

import os
from typing import Any

from edgekit.errors import ConversionError

DEFAULT_OPSET = 18  # the dynamo exporter's own opset: no conversion; onnxruntime >= 1.14 runs it
DYNAMO_MIN_OPSET = 18
MIN_OPSET = 7  # the TorchScript-based exporter's floor
# node metadata the dynamo exporter writes for debugging: stack traces carry local file paths and
# make up most of a small model's graph bytes; the module path ("namespace") is kept
_DEBUG_METADATA = (
    "pkg.torch.onnx.stack_trace",
    "pkg.torch.onnx.fx_node",
    "pkg.torch.onnx.class_hierarchy",
    "pkg.torch.onnx.name_scopes",
)
_PROTOBUF_LIMIT = "ONNX keeps a model in one protobuf, which cannot exceed 2 GB; edgekit does not write external-data ONNX"


def max_opset() -> int:
    """The newest opset this torch's exporter claims, capped by the installed onnx."""
    import onnx
    import torch.onnx._constants as constants

    return min(constants.ONNX_MAX_OPSET, onnx.defs.onnx_opset_version())


def export_onnx(model, opset: int, path: str) -> dict[str, Any]:
    """Write ``model`` (an ExportedModel) to ``path``; return facts for the manifest."""
    if opset >= DYNAMO_MIN_OPSET:
        proto, details = _dynamo_export(model, opset)
    else:
        proto, details = _torchscript_export(model, opset)
    got = default_opset(proto)
    if got != opset:
        raise ConversionError(f"torch.onnx wrote opset {got} when asked for opset {opset}", hint="try --opset 18")
    _strip_debug_metadata(proto)
    details["dynamic_dims"] = _name_dynamic_dims(proto, model)
    _refresh_shapes(proto)
    save(proto, path)
    details["opset"] = opset
    return details


def _dynamo_export(model, opset: int):
    import torch

    from edgekit.export import describe_conversion_error

    names = dict(input_names=[s.name for s in model.inputs], output_names=list(model.output_names))
    try:
        program = model.exported_program()
        source = "the shared torch.export program"
    except ConversionError as exc:
        program, source = None, f"the eager module (the shared torch.export failed: {exc.message})"
    try:
        if program is not None:
            onnx_program = torch.onnx.export(program, (), opset_version=opset, dynamo=True, verbose=False, **names)
        else:
            onnx_program = torch.onnx.export(
                model.module, tuple(model.example_inputs), opset_version=opset, dynamo=True,
                dynamic_shapes=model.dynamic_shapes(), verbose=False, **names,
            )
        proto = onnx_program.model_proto
    except ConversionError:
        raise
    except Exception as exc:
        if _too_large(exc):
            raise ConversionError(f"the exported model is too large: {_PROTOBUF_LIMIT}") from exc
        raise describe_conversion_error(exc, model, "torch.onnx") from exc
    return proto, {"exporter": f"torch.onnx dynamo exporter, from {source}"}


def _torchscript_export(model, opset: int):
    import io

    import onnx
    import torch

    from edgekit.export import describe_conversion_error

    input_names = [s.name for s in model.inputs]
    dynamic_axes: dict[str, dict[int, str]] = {}
    for axis in model.dynamic:
        dynamic_axes.setdefault(axis.input, {})[axis.axis] = f"{axis.input}_{axis.axis}"
    buffer = io.BytesIO()
    try:
        # not under no_grad: there nn.TransformerEncoder takes its fused fast path, an op
        # (aten::_transformer_encoder_layer_fwd) that no ONNX opset has
        torch.onnx.export(
            model.module, tuple(model.example_inputs), buffer, input_names=input_names,
            output_names=list(model.output_names), opset_version=opset, dynamo=False,
            dynamic_axes=dynamic_axes or None, do_constant_folding=True,
        )
    except Exception as exc:
        if _too_large(exc):
            raise ConversionError(f"the exported model is too large: {_PROTOBUF_LIMIT}") from exc
        text = str(exc).strip().splitlines()
        if type(exc).__name__ == "UnsupportedOperatorError" and text:
            # its first line names the op and the opset that added it: the most useful line there is
            raise ConversionError(f"torch.onnx (TorchScript exporter): {text[0]}") from exc
        raise describe_conversion_error(exc, model, "torch.onnx (TorchScript exporter)") from exc
    proto = onnx.load_from_string(buffer.getvalue())
    return proto, {"exporter": f"torch.onnx TorchScript exporter (opset {opset} < {DYNAMO_MIN_OPSET}, below the dynamo exporter's range)"}


def _too_large(exc: BaseException) -> bool:
    text = str(exc)
    return "2GB" in text or "2 GB" in text or "exceeds maximum protobuf size" in text


def default_opset(proto) -> int | None:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _strip_debug_metadata(proto) -> None:
    def clean(props):
        keep = [p for p in props if p.key not in _DEBUG_METADATA]
        del props[:]
        props.extend(keep)

    graph = proto.graph
    for node in graph.node:
        clean(node.metadata_props)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        clean(value.metadata_props)


def _name_dynamic_dims(proto, model) -> dict[str, dict[str, str]]:
    """Rename the exporter's symbols (``s77``) to the --dynamic names (``x_0``) wherever they occur,
    so outputs that follow an input's batch say so; returns {input: {axis: symbol}} for the manifest.

    Axes torch.export proved equal (two inputs concatenated along the batch) share one symbol,
    named after the first of them.
    """
    graph = proto.graph
    inputs = {value.name: value for value in graph.input}
    renames: dict[str, str] = {}
    for axis in model.dynamic:
        value = inputs.get(axis.input)
        if value is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if axis.axis >= len(dims) or not dims[axis.axis].dim_param:
            fixed = dims[axis.axis].dim_value if axis.axis < len(dims) else "?"
            raise ConversionError(f"the ONNX export fixed --dynamic {axis.input}:{axis.axis} to {fixed}")
        renames.setdefault(dims[axis.axis].dim_param, f"{axis.input}_{axis.axis}")
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    symbolic: dict[str, dict[str, str]] = {}
    for value in graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                symbolic.setdefault(value.name, {})[str(i)] = dim.dim_param
    return symbolic


def _refresh_shapes(proto) -> None:
    """Drop the exporter's value_info and infer it again.

    The dynamo exporter's value_info can disagree with the graph after its own optimisation
    (onnxruntime's quantizer then stops on "Inferred shape and existing shape differ").
    """
    import onnx

    del proto.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shape info is optional: a graph ONNX cannot infer still runs
        return
    proto.graph.value_info.extend(inferred.graph.value_info)


def save(proto, path: str) -> None:
    import onnx

    try:
        onnx.save_model(proto, path)
    except ValueError as exc:
        if os.path.exists(path):
            os.remove(path)
        if _too_large(exc):
            raise ConversionError(f"the exported model is too large: {_PROTOBUF_LIMIT}") from exc
        raise
