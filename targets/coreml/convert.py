"""ExportedModel -> coremltools MLModel: image inputs, classifier, frontend, ct.convert, naming.

Frontend default: torch.export. The shared ExportedProgram is made once per run for every target
(ExecuTorch and ONNX use it too); coremltools' torch.export frontend handles dict outputs,
transformers (nn.MultiheadAttention) and dynamic axes (torch.export.Dim -> RangeDim) where its
TorchScript frontend fails on the same models (dictconstruct, tracing checks), and torch.jit is
deprecated upstream. ``--coreml-frontend torchscript`` (torch.jit.trace) stays available: it is the
path coremltools has supported longest and covers a few ops the other lacks.
"""
from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import ConversionError, EdgekitError, UsageError, first_line
from edgekit.targets.coreml.settings import FORMAT_KIND, CoreMLSettings

# the (wrapped) module behind each torch.export source, so a failed conversion can be retried on
# coremltools' TorchScript frontend without a second wrapping
_MODULES: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
# recurrent ops: coremltools' TorchScript frontend maps them to one Core ML lstm/gru/rnn op, which
# beats decomposing them into an unrolled graph, so that route is tried first for them
_RECURRENT = {"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"}


@dataclass
class ImageInput:
    index: int
    name: str
    channels: int
    scale: float  # Core ML: model input = scale * pixel + bias[c]
    bias: list[float]
    color_layout: str
    normalize_in_graph: tuple[list[float], list[float]] | None  # (mean, std) when std differs per channel
    pixel_scale: list[float] = field(default_factory=list)  # overall per channel: model input = a_c * pixel + b_c
    pixel_bias: list[float] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"scale": self.pixel_scale, "bias": self.pixel_bias, "color_layout": self.color_layout,
                "normalization_in_graph": self.normalize_in_graph is not None}


def plan_image_input(model, settings: CoreMLSettings, options) -> ImageInput | None:
    """Which input becomes a Core ML image, and the scale/bias that reproduce --mean/--std."""
    if settings.image_input is None:
        return None
    candidates = [
        (i, spec) for i, spec in enumerate(model.inputs)
        if len(spec.shape) == 4 and spec.shape[0] == 1 and spec.shape[1] in (1, 3) and spec.dtype == "float32"
    ]
    if settings.image_input:
        chosen = [(i, s) for i, s in enumerate(model.inputs) if s.name == settings.image_input]
        if not chosen:
            raise UsageError(f"--image-input {settings.image_input}: no input of that name (inputs: {', '.join(s.name for s in model.inputs)})")
        if chosen[0] not in candidates:
            spec = chosen[0][1]
            raise UsageError(f"--image-input {spec.name}: an image input must be float32 1x3xHxW or 1x1xHxW, got {'x'.join(map(str, spec.shape))}:{spec.dtype}")
    elif not candidates:
        raise UsageError("--image-input: no input is shaped like an image (float32 1x3xHxW or 1x1xHxW)")
    else:
        chosen = candidates[:1]
    index, spec = chosen[0]
    if any(axis.input == spec.name for axis in model.dynamic):
        raise UsageError(f"--image-input {spec.name}: an image input needs a fixed size; drop --dynamic {spec.name}:...")
    channels = spec.shape[1]
    mean = _per_channel(options.mean, 0.0, channels, "--mean")
    std = _per_channel(options.std, 1.0, channels, "--std")
    layout = "GRAYSCALE" if channels == 1 else options.color_layout
    pixel_scale = [1.0 / (255.0 * s) for s in std]
    pixel_bias = [-m / s for m, s in zip(mean, std)]
    if len(set(std)) == 1:  # exact in Core ML's own preprocessing: one scale, a bias per channel
        return ImageInput(index, spec.name, channels, pixel_scale[0], pixel_bias, layout, None, pixel_scale, pixel_bias)
    # per-channel std: Core ML scales pixels to 0..1, the graph then normalizes each channel
    return ImageInput(index, spec.name, channels, 1.0 / 255.0, [0.0] * channels, layout, (mean, std), pixel_scale, pixel_bias)


