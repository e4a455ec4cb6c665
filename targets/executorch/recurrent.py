"""The packed recurrent route: an ``aten.lstm`` / ``aten.gru`` / ``aten.rnn_tanh`` / ``aten.rnn_relu``
unrolled into as few graph nodes as the recurrence allows.

ExecuTorch has no recurrent kernel (neither the portable library nor XNNPACK), so a recurrent layer is
unrolled over its time steps whatever route is taken, and ExecuTorch's conversion cost grows with the
node count: every edge pass and every one of XNNPACK's ~20 preprocess passes re-runs every node
through a fake-tensor interpreter. PyTorch's own decomposition spends about 17 nodes per LSTM cell (an
input linear and a recurrent linear per step, a chunk into four gates, one cell per direction): a
CRNN's 2-layer BiLSTM over 32 steps became 2,235 nodes and a 53 s conversion, 3.6x TFLite's; packed,
938 nodes and 20 s, 1.35x (``python -m benchmarks.families lstm``). No PT2E quantizer annotates the
recurrent ops either, so packing is also what lets static int8 quantize their input projections
(edgekit/quantize/pt2e.py ``pack_recurrent``).

The packed form computes the same function with the work rearranged, once per layer:
- the input projection of every time step is ONE matmul per direction over the whole sequence (the
  backward direction's over a time-reversed copy of the input: one ``flip``, on portable kernels);
- both directions advance together: their states are stacked ``(2, batch, hidden)`` and one batched
  matmul (``bmm``, which XNNPACK delegates) with the stacked recurrent weights gives both
  directions' gates for the step; a unidirectional layer uses a plain linear;
- LSTM gates are reordered offline to ``(i, f, o, g)``, so one sigmoid and one tanh cover them without
  a split (the unused halves cost a few elementwise operations, not nodes);
- GRU gates keep PyTorch's order ``(r, z, n)``; the r and z recurrent biases fold into the input
  projection's bias, ``b_hn`` stays inside ``r * (W_hn h + b_hn)`` as PyTorch's formula has it, and
  the step ends ``h' = n + z * (h - n)`` (ATen's GRU cell, the same rounding);
- a zero initial state (the nn.LSTM / nn.GRU / nn.RNN default) drops the first step's recurrent matmul.
That is 14 nodes per LSTM step for both directions, against ~37 for PyTorch's decomposition. The
weights are rearranged here, eagerly, into new parameters of at most the same size (no weight
arithmetic is left in the graph; the file does not grow).

Used when the layer has static shapes, no projection (``proj_size``) and is in eval mode; anything
else keeps PyTorch's decomposition (convert.prepare_for_lowering).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# aten op -> (kind, gates per hidden unit); the kind names the facts' ``packed_<kind>_layers``
PACKABLE = {"lstm": ("lstm", 4), "gru": ("gru", 3), "rnn_tanh": ("rnn", 1), "rnn_relu": ("rnn", 1)}
_ROUTE_TAIL = "(one input matmul per layer, both directions per recurrent matmul)"
ROUTE = f"packed LSTM {_ROUTE_TAIL}"
# PyTorch's gate order in an LSTM's weight_ih / weight_hh rows is (i, f, g, o); the packed order is (i, f, o, g).
_PACKED_GATES = {"lstm": (0, 1, 3, 2), "gru": (0, 1, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}


def route(kinds) -> str:
    """The route's name for the packed kinds, e.g. "packed LSTM + GRU (...)"."""
    names = [k.upper() for k in ("lstm", "gru", "rnn") if k in set(kinds)]
    return f"packed {' + '.join(names)} {_ROUTE_TAIL}"


