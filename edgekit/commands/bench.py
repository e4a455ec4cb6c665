"""edgekit bench: latency, memory and compute of artifacts on this host and on devices."""
from __future__ import annotations

import json
import sys

from edgekit.cli import add_common
from edgekit.constants import BENCH_TIMEOUT_S
from edgekit.errors import EXIT_DEVICE, EXIT_OK



def device_help() -> str:
    from edgekit.bench.devices import device_forms

    return f"where to measure (repeatable; devices run in parallel): {device_forms()}"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure artifacts on this host, Linux boards (SSH), Android (adb) and iOS")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifacts written by edgekit convert (.tflite, .pte, ...)")
    p.add_argument("-d", "--device", action="append", default=[], metavar="DEVICE", help=device_help() + "; default host")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs after the first (default 5)")
    p.add_argument("--runs", type=int, default=50, metavar="N", help="timed runs (default 50; the minimum with --min-time)")
    p.add_argument("--min-time", type=float, metavar="S", help="keep timing until S seconds have passed")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="measure each artifact N times, each in a fresh process; the results carry a 95%% t-interval "
                        "of the p50 across rounds (default 1)")
    p.add_argument("--timeout", type=float, default=BENCH_TIMEOUT_S, metavar="S", help=f"per artifact and device (default {BENCH_TIMEOUT_S:g})")
    p.add_argument("--data", metavar="PATH", help="real inputs (.npz/.npy, image folder) instead of seeded random ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--runner", action="append", default=[], metavar="PATH|android-app",
                   help="adb: a benchmark_model / executor_runner binary for the device's ABI (repeatable), or "
                        "android-app for the sample app; default: ~/.cache/edgekit/runners/<abi>/")
    p.add_argument("--cpu-mask", metavar="HEX", help="adb: pin the runner with taskset, e.g. f0 for big cores")
    p.add_argument("--app", metavar="ID", help="sample app: Android PACKAGE[/ACTIVITY] or iOS bundle id (default dev.edgekit.demo)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh config file (default: ssh's own, ~/.ssh/config)")
    p.add_argument("--baseline", metavar="ARTIFACT", help="speed-up relative to this artifact (default: the first)")
    p.add_argument("--no-peak", action="store_true", help="skip the GEMM peak probe (no share-of-peak column)")
    p.add_argument("--json", metavar="FILE", help="write the versioned results JSON here ('-' for stdout, no table)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with plots")
    add_common(p)


def _check_baseline(baseline: str | None, artifacts: list[str]) -> None:
    import os
    from pathlib import Path

    from edgekit.errors import UsageError

    if baseline is None:
        return
    names = {form for a in artifacts for form in (a, os.path.abspath(a), os.path.basename(a), Path(a).stem)}
    if baseline not in names and os.path.abspath(baseline) not in names:
        raise UsageError(f"--baseline {baseline}: not one of the artifacts to measure")


def _check_before_measuring(args) -> None:
    """Report files writable, --data finite, artifacts matching their manifests: said before any
    measuring, not after minutes of it."""
    import os

    from edgekit.data import check_finite_file
    from edgekit.manifest import check_output_file, digest_mismatch

    for artifact in args.artifacts:
        warning = digest_mismatch(artifact) if os.path.exists(artifact) else None
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    for flag, path in (("--json", args.json), ("--html", args.html)):
        if path and path != "-":
            check_output_file(path, flag)
    check_finite_file(args.data, "--data")


def run(args) -> int:
    from edgekit.bench.report import render_table, write_html
    from edgekit.bench.runner import run_bench
    from edgekit.bench.schema import dump_results

    _check_baseline(args.baseline, args.artifacts)
    _check_before_measuring(args)
    records = run_bench(
        args.artifacts, args.device or ["host"], threads=args.threads, warmup=args.warmup, runs=args.runs,
        min_time=args.min_time, timeout=args.timeout, data=args.data, runner=args.runner or None, quiet=args.quiet,
        cpu_mask=args.cpu_mask, seed=args.seed, app=args.app, ssh_config=args.ssh_config, peak=not args.no_peak,
        rounds=args.rounds,
    )
    if args.json == "-":
        json.dump({"schema_version": records[0]["schema_version"], "kind": "edgekit.bench.results", "results": records},
                  sys.stdout, indent=2)
        print()
    else:
        print(render_table(records, args.baseline))
        if args.json:
            path = dump_results(records, args.json)
            if not args.quiet:
                print(f"results: {path}", file=sys.stderr)
    if args.html:
        path = write_html(records, args.html, args.baseline)
        if not args.quiet:
            print(f"report: {path}", file=sys.stderr)
    return EXIT_OK if all(r["status"] == "ok" for r in records) else EXIT_DEVICE