def _per_channel(values, default: float, channels: int, flag: str) -> list[float]:
    if values is None:
        return [default] * channels
    if len(values) == 1:
        return [float(values[0])] * channels
    if len(values) != channels:
        raise UsageError(f"{flag}: {len(values)} values for an image input with {channels} channels")
    return [float(v) for v in values]


def classifier_mode(model, labels) -> str | None:
    """'softmax' (probabilities appended) or 'probabilities' (the output already is), for --labels."""
    if not labels:
        return None
    import torch

    from edgekit.export import flatten_outputs
    from edgekit.targets.coreml.wrappers import looks_like_probabilities

    with torch.no_grad():
        first = flatten_outputs(model.module(*model.example_inputs))[0]
    name = model.output_names[0]
    if first.dim() < 1 or first.shape[-1] != len(labels) or first.numel() != len(labels):
        raise UsageError(
            f"--labels has {len(labels)} labels but the model's first output {name} has shape "
            f"{'x'.join(map(str, first.shape))}; a classifier needs 1x{len(labels)} class scores"
        )
    return "probabilities" if looks_like_probabilities(first) else "softmax"


def make_source(model, module, settings: CoreMLSettings, image: ImageInput | None, classifier: str | None):
    """(what ct.convert takes: an ExportedProgram in ATEN dialect or a traced TorchScript module,
    the graph name of the classifier's probabilities tensor or None)."""
    from edgekit.targets.coreml import wrappers

    normalize = {image.index: image.normalize_in_graph} if image and image.normalize_in_graph else None
    plain = module is model.module and not wrappers.needs_wrapper(normalize, classifier)
    wrapped = module if plain else wrappers.CoreMLModule(
        module, normalize, classifier, probabilities_first=settings.format == "mlmodel").eval()
    try:
        if settings.frontend == "torchscript":
            source = wrappers.trace(wrapped, model.example_inputs)
        else:
            program = model.exported_program() if plain else wrappers.export(wrapped, model.example_inputs, model.dynamic_shapes())
            source = program.run_decompositions({})
            cast_like_inputs(source)
            _MODULES[source] = wrapped
        return source, (wrappers.output_name(source, 0 if wrapped.probabilities_first else -1) if classifier else None)
    except EdgekitError:
        raise
    except Exception as exc:
        how = "torch.jit.trace" if settings.frontend == "torchscript" else "torch.export"
        other = "torch.export" if settings.frontend == "torchscript" else "torchscript"
        raise ConversionError(f"{how} failed for Core ML: {first_line(exc)}", hint=f"try --coreml-frontend {other}") from exc


def cast_like_inputs(program) -> int:
    """Make ``zeros_like(x, dtype=D)`` (and ones_/full_/empty_like) read an ``x`` already cast to D.

    coremltools 9's torch.export frontend ignores the dtype keyword of these ops and gives the result
    x's dtype: PyTorch's boolean key padding mask (``masked_fill(zeros_like(mask, dtype=float32), mask,
    -inf)``) then stays boolean and attention reads it as "attend here", padding inverted (measured:
    cosine 0.81 on a transformer block). The cast is exact for the shape and the fill value alike.
    Rewrites ``program`` in place (a copy made for Core ML); returns the ops rewritten."""
    import torch

    aten = torch.ops.aten
    likes = {aten.zeros_like.default, aten.ones_like.default, aten.full_like.default, aten.empty_like.default}
    graph = program.graph_module.graph
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in likes or not isinstance(node.args[0], torch.fx.Node):
            continue
        dtype, source = node.kwargs.get("dtype"), node.args[0].meta.get("val")
        if dtype is None or not isinstance(source, torch.Tensor) or source.dtype == dtype:
            continue
        with graph.inserting_before(node):
            cast = graph.call_function(aten._to_copy.default, (node.args[0],), {"dtype": dtype})
        cast.meta["val"] = source.to(dtype)
        node.args = (cast, *node.args[1:])
        node.kwargs = {k: v for k, v in node.kwargs.items() if k != "dtype"}
        count += 1
    if count:
        program.graph_module.recompile()
    return count


