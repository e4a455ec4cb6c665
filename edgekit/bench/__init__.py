"""The measuring side of edgekit: latency, memory and compute of artifacts on this host, on Linux
boards over SSH, on Android (adb) and on iOS. Nothing heavy is imported here.

    from edgekit.bench import run_bench
    records = run_bench(["out/model.tflite"], ["host", "ssh://pi@raspberrypi.local"], threads=2)

Each record follows edgekit.bench.schema (SCHEMA_VERSION, parse_result, load_results).
"""
from __future__ import annotations

__all__ = ["run_bench"]


def __getattr__(name: str):
    """``edgekit.bench.run_bench`` is :func:`edgekit.bench.runner.run_bench`, imported on first use
    (so that ``import edgekit.bench`` stays free for the measuring module on a bare board)."""
    if name == "run_bench":
        from edgekit.bench.runner import run_bench

        return run_bench
    raise AttributeError(f"module 'edgekit.bench' has no attribute {name!r}")
