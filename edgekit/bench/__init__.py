"""The measuring side of edgekit: latency, memory and compute of artifacts on this host, on Linux
boards over SSH, on Android (adb) and on iOS. Nothing heavy is imported here.

    from edgekit.bench import run_bench
    records = run_bench(["out/model.tflite"], ["host", "ssh://pi@raspberrypi.local"], threads=2)

Each record follows edgekit.bench.schema (SCHEMA_VERSION, parse_result, load_results).
"""
from __future__ import annotations

from edgekit.constants import BENCH_TIMEOUT_S

__all__ = ["run_bench"]


def run_bench(
    artifacts: list[str],
    devices: list[str] = ["host"],  # noqa: B006 - the documented signature; never mutated
    *,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 50,
    min_time: float | None = None,
    timeout: float = BENCH_TIMEOUT_S,
    data: str | None = None,
    runner=None,
    quiet: bool = True,
    **options,
) -> list[dict]:
    """Measure every artifact on every device; see :func:`edgekit.bench.runner.run_bench`
    (further keywords: cpu_mask, seed, app, ssh_config, peak, rounds, progress_stream)."""
    from edgekit.bench.runner import run_bench as _run_bench

    return _run_bench(list(artifacts), list(devices), threads=threads, warmup=warmup, runs=runs, min_time=min_time,
                      timeout=timeout, data=data, runner=runner, quiet=quiet, **options)
