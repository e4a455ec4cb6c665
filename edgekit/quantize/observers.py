"""The one activation observer no library here has: percentile clipping; and torchao's histogram
observer with its range search made fast (``FastHistogramObserver``, same bins).

torchao has min/max, moving-average min/max and a histogram observer whose range search minimises
the L2 (mean squared) quantization error, which is the MSE observer; so only the percentile rule is
written here, on top of that histogram: same running histogram, a different choice of range. The
histogram's own search is recomputed here without its per-step Python loops (``greedy_l2_search``):
on an LSTM's saturated gates it was most of a static int8 conversion (issue 13, docs/quantize.md).
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def percentile_observer_class():
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver

    class PercentileObserver(HistogramObserver):
        """Clip the activation range to the given percentile of everything observed (both tails)."""

        def __init__(self, *args, percentile: float = 99.99, **kwargs):
            super().__init__(*args, **kwargs)
            self.percentile = float(percentile)

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            total = float(self.histogram.sum())
            if total == 0:
                return self.min_val, self.max_val
            cdf = torch.cumsum(self.histogram, 0) / total
            tail = (100.0 - self.percentile) / 100.0
            bin_width = (self.max_val - self.min_val) / self.bins
            low = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype)))
            high = int(torch.searchsorted(cdf, torch.tensor(1.0 - tail, dtype=cdf.dtype)))
            new_min = self.min_val + bin_width * low
            new_max = self.min_val + bin_width * min(high + 1, self.bins)
            # symmetric int8 keeps zero exact: never clip a range so that it excludes zero
            return torch.minimum(new_min, torch.zeros_like(new_min)), torch.maximum(new_max, torch.zeros_like(new_max))

    return PercentileObserver


#: torchao's HistogramObserver search steps its quantile bounds by this much (``stepsize``)
_SEARCH_STEP = 1e-5
_SEARCH_STEPS = 100_010  # alpha and beta meet after at most 1 / _SEARCH_STEP steps


@functools.lru_cache(maxsize=1)
def _bounds():
    """alpha_k and beta_m of torchao's search, accumulated by the same float64 additions it does
    (``alpha = alpha + stepsize``), so that every comparison below sees the same floats."""
    import numpy as np

    alphas, betas = np.empty(_SEARCH_STEPS), np.empty(_SEARCH_STEPS)
    alpha, beta = 0.0, 1.0
    for k in range(_SEARCH_STEPS):
        alphas[k], betas[k] = alpha, beta
        alpha, beta = alpha + _SEARCH_STEP, beta - _SEARCH_STEP
    return alphas, betas, -betas  # -betas: increasing, for searchsorted


def greedy_l2_search(observer):
    """(start_bin, end_bin) that torchao's ``HistogramObserver._non_linear_param_search`` settles on,
    computed the same way but without its per-step Python loops.

    torchao moves a lower quantile bound alpha up or an upper one beta down by 1e-5 per iteration,
    walking each bound bin by bin over the cumulative histogram, and computes the L2 error only when
    a bound crosses a bin. On a histogram whose mass sits at its ends (a tanh or sigmoid gate that
    saturates: most of an LSTM's activations) that is ~100,000 iterations that change nothing, about
    0.5 s per observer (705 such observers in the 32-step CRNN: 26 s per convert). Here: the bins each
    bound reaches are found by binary search on the cumulative sum (monotone), and a run of
    iterations that move nothing is skipped in one step (beta's values are precomputed with the same
    float64 subtractions, thresholds are rounded to float32 as torch compares a float32 tensor with a
    Python float). The errors are torchao's own ``_compute_quantization_error``, so the result is
    the same bins (tested on the CRNN's 705 observers and on random histograms)."""
    import numpy as np
    import torch

    bins = observer.bins
    total = torch.sum(observer.histogram).item()
    csum = torch.cumsum(observer.histogram.detach().cpu(), dim=0).numpy().astype(np.float32)
    alphas, betas, neg_betas = _bounds()
    beta_thresholds = (betas * total).astype(np.float32)  # decreasing
    neg_beta_thresholds = -beta_thresholds  # increasing, for searchsorted
    k = m = 0  # alpha = alphas[k], beta = betas[m]
    start, end = 0, bins - 1
    norm_min = float("inf")
    while k + 1 < _SEARCH_STEPS and m + 1 < _SEARCH_STEPS and alphas[k] < betas[m]:
        low = np.float32(alphas[k + 1] * total)
        high = beta_thresholds[m + 1]
        left = min(end, max(start, int(np.searchsorted(csum, low, side="left"))))
        right = max(start, min(end, int(np.searchsorted(csum, high, side="right")) - 1))
        if (left - start) > (end - right):
            next_start, next_end = left, end
            k += 1
        else:
            next_start, next_end = start, right
            m += 1
        if next_start == start and next_end == end:
            # nothing moved (left == start, right == end): beta alone steps down until its threshold
            # falls below csum[end] (then right < end) or alpha meets beta; skip those iterations
            first = _SEARCH_STEPS if end == start else int(
                np.searchsorted(neg_beta_thresholds, -csum[end], side="right"))
            meet = int(np.searchsorted(neg_betas, -alphas[k], side="left"))  # first m with beta <= alpha
            m = max(m, min(first - 1, meet))
            continue
        norm = observer._compute_quantization_error(next_start, next_end)
        if norm > norm_min:
            break
        norm_min = norm
        start, end = next_start, next_end
    return start, end


@functools.lru_cache(maxsize=None)
def fast_histogram_observer_class():
    import hashlib

    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver

    class FastHistogramObserver(HistogramObserver):
        """torchao's HistogramObserver with the same range search, computed faster
        (``greedy_l2_search``) and remembered: a calibrated graph is converted several times (the
        held-back score, then each target's fold), and each convert asks every observer again."""

        _memo: dict = {}

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            if self.histogram.dtype != torch.float32:  # greedy_l2_search rounds thresholds as float32 does
                return super()._non_linear_param_search()
            key = hashlib.sha1(str(self.dtype).encode() + b"".join(
                t.detach().cpu().numpy().tobytes() for t in (self.histogram, self.min_val, self.max_val))).hexdigest()
            if key not in self._memo:
                if len(self._memo) > 100_000:
                    self._memo.clear()
                self._memo[key] = greedy_l2_search(self)
            start, end = self._memo[key]
            bin_width = (self.max_val - self.min_val) / self.bins
            return self.min_val + bin_width * start, self.min_val + bin_width * (end + 1)

    return FastHistogramObserver
