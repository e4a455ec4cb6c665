"""Latency statistics from a list of per-run times (pure Python: it also runs on boards)."""
from __future__ import annotations

import math
from typing import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(times_ms: Sequence[float]) -> dict[str, float | int]:
    """mean, std (population), min, p50, p90, p99, max and count of per-run latencies in ms."""
    if not times_ms:
        raise ValueError("no timed runs")
    ordered = sorted(times_ms)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    variance = math.fsum((t - mean) ** 2 for t in ordered) / n
    return {
        "mean": mean,
        "std": math.sqrt(variance),
        "min": ordered[0],
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "count": n,
    }


def throughput(mean_ms: float | None, batch: int = 1) -> float | None:
    """Inferences per second at the mean latency (one stream, batch samples per run)."""
    if not mean_ms or mean_ms <= 0:
        return None
    return batch * 1000.0 / mean_ms
