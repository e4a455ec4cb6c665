"""The measuring module: one artifact, one fresh process, one result record.

    python -m edgekit.bench.measure ARTIFACT --out RESULT.json [--threads N] [--warmup N] [--runs N]
                                    [--min-time S] [--data PATH] [--seed N] [--timeout S] [--no-peak]

Runs on this host (a subprocess per artifact, so one model's memory never counts against another's)
and, unchanged, on a Linux board over SSH with the board's own Python. It loads the artifact through
its target's Runtime, so it measures every target edgekit knows. Only the standard library is
imported at module level: a board without numpy or the runtime still gets a clear result record.

Exit status: 0 when the record says "ok", 1 when it records a failure, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Everything imported so far belongs to Python start-up and this module; the baseline child imports
# the same. Snapshot now so that the runtime's own imports can be told apart later.
_MODULES_AT_START = set(sys.modules)

from edgekit.bench import schema  # noqa: E402  (stdlib only)
from edgekit.bench.machine import describe_machine, device_state  # noqa: E402
from edgekit.bench.stats import summarize, throughput  # noqa: E402


class MeasureFailure(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgekit.bench.measure", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", nargs="?")
    p.add_argument("--out", help="write the result record here (JSON)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-time", type=float, default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None, help="the process ends itself after this many seconds")
    p.add_argument("--no-peak", action="store_true", help="skip the GEMM peak probe")
    p.add_argument("--baseline-modules", default=None, help=argparse.SUPPRESS)
    return p


def read_manifest(artifact: str):
    """The typed manifest beside the artifact (edgekit.manifest_schema.Manifest), None when there is
    none; one this edgekit cannot read (damaged, unknown major version) fails the measurement."""
    from edgekit.manifest import ManifestError, beside

    try:
        return beside(artifact)
    except ManifestError as exc:
        raise MeasureFailure("error", str(exc)) from None


def artifact_section(artifact: str, manifest, target_name: str) -> dict:
    from edgekit.manifest import file_digest

    size, sha = file_digest(artifact)
    return {
        "path": artifact,
        "name": os.path.basename(artifact.rstrip("/")),
        "target": target_name,
        "precision": manifest.precision if manifest else None,
        "size_bytes": size,
        "sha256": sha,
    }


def _input_specs(runtime, manifest):
    """The runtime's own input specs; a non-positive (dynamic) dimension takes the manifest's size."""
    specs = runtime.inputs()
    declared = manifest.inputs if manifest else []
    if len(declared) != len(specs):
        return specs
    from edgekit.targets.base import TensorSpec

    fixed = []
    for spec, entry in zip(specs, declared):
        shape = tuple(d if d > 0 else int(m) for d, m in zip(spec.shape, entry.shape))
        fixed.append(TensorSpec(spec.name, shape, spec.dtype, spec.scale, spec.zero_point))
    return fixed


def random_inputs(specs, seed: int) -> list:
    """One seeded sample shaped like the artifact's inputs (quantized inputs get quantized noise)."""
    import numpy as np

    from edgekit.verify import quantize_input

    rng = np.random.default_rng(seed)
    sample = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f" or spec.scale is not None:
            sample.append(quantize_input(rng.standard_normal(spec.shape).astype(np.float32), spec))
        elif dtype.kind == "b":
            sample.append(rng.integers(0, 2, spec.shape).astype(bool))
        else:
            high = min(100, int(np.iinfo(dtype).max))
            sample.append(rng.integers(0, high, spec.shape).astype(dtype))
    return sample


def data_inputs(source: str, specs, manifest, limit: int) -> list[list]:
    """Real samples from --data, quantized where the artifact takes integer inputs."""
    from edgekit.data import load_samples
    from edgekit.options import InputSpec
    from edgekit.verify import quantize_input

    model_specs = [InputSpec(s.name, tuple(s.shape), "float32" if s.scale is not None else s.dtype) for s in specs]
    prep = (manifest.preprocessing if manifest else None) or {}
    samples = load_samples(
        source, model_specs, limit=limit, flag="--data",
        image_size=tuple(prep["image_size"]) if prep.get("image_size") else None,
        mean=prep.get("mean"), std=prep.get("std"), color_layout=prep.get("color_layout") or "RGB",
    )
    return [[quantize_input(x, spec) for x, spec in zip(sample, specs)] for sample in samples.samples]


