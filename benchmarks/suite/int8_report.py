"""Issue 11's static-int8 targets, judged on the suite's own rows, and the before/after table.

The targets (issue 11, "Done when"), for static int8 on every target the suite measures:
top-1 agreement >= 0.99 on the inputs where FP32 is confident, cosine >= 0.99, size <= 0.3x FP32 and
host p50 <= 1.1x of the plain int8 artifact (the library's own documented int8 recipe, the "direct"
row of the same target and precision). "Before" is the suite run kept in
benchmarks/results/before_issue11.json (2026-11-22, before the shared quantization layer), read as
it was written; its parity rows predate the confident measure, so that column is empty there.
"""
from __future__ import annotations

import json
import os
from typing import Any

CONFIDENT_TOP1 = 0.99
COSINE = 0.99
SIZE_RATIO = 0.30
PLAIN_LATENCY_RATIO = 1.1
STATIC = "int8"
BEFORE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "before_issue11.json")


def _pair_ratio(rows, row, value) -> float | None:
    from benchmarks.suite.report import find

    other = find(rows, target=row["target"], precision=row["precision"], tool="direct")
    mine, theirs = value(row), value(other) if other else None
    return mine / theirs if mine and theirs else None


def _plain_failure(rows, row) -> str | None:
    """Why the plain int8 artifact of ``row``'s target does not exist, when its recipe failed."""
    from benchmarks.suite.report import find

    other = find(rows, target=row["target"], precision=row["precision"], tool="direct")
    if not other or other.get("path") or not other.get("error"):
        return None
    return ("the library has no recipe here: " if other.get("status") == "n/a" else "the library's own failed: ") + other["error"]


def static_checks(model: dict) -> list[dict[str, Any]]:
    """The four checks for each edgekit static-int8 row of one model that produced an artifact."""
    from benchmarks.suite.report import best_p50, size_ratio

    out = []
    rows = model["rows"]
    for row in rows:
        if row["tool"] != "edgekit" or row["precision"] != STATIC or not row.get("path"):
            continue
        where = f"{model['name']} {row['target']} int8"
        p = row.get("parity") or {}
        if p:
            conf = p.get("top1_confident")
            if "confident_samples" not in p:
                value = "not measured (the run predates this measure)"
            else:
                value = "no confident input" if conf is None else f"{conf:.4f} on {p['confident_samples']} confident"
            out.append({"check": "static int8 top-1 on confident inputs >= 0.99", "where": where,
                        "value": f"{value} (all {p.get('samples')} inputs: {p['top1']:.4f})",
                        "reached": None if conf is None else conf >= CONFIDENT_TOP1})
            out.append({"check": "static int8 cosine >= 0.99", "where": where, "value": f"{p['cosine']:.5f}",
                        "reached": p["cosine"] >= COSINE})
        ratio = _pair_ratio(rows, row, best_p50)
        if ratio is not None:
            out.append({"check": "static int8 p50 <= 1.1x plain int8", "where": where, "value": f"{ratio:.3f}",
                        "reached": ratio <= PLAIN_LATENCY_RATIO})
        elif (plain := _plain_failure(rows, row)) is not None:
            out.append({"check": "static int8 p50 <= 1.1x plain int8", "where": where,
                        "value": f"no plain int8 to compare ({plain[:190]})", "reached": None})
        sr = size_ratio(rows, row)
        if sr is not None:
            out.append({"check": "static int8 size <= 0.3x FP32", "where": where, "value": f"{sr:.3f}x",
                        "reached": sr <= SIZE_RATIO})
    return out


def _cells(rows, row) -> list[str]:
    """top-1 all / confident / cosine / x FP32 / p50 x plain, or why there is no artifact."""
    from benchmarks.suite.report import best_p50, size_ratio

    if row is None:
        return ["not measured"]
    if row.get("error") and not row.get("path"):
        return [f"not converted: {row['error'][:100]}".replace("|", "/")]
    p = row.get("parity") or {}
    interpreted = not p and (row.get("edgekit_parity") or {}).get("cosine") is not None
    if interpreted:  # Core ML on Linux: what edgekit's verification measured with its MIL reference interpreter
        p = row["edgekit_parity"]
    conf = p.get("top1_confident")
    sr, lat = size_ratio(rows, row), _pair_ratio(rows, row, best_p50)
    return [" / ".join([
        "n/a" if not p else f"{p['top1']:.3f}",
        "n/a" if conf is None else f"{conf:.3f}",
        "n/a" if not p else f"{p['cosine']:.5f}",
        "n/a" if sr is None else f"{sr:.3f}x",
        "n/a" if lat is None else f"{lat:.2f}x",
    ]) + f" ({row.get('status', '')}{', MIL reference interpreter' if interpreted else ''})"]


def before_after(doc: dict, before_path: str = BEFORE) -> list[str]:
    """A markdown section: static int8 per model and target, the kept "before" run beside this one."""
    from benchmarks.suite.report import find

    if not os.path.exists(before_path):
        return []
    with open(before_path, encoding="utf-8") as fh:
        before = {m["name"]: m for m in json.load(fh)["models"]}
    out = ["## Static int8 before and after the shared quantization layer (issue 11)", "",
           f"Before: the suite run of {_started(before_path)} (benchmarks/results/before_issue11.json). After: this run. "
           "Each cell: top-1 agreement on all inputs / on the inputs where FP32 is confident / cosine / size x FP32 / "
           "host p50 x the plain int8 artifact of the same target (the library's own int8 recipe, tables above), then "
           "edgekit's own verdict. Targets: confident top-1 >= 0.99, cosine >= 0.99, size <= 0.3x, p50 <= 1.1x.", "",
           "| model | target | before | after |", "|---|---|---|---|"]
    for model in doc["models"]:
        old = before.get(model["name"])
        targets = list(dict.fromkeys(r["target"] for r in model["rows"] if r["precision"] == STATIC))
        for target in targets:
            new_row = find(model["rows"], tool="edgekit", target=target, precision=STATIC)
            old_row = find(old["rows"], tool="edgekit", target=target, precision=STATIC) if old else None
            after = _cells(model["rows"], new_row)[0]
            was = _cells(old["rows"], old_row)[0] if old else "not measured"
            out.append(f"| {model['name']} | {target} | {was} | {after} |")
    out.append("")
    return out


def _started(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("started", "?")