def convert_inputs(ct, model, settings: CoreMLSettings, image: ImageInput | None) -> list:
    import numpy as np

    dynamic = {(a.input, a.axis): a for a in model.dynamic}
    out = []
    for index, spec in enumerate(model.inputs):
        if image is not None and index == image.index:
            out.append(ct.ImageType(
                name=spec.name, shape=spec.shape, scale=image.scale,
                bias=image.bias[0] if image.channels == 1 else image.bias,
                color_layout=getattr(ct.colorlayout, image.color_layout),
            ))
            continue
        flexible = [dynamic.get((spec.name, axis)) for axis in range(len(spec.shape))]
        if settings.frontend == "torch.export":
            # the ExportedProgram carries dtypes and dynamic dims; give the name (and fixed shapes). Integer
            # inputs (token ids) are pinned to int32: left to coremltools, an iOS16+ fp16 program takes them
            # as float16 and rounds ids above 2048 (measured on MiniLM: 14405 read as 14408)
            fixed = {} if any(flexible) else {"shape": spec.shape}
            integer = {"dtype": np.int32} if spec.dtype.startswith(("int", "uint")) else {}
            out.append(ct.TensorType(name=spec.name, **fixed, **integer))
            continue
        shape = [ct.RangeDim(a.min, a.max, default=d) if a else d for a, d in zip(flexible, spec.shape)]
        # float dtypes are left to coremltools (float I/O is made float32 after conversion)
        dtype = None if spec.dtype.startswith("float") else (np.bool_ if spec.dtype == "bool" else np.int32)
        out.append(ct.TensorType(name=spec.name, shape=ct.Shape(shape) if any(flexible) else spec.shape, dtype=dtype))
    return out


def run_converter(ct, source, model, settings: CoreMLSettings, precision: str, inputs, labels, probabilities: str | None):
    kind = FORMAT_KIND[settings.format]
    kwargs: dict[str, Any] = dict(
        inputs=inputs,
        convert_to=kind,
        minimum_deployment_target=getattr(ct.target, settings.deployment_target.replace(".", "_")),
        skip_model_load=True,  # no compilation: it would need macOS, and is not needed to save
    )
    if kind == "mlprogram":
        kwargs["compute_precision"] = ct.precision.FLOAT32 if precision == "none" else ct.precision.FLOAT16
    if labels:
        # named explicitly: coremltools would otherwise take the last op, which fp16 output casts reorder
        kwargs["classifier_config"] = ct.ClassifierConfig(list(labels), predicted_probabilities_output=probabilities)
    mlmodel, route = _convert_with_fallbacks(ct, source, model, settings, inputs, kwargs)
    mlmodel = float32_io(ct, mlmodel) if kind == "mlprogram" else mlmodel
    mlmodel._edgekit_route = route  # read by route_details()
    return mlmodel


def route_details(mlmodel) -> dict[str, Any]:
    """{"conversion_route": ...}: which of the converter's routes made this model (for the manifest)."""
    route = getattr(mlmodel, "_edgekit_route", None)
    return {"conversion_route": route} if route else {}