def measure(args) -> dict:
    """Load, time and size up one artifact; return the full result record."""
    from edgekit.errors import EdgekitError, MissingDependencyError
    from edgekit.registry import target_for_artifact

    artifact = os.path.abspath(args.artifact)
    if not os.path.exists(artifact):
        raise MeasureFailure("error", f"{artifact}: no such file")
    try:  # first: a board's bare Python should hear about numpy, not about whatever imports it
        import numpy  # noqa: F401
    except ImportError:
        raise MeasureFailure("missing-runner", f"numpy is not installed for {sys.executable} (pip install numpy)") from None
    manifest = read_manifest(artifact)
    target = target_for_artifact(artifact)
    settings = {
        "threads": args.threads, "warmup": args.warmup, "runs": args.runs, "min_time_s": args.min_time,
        "inputs": args.data or "random", "runner": "python",
    }
    art = artifact_section(artifact, manifest, target.name)
    warnings = []
    if manifest is None:
        warnings.append("no manifest beside the artifact: inputs taken from the artifact itself; no parity or FLOPs")
    runtime = target.runtime()
    start = time.perf_counter()
    try:
        runtime.load(artifact, args.threads)
    except MissingDependencyError as exc:
        raise MeasureFailure("missing-runner", f"{exc} for {sys.executable}") from None
    except ImportError as exc:  # a runtime library that is there but broken, or half of one
        raise MeasureFailure("missing-runner", f"cannot import the {target.name} runtime for {sys.executable}: {exc}") from None
    except EdgekitError as exc:
        raise MeasureFailure("error", f"cannot load {os.path.basename(artifact)}: {exc}") from None
    load_ms = (time.perf_counter() - start) * 1e3
    runtime_modules = _new_runtime_modules()

    specs = _input_specs(runtime, manifest)
    if args.data:
        samples = data_inputs(args.data, specs, manifest, limit=max(1, args.runs))
    else:
        samples = [random_inputs(specs, args.seed)]
        if manifest and manifest.decoder:  # token and position 0: valid for any vocabulary and cache
            samples = [[x * 0 if x.dtype.kind in "iu" else x for x in samples[0]]]

    times_ms, first_ms = _time_runs(runtime, samples, args)
    timings = summarize(times_ms)
    timings.update({"load": load_ms, "first": first_ms})

    from edgekit.bench.peak import compute_section

    memory = _memory_section(runtime, runtime_modules)
    flops = manifest.flops if manifest else None
    runtime_section = _runtime_section(runtime)
    record = {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": schema.RESULT_KIND,
        "artifact": art,
        "device": {"id": "host", "kind": "host", **describe_machine()},
        "runtime": runtime_section,
        "device_state": {**device_state(), "runtime": " ".join(x for x in (runtime_section["name"], runtime_section["version"]) if x),
                         "delegate": runtime_section["delegate"]},
        "settings": settings,
        "timings_ms": timings,
        "throughput_ips": throughput(timings["mean"]),
        "memory": memory,
        "compute": compute_section(flops if isinstance(flops, int) else None, timings["p50"], args.threads, not args.no_peak),
        "parity": manifest.parity if manifest else None,
        **_generation(runtime, manifest),
        "status": "ok",
        "error": None,
        "environment": schema.environment(),
        "samples_ms": times_ms,
        "warnings": warnings,
    }
    return schema.parse_result(record)