class PackedRecurrent(nn.Module):
    """A multi-layer (bi)LSTM, GRU or RNN with packed weights; returns what the aten op returns:
    (output, h_n, c_n) for an LSTM, (output, h_n) otherwise. State and gates are
    ``(directions, batch, ...)`` for a bidirectional layer (both directions in one batched matmul)
    and ``(batch, ...)`` for a unidirectional one."""

    def __init__(self, op: str, layers: list[dict[str, torch.Tensor]], hidden: int, directions: int,
                 batch_first: bool, zero_state: bool):
        super().__init__()
        self.op, self.hidden, self.directions = op, hidden, directions
        self.batch_first, self.zero_state = batch_first, zero_state
        self.count = len(layers)
        for index, layer in enumerate(layers):
            for key, value in layer.items():
                setattr(self, f"{key}_{index}", nn.Parameter(value, requires_grad=False))

    def _weights(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """([w_ih per direction], [bias per direction], w_hh): separate parameters, so that each
        input projection is a linear on a constant weight (what XNNPACK delegates and what a PT2E
        quantizer annotates)."""
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
            if two:  # (2, T*B, G*H): row block t of [1] is the backward direction's step t
                projected = torch.stack([F.linear(inputs[d], w_ih[d], bias[d]) for d in range(2)])
            else:
                projected = F.linear(inputs[0], w_ih[0], bias[0])
            h = c = None
            if not self.zero_state:
                span = slice(index * self.directions, (index + 1) * self.directions)
                h = h0[span] if two else h0[index]
                if self.op == "lstm":
                    c = c0[span] if two else c0[index]
            outputs = []
            for t in range(steps):
                gates = projected[:, t * batch:(t + 1) * batch] if two else projected[t * batch:(t + 1) * batch]
                recurrent = None if h is None else (torch.bmm(h, w_hh) if two else F.linear(h, w_hh))
                if self.op == "lstm":
                    h, c = self._lstm_cell(gates if recurrent is None else gates + recurrent, c)
                elif self.op == "gru":
                    h = self._gru_cell(gates, recurrent, h, getattr(self, f"bias_hn_{index}"))
                else:
                    gates = gates if recurrent is None else gates + recurrent
                    h = torch.tanh(gates) if self.op == "rnn_tanh" else torch.relu(gates)
                outputs.append(h)
            hs.append(h if two else h.unsqueeze(0))
            if self.op == "lstm":
                cs.append(c if two else c.unsqueeze(0))
            inputs = self._next_inputs(outputs, steps, batch)
        out = inputs[0].reshape(steps, batch, self.directions * self.hidden)
        if self.batch_first:
            out = out.transpose(0, 1)
        if self.op == "lstm":
            return out, torch.cat(hs, dim=0), torch.cat(cs, dim=0)
        return out, torch.cat(hs, dim=0)

    def _lstm_cell(self, gates, c):
        """Gates packed (i, f, o, g): one sigmoid and one tanh over all of them, no split."""
        hidden = self.hidden
        sig, tanh = torch.sigmoid(gates), torch.tanh(gates)
        i, f, o, g = (sig[..., 0:hidden], sig[..., hidden:2 * hidden], sig[..., 2 * hidden:3 * hidden],
                      tanh[..., 3 * hidden:])
        c = i * g if c is None else f * c + i * g
        return o * torch.tanh(c), c

    def _gru_cell(self, gates, recurrent, h, bias_hn):
        """PyTorch's GRU: r, z = sigmoid(x-part + h-part); n = tanh(x_n + r * (W_hn h + b_hn));
        h' = n + z * (h - n). With a zero state W_hh h is 0, so n's recurrent term is r * b_hn."""
        hidden = self.hidden
        if recurrent is None:
            rz = torch.sigmoid(gates[..., :2 * hidden])
            n = torch.tanh(gates[..., 2 * hidden:] + rz[..., :hidden] * bias_hn)
            return n - rz[..., hidden:] * n
        rz = torch.sigmoid(gates[..., :2 * hidden] + recurrent[..., :2 * hidden])
        n = torch.tanh(gates[..., 2 * hidden:] + rz[..., :hidden] * (recurrent[..., 2 * hidden:] + bias_hn))
        return n + rz[..., hidden:] * (h - n)

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
                 input_size: int, op: str = "lstm") -> list[dict[str, torch.Tensor]] | None:
    """Per layer: ``w_ih`` (G*H x input), ``bias`` and ``w_hh`` transposed (H x G*H) when
    bidirectional (stacked over directions, for bmm), as is (G*H x H) otherwise; rows in the packed
    gate order. ``bias`` is b_ih + b_hh, except a GRU's n rows, which keep b_in alone: its b_hn goes
    to ``bias_hn`` ((2, 1, H) bidirectional, (H,) otherwise). None when the parameter list is not a
    plain layer's of that op (a projection, unexpected shapes)."""
    per = 4 if has_biases else 2
    if len(params) != layers * directions * per:
        return None
    gates = PACKABLE[op][1]
    hidden = params[1].shape[1]
    order = torch.cat([torch.arange(g * hidden, (g + 1) * hidden) for g in _PACKED_GATES[op]])
    packed = []
    for layer in range(layers):
        in_size = input_size if layer == 0 else hidden * directions
        per_direction = []
        for d in range(directions):
            base = (layer * directions + d) * per
            w_ih, w_hh = params[base], params[base + 1]
            if tuple(w_ih.shape) != (gates * hidden, in_size) or tuple(w_hh.shape) != (gates * hidden, hidden):
                return None
            zeros = torch.zeros(gates * hidden, dtype=w_ih.dtype)
            b_ih, b_hh = (params[base + 2], params[base + 3]) if has_biases else (zeros, zeros)
            bias_hn = b_hh[2 * hidden:] if op == "gru" else None
            if op == "gru":  # b_hn is multiplied by r: it cannot join the input projection's bias
                b_hh = torch.cat([b_hh[:2 * hidden], torch.zeros(hidden, dtype=b_hh.dtype)])
            per_direction.append((w_ih[order], (b_ih + b_hh)[order], w_hh[order], bias_hn))
        layer_weights = {f"w_ih{d}": p[0] for d, p in enumerate(per_direction)}
        layer_weights.update({f"bias{d}": p[1] for d, p in enumerate(per_direction)})
        # bidirectional: bmm takes (2, H, G*H); unidirectional: F.linear takes (G*H, H)
        layer_weights["w_hh"] = (torch.stack([p[2].t() for p in per_direction]).contiguous() if directions == 2
                                 else per_direction[0][2])
        if op == "gru":
            layer_weights["bias_hn"] = (torch.stack([p[3] for p in per_direction]).unsqueeze(1) if directions == 2
                                        else per_direction[0][3])
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