def _convert_with_fallbacks(ct, source, model, settings: CoreMLSettings, inputs, kwargs):
    """ct.convert, and when its torch.export frontend rejects an op, the converter's other documented
    routes, in turn: core-ATen decomposition of just that op (coremltools converts the pieces), and
    the TorchScript frontend (torch.jit.trace), which maps recurrent layers to Core ML's own
    lstm/gru ops. Returns (model, route facts); fails naming the op, its module and every route tried."""
    tried: list[str] = []
    decomposed: list[str] = []
    last_exc: BaseException | None = None
    while True:
        try:
            mlmodel = ct.convert(source, **kwargs)
            route = {"frontend": settings.frontend, "decomposed_ops": decomposed}
            if tried:
                route["after"] = tried
            return mlmodel, route
        except EdgekitError:
            raise
        except Exception as exc:
            last_exc = exc
            op = unsupported_op(exc)
            if settings.frontend != "torch.export" or op is None or len(decomposed) >= 8:
                break
            tried.append(f"torch.export: {op} unsupported")
            if op in _RECURRENT and source in _MODULES:
                break  # straight to TorchScript below
            smaller = _decompose(source, op)
            if smaller is None:
                break
            decomposed.append(op)
            _MODULES[smaller] = _MODULES.get(source)
            source = smaller
    # an int8 (PT2E) program stays on torch.export: the TorchScript frontend reads quantized_decomposed
    # ops with TorchScript's arity and fails on them ("quantize_per_tensor got 6 inputs")
    if settings.frontend == "torch.export" and source in _MODULES and not _quantized(source):
        try:
            mlmodel = _torchscript_route(ct, _MODULES[source], model, inputs, kwargs)
            return mlmodel, {"frontend": "torchscript (automatic fallback)", "after": tried}
        except EdgekitError:
            raise
        except Exception as exc:  # both frontends failed: say so, naming the op of each
            tried.append(f"torchscript: {first_line(exc)}")
    raise describe_error(last_exc, model, settings, tried) from last_exc


def _quantized(program) -> bool:
    """Whether an ExportedProgram holds quantized_decomposed (PT2E int8) ops."""
    return any(n.op == "call_function" and str(n.target).startswith("quantized_decomposed.")
               for n in program.graph_module.graph.nodes)


def unsupported_op(exc: BaseException) -> str | None:
    """The torch op name coremltools says it has no converter for ('new_ones', 'lstm'), or None."""
    text = str(exc)
    found = next((m.group(1) for m in (p.search(text) for p in _OP_PATTERNS[:3]) if m), None)
    return found.split(".")[0] if found else _failing_torch_node(exc)


def _decompose(program, op: str):
    """``program`` with every overload of aten.``op`` decomposed into core ATen (or renamed, for the
    Python-operator aliases), or None when torch has no decomposition for it."""
    import torch

    aten = torch.ops.aten
    # Python operators on bool masks (transformers' attention masks): the same op under its plain
    # name, which coremltools converts (to logical_and/or/xor on bool inputs)
    aliases = {"__and__": aten.bitwise_and.Tensor, "__or__": aten.bitwise_or.Tensor, "__xor__": aten.bitwise_xor.Tensor}
    if op in aliases:
        nodes = [n for n in program.graph_module.graph.nodes if n.op == "call_function"
                 and isinstance(n.target, torch._ops.OpOverload) and n.target.overloadpacket.__name__ == op
                 and all(isinstance(a, torch.fx.Node) for a in n.args)]
        for node in nodes:
            node.target = aliases[op]
        program.graph_module.recompile()
        return program if nodes else None
    table = torch.export.default_decompositions()
    overloads = {
        node.target for node in program.graph_module.graph.nodes
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
        and node.target.overloadpacket.__name__ == op and node.target in table
    }
    if not overloads:
        return None
    try:
        return program.run_decompositions({o: table[o] for o in overloads})
    except Exception:  # a decomposition that does not trace for this graph: try the next route
        return None