def _time_runs(runtime, samples: list, args) -> tuple[list[float], float]:
    """(per-run milliseconds, the first run's milliseconds): one first run, --warmup untimed runs,
    then --runs timed ones, continued until --min-time has passed."""
    clock = time.perf_counter
    t0 = clock()
    runtime.run(samples[0])
    first_ms = (clock() - t0) * 1e3
    for i in range(args.warmup):
        runtime.run(samples[i % len(samples)])
    times_ms: list[float] = []
    began = clock()
    i = 0
    while len(times_ms) < args.runs or (args.min_time is not None and clock() - began < args.min_time):
        feeds = samples[i % len(samples)]
        t0 = clock()
        runtime.run(feeds)
        times_ms.append((clock() - t0) * 1e3)
        i += 1
    return times_ms, first_ms


def _memory_section(runtime, runtime_modules: list[str]) -> dict:
    """Peak RSS of this process, the baseline of a child that imports the same runtime modules but
    loads no model, their difference, and the runtime's planned arena where it tells."""
    from edgekit.bench.memory import baseline_rss_bytes, peak_rss_bytes

    peak = peak_rss_bytes()
    baseline = baseline_rss_bytes(runtime_modules)
    arena = getattr(runtime, "arena_bytes", None)
    return {
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "model_rss_bytes": max(0, peak - baseline) if peak is not None and baseline is not None else None,
        "arena_bytes": arena() if callable(arena) else None,
    }


def _generation(runtime, manifest) -> dict:
    """A decoder step (its manifest has "decoder"): prefill and decode tokens per second."""
    if not (manifest and manifest.decoder):
        return {}
    from edgekit.generate import bench_generation

    return {"generation": bench_generation(runtime, manifest.to_dict())}


def _new_runtime_modules() -> list[str]:
    from edgekit.bench.memory import new_modules

    return new_modules(_MODULES_AT_START)


def _runtime_section(runtime) -> dict:
    text = runtime.version() or "unknown"
    name, _, version = text.partition(" ")
    delegate = getattr(runtime, "delegate", None)
    return {"name": name, "version": version or None, "delegate": delegate() if callable(delegate) else delegate}


def failure_record(args, status: str, message: str) -> dict:
    """A record for an artifact this process could not measure."""
    artifact = os.path.abspath(args.artifact or "")
    try:
        manifest = read_manifest(artifact) if os.path.exists(artifact) else None
    except MeasureFailure:  # the failure being recorded may be this very manifest
        manifest = None
    size = os.path.getsize(artifact) if os.path.isfile(artifact) else 0
    art = {
        "path": artifact, "name": os.path.basename(artifact.rstrip("/")),
        "target": (manifest.target if manifest else None) or os.path.splitext(artifact)[1].lstrip(".") or "unknown",
        "precision": manifest.precision if manifest else None, "size_bytes": size,
        "sha256": manifest.sha256 if manifest else None,
    }
    settings = {
        "threads": args.threads, "warmup": args.warmup, "runs": args.runs, "min_time_s": args.min_time,
        "inputs": args.data or "random", "runner": "python",
    }
    device = {"id": "host", "kind": "host", **describe_machine()}
    return schema.empty_record(art, device, settings, status, message, parity=manifest.parity if manifest else None)


def _write(path: str | None, record: dict) -> None:
    text = json.dumps(record, indent=1)
    if not path:
        print(text)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.baseline_modules is not None:
        from edgekit.bench.memory import import_and_report

        import_and_report([m for m in args.baseline_modules.split(",") if m])
        return 0
    if not args.artifact:
        print("error: give an artifact path", file=sys.stderr)
        return 2
    if args.timeout:
        import math
        import signal

        # SIGALRM's default action ends the process even inside a native call that never returns;
        # the parent reads the signal as a timeout.
        signal.alarm(max(1, math.ceil(args.timeout)))
    try:
        record = measure(args)
    except MeasureFailure as exc:
        record = failure_record(args, exc.status, exc.message)
    except Exception as exc:  # any other failure belongs in this artifact's record, not a traceback
        from edgekit.errors import EdgekitError

        line = str(exc) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {exc}"
        record = failure_record(args, "error", line.splitlines()[0] if line else type(exc).__name__)
    _write(args.out, record)
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
