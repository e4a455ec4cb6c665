"""The packed LSTM route: an ``aten.lstm`` unrolled into as few graph nodes as the recurrence allows.

ExecuTorch has no LSTM kernel (neither the portable library nor XNNPACK), so a recurrent layer is
unrolled over its time steps whatever route is taken, and ExecuTorch's conversion cost grows with the
node count: every edge pass and every one of XNNPACK's ~20 preprocess passes re-runs every node
through a fake-tensor interpreter. PyTorch's own decomposition spends about 17 nodes per cell (an
input linear and a recurrent linear per step, a chunk into four gates, one cell per direction): a
CRNN's 2-layer BiLSTM over 32 steps became 2,235 nodes and a 53 s conversion, 3.6x TFLite's; packed,
938 nodes and 20 s, 1.35x (``python -m benchmarks.families lstm``).

The packed form computes the same function with the work rearranged, once per layer:
- the input projection of every time step is ONE matmul per direction over the whole sequence (the
  backward direction's over a time-reversed copy of the input: one ``flip``, on portable kernels);
- both directions advance together: their states are stacked ``(2, batch, hidden)`` and one batched
  matmul (``bmm``, which XNNPACK delegates) with the stacked recurrent weights gives both
  directions' gates for the step; a unidirectional layer uses a plain linear;
- gates are reordered offline to ``(i, f, o, g)``, so one sigmoid and one tanh cover them without a
  split (the unused halves cost a few elementwise operations, not nodes);
- a zero initial state (the nn.LSTM default) drops the first step's recurrent matmul.
That is 14 nodes per step for both directions, against ~37 for PyTorch's decomposition (one cell per
direction). The weights are reordered here, eagerly, into new parameters of the same size (no
weight arithmetic is left in the graph; the file does not grow).

Used when the layer is an ``aten.lstm.input`` with static shapes, no projection (``proj_size``) and
eval mode; anything else keeps PyTorch's decomposition (convert.prepare_for_lowering).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ROUTE = "packed LSTM (one input matmul per layer, both directions per recurrent matmul)"
# PyTorch's gate order in weight_ih / weight_hh rows is (i, f, g, o); the packed order is (i, f, o, g).
_PACKED_GATES = (0, 1, 3, 2)


class PackedLSTM(nn.Module):
    """A multi-layer (bi)LSTM with packed weights; returns what ``aten.lstm.input`` returns:
    (output, h_n, c_n). State and gates are ``(directions, batch, ...)`` for a bidirectional layer
    (both directions in one batched matmul) and ``(batch, ...)`` for a unidirectional one."""

    def __init__(self, layers: list[dict[str, torch.Tensor]], hidden: int, directions: int,
                 batch_first: bool, zero_state: bool):
        super().__init__()
        self.hidden, self.directions, self.batch_first, self.zero_state = hidden, directions, batch_first, zero_state
        self.count = len(layers)
        for index, layer in enumerate(layers):
            for key, value in layer.items():
                setattr(self, f"{key}_{index}", nn.Parameter(value, requires_grad=False))

    def _weights(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """([w_ih per direction], [bias per direction], w_hh): separate parameters, so that each
        input projection is a linear on a constant weight (what XNNPACK delegates)."""
        directions = range(self.directions)
        return ([getattr(self, f"w_ih{d}_{index}") for d in directions],
                [getattr(self, f"bias{d}_{index}") for d in directions], getattr(self, f"w_hh_{index}"))

    def forward(self, x, h0=None, c0=None):
        if self.batch_first:
            x = x.transpose(0, 1)
        steps, batch, features = x.shape
        two = self.directions == 2
        inputs = [x.reshape(steps * batch, features)]
        if two:
            inputs.append(x.flip(0).reshape(steps * batch, features))  # the backward direction reads it
        hs, cs = [], []
        for index in range(self.count):
            w_ih, bias, w_hh = self._weights(index)
            if two:  # (2, T*B, 4H): row block t of [1] is the backward direction's step t
                projected = torch.stack([F.linear(inputs[d], w_ih[d], bias[d]) for d in range(2)])
            else:
                projected = F.linear(inputs[0], w_ih[0], bias[0])
            h = c = None
            if not self.zero_state:
                span = slice(index * self.directions, (index + 1) * self.directions)
                h, c = (h0[span], c0[span]) if two else (h0[index], c0[index])
            outputs = []
            for t in range(steps):
                gates = projected[:, t * batch:(t + 1) * batch] if two else projected[t * batch:(t + 1) * batch]
                if h is not None:
                    gates = gates + (torch.bmm(h, w_hh) if two else F.linear(h, w_hh))
                h, c = self._cell(gates, c)
                outputs.append(h)
            hs.append(h if two else h.unsqueeze(0))
            cs.append(c if two else c.unsqueeze(0))
            inputs = self._next_inputs(outputs, steps, batch)
        out = inputs[0].reshape(steps, batch, self.directions * self.hidden)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, torch.cat(hs, dim=0), torch.cat(cs, dim=0)

    def _cell(self, gates, c):
        """Gates packed (i, f, o, g): one sigmoid and one tanh over all of them, no split."""
        hidden = self.hidden
        sig, tanh = torch.sigmoid(gates), torch.tanh(gates)
        i, f, o, g = (sig[..., 0:hidden], sig[..., hidden:2 * hidden], sig[..., 2 * hidden:3 * hidden],
                      tanh[..., 3 * hidden:])
        c = i * g if c is None else f * c + i * g
        return o * torch.tanh(c), c

    def _next_inputs(self, outputs, steps, batch):
        """[output] or, bidirectional, [output, output reversed in time], each (T*B, D*H)."""
        if self.directions == 1:
            return [torch.cat(outputs, dim=0)]
        rows, hidden = steps * batch, self.hidden
        in_order = torch.cat(outputs, dim=1)  # [0] forward outputs by time; [1] backward outputs, reversed
        reversed_order = torch.cat(outputs[::-1], dim=1)
        fwd_a, bwd_a = (in_order[d:d + 1].reshape(rows, hidden) for d in range(2))
        fwd_r, bwd_r = (reversed_order[d:d + 1].reshape(rows, hidden) for d in range(2))
        return [torch.cat([fwd_a, bwd_r], dim=1), torch.cat([fwd_r, bwd_a], dim=1)]


def pack_weights(params: list[torch.Tensor], has_biases: bool, layers: int, directions: int,
                 input_size: int) -> list[dict[str, torch.Tensor]] | None:
    """Per layer: ``w_ih`` (4H x input), ``bias`` (b_ih + b_hh) and ``w_hh`` transposed (H x 4H), rows
    in the packed gate order; stacked over directions when bidirectional. None when the parameter
    list is not a plain LSTM's (a projection, unexpected shapes)."""
    per = 4 if has_biases else 2
    if len(params) != layers * directions * per:
        return None
    hidden = params[1].shape[1]
    order = torch.cat([torch.arange(g * hidden, (g + 1) * hidden) for g in _PACKED_GATES])
    packed = []
    for layer in range(layers):
        in_size = input_size if layer == 0 else hidden * directions
        per_direction = []
        for d in range(directions):
            base = (layer * directions + d) * per
            w_ih, w_hh = params[base], params[base + 1]
            if tuple(w_ih.shape) != (4 * hidden, in_size) or tuple(w_hh.shape) != (4 * hidden, hidden):
                return None
            bias = params[base + 2] + params[base + 3] if has_biases else torch.zeros(4 * hidden, dtype=w_ih.dtype)
            per_direction.append((w_ih[order], bias[order], w_hh[order]))
        layer_weights = {f"w_ih{d}": p[0] for d, p in enumerate(per_direction)}
        layer_weights.update({f"bias{d}": p[1] for d, p in enumerate(per_direction)})
        # bidirectional: bmm takes (2, H, 4H); unidirectional: F.linear takes (4H, H)
        layer_weights["w_hh"] = (torch.stack([p[2].t() for p in per_direction]).contiguous() if directions == 2
                                 else per_direction[0][2])
        packed.append(layer_weights)
    return packed


