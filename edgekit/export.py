"""Prepare a loaded model for every target: input specs, eval checks, reference run, FLOPs, and one
shared ``torch.export`` (made lazily, once, by whichever target needs it first).

Why lazy: some converters (litert-torch) export internally from an nn.Module and cannot take an
ExportedProgram; exporting up front for them would double the work. Targets that consume an
ExportedProgram (ExecuTorch, ONNX, Core ML) share the single cached one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from edgekit.errors import ConversionError, ModelLoadError, UsageError
from edgekit.loading import LoadedModel
from edgekit.options import DynamicAxis, InputSpec

log = logging.getLogger(__name__)

_TORCH_DTYPES = {
    "float32": "float32", "float16": "float16", "int64": "int64", "int32": "int32",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
}


@dataclass
class ExportedModel:
    """A model ready for conversion: the eager module, its inputs and names, and shared facts."""

    module: Any  # torch.nn.Module in eval mode (for an ExportedProgram file: ep.module())
    inputs: list[InputSpec]
    output_names: list[str]
    example_inputs: tuple  # torch tensors, one per input, shaped like the specs
    flops: int | None
    dynamic: tuple[DynamicAxis, ...] = ()
    source_form: str = "state_dict"
    warnings: list[str] = field(default_factory=list)
    _exported_program: Any = None
    _output_treespec: Any = None

    def exported_program(self):
        """The torch.export ExportedProgram, made once and shared by every target."""
        if self._exported_program is None:
            import torch

            import contextlib

            from torch.fx.experimental import _config as fx_config

            dynamic_shapes = self.dynamic_shapes()
            # With a size-1 example on a dynamic axis, torch.export specialises the axis to 1 (and
            # then reports a violated constraint); size-oblivious tracing keeps it symbolic, as
            # torch.onnx does internally.
            oblivious = fx_config.patch(backed_size_oblivious=True) if dynamic_shapes else contextlib.nullcontext()
            try:
                with oblivious:
                    self._exported_program = torch.export.export(
                        self.module, self.example_inputs, dynamic_shapes=dynamic_shapes, strict=False
                    )
            except Exception as exc:
                raise ConversionError(f"torch.export failed: {_describe_export_error(exc)}") from exc
        return self._exported_program

    def dynamic_shapes(self):
        if not self.dynamic:
            return None
        import torch

        spec: list[dict | None] = [None] * len(self.inputs)
        names = [i.name for i in self.inputs]
        for axis in self.dynamic:
            if axis.input not in names:
                raise UsageError(f"--dynamic {axis.input}:{axis.axis}: no input named {axis.input!r} (inputs: {', '.join(names)})")
            idx = names.index(axis.input)
            if axis.axis >= len(self.inputs[idx].shape):
                raise UsageError(f"--dynamic {axis.input}:{axis.axis}: input has only {len(self.inputs[idx].shape)} axes")
            spec[idx] = spec[idx] or {}
            spec[idx][axis.axis] = torch.export.Dim(f"{axis.input}_{axis.axis}", min=axis.min, max=axis.max)
        return tuple(spec)

    def reference_many(self, samples: Sequence[Sequence[Any]], chunk: int = 32) -> list[list[Any]]:
        """Eager outputs for many samples. Batch-1 samples run as batches of up to ``chunk`` (one
        forward pass instead of N: 5 s instead of 60 s for 32 EfficientNet-Lite0 images here), after
        checking on the first sample that the model gives the same answer batched; models that do not
        (a hard-coded batch of 1, batch-dependent ops) run sample by sample."""
        import numpy as np

        samples = list(samples)
        if len(samples) < 2 or any(spec.shape[0] != 1 for spec in self.inputs):
            return [self.reference(s) for s in samples]
        first = self.reference(samples[0])
        out: list[list[Any]] = []
        try:
            for start in range(0, len(samples), chunk):
                group = samples[start : start + chunk]
                batched = self.reference([np.concatenate([s[i] for s in group]) for i in range(len(self.inputs))])
                if any(np.asarray(b).shape[:1] != (len(group),) for b in batched):
                    raise ValueError("outputs are not batched along the first axis")
                out.extend([[np.asarray(b)[j : j + 1] for b in batched] for j in range(len(group))])
        except Exception:
            return [self.reference(s) for s in samples]
        if not all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(first, out[0])):
            return [self.reference(s) for s in samples]
        return out

    def reference(self, sample: Sequence[Any]) -> list[Any]:
        """Eager PyTorch outputs for one sample (numpy arrays in, flat numpy arrays out)."""
        import torch

        tensors = tuple(torch.from_numpy(_np_array(a)) for a in sample)
        with torch.no_grad():
            out = self.module(*tensors)
        return [t.detach().float().numpy() if t.is_floating_point() else t.detach().numpy() for t in flatten_outputs(out)]


def _np_array(a):
    import numpy as np

    return np.ascontiguousarray(a)


def flatten_outputs(out) -> list:
    """Tensors of a (possibly nested) tuple / list / dict output, in torch.utils._pytree order."""
    import torch
    from torch.utils import _pytree as pytree

    leaves, _ = pytree.tree_flatten(out)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def output_names_of(out) -> list[str]:
    """Names for flattened outputs: dict keys where there are some, else output_0, output_1, ..."""
    import torch
    from torch.utils import _pytree as pytree

    paths, _ = pytree.tree_flatten_with_path(out)
    names = []
    for i, (path, leaf) in enumerate(p for p in paths if isinstance(p[1], torch.Tensor)):
        keys = [str(getattr(k, "key", getattr(k, "idx", ""))) for k in path]
        names.append("_".join(keys) if keys and isinstance(out, dict) else f"output_{i}")
    return names


def prepare(
    loaded: LoadedModel,
    inputs: Sequence[InputSpec] | None = None,
    dynamic: Sequence[DynamicAxis] = (),
    seed: int = 0,
) -> ExportedModel:
    """Decide the input specs, check the model runs on them, count FLOPs and name the outputs."""
    import torch

    module = loaded.module
    specs = list(inputs or [])
    if loaded.exported is not None:
        module = loaded.exported.module()
        if not specs and loaded.example_inputs is not None:
            names = loaded.input_names or [f"input_{i}" for i in range(len(loaded.example_inputs))]
            specs = [
                InputSpec(n, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""))
                for n, t in zip(names, loaded.example_inputs)
            ]
    if not specs:
        raise UsageError("the model's input shape is unknown: pass --input NAME:SHAPE[:DTYPE], e.g. --input x:1x3x224x224")

    example = tuple(_example_tensor(spec, seed + i) for i, spec in enumerate(specs))
    if loaded.form == "torchscript":
        module = _torchscript_as_module(module, example)

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            out = module(*example)
    except Exception as exc:
        # integer inputs may be indices into something small (a position table, a cache slot):
        # token-like random ids are then out of range, while all-zero ids are valid for any table
        retry = _zero_integer_inputs(example)
        out = None
        if retry is not None:
            try:
                with torch.no_grad(), counter:
                    out = module(*retry)
                example = retry
            except Exception:
                out = None
        if out is None:
            shapes = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in specs)
            raise ModelLoadError(
                f"the model rejects inputs {shapes}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                hint="check --input (NAME:SHAPE[:DTYPE], one per model argument)",
            ) from exc
    flat = flatten_outputs(out)
    if not flat:
        raise ModelLoadError("the model returned no tensors")
    try:
        flops = int(counter.get_total_flops())
    except Exception:  # counting is best effort: a custom op without a formula
        flops = None
    return ExportedModel(
        module=module,
        inputs=specs,
        output_names=output_names_of(out),
        example_inputs=example,
        flops=flops,
        dynamic=tuple(dynamic),
        source_form=loaded.form,
        warnings=list(loaded.warnings),
        _exported_program=loaded.exported if not dynamic else None,
    )


def _zero_integer_inputs(example: tuple):
    """The example with every integer input set to 0, or None when it has no integer input."""
    import torch

    if not any(not t.dtype.is_floating_point and t.dtype != torch.bool for t in example):
        return None
    return tuple(t if t.dtype.is_floating_point or t.dtype == torch.bool else torch.zeros_like(t) for t in example)


def _example_tensor(spec: InputSpec, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, _TORCH_DTYPES[spec.dtype])
    if dtype.is_floating_point:
        return torch.randn(spec.shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.ones(spec.shape, dtype=torch.bool)
    # integer inputs are usually token ids: keep them small and valid for any vocabulary
    return torch.randint(0, 100, spec.shape, generator=gen, dtype=dtype)


def _torchscript_as_module(script_module, example):
    """torch.export cannot trace into TorchScript: convert it to an ExportedProgram first.

    An archive that keeps state between calls in attributes (a voice-activity model assigning
    ``self.h`` / ``self.c`` in forward) has no such route: an exported program has no hidden state,
    and PyTorch's converter fails on it with an internal assert. It is named before converting."""
    state = torchscript_state_attributes(script_module)
    if state:
        raise ConversionError(
            f"the TorchScript archive keeps state between calls in attribute(s) {', '.join(state)} (assigned in "
            "forward); edgekit reads TorchScript through torch.export, whose programs take no hidden state",
            hint="save the eager model with that state as inputs and outputs (forward(x, h, c) -> (y, h, c)) as a "
            "state_dict, factory or torch.export.save .pt2, and convert it with --state OUT=IN to verify it step by step",
        )
    try:
        from torch._export.converter import TS2EPConverter

        ep = TS2EPConverter(script_module, example).convert()
        return ep.module()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ConversionError(
            f"cannot convert the TorchScript archive for export: PyTorch's TorchScript converter failed "
            f"({type(exc).__name__}: {first})",
            hint="save the eager model as a state_dict, factory or torch.export.save .pt2 instead",
        ) from exc


