"""edgekit run pipeline.toml: distill -> convert (targets x precisions) -> verify -> bench, from one file."""
from __future__ import annotations

import json
import shlex
import sys

from edgekit.cli import add_common
from edgekit.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline.toml: distill, convert, verify and bench in one go")
    p.add_argument("pipeline", help="the pipeline file (TOML; see docs/distill.md for its keys)")
    p.add_argument("--check", action="store_true", help="validate the file and exit")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of tables")
    add_common(p)


def _tuple(value):
    return None if value is None else tuple(value)


def distill_kwargs(section: dict) -> dict:
    kwargs = dict(section)
    for key in ("image_size", "mean", "std"):
        if key in kwargs:
            kwargs[key] = _tuple(kwargs[key])
    kwargs.setdefault("output", "student.pt2")
    kwargs.setdefault("checkpoint_dir", kwargs["output"].removesuffix(".pt2") + ".ckpt")
    if kwargs.get("clip_grad") == 0:
        kwargs["clip_grad"] = None
    return kwargs


def convert_kwargs(section: dict, verify: dict, command_line: str) -> dict:
    return dict(
        calibration=section.get("calibration"),
        inputs=section.get("inputs"),
        arch=section.get("arch"),
        trust_pickle=section.get("trust_pickle", False),
        calibration_samples=section.get("calibration_samples", 100),
        io=section.get("io", "float"),
        output_dir=section.get("output_dir", "."),
        name=section.get("name"),
        overwrite=section.get("overwrite", False),
        image_size=_tuple(section.get("image_size")),
        mean=_tuple(section.get("mean")),
        std=_tuple(section.get("std")),
        color_layout=section.get("color_layout", "RGB"),
        threads=section.get("threads", 1),
        seed=section.get("seed", 0),
        target_options=section.get("options", {}),
        eval_data=verify.get("eval_data"),
        eval_samples=verify.get("eval_samples"),
        tolerance=verify.get("tolerance"),
        output_roles=verify.get("output_roles", {}),
        state=verify.get("state", {}),
        state_steps=verify.get("state_steps", 8),
        verify=verify.get("enabled", True),
        strict=verify.get("strict", False),
        command_line=command_line,
    )


def run_pipeline(pipeline, reporter) -> dict:
    """Run every stage the file names; returns {distill, artifacts, bench} (plain data)."""
    from edgekit.errors import UsageError
    from edgekit.options import get_precision
    from edgekit.pipeline import convert

    result: dict = {"pipeline": pipeline.path, "distill": None, "artifacts": [], "bench": None}
    convert_section = pipeline.convert
    if convert_section is not None:
        needs_calibration = any(get_precision(p).needs_calibration for p in convert_section.get("precisions", []))
        if needs_calibration and not convert_section.get("calibration"):
            raise UsageError(f"{pipeline.path}: [convert] precision int8 needs 'calibration' (a .npz, image folder or module:function)")
    _check_outputs(pipeline)
    model = convert_section.get("model") if convert_section else None
    if pipeline.distill is not None:
        from edgekit.distill import distill

        reporter.info("distill")
        kwargs = distill_kwargs(pipeline.distill)
        distilled = distill(kwargs.pop("teacher"), reporter=reporter, **kwargs)
        if distilled is None:  # a non-zero rank under torchrun: rank 0 carries on
            return result
        result["distill"] = distilled.report
        model = distilled.path
    if convert_section is None:
        return result
    command_line = "edgekit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = convert_kwargs(convert_section, pipeline.verify, command_line)
    artifacts = []
    for precision in convert_section.get("precisions", [None]):
        reporter.info(f"convert [{precision or 'target default'}]")
        artifacts += convert(model, target=convert_section["targets"], quantize=precision, reporter=reporter, **options)
    result["artifacts"] = artifacts
    if pipeline.bench is not None:
        result["bench"] = _bench(pipeline.bench, artifacts, reporter)
    return result


def _check_outputs(pipeline) -> None:
    """Every place the pipeline writes is proved writable (and every name safe) before any stage runs."""
    from edgekit.manifest import check_output_dir, check_output_file
    from edgekit.options import check_name

    if pipeline.distill is not None:
        check_output_file(pipeline.distill.get("output", "student.pt2"), f"{pipeline.path}: [distill] output")
    if pipeline.convert is not None:
        if pipeline.convert.get("name") is not None:
            check_name(pipeline.convert["name"])
        check_output_dir(pipeline.convert.get("output_dir", "."))
    if pipeline.bench is not None and pipeline.bench.get("output"):
        check_output_file(pipeline.bench["output"], f"{pipeline.path}: [bench] output")


def _bench(section: dict, artifacts, reporter) -> list[dict]:
    from edgekit.bench import run_bench

    paths = [a.path for a in artifacts if a.path and a.status in ("passed", "unverified", "skipped")]
    if not paths:
        reporter.warn("bench: no artifact passed verification; nothing to measure")
        return []
    kwargs = {k: section[k] for k in ("threads", "warmup", "runs", "min_time", "timeout", "data", "runner") if k in section}
    records = run_bench(paths, section.get("devices", ["host"]), quiet=reporter.quiet, **kwargs)
    if section.get("output"):
        from edgekit.bench.schema import dump_results

        dump_results(records, section["output"])
    return records


def exit_code(result: dict, strict: bool) -> int:
    from edgekit.commands.convert import exit_code as convert_exit_code

    code = convert_exit_code(result["artifacts"], strict)
    if code != EXIT_OK:
        return code
    if result["bench"] and any(r.get("status") != "ok" for r in result["bench"]):
        from edgekit.errors import EXIT_DEVICE

        return EXIT_DEVICE
    return EXIT_OK


def render(result: dict) -> str:
    from edgekit.ui import fmt, table

    parts = []
    if result["distill"]:
        from edgekit.distill.report import render as render_distill

        parts.append(render_distill(result["distill"]))
    if result["artifacts"]:
        from edgekit.report import render_convert

        parts.append(render_convert(result["artifacts"]))
    if result["bench"]:
        rows = [[r["artifact"]["name"], (r.get("device") or {}).get("id"), r["status"],
                 fmt((r.get("timings_ms") or {}).get("p50"), ".3f"), r.get("error") or ""] for r in result["bench"]]
        parts.append(table(["artifact", "device", "status", "p50 ms", "error"], rows))
    return "\n\n".join(parts)


def run(args) -> int:
    from edgekit.commands.distill import _leave_process_group
    from edgekit.pipeline_file import load
    from edgekit.ui import Reporter

    pipeline = load(args.pipeline)
    if args.check:
        print(f"{args.pipeline}: valid (" + ", ".join(
            s for s in ("distill", "convert", "verify", "bench") if getattr(pipeline, s)) + ")")
        return EXIT_OK
    rank = 0
    if pipeline.distill is not None:
        from edgekit.distill.train import distributed_context

        rank, _ = distributed_context()
    reporter = Reporter(quiet=args.quiet or args.json or rank != 0, verbose=args.verbose)
    try:
        result = run_pipeline(pipeline, reporter)
    finally:
        _leave_process_group()
    if rank != 0:  # under torchrun, rank 0 converts, benchmarks and reports
        return EXIT_OK
    strict = pipeline.verify.get("strict", False)
    if args.json:
        print(json.dumps({**result, "artifacts": [a.to_json() for a in result["artifacts"]]}, indent=2, default=str))
    else:
        print(render(result))
    return exit_code(result, strict)
