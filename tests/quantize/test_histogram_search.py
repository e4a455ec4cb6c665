"""The histogram observer's range search (issue 13, "conversion cost that scales"): edgekit's
FastHistogramObserver gives the bins of torchao's HistogramObserver, exactly, without its per-step
loops; on a recurrent model (a saturating tanh/sigmoid activation per step) that was most of a
static int8 conversion."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn
from torchao.quantization.pt2e.observer import HistogramObserver

from edgekit.quantize import observers
from edgekit.quantize.config import QuantConfig
from edgekit.quantize.pt2e import quantize_program

_G = torch.Generator().manual_seed(0)
DISTRIBUTIONS = {
    "normal": lambda: torch.randn(3000, generator=_G),
    "relu": lambda: torch.relu(torch.randn(3000, generator=_G)),
    "saturated-tanh": lambda: torch.tanh(5 * torch.randn(3000, generator=_G)),  # an LSTM's cell output
    "saturated-sigmoid": lambda: torch.sigmoid(8 * torch.randn(3000, generator=_G)),  # an LSTM's gates
    "student-t": lambda: torch.randn(3000, generator=_G) / torch.rand(3000, generator=_G).clamp_min(0.01),
    "outlier": lambda: torch.cat([torch.randn(3000, generator=_G), torch.tensor([250.0])]),
    "two-values": lambda: (torch.rand(3000, generator=_G) > 0.7).float(),
    "constant": lambda: torch.full((64,), 0.7),
    "zeros": lambda: torch.zeros(64),
    "three-values": lambda: torch.randn(3, generator=_G),
}


def _observers(steps: int, fill):
    kwargs = dict(dtype=torch.qint8, quant_min=-128, quant_max=127, eps=2**-12)
    ref, fast = HistogramObserver(**kwargs), observers.fast_histogram_observer_class()(**kwargs)
    for _ in range(steps):  # several steps: the running histogram is re-binned as the range grows
        x = fill()
        ref(x)
        fast(x)
    return ref, fast


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_fast_histogram_search_gives_torchaos_scale_and_zero_point(name):
    ref, fast = _observers(3, DISTRIBUTIONS[name])
    want, got = ref.calculate_qparams(), fast.calculate_qparams()
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1]), (name, want, got)
    assert fast.calculate_qparams()[0].item() == want[0].item()  # remembered: the same answer again


def test_fast_histogram_search_is_much_faster_on_a_saturated_gate():
    """A saturated tanh (mass at -1 and 1) sends torchao's search through ~100,000 iterations that
    move nothing: ~0.5 s per observer, 705 such observers in benchmarks/families.py's CRNN."""
    ref, fast = _observers(4, DISTRIBUTIONS["saturated-tanh"])
    start = time.perf_counter()
    want = ref._non_linear_param_search()
    ref_seconds = time.perf_counter() - start
    start = time.perf_counter()
    got = observers.greedy_l2_search(fast)
    fast_seconds = time.perf_counter() - start
    bin_width = (ref.max_val - ref.min_val) / ref.bins
    assert torch.equal(want[0], ref.min_val + bin_width * got[0])
    assert torch.equal(want[1], ref.min_val + bin_width * (got[1] + 1))
    assert fast_seconds * 5 < ref_seconds, (fast_seconds, ref_seconds)


class _Recognizer(nn.Module):
    """A small BiLSTM over 4 steps with a per-step classifier: a CRNN's recurrent half."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _quant_params(program) -> list[tuple]:
    """(scale, zero point) of every activation quantize node of the converted graph, in order."""
    out = []
    for node in program.converted(fold_quantize=True).graph.nodes:
        target = str(node.target)
        if node.op == "call_function" and "quantize_per_tensor" in target and "dequantize" not in target:
            out.append(tuple(float(a) if isinstance(a, (int, float)) else str(a) for a in node.args[1:3]))
    return out


def test_lstm_int8_with_the_fast_search_is_the_same_program(monkeypatch):
    """End to end (pack the LSTM, calibrate, score the candidates, convert): the scales, the
    candidates' held-back scores and the choice the manifest records are those of torchao's observer."""
    torch.manual_seed(0)
    model = _Recognizer().eval()
    samples = [(torch.randn(1, 4, 8) * 2,) for _ in range(8)]  # 4 calibrate, 4 held back
    exported = torch.export.export(model, samples[0])
    config = QuantConfig(max_candidates=2)  # histogram, histogram+bias-correction
    fast = quantize_program(exported, samples, config)
    monkeypatch.setattr(observers, "fast_histogram_observer_class", lambda: HistogramObserver)
    slow = quantize_program(exported, samples, config)
    assert fast.prepared.meta.get("edgekit_algorithms") is not None
    assert type(next(m for m in fast.prepared.modules() if isinstance(m, HistogramObserver))).__name__ \
        == "FastHistogramObserver"
    assert type(next(m for m in slow.prepared.modules() if isinstance(m, HistogramObserver))) is HistogramObserver
    params = _quant_params(fast)
    assert len(params) > 20 and params == _quant_params(slow), (len(params), params[:4])
    manifest_fast, manifest_slow = fast.to_manifest(), slow.to_manifest()
    assert manifest_fast["chosen"] == manifest_slow["chosen"]
    strip = lambda m: [{k: v for k, v in c.items() if k != "seconds"} for c in m["candidates"]]  # noqa: E731
    assert strip(manifest_fast) == strip(manifest_slow)
