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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """Student's t distribution function (pure Python: stats run on boards without scipy)."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t value below which a share p of Student's t distribution with df degrees of freedom lies."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


ROUNDS_METHOD = "95% Student-t interval of the mean of the per-round p50s"


def rounds_interval(p50s: Sequence[float], level: float = 0.95) -> dict:
    """The confidence interval bench reports across repeated rounds (each round a fresh process).

    A t-interval rather than a bootstrap: rounds are few (3-10), where a bootstrap of the median
    cannot reach past the observed extremes and says less than it seems to."""
    n = len(p50s)
    mean = math.fsum(p50s) / n if n else None
    out = {"count": n, "p50_ms": list(p50s), "mean_p50_ms": mean, "ci_low_ms": None, "ci_high_ms": None,
           "level": level, "method": ROUNDS_METHOD}
    if n >= 2:
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in p50s) / (n - 1))
        half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        out.update(ci_low_ms=mean - half, ci_high_ms=mean + half)
    return out
