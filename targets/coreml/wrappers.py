"""The user's module as Core ML should see it (imported only while converting: it imports torch).

Core ML wants flat tuple outputs; an image input with per-channel std needs the normalization inside
the graph (Core ML's image preprocessing has one scale for all channels); a classifier needs a
probabilities tensor computed last, which coremltools' ``classify`` op then consumes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.utils import _pytree as pytree


class CoreMLModule(nn.Module):
    """``inner`` with flat tuple outputs, optional per-input normalization, optional probabilities.

    ``normalize``: {input index: (mean, std)} applied as ``(x - mean) / std`` per channel (axis 1).
    ``classifier``: None, "softmax" (append softmax of the first output) or "probabilities" (the first
    output already holds probabilities: pass it through a no-op relu so that it is a tensor of its
    own, and every model output stays an output for verification).
    """

    def __init__(self, inner: nn.Module, normalize: Mapping[int, tuple[Sequence[float], Sequence[float]]] | None = None,
                 classifier: str | None = None, probabilities_first: bool = False):
        super().__init__()
        self.inner = inner
        self.classifier = classifier
        self.probabilities_first = probabilities_first
        self._normalized = sorted((normalize or {}).keys())
        for index, (mean, std) in (normalize or {}).items():
            self.register_buffer(f"mean_{index}", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
            self.register_buffer(f"std_{index}", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, *inputs):
        inputs = list(inputs)
        for index in self._normalized:
            inputs[index] = (inputs[index] - getattr(self, f"mean_{index}")) / getattr(self, f"std_{index}")
        outputs = tuple(leaf for leaf in pytree.tree_leaves(self.inner(*inputs)) if isinstance(leaf, torch.Tensor))
        if self.classifier is None:
            return outputs
        if self.classifier == "softmax":
            probabilities = torch.softmax(outputs[0], dim=-1)
        else:
            probabilities = torch.relu(outputs[0])  # identity on probabilities; a clamp would be renamed away
        # the legacy format turns the first output into the classifier's dictionary; ML Program's
        # classify takes the last op's result (output casts follow output order)
        return (probabilities, *outputs) if self.probabilities_first else (*outputs, probabilities)


def output_name(source, index: int) -> str:
    """The graph name of one output: what coremltools names the matching variable."""
    if isinstance(source, torch.jit.ScriptModule):
        outputs = list(source.graph.outputs())
        values = list(outputs[0].node().inputs()) if outputs[0].node().kind() == "prim::TupleConstruct" else outputs
        # traced values have numeric names that coremltools sanitizes one way for variables and
        # another for ClassifierConfig lookups; a plain name avoids both
        values[index].setDebugName("edgekit_output")
        return values[index].debugName()
    output_node = next(n for n in source.graph.nodes if n.op == "output")
    return output_node.args[0][index].name


def looks_like_probabilities(tensor) -> bool:
    """Non-negative rows that sum to 1: the model already ends in softmax."""
    values = tensor.detach().float()
    return bool((values >= 0).all() and torch.allclose(values.sum(dim=-1), torch.ones(values.shape[:-1]), atol=1e-3))


def needs_wrapper(normalize, classifier) -> bool:
    return bool(normalize) or classifier is not None


def export(module: nn.Module, example_inputs: tuple, dynamic_shapes):
    """torch.export of a wrapped module (varargs forward: dynamic shapes nest one level)."""
    shapes = None if dynamic_shapes is None else (tuple(dynamic_shapes),)
    return torch.export.export(module, example_inputs, dynamic_shapes=shapes, strict=False)


def trace(module: nn.Module, example_inputs: tuple):
    """TorchScript by tracing, outputs flattened (coremltools' TorchScript frontend rejects dicts)."""
    wrapped = module if isinstance(module, CoreMLModule) else CoreMLModule(module)
    with torch.no_grad():
        return torch.jit.trace(wrapped.eval(), example_inputs, strict=False, check_trace=False)
