"""`edgekit --help` and `--version` wall time in fresh processes, and which ML frameworks they import.

Goal (issue 2): <= 0.5 s on this machine, no ML framework imported.

    python -m benchmarks.cli_startup [--runs 10]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "numpy", "litert_torch", "coremltools", "executorch", "tensorflow", "onnxruntime", "matplotlib")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    probe = (
        "import sys, runpy\nsys.argv=['edgekit','{flag}']\n"
        "try: runpy.run_module('edgekit', run_name='__main__')\nexcept SystemExit: pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    for flag in ("--help", "--version"):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgekit", flag], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        heavy = subprocess.run([sys.executable, "-c", probe.format(flag=flag)], capture_output=True, text=True).stderr.strip()
        print(f"edgekit {flag:10s} median {statistics.median(times):.3f}s  max {max(times):.3f}s  "
              f"({args.runs} runs; goal <= 0.5 s)  imported: {heavy.split('HEAVY ')[-1]}")


if __name__ == "__main__":
    main()
