"""What the family tests (tests/targets/test_families*.py) share: the small recurrent models, built
from one class, and the one convert-and-check call that each conversion test starts with."""
from __future__ import annotations

import torch
import torch.nn as nn

import edgekit

SPEC = "tests.targets.families_common"


class RecurrentHead(nn.Module):
    """A batch-first recurrent layer (nn.LSTM, nn.GRU or nn.RNN) + a linear head over every step."""

    def __init__(self, kind: type[nn.Module], input_size: int, hidden: int, **options):
        super().__init__()
        self.rnn = kind(input_size, hidden, batch_first=True, **options)
        self.fc = nn.Linear(hidden * (2 if options.get("bidirectional") else 1), 5)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def seeded(build, *args, **options) -> nn.Module:
    """``build(*args, **options)`` in eval mode, its weights drawn with seed 0 (every factory's)."""
    torch.manual_seed(0)
    return build(*args, **options).eval()


def _seeded(kind, input_size, hidden, **options) -> RecurrentHead:
    return seeded(RecurrentHead, kind, input_size, hidden, **options)


def bilstm():
    """2-layer BiLSTM 8 -> 16 (inputs x:1xTx8)."""
    return _seeded(nn.LSTM, 8, 16, num_layers=2, bidirectional=True)


def bigru():
    """BiGRU 8 -> 16: its recurrent weights (2 x 16x48) outnumber its input projections' (2 x 8x48)."""
    return _seeded(nn.GRU, 8, 16, bidirectional=True)


def bigru_on_features():
    """2-layer BiGRU 32 -> 16 over wider features (as after a conv stack): input projections are most
    of its weights (inputs x:1xTx32)."""
    return _seeded(nn.GRU, 32, 16, num_layers=2, bidirectional=True)


def converted(tmp_path, factory: str, target: str, inputs: list[str], min_cosine: float, quantize: str = "none",
              **options):
    """One edgekit.convert that must pass with at least ``min_cosine``; the artifact. ``factory`` is a
    function of this module or a full ``module:function``."""
    spec = factory if ":" in factory else f"{SPEC}:{factory}"
    art = edgekit.convert(model_factory=spec, target=target, quantize=quantize, inputs=inputs,
                          output_dir=str(tmp_path), **options)[0]
    assert art.status == "passed", art.error or art.parity.get("reasons")
    assert art.parity["cosine"] >= min_cosine, art.parity["cosine"]
    return art
