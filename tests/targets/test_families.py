"""Model families beyond CNNs on the targets issue 13 fixed: a tiny BERT encoder with an attention
mask (transformers' BertModel, tiny config) on ExecuTorch int8-dynamic (integer mask arithmetic kept
integer, int8 embeddings) and on Core ML (new_ones / __and__ handled on the torch.export route), and
a stacked bidirectional LSTM on Core ML (automatic TorchScript route)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tests.targets.families_common import converted, seeded

SPEC = "tests.targets.test_families"


class TinyBert(nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32)
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.head = nn.Linear(32, 5)

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))


def tiny_bert():
    return seeded(TinyBert)


BERT_INPUTS = ["input_ids:1x16:int64", "attention_mask:1x16:int64"]


@pytest.mark.slow
def test_tiny_bert_executorch_int8_dynamic_quantizes_embeddings(tmp_path):
    art = converted(tmp_path, f"{SPEC}:tiny_bert", "executorch", BERT_INPUTS, 0.99, quantize="int8-dynamic")
    facts = art.manifest["target_details"]["quantization"]
    assert facts["embeddings"]["tables"][0]["table"] == "bert.embeddings.word_embeddings.weight"
    assert facts["embeddings"]["tables"][0]["shape"] == [200, 32]
    assert facts["weight_range"].startswith("full 8-bit")
    assert art.manifest["target_details"]["delegation"]["delegated_percent"] > 50


@pytest.mark.slow
def test_tiny_bert_coreml_decomposes_what_the_frontend_lacks(tmp_path):
    art = converted(tmp_path, f"{SPEC}:tiny_bert", "coreml", BERT_INPUTS, 0.9999)
    route = art.manifest["target_details"]["conversion_route"]
    assert route["frontend"] == "torch.export"
    assert route["decomposed_ops"] == ["new_ones", "__and__"]


@pytest.mark.slow
def test_bilstm_coreml_falls_back_to_torchscript(tmp_path):
    art = converted(tmp_path, "bilstm", "coreml", ["x:1x20x8"], 0.9999)
    route = art.manifest["target_details"]["conversion_route"]
    assert route == {"frontend": "torchscript (automatic fallback)", "after": ["torch.export: lstm unsupported"]}


def test_squeeze_split_unbind_rewritten_to_delegable_ops(monkeypatch):
    """PyTorch's decomposition (what a GRU, or an LSTM the packed route does not take, goes through)."""
    from edgekit.targets.executorch import recurrent
    from edgekit.targets.executorch.convert import prepare_for_lowering

    monkeypatch.setattr(recurrent, "pack_recurrent_layers", lambda program, **_: (None, {}))
    torch.manual_seed(0)
    model = nn.LSTM(4, 6, batch_first=True, bidirectional=True).eval()
    x = torch.randn(1, 5, 4)
    program = torch.export.export(model, (x,), strict=False)
    prepared, facts = prepare_for_lowering(program)
    ops = {n.target.overloadpacket.__name__ for n in prepared.graph.nodes
           if n.op == "call_function" and hasattr(n.target, "overloadpacket")}
    assert facts["recurrent_ops"] == ["lstm"]
    assert not ops & {"lstm", "unbind", "split_with_sizes", "squeeze"}
    assert facts["rewritten_for_delegation"]["unbind"] >= 2
    expected = model(x)[0]
    assert torch.allclose(prepared.module()(x)[0], expected, atol=1e-6)
