"""The one activation observer no library here has: percentile clipping.

torchao has min/max, moving-average min/max and a histogram observer whose range search minimises
the L2 (mean squared) quantization error, which is the MSE observer; so only the percentile rule is
written here, on top of that histogram: same running histogram, a different choice of range.
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
