"""This machine's measured float32 GEMM peak (GFLOP/s), per thread count, cached per machine.

A short numpy matmul probe in a fresh process whose BLAS is limited to the bench's thread count, so
that "share of peak" compares like with like. The cache lives in <cache>/peak.json, keyed by the
machine fingerprint (hostname, architecture, CPU, core count); delete it to probe again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from edgekit.bench.machine import cache_dir, fingerprint

PROBE_SIZE = 1024  # 2.1 GFLOP per matmul: long enough to time, short enough for a small board
PROBE_SECONDS = 0.6
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
_PROBE = r"""
import sys, time
import numpy as np
n, budget = int(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b  # first call pays for thread start-up and page faults
best, start = float("inf"), time.perf_counter()
while True:
    t0 = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t0)
    if time.perf_counter() - start > budget:
        break
print(2.0 * n ** 3 / best / 1e9)
"""


def probe_gflops(threads: int, size: int = PROBE_SIZE, seconds: float = PROBE_SECONDS) -> float | None:
    """Best-of GEMM throughput with ``threads`` BLAS threads, measured now (None if numpy is missing)."""
    env = dict(os.environ)
    env.update({name: str(threads) for name in _THREAD_VARS})
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(size), str(seconds)],
            capture_output=True, text=True, timeout=120, env=env,
        )
        return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def peak_gflops(threads: int) -> float | None:
    """Cached peak for this machine and thread count; probes once when missing."""
    path = cache_dir() / "peak.json"
    key, sub = fingerprint(), str(threads)
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    value = cache.get(key, {}).get(sub)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    value = probe_gflops(threads)
    if value is None:
        return None
    cache.setdefault(key, {})[sub] = value
    try:  # a cache that cannot be written only costs a probe next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".peak.json.{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return value


def compute_section(flops: int | None, p50_ms: float | None, threads: int, probe: bool = True) -> dict:
    """FLOPs -> achieved GFLOP/s at the median latency, and its share of this machine's peak."""
    section = {"flops": flops, "gflops_per_s": None, "peak_gflops": None, "peak_share": None}
    if not flops or not p50_ms:
        return section
    achieved = flops / (p50_ms * 1e-3) / 1e9
    section["gflops_per_s"] = achieved
    peak = peak_gflops(threads) if probe else None
    if peak:
        section["peak_gflops"] = peak
        section["peak_share"] = achieved / peak
    return section
