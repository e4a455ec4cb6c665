"""Fresh-process comparisons: `edgekit convert --target all` against each library called directly
(summed), and the CLI's exit code for a precision that misses parity on a real model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# OMP_NUM_THREADS=1 for both sides: PyTorch's spinning intra-op threads on a shared machine would
# charge its load to whichever process runs eager PyTorch (see measure.measure_case)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _run(argv, timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout)
    return time.perf_counter() - start, proc


def _inputs(case) -> list[str]:
    return [a for spec in case.inputs for a in ("-i", spec)]


def target_all(case, files: dict, work: str, log=print) -> dict:
    from edgekit.registry import TARGETS, get_target_class

    from benchmarks.suite import direct

    targets = [n for n in TARGETS if get_target_class(n).available()]
    entry: dict = {"model": case.name, "targets": targets, "direct_s": {}, "statuses": {}}
    for name in targets:
        precision = get_target_class(name).default_precision
        if (name, precision) not in direct.CONVERT:
            entry["error"] = f"no direct recipe for {name} {precision}"
            return entry
        out = os.path.join(work, "direct-all", f"{case.name}_{precision}{direct.SUFFIX[name]}")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        seconds, proc = _run([sys.executable, "-m", "benchmarks.suite.direct", "--model", case.factory, *_inputs(case),
                              "--target", name, "--precision", precision, "--calibration", files["calibration"], "--out", out])
        if proc.returncode != 0:
            entry["error"] = f"direct {name} failed: {(proc.stderr.strip().splitlines() or [''])[-1][:200]}"
            return entry
        entry["direct_s"][f"{name} {precision}"] = seconds
        log(f"[{case.name}] direct {name} {precision} in a fresh process: {seconds:.1f} s")
    argv = [sys.executable, "-m", "edgekit", "convert", "--model", case.factory, *_inputs(case), "--target", "all",
            "--eval-data", files["evaluation"], "-o", os.path.join(work, "edgekit-all"), "--overwrite", "--json"]
    seconds, proc = _run(argv)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        entry["error"] = f"edgekit --target all printed no JSON (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
        return entry
    entry["statuses"] = {f"{a['target']} {a['precision']}": a["status"] for a in doc["artifacts"]}
    entry["edgekit_s"] = seconds
    entry["exit_code"] = proc.returncode
    entry["command"] = "edgekit " + " ".join(argv[3:])
    entry["direct_sum_s"] = sum(entry["direct_s"].values())
    entry["ratio"] = seconds / entry["direct_sum_s"]
    log(f"[{case.name}] edgekit --target all: {seconds:.1f} s vs {entry['direct_sum_s']:.1f} s summed: ratio {entry['ratio']:.2f}")
    # the same without verification: the direct side verifies nothing, so this is the like-for-like work
    seconds, proc = _run(argv + ["--no-verify"])
    if proc.returncode == 0:
        entry["edgekit_noverify_s"] = seconds
        entry["ratio_noverify"] = seconds / entry["direct_sum_s"]
        log(f"[{case.name}] edgekit --target all --no-verify: {seconds:.1f} s: ratio {entry['ratio_noverify']:.2f}")
    return entry


# A precision that misses parity on a real model by far: 4-bit weights on EfficientNet-Lite0's depthwise
# convolutions (measured on real photos: cosine 0.41, top-1 agreement 0.19 against the 0.97 / 0.90 that
# edgekit requires of 4-bit precisions). Static int8 misses too, but narrowly enough (cosine 0.988 vs 0.99)
# that a better int8 recipe would turn it into a pass.
FAILING = dict(target="tflite", precision="int4-weight-only")


FAILING_SUFFIX = ".tflite"


def failing_check(case, files: dict, work: str, log=print, precision: str | None = None) -> dict:
    precision = precision or FAILING["precision"]
    argv = [sys.executable, "-m", "edgekit", "convert", "--model", case.factory, *_inputs(case), "--target", FAILING["target"],
            "--quantize", precision, "--calibration", files["calibration"], "--eval-data", files["evaluation"],
            "-o", os.path.join(work, "failing"), "--overwrite"]
    seconds, proc = _run(argv)
    output = (proc.stdout + proc.stderr).strip()
    line = next((l for l in output.splitlines() if "failed verification" in l), output.splitlines()[-1] if output else "")
    log(f"[{case.name}] {FAILING['target']} {precision}: exit {proc.returncode} in {seconds:.0f} s: {line[:160]}")
    written = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(work, "failing")) for f in files
               if f.endswith(FAILING_SUFFIX)]
    return {"what": f"{case.name} {FAILING['target']} {precision}", "exit_code": proc.returncode,
            "artifact": written[0] if written else None,
            "command": "edgekit " + " ".join(argv[3:]).replace(work, "<work>"), "line": line, "output": output.replace(work, "<work>")}
