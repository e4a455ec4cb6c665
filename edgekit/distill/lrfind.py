"""The learning-rate range test (Leslie Smith, "Cyclical Learning Rates for Training Neural Networks", 2017;
the "LR finder" of fastai): a short sweep that picks the peak learning rate for the real run.

The student takes one optimizer step per batch while the learning rate grows exponentially from
``start`` (1e-6) to ``end`` (10); the loss is smoothed (debiased exponential average) and the sweep stops once it
diverges (four times its minimum, or not finite). The suggestion is the learning rate at the smoothed
minimum divided by ten: the minimum itself is already at the edge of divergence, and a tenth of it is
the classic choice that a one-cycle or warm-up + cosine schedule then peaks at. It does not depend on
the loss's absolute scale, so the same rule serves soft-target KL (scaled by T^2), cross-entropy and
embedding losses, and students from 2k to tens of millions of parameters.

When the loss never turns up after its minimum (no edge was found: seen with a fake-quantized QAT
graph), the suggestion falls back to AdamW's conventional 1e-3 and says so.

The caller restores the student afterwards: the sweep only measures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

RULE = "range test: loss minimum / 10"
FALLBACK_RULE = "range test found no edge (the loss never turned up): AdamW's conventional 1e-3"
FALLBACK_LR = 1e-3
TURN_UP = 1.1  # the loss must rise 10 % above its minimum before the minimum counts
START_LR = 1e-6
# far enough that AdamW diverges for practically any model: a minimum is only trusted once the loss has
# turned up after it (a short sweep that ends at 1.0 can still be descending there)
END_LR = 10.0
MIN_STEPS, MAX_STEPS = 40, 100


@dataclass
class RangeTest:
    lr: float  # the suggestion
    rule: str
    steps: int
    lr_at_minimum: float
    diverged_at: float | None  # the learning rate where the sweep stopped, if it diverged
    curve: list[tuple[float, float]] = field(default_factory=list)  # (lr, smoothed loss), thinned

    def to_dict(self) -> dict:
        return {"lr": self.lr, "rule": self.rule, "steps": self.steps, "lr_at_minimum": self.lr_at_minimum,
                "diverged_at": self.diverged_at, "curve": [[float(f"{a:.3g}"), float(f"{b:.5g}")] for a, b in self.curve]}


def sweep_steps(total_steps: int) -> int:
    """A tenth of the training budget, within 40..100 steps (6 to 14 points per decade): little cost."""
    return max(MIN_STEPS, min(MAX_STEPS, total_steps // 10))


def range_test(step: Callable[[float], float], steps: int, *, start: float = START_LR, end: float = END_LR) -> RangeTest:
    """``step(lr)`` takes one optimizer step at ``lr`` and returns the batch loss (a float)."""
    ratio = (end / start) ** (1.0 / max(1, steps - 1))
    beta = 0.9 if steps < 60 else 0.95  # shorter sweeps smooth less, or the average lags the curve
    average, best, best_lr = 0.0, math.inf, start
    curve: list[tuple[float, float]] = []
    diverged_at = None
    for i in range(steps):
        lr = start * ratio**i
        loss = step(lr)
        if not math.isfinite(loss):
            diverged_at = lr
            break
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** (i + 1))
        curve.append((lr, smoothed))
        if smoothed < best:
            best, best_lr = smoothed, lr
        if i > 5 and smoothed > 4 * best:
            diverged_at = lr
            break
    thinned = curve[:: max(1, len(curve) // 25)]
    # a minimum is only an edge once the loss has turned up after it; a loss that never rises (an
    # exported QAT graph whose fake quantization absorbs any step, a student already at the floor)
    # gives no edge, and the conventional AdamW rate is the safer choice
    turned_up = diverged_at is not None or (curve and curve[-1][1] >= TURN_UP * best)
    if not turned_up:
        return RangeTest(FALLBACK_LR, FALLBACK_RULE, len(curve), best_lr, diverged_at, thinned)
    return RangeTest(best_lr / 10.0, RULE, len(curve), best_lr, diverged_at, thinned)
