"""The packed recurrent route on ExecuTorch (targets/executorch/recurrent.py): the same function as
nn.LSTM, nn.GRU and nn.RNN (bidirectional, stacked, with and without state), in fewer unrolled nodes
than PyTorch's decomposition, converted and verified; a layer it cannot pack (a projection) keeps
PyTorch's decomposition and says why."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tests.targets.families_common import converted


class StatefulLSTM(nn.Module):
    """Time-major, 2 layers, bidirectional, state in and out (what a streaming recognizer exports)."""

    def __init__(self, proj_size: int = 0):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=proj_size)

    def forward(self, x, h, c):
        out, (h, c) = self.lstm(x, (h, c))
        return out, h, c


def _calls(program) -> int:
    return sum(1 for n in program.graph_module.graph.nodes if n.op == "call_function")


def _prepare(model, inputs, packed: bool, monkeypatch):
    from edgekit.targets.executorch import convert, recurrent

    if not packed:
        monkeypatch.setattr(recurrent, "pack_recurrent_layers", lambda program, **_: (None, {}))
    program = torch.export.export(model, inputs, strict=False)
    return convert.prepare_for_lowering(program)


def test_packed_lstm_matches_nn_lstm_with_state_in_fewer_nodes(monkeypatch):
    torch.manual_seed(0)
    model = StatefulLSTM().eval()
    inputs = (torch.randn(7, 3, 5), torch.randn(4, 3, 8), torch.randn(4, 3, 8))
    packed, facts = _prepare(model, inputs, True, monkeypatch)
    assert facts["route"].startswith("packed LSTM")
    assert facts["packed_lstm_layers"] == 1
    for got, want in zip(packed.module()(*inputs), model(*inputs)):
        assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
    default, default_facts = _prepare(model, inputs, False, monkeypatch)
    assert default_facts["route"] == "PyTorch's decomposition (one cell per step and direction)"
    # 2 layers x 7 steps: both directions share each step's 14 ops; PyTorch's decomposition has one cell per direction
    assert facts["unrolled_nodes"] == _calls(packed) == 236
    assert default_facts["unrolled_nodes"] == 522


def test_projection_keeps_pytorchs_decomposition_and_says_why(monkeypatch):
    torch.manual_seed(0)
    model = StatefulLSTM(proj_size=4).eval()
    inputs = (torch.randn(3, 1, 5), torch.randn(4, 1, 4), torch.randn(4, 1, 8))
    program, facts = _prepare(model, inputs, True, monkeypatch)
    assert facts["route"] == "PyTorch's decomposition (one cell per step and direction)"
    assert "packed_lstm_layers" not in facts
    assert facts["not_packed"] == ["lstm with a projection (proj_size) or unexpected weight shapes"]
    got, want = program.module()(*inputs)[0], model(*inputs)[0]
    assert torch.allclose(got, want, atol=1e-6)


class StatefulRecurrent(nn.Module):
    """A GRU or RNN with its state as an input and an output (zero state: the input alone)."""

    def __init__(self, kind, **options):
        super().__init__()
        self.rnn = kind(5, 8, **options)

    def forward(self, x, *state):
        return self.rnn(x, *state)


@pytest.mark.parametrize("kind, options, state, packed_nodes, default_nodes", [
    (nn.GRU, dict(num_layers=2, bidirectional=True), True, 275, 561),
    (nn.GRU, dict(num_layers=2, bidirectional=True), False, 261, 562),
    (nn.GRU, dict(batch_first=True), True, 128, 142),
    (nn.GRU, dict(bias=False, bidirectional=True), False, 133, 282),
    (nn.RNN, dict(num_layers=2, bidirectional=True), True, 93, 169),
    (nn.RNN, dict(nonlinearity="relu", bias=False), False, 32, 43),
], ids=["bigru-2-layers-state", "bigru-2-layers", "gru-batch-first-state", "bigru-no-bias", "birnn-tanh-2-layers-state",
        "rnn-relu-no-bias"])
def test_packed_gru_and_rnn_match_eager_in_fewer_nodes(kind, options, state, packed_nodes, default_nodes, monkeypatch):
    torch.manual_seed(0)
    model = StatefulRecurrent(kind, **options).eval()
    with torch.no_grad():  # biases and weights wider than nn's init, so that a misplaced b_hn shows
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    x = torch.randn(3, 7, 5) if options.get("batch_first") else torch.randn(7, 3, 5)
    inputs = (x, torch.randn(layers, 3, 8)) if state else (x,)
    packed, facts = _prepare(model, inputs, True, monkeypatch)
    name = "GRU" if kind is nn.GRU else "RNN"
    assert facts["route"] == f"packed {name} (one input matmul per layer, both directions per recurrent matmul)"
    assert facts[f"packed_{name.lower()}_layers"] == 1
    for got, want in zip(packed.module()(*inputs), model(*inputs), strict=True):
        assert torch.allclose(got, want, atol=2e-6), float((got - want).abs().max())
    default, default_facts = _prepare(model, inputs, False, monkeypatch)
    assert (facts["unrolled_nodes"], default_facts["unrolled_nodes"]) == (packed_nodes, default_nodes)


@pytest.mark.slow
def test_bigru_converts_on_executorch_through_the_packed_route(tmp_path):
    art = converted(tmp_path, "bigru_on_features", "executorch", ["x:1x6x32"], 0.99999)
    details = art.manifest["target_details"]
    assert details["lowering"]["route"].startswith("packed GRU")
    delegation = details["delegation"]
    assert [p["op"] for p in delegation["portable_ops"]] == ["aten.flip.default"]
    assert delegation["delegated_percent"] >= 99


@pytest.mark.slow
def test_bilstm_converts_on_executorch_through_the_packed_route(tmp_path):
    art = converted(tmp_path, "bilstm", "executorch", ["x:1x6x8"], 0.99999)
    details = art.manifest["target_details"]
    lowering = details["lowering"]
    assert lowering["route"] == "packed LSTM (one input matmul per layer, both directions per recurrent matmul)"
    # 2 layers x 6 steps x 14 ops, both directions together, plus the projections and the head
    assert lowering["unrolled_nodes"] == 199
    delegation = details["delegation"]
    assert delegation["portable_nodes"] == 1 and delegation["delegated_percent"] >= 99
    assert [p["op"] for p in delegation["portable_ops"]] == ["aten.flip.default"]
