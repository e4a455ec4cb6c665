"""How long reading a Core AI program takes, and its peak memory: the weights read raw from main.mlirb's
bytecode (targets/coreai/bytecode.py, the default) against printing the module as text (its hex
``dialect_resources``, the fallback and the earlier way). Each mode runs in its own process, so peak RSS
is that mode's alone; the constants of both are checked to be identical.

    python -m benchmarks.coreai_read PATH.aimodel [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = """
import hashlib, json, resource, sys, time
from edgekit.targets.coreai import analysis, program
path, mode, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(repeat):
    asset = analysis.load_asset(path)
    if mode == "text":
        asset.bytecode_path = ""  # no bytecode file: every blob from the printed module
    start = time.perf_counter()
    read = program.read_program(asset)
    times.append(time.perf_counter() - start)
digest = hashlib.sha256()
for name in sorted(read.graphs):
    for vid, value in sorted(read.graphs[name].constants.items()):
        digest.update(value.tobytes())
print(json.dumps({"mode": mode, "seconds": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "constants_sha256": digest.hexdigest()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for mode in ("text", "bytecode"):
        out = subprocess.run([sys.executable, "-c", _CHILD, args.path, mode, str(args.repeat)], capture_output=True,
                             text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    for r in rows:
        print(f"{r['mode']:9s} read_program {', '.join(f'{t:.2f} s' for t in r['seconds'])}   peak RSS {r['peak_rss_mb']:.0f} MB")
    print("constants identical:", rows[0]["constants_sha256"] == rows[1]["constants_sha256"])


if __name__ == "__main__":
    main()
