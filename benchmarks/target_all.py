"""`edgekit convert --target all` against converting to each target alone, in fresh processes.

Goal (issue 4): --target all <= 0.7x the sum of the separate runs: loading, export, calibration data and
the reference run happen once and are shared, and the converter libraries are imported once.

    python -m benchmarks.target_all [--model benchmarks.models:efficientnet_lite0] [--quantize none]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run(argv) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    elapsed = time.perf_counter() - start
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"no JSON from {' '.join(argv[:6])}: {proc.stderr[-1500:]}") from None
    return elapsed, doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="benchmarks.models:efficientnet_lite0")
    parser.add_argument("--input", default="x:1x3x224x224")
    parser.add_argument("--quantize", default=None, help="one precision for every target (default: each target's own)")
    args = parser.parse_args()
    from edgekit.registry import TARGETS, get_target_class

    targets = [n for n in TARGETS if get_target_class(n).available()]
    work = tempfile.mkdtemp(prefix="edgekit-all-")
    base = [sys.executable, "-m", "edgekit", "convert", "--model", args.model, "-i", args.input, "--json", "--overwrite"]
    if args.quantize:
        base += ["--quantize", args.quantize]
    alone = {}
    for name in targets:
        alone[name], _ = run(base + ["--target", name, "-o", os.path.join(work, "alone")])
    together, doc = run(base + ["--target", "all", "-o", os.path.join(work, "all")])
    total = sum(alone.values())
    print(f"model {args.model}, {len(targets)} targets: {', '.join(targets)}")
    for name in targets:
        status = next((a["status"] for a in doc["artifacts"] if a["target"] == name), "-")
        print(f"  {name:18s} alone {alone[name]:6.1f}s   (status in --target all: {status})")
    print(f"sum of separate runs {total:6.1f}s")
    print(f"--target all         {together:6.1f}s   ratio {together / total:.2f} (goal <= 0.70)")


if __name__ == "__main__":
    main()
