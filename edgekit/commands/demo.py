"""edgekit demo: a real model (a CNN trained in seconds on scikit-learn's digits) through convert +
verify for every installed target, in float32 and int8, ending with one table."""
from __future__ import annotations

import os
import tempfile

from edgekit.cli import add_common
from edgekit.errors import EXIT_OK, EXIT_VERIFY_FAILED, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a small digits CNN and take it through every installed target")
    p.add_argument("-o", "--output", default=None, metavar="DIR", help="keep the artifacts here (default: a temp folder)")
    p.add_argument("--epochs", type=int, default=8)
    add_common(p)


def _host_latency(paths, reporter) -> dict:
    """p50 latency per artifact on this machine, through the benchmark runner."""
    from edgekit.bench import run_bench

    if not paths:
        return {}
    with reporter.stage(f"measure {len(paths)} artifacts on the host (edgekit bench)"):
        records = run_bench(paths, ["host"], threads=1, warmup=3, runs=30, quiet=True, peak=False)
    return {r["artifact"]["path"]: (r.get("timings_ms") or {}).get("p50") for r in records if r.get("status") == "ok"}


def run(args) -> int:
    from edgekit.demo import artifact_accuracy, digits_data, train_digits, write_demo_files
    from edgekit.pipeline import convert
    from edgekit.registry import targets, get_target, get_target_class
    from edgekit.ui import Reporter, fmt, human_size, table

    reporter = Reporter(quiet=args.quiet, verbose=args.verbose)
    if args.output:  # a folder that cannot be written is said before the training, not after
        from edgekit.manifest import check_output_dir

        check_output_dir(args.output)
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    with reporter.stage("train a digits CNN (scikit-learn digits, 1,437 train / 360 test)"):
        data = digits_data()
        model = train_digits(data, epochs=args.epochs)
    import numpy as np
    import torch

    with torch.no_grad():
        fp_acc = float(np.mean(model(torch.from_numpy(data.x_test)).argmax(-1).numpy() == data.y_test))
    reporter.info(f"  PyTorch test accuracy: {fp_acc:.3f}")
    workdir = args.output or tempfile.mkdtemp(prefix="edgekit-demo-")
    os.makedirs(workdir, exist_ok=True)
    paths = write_demo_files(workdir, data, model)
    installed = [n for n in targets() if get_target_class(n).available()]
    missing = [n for n in targets() if n not in installed]
    rows, paths_measured, code = [], [], EXIT_OK
    for name in installed:
        target = get_target(name)
        wanted = [p for p in ("none", "int8") if p in target.precisions] or [target.default_precision]
        for precision in wanted:
            arts = convert(
                paths["model"], target=name, quantize=precision, calibration=paths["calibration"],
                eval_data=paths["eval"], eval_samples=len(data.x_test), arch="edgekit.demo:digits_cnn",
                inputs=["x:1x1x8x8"], output_dir=workdir, overwrite=True, reporter=reporter,
            )
            for art in arts:
                acc = artifact_accuracy(target, art.path, data) if art.status in ("passed", "failed") else None
                rows.append([name, precision, human_size(art.size_bytes), fmt(art.parity.get("cosine"), ".6f"),
                             fmt(art.parity.get("top1"), ".3f"), fmt(acc, ".3f"), art.status])
                paths_measured.append(art.path if art.status in ("passed", "failed") else None)
                if art.status == "failed":
                    code = EXIT_VERIFY_FAILED
    latency = _host_latency([p for p in paths_measured if p], reporter)
    for row, path in zip(rows, paths_measured):
        row.insert(6, fmt(latency.get(path), ".3f"))
    print()
    print(f"digits CNN: PyTorch test accuracy {fp_acc:.3f} on 360 held-out images; artifacts in {workdir}")
    print(table(["target", "precision", "size", "cosine", "top-1 vs fp32", "test acc", "p50 ms", "status"], rows))
    print("p50: host latency of one inference, 1 thread, measured by `edgekit bench` (each artifact in a fresh process)")
    if missing:
        print(f"not installed: {', '.join(missing)} (pip install 'edgekit[all]')")
    return code