def _torchscript_route(ct, module, model, inputs, kwargs):
    """coremltools' TorchScript frontend on a torch.jit.trace of the same (wrapped) module."""
    import numpy as np

    from edgekit.targets.coreml import wrappers

    traced = wrappers.trace(module, model.example_inputs)
    ts_inputs = []
    for spec, given in zip(model.inputs, inputs):
        if isinstance(given, ct.ImageType):
            ts_inputs.append(given)
            continue
        dtype = None if spec.dtype.startswith("float") else (np.bool_ if spec.dtype == "bool" else np.int32)
        shape = given.shape if getattr(given, "shape", None) is not None else spec.shape
        ts_inputs.append(ct.TensorType(name=spec.name, shape=shape, dtype=dtype))
    return ct.convert(traced, **{**kwargs, "inputs": ts_inputs})


def float32_io(ct, mlmodel):
    """From iOS16 on coremltools gives fp16-compute models float16 inputs and outputs; edgekit's
    --io float means float32 (what apps and the other targets use). Asking for float32 in ct.convert
    instead trips a coremltools bug when a classifier keeps extra outputs, so the I/O is changed after."""
    from coremltools.proto import FeatureTypes_pb2

    fp16 = FeatureTypes_pb2.ArrayFeatureType.FLOAT16
    description = mlmodel.get_spec().description
    half_inputs = [f.name for f in description.input
                   if f.type.WhichOneof("Type") == "multiArrayType" and f.type.multiArrayType.dataType == fp16]
    half_outputs = [f.name for f in description.output
                    if f.type.WhichOneof("Type") == "multiArrayType" and f.type.multiArrayType.dataType == fp16]
    if not half_inputs and not half_outputs:
        return mlmodel
    return ct.utils.change_input_output_tensor_type(
        mlmodel, from_type=fp16, to_type=FeatureTypes_pb2.ArrayFeatureType.FLOAT32,
        input_names=half_inputs, output_names=half_outputs or None,
    )


_OP_PATTERNS = (
    re.compile(r"Unsupported fx node \w+, kind ([\w.]+)"),
    re.compile(r"Unsupported fx node (\w+)"),
    re.compile(r"convert function for op '(\w+)'"),
    re.compile(r"(?:aten|torch\.ops\.\w+)[.:]+(\w+)"),
)


def describe_error(exc: BaseException, model, settings: CoreMLSettings, tried: list[str] | None = None) -> ConversionError:
    """Name the op coremltools rejected and where it sits, and say what to try instead: the other
    frontend only when it has not been tried already (no advice that leads back here)."""
    from edgekit.export import describe_conversion_error, locate_op

    other = "torchscript" if settings.frontend == "torch.export" else "torch.export"
    later = "iOS18" if settings.spec_version < 9 else None
    both_tried = bool(tried) and any(t.startswith("torchscript") for t in tried)
    hint = ("" if both_tried else f"try --coreml-frontend {other}, ") + \
        (f"a later --deployment-target (e.g. {later}), " if later else "") + \
        "or rewrite that layer with ops coremltools supports (or register a coremltools op converter for it)"
    context = f"frontend {settings.frontend}, deployment target {settings.deployment_target}"
    if tried:
        context += "; tried: " + "; ".join(tried)
    text = str(exc)
    unsupported = next((m.group(1).split(".")[0] for m in (p.search(text) for p in _OP_PATTERNS[:3]) if m), None)
    failing = None if unsupported else _failing_torch_node(exc)  # an op whose converter raised
    op = unsupported or failing or next((m.group(1) for m in [_OP_PATTERNS[3].search(text)] if m), None)
    if op is not None:
        where = locate_op(model, op)
        cause = f"{first_line(exc)}; " if failing else ""
        return ConversionError(
            f"coremltools cannot convert op aten.{op}" + (f" at {where}" if where else "") + f" ({cause}{context})",
            hint=hint,
        )
    err = describe_conversion_error(exc, model, "coremltools")
    err.hint = hint
    return err


