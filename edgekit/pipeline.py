"""convert(): load -> prepare (shared) -> read data (once) -> per target: convert, verify, publish.

Each target runs in its own staging folder beside the output; the artifact and its manifest appear
together at the end or not at all. A target that fails does not stop the others.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgekit import __version__, manifest as manifest_mod
from edgekit.data import Samples, load_samples, random_samples, split_holdout
from edgekit.errors import EdgekitError, UsageError
from edgekit.options import ConvertOptions, InputSpec, get_precision
from edgekit.registry import get_target, resolve_targets
from edgekit.ui import Reporter, captured_native_output

log = logging.getLogger(__name__)


@dataclass
class Artifact:
    target: str
    precision: str
    status: str  # passed | failed | unverified | skipped | error
    path: str | None = None
    manifest_path: str | None = None
    size_bytes: int | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            "precision": self.precision,
            "path": self.path,
            "manifest": self.manifest_path,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "parity": self.parity,
        }
        if self.error:
            out["error"] = self.error
        return out


def _versions(converter: dict[str, str], runtime: str | None) -> dict[str, str]:
    from edgekit.targets.base import package_version

    out = {"edgekit": __version__, "torch": package_version("torch"), "python": platform.python_version()}
    out.update(converter)
    if runtime:
        out["runtime"] = runtime
    return out


def artifact_suffix(target_obj, staged_path: str) -> str:
    """The suffix of the staged artifact when it is one its target declares (a target may write
    several formats, e.g. Core ML .mlpackage or .mlmodel), else the target's main suffix."""
    lowered = str(staged_path).rstrip("/").lower()
    for suffix in (target_obj.suffix, *getattr(target_obj, "extra_suffixes", ())):
        if lowered.endswith(suffix):
            return suffix
    return target_obj.suffix


def artifact_filename(name: str, precision: str, suffix: str, io: str = "float") -> str:
    stem = name if precision == "none" else f"{name}_{precision}"
    return f"{stem}_io-int8{suffix}" if io == "int8" else f"{stem}{suffix}"


def convert(
    model: Any = None,
    *,
    target: str | Sequence[str] = "tflite",
    quantize: str | None = None,
    calibration: str | None = None,
    inputs: Sequence[str | InputSpec] | None = None,
    arch: str | None = None,
    model_factory: str | None = None,
    trust_pickle: bool = False,
    reporter: Reporter | None = None,
    **option_values: Any,
) -> list[Artifact]:
    """Convert a model to one or more targets; returns one Artifact per target.

    ``model`` is a path (any form edgekit detects), an ``nn.Module``, or None with ``model_factory``.
    Other keyword arguments are ConvertOptions fields (output_dir, io, eval_data, tolerance, ...).
    """
    from edgekit.export import prepare
    from edgekit.loading import LoadedModel, load_model

    reporter = reporter or Reporter(quiet=True)
    targets = (target,) if isinstance(target, str) else tuple(target)
    options = ConvertOptions(targets=targets, precision=quantize, calibration=calibration, **option_values)
    specs = [s if isinstance(s, InputSpec) else InputSpec.parse(s) for s in (inputs or [])]
    target_names = resolve_targets(options.targets)
    if not target_names:
        raise UsageError("no installed target: pip install 'edgekit[all]'")
    plan = _plan(target_names, options)
    manifest_mod.check_output_dir(options.output_dir)

    with reporter.stage("load"):
        if model is None or isinstance(model, (str, os.PathLike)):
            loaded = load_model(None if model is None else str(model), arch=arch, model=model_factory, trust_pickle=trust_pickle)
        else:
            from edgekit.loading import finish_module

            loaded = finish_module(LoadedModel("module", module=model, source=type(model).__name__))
    for warning in loaded.warnings:
        reporter.warn(warning)
    with reporter.stage("export"):
        prepared = prepare(loaded, specs, options.dynamic, options.seed)
    name = options.name or (Path(str(model)).stem if isinstance(model, (str, os.PathLike)) else "model")

    calib, eval_samples = _read_data(prepared.inputs, options, plan, reporter)
    artifacts = []
    for target_obj, precision, error in plan:
        if error is not None:
            reporter.info(f"{target_obj.name} [{precision}]\n  error: {error}")
            artifacts.append(_error_artifact(target_obj.name, precision, error))
            continue
        artifacts.append(
            _convert_one(target_obj, precision, prepared, options, calib, eval_samples, name, loaded.source, reporter)
        )
    if len(artifacts) == 1 and artifacts[0].status == "error":
        exc = artifacts[0]._exc  # type: ignore[attr-defined]
        raise exc from exc.__cause__
    return artifacts


