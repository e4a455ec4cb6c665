"""Two activation observers torchao lacks: the MSE range search and the per-sample mean of min/max.

- ``mse``: the same running histogram as torchao's HistogramObserver, but the range is chosen by an
  exhaustive search over (low, high) clipping pairs that minimises the expected int8 error of the
  observed distribution: rounding noise (step^2 / 12) for every value inside the range, the squared
  clipping distance for every value outside. HistogramObserver's own search shrinks the range
  greedily one bin at a time and stops at the first local minimum; this one looks at the whole grid.
- ``mean-minmax``: the moving average of the per-sample minimum and maximum with the averaging
  constant 1/n (NNCF's MEAN_MINMAX, TensorFlow's moving-average calibration over a fixed set).
  torchao's MovingAverageMinMaxObserver uses a constant of 0.01, so with one sample per
  calibration step its ranges stay close to the first sample (measured: docs/quantize.md).
"""
from __future__ import annotations

import functools

#: clipping fractions of the observed min / max the MSE search tries on each side
MSE_GRID = 200


def expected_int8_error(centers, counts, low, high, levels: int = 255):
    """Expected squared error of quantizing a histogram (bin ``centers``, ``counts``) onto ``levels``
    steps over every [low_i, high_j] pair: a len(low) x len(high) tensor. Separable (clipping below,
    clipping above, rounding inside) and computed from prefix sums of n, n*c, n*c^2, so the grid
    costs O(grid + bins), not O(grid^2 x bins)."""
    import torch

    zero = torch.zeros(1, dtype=counts.dtype)
    n0, n1, n2 = (torch.cat([zero, torch.cumsum(counts * centers**k, 0)]) for k in (0, 1, 2))
    total = (n0[-1], n1[-1], n2[-1])
    i = torch.searchsorted(centers, low)  # bins strictly below low: [0, i)
    j = torch.searchsorted(centers, high, right=True)  # bins strictly above high: [j, end)
    below = low**2 * n0[i] - 2 * low * n1[i] + n2[i]
    above = (total[2] - n2[j]) - 2 * high * (total[1] - n1[j]) + high**2 * (total[0] - n0[j])
    inside = total[0] - n0[i].view(-1, 1) - (total[0] - n0[j]).view(1, -1)
    step = (high.view(1, -1) - low.view(-1, 1)) / levels
    return below.view(-1, 1) + above.view(1, -1) + inside * step**2 / 12


def mse_range(histogram, min_val, max_val, grid: int = MSE_GRID):
    """(low, high) minimising ``expected_int8_error`` over a grid of clips of [min_val, max_val];
    zero always stays inside the range (int8 keeps zero exact)."""
    import torch

    bins = histogram.numel()
    width = (max_val - min_val) / bins
    centers = min_val + width * (torch.arange(bins, dtype=torch.float64) + 0.5)
    counts = histogram.to(torch.float64)
    fractions = torch.linspace(1.0 / grid, 1.0, grid, dtype=torch.float64)
    low_edge, high_edge = min(float(min_val), 0.0), max(float(max_val), 0.0)
    lows = low_edge * fractions if low_edge < 0 else torch.zeros(1, dtype=torch.float64)
    highs = high_edge * fractions if high_edge > 0 else torch.zeros(1, dtype=torch.float64)
    err = expected_int8_error(centers, counts, lows, highs)
    flat = int(torch.argmin(err))
    i, j = divmod(flat, err.shape[1])
    return float(lows[i]), float(highs[j])


@functools.lru_cache(maxsize=None)
def mse_observer_class():
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver

    class MSEObserver(HistogramObserver):
        """Activation range that minimises the expected int8 quantization error (grid search)."""

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            if float(self.histogram.sum()) == 0 or float(self.max_val) == float(self.min_val):
                return self.min_val, self.max_val
            low, high = mse_range(self.histogram, self.min_val, self.max_val)
            return torch.tensor(low, dtype=self.min_val.dtype), torch.tensor(high, dtype=self.max_val.dtype)

    return MSEObserver


@functools.lru_cache(maxsize=None)
def mean_minmax_observer_class():
    import torch
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class MeanMinMaxObserver(MinMaxObserver):
        """Range = the mean over calibration steps of each step's min and max."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))

        def forward(self, x_orig):
            if x_orig.numel() == 0:
                return x_orig
            low, high = torch.aminmax(x_orig.detach().to(self.min_val.dtype))
            self.steps += 1
            if int(self.steps) == 1:
                self.min_val.copy_(low)
                self.max_val.copy_(high)
            else:
                weight = 1.0 / float(self.steps)
                self.min_val.copy_(self.min_val + (low - self.min_val) * weight)
                self.max_val.copy_(self.max_val + (high - self.max_val) * weight)
            return x_orig

    return MeanMinMaxObserver