def finish(ct, mlmodel, model, settings: CoreMLSettings, labels, image: ImageInput | None,
           user_metadata: dict[str, str], description: str):
    """Name outputs after the model's, write metadata, and return the MLModel to save."""
    spec = mlmodel.get_spec()
    arrays = [f.name for f in spec.description.output if f.type.WhichOneof("Type") == "multiArrayType"]
    if len(arrays) != len(model.output_names):
        raise ConversionError(
            f"coremltools produced {len(arrays)} tensor outputs for a model with {len(model.output_names)} "
            f"({', '.join(model.output_names)})"
        )
    if labels:
        probabilities = spec.description.predictedProbabilitiesName
        if not probabilities:
            raise ConversionError("coremltools did not attach the classifier's probabilities output")
        source_op = _probabilities_source(spec)
        if source_op not in ("softmax", "softmaxND", "relu", "activation"):
            raise ConversionError(f"coremltools fed the classifier from a {source_op} op instead of the probabilities")
        wanted = f"{spec.description.predictedFeatureName}_probs"  # the ML Program name, for both formats
        if probabilities != wanted:
            ct.utils.rename_feature(spec, probabilities, wanted)
    # rename through temporary names: a wanted name may already belong to another output
    for i, old in enumerate(arrays):
        if old != model.output_names[i]:
            ct.utils.rename_feature(spec, old, f"edgekit_tmp_{i}")
    for i, old in enumerate(arrays):
        if old != model.output_names[i]:
            ct.utils.rename_feature(spec, f"edgekit_tmp_{i}", model.output_names[i])
    meta = spec.description.metadata
    meta.shortDescription = settings.metadata.get("description", description)
    for key, attr in (("author", "author"), ("license", "license"), ("version", "versionString")):
        if key in settings.metadata:
            setattr(meta, attr, settings.metadata[key])
    for key, value in user_metadata.items():
        meta.userDefined[key] = value
    for feature in spec.description.input:
        if image is not None and feature.name == image.name:
            layout = image.color_layout.lower()
            feature.shortDescription = (
                f"{layout} image, 8-bit pixels; the model sees scale * pixel + bias per channel "
                f"(scale {', '.join(f'{v:.6g}' for v in image.pixel_scale)}; bias {', '.join(f'{v:.6g}' for v in image.pixel_bias)})"
            )
    if labels:
        for feature in spec.description.output:
            if feature.name == spec.description.predictedFeatureName:
                feature.shortDescription = f"most likely of {len(labels)} class labels"
            elif feature.name == spec.description.predictedProbabilitiesName:
                feature.shortDescription = "probability of each class label"
    weights = mlmodel.weights_dir if FORMAT_KIND[settings.format] == "mlprogram" else None
    return ct.models.MLModel(spec, weights_dir=weights, skip_model_load=True)


def _failing_torch_node(exc: BaseException) -> str | None:
    """The op coremltools' PyTorch frontend was converting when it raised (its per-node loop keeps the
    node in a local of ``convert_single_node``), when the message itself does not name it."""
    tb = exc.__traceback__
    kind = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "convert_single_node":
            node = tb.tb_frame.f_locals.get("node")
            kind = getattr(node, "kind", None) or kind
        tb = tb.tb_next
    return str(kind).split("::")[-1].split(".")[0] if kind else None


def _probabilities_source(spec) -> str | None:
    """The op type that computes what the classifier turns into class probabilities (casts skipped)."""
    if spec.HasField("neuralNetworkClassifier"):
        blob = spec.neuralNetworkClassifier.labelProbabilityLayerName
        layers = {out: layer for layer in spec.neuralNetworkClassifier.layers for out in layer.output}
        return layers[blob].WhichOneof("layer") if blob in layers else None
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    producers = {out.name: op for op in block.operations for out in op.outputs}
    classify = next((op for op in block.operations if op.type == "classify"), None)
    if classify is None:
        return None
    name = classify.inputs["probabilities"].arguments[0].name
    while name in producers and producers[name].type == "cast":
        name = producers[name].inputs["x"].arguments[0].name
    return producers[name].type if name in producers else None