def _plan(target_names: Sequence[str], options: ConvertOptions):
    """(target, precision, error) per target. With one target an error is raised at once; with several,
    a target that cannot take the request gets an error row and the others go on."""
    plan = []
    for name in target_names:
        target_obj = get_target(name)
        precision = options.precision or target_obj.default_precision
        try:
            if precision not in target_obj.precisions:
                raise UsageError(
                    f"the {name} target does not support --quantize {precision}; it supports: {', '.join(target_obj.precisions)}"
                )
            if options.io != "float" and options.io not in getattr(target_obj, "io_types", ("float",)):
                raise UsageError(f"the {name} target does not support --io {options.io}")
            if options.dynamic and not target_obj.supports_dynamic:
                raise UsageError(
                    f"the {name} target does not support --dynamic ({target_obj.dynamic_unsupported_reason}); "
                    "convert one fixed --input shape per size you need"
                )
            target_obj.require()
        except EdgekitError as exc:
            if len(target_names) == 1:
                raise
            plan.append((target_obj, precision, exc))
            continue
        plan.append((target_obj, precision, None))
    return plan


def _read_data(specs, options: ConvertOptions, plan, reporter: Reporter) -> tuple[Samples | None, Samples]:
    needs_calibration = any(get_precision(p).needs_calibration for _, p, error in plan if error is None)
    calib: Samples | None = None
    held: Samples | None = None
    data_kwargs = dict(
        image_size=options.image_size, mean=options.mean, std=options.std,
        color_layout=options.color_layout, seed=options.seed,
    )
    if needs_calibration and options.calibration is None:
        raise UsageError(
            "--quantize int8 needs --calibration PATH (.npz, .npy, image folder or module:function); "
            "--calibration random accepts random data, at a cost in accuracy"
        )
    if options.calibration is not None:
        with reporter.stage("calibrate"):
            total = options.calibration_samples + (0 if options.eval_data else options.eval_samples)
            data = load_samples(options.calibration, specs, limit=total, **data_kwargs)
            if not data.real:
                reporter.warn("calibrating on random data (--calibration random): activation ranges may not match real inputs")
            if needs_calibration and data.real and options.eval_data is None:
                calib, held = split_holdout(data, options.calibration_samples)
            elif needs_calibration:
                calib = Samples(data.samples[: options.calibration_samples], data.source, data.real)
            else:
                held = data if data.real else None
    if options.eval_data is not None:
        eval_samples = load_samples(options.eval_data, specs, limit=options.eval_samples, flag="--eval-data", **data_kwargs)
    elif held is not None:
        eval_samples = Samples(held.samples[: options.eval_samples], held.source, held.real)
    else:
        eval_samples = random_samples(specs, options.eval_samples, options.seed + 1)
    return calib, eval_samples


def _check_unchanged(target_obj, path: str, sample, before, threads: int) -> None:
    """The verified file was rewritten to carry its manifest: prove it still loads and computes the same."""
    import numpy as np

    from edgekit.errors import ConversionError
    from edgekit.verify import run_artifact

    with captured_native_output():
        after = run_artifact(target_obj.runtime().load(path, threads=threads), sample)
    if len(after) != len(before) or not all(np.array_equal(a, b) for a, b in zip(after, before)):
        raise ConversionError(f"{target_obj.name}: embedding the manifest changed the artifact's outputs (an edgekit bug; please report it)")


def _error_artifact(target: str, precision: str, exc: EdgekitError, seconds: float = 0.0) -> Artifact:
    art = Artifact(target, precision, "error", error=str(exc), exit_code=exc.exit_code, seconds=seconds)
    art._exc = exc  # type: ignore[attr-defined]  # re-raised when it was the only target
    return art