_ZERO_FACTORIES = ("zeros", "new_zeros", "zeros_like")


def _is_zero_state(node) -> bool:
    target = getattr(node, "target", None)
    packet = getattr(getattr(target, "overloadpacket", None), "__name__", None)
    if packet in _ZERO_FACTORIES:
        return True
    return packet in ("full", "new_full") and len(node.args) > 1 and node.args[-1] == 0


def _attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def pack_lstms(program) -> tuple[Any, dict[str, Any]]:
    """(re-exported program with every packable ``aten.lstm.input`` replaced by PackedLSTM, facts);
    the program is None when none is packable, and facts say why. The given program is not modified."""
    if program.range_constraints:  # symbolic shapes: the unrolled step count must be static
        return None, {"not_packed": ["dynamic shapes (the unrolled step count must be static)"]}
    graph_module = program.module()
    graph = graph_module.graph
    packed_layers, skipped = 0, []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.lstm.input:
            continue
        module, why = _packed_module(graph_module, node)
        if module is None:
            skipped.append(why)
            continue
        name = f"edgekit_packed_lstm_{packed_layers}"
        graph_module.add_module(name, module)
        args = (node.args[0],) if module.zero_state else (node.args[0], node.args[1][0], node.args[1][1])
        with graph.inserting_before(node):
            call = graph.call_module(name, args)
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        graph.erase_node(node)
        packed_layers += 1
    if not packed_layers:
        return None, {"not_packed": skipped}
    graph.eliminate_dead_code()
    used = {n.target for n in graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used and not name.startswith("edgekit_packed_lstm_"):
            owner, _, leaf = name.rpartition(".")
            parent = graph_module.get_submodule(owner) if owner else graph_module
            if leaf in parent._parameters:
                del parent._parameters[leaf]
            elif leaf in parent._buffers:
                del parent._buffers[leaf]
    graph_module.recompile()
    args, kwargs = program.example_inputs or ((), {})
    exported = torch.export.export(graph_module, tuple(args), kwargs or None, strict=False)
    facts = {"route": ROUTE, "packed_lstm_layers": packed_layers}
    if skipped:
        facts["not_packed"] = skipped
    return exported, facts


def _packed_module(graph_module, node) -> tuple[PackedLSTM | None, str]:
    inp, hx, params, has_biases, layers, _dropout, train, bidirectional, batch_first = node.args
    if train:
        return None, "lstm in training mode"
    shape = getattr(inp.meta.get("val"), "shape", None)
    if shape is None or len(shape) != 3 or not all(isinstance(d, int) for d in shape):
        return None, "lstm input without a static 3-d shape"
    if not all(getattr(p, "op", None) == "get_attr" for p in params):
        return None, "lstm weights computed in the graph"
    tensors = [_attr(graph_module, p.target).detach() for p in params]
    directions = 2 if bidirectional else 1
    packed = pack_weights(tensors, has_biases, layers, directions, shape[-1])
    if packed is None:
        return None, "lstm with a projection (proj_size) or unexpected weight shapes"
    zero = all(_is_zero_state(h) for h in hx)
    return PackedLSTM(packed, tensors[1].shape[1], directions, batch_first, zero), ""