def packable_op(node) -> str | None:
    """"lstm", "gru", "rnn_tanh" or "rnn_relu" for a node this route can take (the ``.input``
    overload: a sequence, not a cell or a packed sequence), else None."""
    if node.op != "call_function":
        return None
    for name in PACKABLE:
        if node.target is getattr(torch.ops.aten, name).input:
            return name
    return None


def pack_recurrent_layers(program) -> tuple[Any, dict[str, Any]]:
    """(re-exported program with every packable recurrent op replaced by PackedRecurrent, facts);
    the program is None when none is packable, and facts say why. The given program is not modified.

    Static int8 quantizes the input projections (linears) but not a bidirectional layer's recurrent
    bmm. Stepping each direction with its own int8 linear instead was measured: every step's linear
    got its own copy of the int8 weight (a 16-step bidirectional GRU 8 -> 16: 1,536 int8 weight
    elements more per step, a 118 KB .pte against 76 KB at float32), so the recurrence stays one
    float32 bmm; a model whose recurrent weights are most of its weights is refused as int8 with
    that advice (edgekit/quantize/coverage.py)."""
    if program.range_constraints:  # symbolic shapes: the unrolled step count must be static
        return None, {"not_packed": ["dynamic shapes (the unrolled step count must be static)"]}
    graph_module = program.module()
    graph = graph_module.graph
    counts: dict[str, int] = {}
    skipped = []
    for node in list(graph.nodes):
        op = packable_op(node)
        if op is None:
            continue
        module, why = _packed_module(graph_module, node, op)
        if module is None:
            skipped.append(why)
            continue
        name = f"edgekit_packed_{op}_{sum(counts.values())}"
        graph_module.add_module(name, module)
        state = list(node.args[1]) if op == "lstm" else [node.args[1]]
        args = (node.args[0],) if module.zero_state else (node.args[0], *state)
        with graph.inserting_before(node):
            call = graph.call_module(name, args)
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        graph.erase_node(node)
        kind = PACKABLE[op][0]
        counts[kind] = counts.get(kind, 0) + 1
    if not counts:
        return None, {"not_packed": skipped}
    graph.eliminate_dead_code()
    used = {n.target for n in graph.nodes if n.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used and not name.startswith("edgekit_packed_"):
            owner, _, leaf = name.rpartition(".")
            parent = graph_module.get_submodule(owner) if owner else graph_module
            if leaf in parent._parameters:
                del parent._parameters[leaf]
            elif leaf in parent._buffers:
                del parent._buffers[leaf]
    graph_module.recompile()
    args, kwargs = program.example_inputs or ((), {})
    exported = torch.export.export(graph_module, tuple(args), kwargs or None, strict=False)
    facts: dict[str, Any] = {"route": route(counts)}
    facts.update({f"packed_{kind}_layers": n for kind, n in counts.items()})
    if skipped:
        facts["not_packed"] = skipped
    return exported, facts



def _packed_module(graph_module, node, op: str) -> tuple[PackedRecurrent | None, str]:
    inp, hx, params, has_biases, layers, _dropout, train, bidirectional, batch_first = node.args
    if train:
        return None, f"{op} in training mode"
    shape = getattr(inp.meta.get("val"), "shape", None)
    if shape is None or len(shape) != 3 or not all(isinstance(d, int) for d in shape):
        return None, f"{op} input without a static 3-d shape"
    if not all(getattr(p, "op", None) == "get_attr" for p in params):
        return None, f"{op} weights computed in the graph"
    tensors = [_attr(graph_module, p.target).detach() for p in params]
    directions = 2 if bidirectional else 1
    packed = pack_weights(tensors, has_biases, layers, directions, shape[-1], op)
    if packed is None:
        return None, f"{op} with a projection (proj_size) or unexpected weight shapes"
    zero = all(_is_zero_state(h) for h in (hx if op == "lstm" else [hx]))
    return PackedRecurrent(op, packed, tensors[1].shape[1], directions, batch_first, zero), ""