def _convert_one(target_obj, precision, prepared, options, calib, eval_samples, name, source, reporter) -> Artifact:
    import time

    from edgekit.verify import Parity, run_artifact, verify

    start = time.perf_counter()
    reporter.info(f"{target_obj.name} [{precision}]")
    try:
        with manifest_mod.staging_dir(options.output_dir) as stage:
            with reporter.stage("convert"), captured_native_output(not reporter.verbose) as native_log:
                converted = target_obj.convert(prepared, precision, options, calib.samples if calib else None, str(stage))
            for warning in converted.warnings:
                reporter.warn(warning)
            tolerance = options.tolerance_for(precision)
            runtime_version = None
            runtime = None
            if not options.verify:
                parity = Parity("skipped", tolerance=tolerance, reasons=["--no-verify"])
            elif converted.unverifiable_reason:
                parity = Parity("unverified", tolerance=tolerance, reasons=[converted.unverifiable_reason])
                reporter.warn(f"{target_obj.name}: {converted.unverifiable_reason}")
            else:
                with reporter.stage("verify"), captured_native_output(not reporter.verbose):
                    runtime = target_obj.runtime().load(converted.path, threads=options.threads)
                    runtime_version = runtime.version()
                    parity = verify(prepared, runtime, eval_samples, tolerance)
            if parity.status == "passed" and not eval_samples.real:
                reporter.warn(f"{target_obj.name}: verified on random inputs only; pass --eval-data for a real check")
            with captured_native_output(not reporter.verbose):
                target_obj.add_extra_files(converted, prepared, eval_samples, options, str(stage))
            suffix = artifact_suffix(target_obj, converted.path)
            filename = artifact_filename(name, precision, suffix, options.io)
            destination = Path(options.output_dir) / filename
            staged = Path(converted.path)
            doc = _manifest(target_obj, precision, prepared, options, converted, parity, calib, eval_samples, name, source, None, None, runtime_version)
            # formats with a metadata slot carry their manifest (less its own size and digest, which
            # the embedding changes); the digest is taken after
            before = run_artifact(runtime, eval_samples.samples[0]) if runtime is not None else None
            target_obj.embed_manifest(str(staged), doc)
            if before is not None:
                _check_unchanged(target_obj, str(staged), eval_samples.samples[0], before, options.threads)
            size, sha = manifest_mod.file_digest(staged)
            doc["size_bytes"], doc["sha256"] = size, sha
            extras = manifest_mod.extra_destinations(converted.extra_files, destination, suffix)
            if extras:
                doc["extra_files"] = [manifest_mod.extra_file_entry(src, dest) for src, dest in extras]
            manifest_mod.publish(staged, doc, destination, options.overwrite, extras)
    except EdgekitError as exc:
        reporter.info(f"  error: {exc}")
        return _error_artifact(target_obj.name, precision, exc, time.perf_counter() - start)
    except Exception as exc:  # a converter library raised something its target did not translate
        from edgekit.export import describe_conversion_error

        log.debug("unexpected error from the %s target", target_obj.name, exc_info=True)
        error = describe_conversion_error(exc, prepared, target_obj.name)
        error.__cause__ = exc
        reporter.info(f"  error: {error}")
        return _error_artifact(target_obj.name, precision, error, time.perf_counter() - start)
    for reason in parity.reasons if parity.status == "failed" else ():
        reporter.warn(f"{target_obj.name} [{precision}] failed verification: {reason}")
    return Artifact(
        target_obj.name, precision, parity.status, str(destination), str(manifest_mod.manifest_path(destination)),
        size, parity.to_dict(), doc, seconds=time.perf_counter() - start,
    )


def _manifest(target_obj, precision, prepared, options, converted, parity, calib, eval_samples, name, source, size, sha, runtime_version):
    inputs = []
    for spec, model_input in zip(converted.inputs, prepared.inputs):
        entry = spec.to_dict()
        entry["model_input"] = model_input.name
        inputs.append(entry)
    outputs = []
    for i, spec in enumerate(converted.outputs):
        entry = spec.to_dict()
        if i < len(prepared.output_names):
            entry.setdefault("model_output", spec.name if spec.name in prepared.output_names else prepared.output_names[i])
        outputs.append(entry)
    preprocessing = {}
    if options.mean is not None or options.std is not None or options.image_size is not None:
        preprocessing = {
            "mean": list(options.mean) if options.mean else None,
            "std": list(options.std) if options.std else None,
            "image_size": list(options.image_size) if options.image_size else None,
            "color_layout": options.color_layout,
            "scale": 1 / 255,
        }
    return {
        "schema_version": manifest_mod.SCHEMA_VERSION,
        "name": name,
        "target": target_obj.name,
        "format": artifact_suffix(target_obj, converted.path).lstrip("."),
        "precision": precision,
        "precision_default": options.precision is None,
        "io": options.io,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_axes": [axis.__dict__ for axis in prepared.dynamic],
        "size_bytes": size,
        "sha256": sha,
        "flops": prepared.flops,
        "source": {"path": source, "form": prepared.source_form},
        "versions": _versions(converted.converter, runtime_version),
        "calibration": None if calib is None else calib.describe(),
        "preprocessing": preprocessing or None,
        "labels": list(options.labels) if options.labels else None,
        "parity": parity.to_dict(),
        "status": parity.status,
        "target_details": converted.details,
        "command": options.command_line or " ".join(sys.argv),
    }
