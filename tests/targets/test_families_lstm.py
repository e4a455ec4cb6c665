"""The packed LSTM route on ExecuTorch (targets/executorch/recurrent.py): the same function as
nn.LSTM, in fewer unrolled nodes than PyTorch's decomposition, converted and verified; a layer it
cannot pack (a projection) keeps PyTorch's decomposition and says why."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgekit


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
        monkeypatch.setattr(recurrent, "pack_lstms", lambda program: (None, {}))
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


@pytest.mark.slow
def test_bilstm_converts_on_executorch_through_the_packed_route(tmp_path):
    art = edgekit.convert(model_factory="tests.targets.test_families:bilstm", target="executorch",
                          inputs=["x:1x6x8"], output_dir=str(tmp_path))[0]
    assert art.status == "passed", art.error or art.parity.get("reasons")
    assert art.parity["cosine"] >= 0.99999
    details = art.manifest["target_details"]
    lowering = details["lowering"]
    assert lowering["route"] == "packed LSTM (one input matmul per layer, both directions per recurrent matmul)"
    # 2 layers x 6 steps x 14 ops, both directions together, plus the projections and the head
    assert lowering["unrolled_nodes"] == 199
    delegation = details["delegation"]
    assert delegation["portable_nodes"] == 1 and delegation["delegated_percent"] >= 99
    assert [p["op"] for p in delegation["portable_ops"]] == ["aten.flip.default"]