def torchscript_state_attributes(script_module) -> list[str]:
    """'lstm_state.h' for each attribute a TorchScript module (or a submodule) assigns in a method:
    state kept between calls."""
    found = []
    for prefix, module in script_module.named_modules():
        methods = getattr(getattr(module, "_c", None), "_method_names", lambda: ["forward"])()
        for method_name in methods:
            method = getattr(module, method_name, None)
            graph = getattr(method, "graph", None)
            if graph is None:
                continue
            for node in graph.findAllNodes("prim::SetAttr"):
                name = f"{prefix}.{node.s('name')}" if prefix else node.s("name")
                if name not in found:
                    found.append(name)
    return found


def _describe_export_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def failing_fx_node(exc: BaseException):
    """The torch.fx node a converter was processing when it raised, if it ran one.

    Converters built on torch.fx.Interpreter (litert-torch's lowering, many ExecuTorch passes) call
    ``run_node(self, n)`` per node: the innermost such frame in the traceback names the op that broke,
    even when the exception text does not.
    """
    import torch.fx

    node = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("n") if tb.tb_frame.f_code.co_name == "run_node" else None
            if isinstance(candidate, torch.fx.Node) and candidate.op == "call_function":
                node = candidate
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return node


def node_location(node) -> str | None:
    """'encoder.layer.0 (Linear)': the module a graph node came from (its nn_module_stack), or None."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    cls_name = getattr(cls, "__name__", str(cls)).split(".")[-1].rstrip("'>")
    return f"{path or '<root>'} ({cls_name})"


def _op_name(target) -> str:
    """'aten.erfinv' for the OpOverload aten.erfinv.default; overload names other than default kept."""
    name = str(target)
    return name[: -len(".default")] if name.endswith(".default") else name


def describe_conversion_error(exc: BaseException, model: "ExportedModel", converter: str):
    """A ConversionError naming the unsupported op and the module it sits in, when we can find it."""
    import re

    hint = "try another --quantize, another target, or rewrite that layer with supported ops"
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    node = failing_fx_node(exc)
    if node is not None:
        where = node_location(node) or locate_op(model, str(node.target).split(".")[1] if "." in str(node.target) else str(node.target))
        message = f"{converter} cannot convert op {_op_name(node.target)}" + (f" at {where}" if where else "")
        return ConversionError(f"{message} ({type(exc).__name__}: {first})", hint=hint)
    ops = re.findall(r"(?:aten|torch\.ops\.\w+)[.:]+(\w+)(?:\.\w+)?", f"{exc}")
    if ops:
        where = locate_op(model, ops[0])
        return ConversionError(f"{converter} cannot convert op aten.{ops[0]}" + (f" at {where}" if where else ""), hint=hint)
    return ConversionError(f"{converter} failed: {type(exc).__name__}: {first}", hint="--verbose shows where")


def locate_op(model: "ExportedModel", op_name: str) -> str | None:
    """'features.3 (MyLayer)': where in the module tree the first node calling ``op_name`` sits."""
    try:
        ep = model.exported_program()
    except Exception:
        return None
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        parts = str(node.target).split(".")
        if op_name in parts:
            return node_location(node) or node.name
    return None
