"""Students: ``auto`` (a shallower transformer encoder, or a narrower CNN / MLP), a factory, or a file.

auto, transformer encoders (Hugging Face BERT-like models, nn.TransformerEncoder): keep every k-th
layer of each stack of identical attention layers, initialised from the teacher's kept layers and
its embeddings (the DistilBERT recipe: a copy of the teacher with layers removed).

auto, CNNs and MLPs: a copy whose Conv/Linear layers keep ``width`` of their output channels, the
channels with the largest L1 weight norm (the teacher's own filters, so training starts close).
This is safe only when channels flow along a chain: the model is traced with torch.fx and refused,
naming the node, at any op that couples channels of two layers (a residual add, a concatenation),
at grouped convolutions, and at layers called twice. The layers that produce the model's outputs
keep their width, so the student's outputs have the teacher's shapes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import ModelLoadError, UsageError

_REFUSAL_HINT = "pass --student package.module:factory or a student model file"


@dataclass
class Student:
    module: Any
    description: str
    # (teacher module name, student module name) whose outputs the hidden-state loss may match
    hidden_pairs: list[tuple[str, str]] = field(default_factory=list)
    source: str = "auto"


def parse_keep_layers(text: str | int, total: int) -> list[int]:
    """``k`` keeps every k-th layer, counted so the last layer stays; ``0,2,5`` names layers."""
    text = str(text).strip()
    try:
        if "," in text:
            kept = sorted({int(p) for p in text.split(",") if p.strip()})
        else:
            step = int(text)
            if step < 1:
                raise ValueError
            kept = list(range(total - 1, -1, -step))[::-1]
    except ValueError:
        raise UsageError(f"--keep-layers {text!r}: expected k (keep every k-th layer) or indices like 0,2,5") from None
    if not kept or kept[0] < 0 or kept[-1] >= total:
        raise UsageError(f"--keep-layers {text!r}: the teacher's encoder has layers 0..{total - 1}")
    if len(kept) == total:
        raise UsageError(f"--keep-layers {text!r} keeps all {total} layers; the student would be the teacher")
    return kept


def _is_attention_layer(module) -> bool:
    import torch.nn as nn

    if isinstance(module, nn.TransformerEncoderLayer):
        return True
    name = type(module).__name__
    if not (name.endswith("Layer") or name.endswith("Block")):
        return False
    return any(isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower() for m in module.modules())


def transformer_stacks(model) -> list[tuple[str, Any]]:
    """(name, ModuleList) of every stack of two or more identical attention layers."""
    import torch.nn as nn

    stacks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) >= 2:
            kinds = {type(m) for m in module}
            if len(kinds) == 1 and _is_attention_layer(module[0]):
                stacks.append((name, module))
    return stacks


def drop_layers(teacher, keep_layers: str | int) -> Student:
    import torch.nn as nn

    stacks = transformer_stacks(teacher)
    student = copy.deepcopy(teacher)
    pairs, notes = [], []
    for name, stack in stacks:
        kept = parse_keep_layers(keep_layers, len(stack))
        new_stack = nn.ModuleList([copy.deepcopy(stack[i]) for i in kept])
        student.set_submodule(name, new_stack)
        _update_layer_counts(student, name, len(stack), len(kept))
        pairs += [(f"{name}.{t}", f"{name}.{s}") for s, t in enumerate(kept)]
        notes.append(f"{name}: layers {','.join(map(str, kept))} of {len(stack)}")
    return Student(student, "auto: transformer encoder, kept " + "; ".join(notes), pairs)


def _update_layer_counts(student, stack_name: str, old: int, new: int) -> None:
    """Keep the facts that describe depth (nn.TransformerEncoder.num_layers, HF config) true."""
    parent_name = stack_name.rpartition(".")[0]
    parent = student.get_submodule(parent_name) if parent_name else student
    if getattr(parent, "num_layers", None) == old:
        parent.num_layers = new
    for module in student.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "num_hidden_layers", None) == old:
            config.num_hidden_layers = new


# ---- width reduction for chains of Conv / Linear layers ----------------------------------------

_PASS_MODULES = (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid",
    "Tanh", "LeakyReLU", "ELU", "Hardswish", "Hardsigmoid", "Mish", "Dropout", "Dropout1d", "Dropout2d",
    "Identity", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "Flatten", "Softmax", "LogSoftmax",
)
_PASS_FUNCTIONS = {
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "elu", "hardswish", "dropout",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "flatten", "softmax", "log_softmax", "contiguous", "size", "view", "reshape", "mean", "amax", "getattr",
    "getitem", "relu_", "dim",
}
_LAYERS = ("Conv1d", "Conv2d", "Conv3d", "Linear")


def _refuse(model, why: str) -> UsageError:
    return UsageError(f"--student auto cannot shrink {type(model).__name__}: {why}; {_REFUSAL_HINT}")


def _callable_name(node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _trace_chain(model, example_inputs):
    """Per Conv/Linear layer: the layer feeding it (None for a model input) and how; output layers."""
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        graph_module = torch.fx.symbolic_trace(model)
        ShapeProp(graph_module).propagate(*example_inputs)
    except Exception as exc:
        raise _refuse(model, f"torch.fx cannot trace it ({type(exc).__name__})") from None
    source: dict[Any, str | None] = {}  # node -> name of the layer whose channels it carries
    feeds: dict[str, str | None] = {}  # layer -> layer feeding it
    followers: dict[str, list[str]] = {}  # layer -> channel-following modules (BatchNorm, LayerNorm)
    seen_modules: set[str] = set()
    for node in graph_module.graph.nodes:
        tensor_args = [a for a in node.all_input_nodes if a.meta.get("tensor_meta") is not None]
        carried = {source.get(a) for a in tensor_args}
        if node.op == "placeholder":
            source[node] = None
            continue
        if node.op == "output":
            outputs = {source.get(a) for a in node.all_input_nodes}
            return graph_module, feeds, followers, {o for o in outputs if o}
        if node.op == "get_attr":
            raise _refuse(model, f"node {node.name!r} reads a parameter directly in forward()")
        if len(carried) > 1:
            raise _refuse(model, f"node {node.name!r} ({_callable_name(node)}) combines the channels of two layers (a residual add or a concatenation)")
        upstream = next(iter(carried), None)
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            kind = type(module).__name__
            if node.target in seen_modules:
                raise _refuse(model, f"module {node.target!r} is called twice")
            seen_modules.add(node.target)
            if kind in _LAYERS:
                if getattr(module, "groups", 1) != 1:
                    raise _refuse(model, f"{node.target!r} is a grouped convolution (groups={module.groups})")
                feeds[node.target] = upstream
                source[node] = node.target
            elif kind in _PASS_MODULES:
                if kind.startswith(("BatchNorm", "LayerNorm")) and upstream is not None:
                    followers.setdefault(upstream, []).append(node.target)
                source[node] = upstream
            else:
                raise _refuse(model, f"module {node.target!r} ({kind}) is not a layer auto knows how to narrow")
        elif node.op in ("call_function", "call_method"):
            name = _callable_name(node)
            if name not in _PASS_FUNCTIONS:
                raise _refuse(model, f"node {node.name!r} calls {name}, which auto does not know to be channel-safe")
            source[node] = upstream
    raise _refuse(model, "its graph has no output")


def _top_channels(weight, count: int):
    import torch

    scores = weight.detach().abs().reshape(weight.shape[0], -1).sum(dim=1)
    return torch.sort(torch.topk(scores, count).indices).values


def shrink_width(teacher, example_inputs, width: float) -> Student:
    import torch

    if not 0.0 < width < 1.0:
        raise UsageError(f"--width {width}: expected a fraction between 0 and 1, e.g. 0.5")
    graph_module, feeds, followers, output_layers = _trace_chain(teacher, example_inputs)
    layers = {name: teacher.get_submodule(name) for name in feeds}
    if not layers:
        raise _refuse(teacher, "it has no Conv or Linear layers")
    shrinkable = [n for n in layers if n not in output_layers]
    if not shrinkable:
        raise _refuse(teacher, "every layer produces an output, so none can be narrowed")
    kept: dict[str, Any] = {}
    for name in shrinkable:
        out = layers[name].weight.shape[0]
        kept[name] = _top_channels(layers[name].weight, max(1, round(out * width)))
    student = copy.deepcopy(teacher)
    for name, layer in layers.items():
        weight = layer.weight.detach()
        bias = None if layer.bias is None else layer.bias.detach()
        if name in kept:
            weight = weight[kept[name]]
            bias = None if bias is None else bias[kept[name]]
        upstream = feeds[name]
        if upstream in kept:
            in_index = kept[upstream]
            up_channels = layers[upstream].weight.shape[0]
            if weight.shape[1] != up_channels:  # a Linear after flatten: each channel spans a block
                if weight.shape[1] % up_channels:
                    raise _refuse(teacher, f"{name!r} takes {weight.shape[1]} features from {up_channels} channels")
                block = weight.shape[1] // up_channels
                in_index = (in_index[:, None] * block + torch.arange(block)[None, :]).reshape(-1)
            weight = weight[:, in_index]
        new = _rebuilt(layer, weight, bias)
        student.set_submodule(name, new)
        for follower in followers.get(name, []) if name in kept else []:
            student.set_submodule(follower, _sliced_norm(teacher.get_submodule(follower), kept[name]))
    total_t = sum(p.numel() for p in teacher.parameters())
    total_s = sum(p.numel() for p in student.parameters())
    try:
        with torch.no_grad():
            student.eval()(*example_inputs)
    except Exception as exc:
        raise _refuse(teacher, f"the narrowed copy does not run ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}), "
                      "e.g. forward() hard-codes a channel count") from None
    pairs = [(n, n) for n in shrinkable]
    desc = f"auto: width {width:g} of {len(shrinkable)} layers ({total_t:,} -> {total_s:,} parameters)"
    return Student(student, desc, pairs)


def _rebuilt(layer, weight, bias):
    """A fresh layer of the same kind and settings with the given weights."""
    import torch.nn as nn

    if isinstance(layer, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = type(layer)(
            weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
            dilation=layer.dilation, bias=bias is not None, padding_mode=layer.padding_mode,
        )
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new.to(weight.dtype)


def _sliced_norm(norm, index):
    import torch.nn as nn

    new = copy.deepcopy(norm)
    n = len(index)
    if isinstance(norm, nn.LayerNorm):
        new.normalized_shape = (n,)
    else:
        new.num_features = n
    for attr in ("weight", "bias"):
        p = getattr(norm, attr, None)
        if p is not None:
            setattr(new, attr, nn.Parameter(p.detach()[index].clone()))
    for attr in ("running_mean", "running_var"):
        b = getattr(norm, attr, None)
        if b is not None:
            setattr(new, attr, b.detach()[index].clone())
    return new


def auto_student(teacher, example_inputs, *, keep_layers: str | int = 2, width: float = 0.5) -> Student:
    if transformer_stacks(teacher):
        return drop_layers(teacher, keep_layers)
    return shrink_width(teacher, example_inputs, width)


def make_student(
    spec: str,
    teacher,
    example_inputs,
    *,
    keep_layers: str | int = 2,
    width: float = 0.5,
    arch: str | None = None,
    trust_pickle: bool = False,
) -> Student:
    """``auto``, ``package.module:factory``, or a model file (a state_dict needs ``arch``)."""
    import torch

    if spec == "auto":
        student = auto_student(teacher, example_inputs, keep_layers=keep_layers, width=width)
    else:
        from edgekit.loading import load_model

        is_factory = ":" in spec and not Path(spec).exists()
        loaded = load_model(None if is_factory else spec, arch=arch, model=spec if is_factory else None, trust_pickle=trust_pickle)
        if loaded.module is None or isinstance(loaded.module, torch.jit.ScriptModule):
            raise UsageError(
                f"--student {spec}: a {loaded.form.replace('_', ' ')} has fixed shapes and cannot be trained; "
                "pass its state_dict with --student-arch, or package.module:factory"
            )
        student = Student(loaded.module, f"{loaded.form}: {loaded.source}", source=loaded.source)
    try:
        with torch.no_grad():
            student.module.eval()(*example_inputs)
    except Exception as exc:
        raise ModelLoadError(
            f"the student rejects the teacher's inputs ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from exc
    for p in student.module.parameters():
        p.requires_grad_(True)
    return student
