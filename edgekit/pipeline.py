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

from edgekit.constants import DEFAULT_TARGET
from edgekit import __version__, manifest as manifest_mod
from edgekit.data import Samples, load_samples, random_samples, split_holdout
from edgekit import preflight
from edgekit.errors import ConversionError, EdgekitError, UsageError
from edgekit.preflight import artifact_filename  # noqa: F401  (part of this module's API)
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
    return target_obj.suffix_of(staged_path) or target_obj.suffix


def convert(
    model: Any = None,
    *,
    target: str | Sequence[str] = DEFAULT_TARGET,
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
    preflight.check_target_option_names(options)
    plan = _plan(target_names, options)
    name = options.name or (Path(str(model)).stem if isinstance(model, (str, os.PathLike)) else "model")
    # everything that can be refused without the model is refused before loading it
    preflight.check_calibration_given(plan, options)
    manifest_mod.check_output_dir(options.output_dir)
    preflight.check_destinations_free(plan, options, name)
    if specs:  # shapes known from --input: bound the samples before loading; else after export
        preflight.check_sample_memory(specs, options)

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
    preflight.check_normalisation(prepared.inputs, options)
    if not specs:
        preflight.check_sample_memory(prepared.inputs, options)
    from edgekit.verify import verify_declarations

    verify_declarations(prepared, options)  # --output-role/--state/--tolerance names, before any work

    calib, eval_samples = _read_data(prepared.inputs, options, plan, reporter)
    _quantize_shared(plan, prepared, options, calib, reporter)
    artifacts = []
    for target_obj, precision, error in plan:
        if error is None:
            artifact = _convert_one(target_obj, precision, prepared, options, calib, eval_samples, name, loaded.source, reporter)
        else:
            reporter.info(f"{target_obj.name} [{precision}]")
            artifact = _error_artifact(target_obj.name, precision, error)
        # with one target the CLI prints the error line itself; with several, each target's error
        # is shown here once, and the table repeats it in its row
        if artifact.status == "error" and len(plan) > 1:
            reporter.info(f"  error: {artifact.error}")
        artifacts.append(artifact)
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
            if options.io != "float" and options.io not in target_obj.io_types:
                raise UsageError(f"the {name} target does not support --io {options.io}")
            if options.dynamic and not target_obj.supports_dynamic:
                raise UsageError(
                    f"the {name} target does not support --dynamic ({target_obj.dynamic_unsupported_reason}); "
                    "convert one fixed --input shape per size you need"
                )
            target_obj.read_settings(options, precision)  # its own options, typed: nothing loaded yet
            target_obj.require()
        except EdgekitError as exc:
            if len(target_names) == 1:
                raise
            plan.append((target_obj, precision, exc))
            continue
        plan.append((target_obj, precision, None))
    return plan


def _read_data(specs, options: ConvertOptions, plan, reporter: Reporter) -> tuple[Samples | None, Samples]:
    """Calibration and evaluation samples, read once for every target.

    ``--eval-data`` is used whole unless ``--eval-samples`` says otherwise, up to what fits in half of
    this machine's memory; any cut is said on the console (a warning when edgekit chose it) and the
    parity records the count. DEFAULT_EVAL_SAMPLES applies to held-back calibration data and random
    inputs only."""
    from edgekit.options import DEFAULT_EVAL_SAMPLES

    needs_calibration = any(get_precision(p).needs_calibration for _, p, error in plan if error is None)
    calib: Samples | None = None
    held: Samples | None = None
    default_count = options.eval_samples or DEFAULT_EVAL_SAMPLES
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
            total = options.calibration_samples + (0 if options.eval_data else default_count)
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
        eval_samples = _read_eval_data(specs, options, reporter, data_kwargs)
    elif held is not None:
        eval_samples = Samples(held.samples[:default_count], held.source, held.real)
    else:
        eval_samples = random_samples(specs, default_count, options.seed + 1)
    return calib, eval_samples


def _quantize_shared(plan, prepared, options: ConvertOptions, calib: Samples | None, reporter: Reporter) -> None:
    """Make the shared int8 program (edgekit.quantize.shared) once, before the targets that lower it,
    so that its calibration search and mixed-precision search speak on the console (a target's
    convert stage captures what runs inside it). A failure here is left to each target to raise."""
    import time
    import warnings

    from edgekit.quantize.shared import int8_program

    users = [t.name for t, p, error in plan if error is None and p == "int8" and getattr(t, "shared_int8", False)]
    if not users or calib is None or not calib.samples:
        return
    reporter.info(f"int8 [{', '.join(users)}]: quantizing once for {'these targets' if len(users) > 1 else 'this target'}")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            int8_program(prepared, calib.samples, options, reporter=reporter)
    except Exception as exc:  # noqa: BLE001 - each target raises it again, typed, in its own row
        log.debug("shared int8 program failed", exc_info=exc)
        return
    reporter.info(f"  quantize {time.perf_counter() - start:.1f}s")


def _eval_memory_bound(specs, options: ConvertOptions) -> int:
    """How many eval samples fit beside the calibration samples in half of this machine's memory."""
    from edgekit.options import MAX_SAMPLES, _memory_bytes

    memory = _memory_bytes()
    per_sample = max(1, sum(s.nbytes for s in specs))
    if memory is None:
        return MAX_SAMPLES
    return max(1, min(MAX_SAMPLES, (memory // 2) // per_sample - options.calibration_samples))


def _read_eval_data(specs, options: ConvertOptions, reporter: Reporter, data_kwargs) -> Samples:
    bound = options.eval_samples or _eval_memory_bound(specs, options)
    in_memory = Path(options.eval_data).suffix.lower() in (".npz", ".npy") and Path(options.eval_data).is_file()
    # a .npz/.npy is read whole anyway, so its count is exact; other sources stop one past the bound
    data = load_samples(options.eval_data, specs, limit=None if in_memory else bound + 1, flag="--eval-data", **data_kwargs)
    if len(data) <= bound:
        return data
    total = f"{len(data)}" if in_memory else f"more than {bound}"
    kept = Samples(data.samples[:bound], data.source, data.real)
    if options.eval_samples:
        reporter.info(f"  verifying on the first {bound} of {total} --eval-data samples (--eval-samples {bound})")
    else:
        reporter.warn(
            f"--eval-data holds {total} samples; verifying on the first {bound}, as many as fit in half of this "
            f"machine's memory ({len(data) - bound if in_memory else 'the rest'} left out; --eval-samples N chooses)"
        )
    return kept


def _check_unchanged(target_obj, path: str, sample, before, threads: int) -> None:
    """The verified file was rewritten to carry its manifest: prove it still loads and computes the same."""
    import numpy as np

    from edgekit.errors import ConversionError
    from edgekit.verify import run_artifact

    with captured_native_output():
        after = run_artifact(target_obj.runtime().load(path, threads=threads), sample)
    # NaN where the model itself gives NaN is the user's model, not a change: compare NaN-equal
    if len(after) != len(before) or not all(_same(a, b) for a, b in zip(after, before)):
        raise ConversionError(f"{target_obj.name}: embedding the manifest changed the artifact's outputs (an edgekit bug; please report it)")


def _same(a, b) -> bool:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _error_artifact(target: str, precision: str, exc: EdgekitError, seconds: float = 0.0) -> Artifact:
    art = Artifact(target, precision, "error", error=str(exc), exit_code=exc.exit_code, seconds=seconds)
    art._exc = exc  # type: ignore[attr-defined]  # re-raised when it was the only target
    return art


def _convert_one(target_obj, precision, prepared, options, calib, eval_samples, name, source, reporter) -> Artifact:
    import time

    from edgekit.verify import Parity, run_artifact, verify

    start = time.perf_counter()
    reporter.info(f"{target_obj.name} [{precision}]")
    native_log: list[str] = []  # what the converter and runtime printed, kept for a failure's log
    try:
        with manifest_mod.staging_dir(options.output_dir) as stage:
            preflight.check_free_space(prepared, precision, stage)
            with reporter.stage("convert"), captured_native_output(not reporter.verbose, native_log):
                converted = target_obj.convert(prepared, precision, options, calib.samples if calib else None, str(stage))
            for warning in converted.warnings:
                reporter.warn(warning)
            quantization = _coverage(target_obj, converted, precision, reporter)
            _check_integer_io(target_obj.name, converted, options)
            tolerance = options.tolerance_for(precision)
            runtime_version = None
            runtime = None
            if not options.verify:
                parity = Parity("skipped", tolerance=tolerance, reasons=["--no-verify"])
            elif converted.unverifiable_reason:
                parity = Parity("unverified", tolerance=tolerance, reasons=[converted.unverifiable_reason])
                reporter.warn(f"{target_obj.name}: {converted.unverifiable_reason}")
            else:
                with reporter.stage("verify"), captured_native_output(not reporter.verbose, native_log):
                    runtime = target_obj.runtime().load(converted.path, threads=options.threads)
                    runtime_version = runtime.version()
                    parity = verify(prepared, runtime, eval_samples, tolerance, options)
                    if options.decoder:
                        _check_decoder(prepared, runtime, eval_samples, options.decoder, precision, parity)
            if parity.status == "passed" and not eval_samples.real:
                reporter.warn(f"{target_obj.name}: verified on random inputs only; pass --eval-data for a real check")
            with captured_native_output(not reporter.verbose, native_log):
                target_obj.add_extra_files(converted, prepared, eval_samples, options, str(stage))
            suffix = artifact_suffix(target_obj, converted.path)
            filename = artifact_filename(name, precision, suffix, options.io)
            destination = Path(options.output_dir) / filename
            staged = Path(converted.path)
            doc = _manifest(target_obj, precision, prepared, options, converted, parity, calib, eval_samples, name, source, None, None, runtime_version)
            if quantization:
                doc["quantization"] = quantization
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
    except (Exception, SystemExit) as exc:  # SystemExit: a converter library that calls sys.exit()
        error = _as_edgekit_error(exc, prepared, target_obj.name, options.output_dir)
        _keep_log(error, exc, native_log, options, name, precision, target_obj.name)
        return _error_artifact(target_obj.name, precision, error, time.perf_counter() - start)
    for reason in parity.reasons if parity.status == "failed" else ():
        reporter.warn(f"{target_obj.name} [{precision}] failed verification: {reason}")
    return Artifact(
        target_obj.name, precision, parity.status, str(destination), str(manifest_mod.manifest_path(destination)),
        size, parity.to_dict(), doc, seconds=time.perf_counter() - start,
    )


def _coverage(target_obj, converted, precision: str, reporter: Reporter) -> dict[str, Any] | None:
    """What the artifact file really holds at its precision (manifest ``quantization``); refuses a
    mostly-float --quantize int8 artifact, and warns about any other mostly-unquantized one."""
    from edgekit.quantize.coverage import check_artifact

    fmt = artifact_suffix(target_obj, converted.path).lstrip(".")
    with captured_native_output(not reporter.verbose):
        block, warning = check_artifact(converted.path, fmt, precision, target_obj.name, converted.details)
    if warning:
        reporter.warn(warning)
    return block


def _check_integer_io(target: str, converted, options: ConvertOptions) -> None:
    """``--io int8`` is a promise to NPU and Edge TPU apps: every float input and output of the FILE
    is integer (dtypes as its runtime reads them), or the artifact is not published."""
    if options.io != "int8":
        return
    floats = [f"{kind} {s.name!r} ({s.dtype})" for kind, specs in (("input", converted.inputs), ("output", converted.outputs))
              for s in specs if str(s.dtype).startswith(("float", "bfloat"))]
    if floats:
        raise ConversionError(f"{target} --io int8: {', '.join(floats)} stay{'s' if len(floats) == 1 else ''} float "
                              "in the artifact; not published as integer I/O", hint="use --io float, or declare that "
                              "input/output integer in the model (a float tensor the int8 program leaves unquantized)")


def _as_edgekit_error(exc: BaseException, prepared, target: str, output_dir: str) -> EdgekitError:
    """A target's failure as one typed error: a full disk is an output error (7) wherever it
    struck; anything a converter library raised untranslated is a conversion error (5)."""
    from edgekit.export import describe_conversion_error

    if manifest_mod.is_disk_full(exc):
        return manifest_mod.disk_full_error(output_dir)
    if isinstance(exc, EdgekitError):
        return exc
    log.debug("unexpected error from the %s target", target, exc_info=exc)
    if isinstance(exc, SystemExit):
        error = ConversionError(f"{target} converter exited (code {exc.code})", hint="--verbose shows its output")
    else:
        error = describe_conversion_error(exc, prepared, target)
    error.__cause__ = exc
    return error


def _keep_log(error: EdgekitError, exc: BaseException, native_log: list[str], options, name, precision, target) -> None:
    """A conversion that failed keeps what the converter printed, and the traceback, in
    ``<artifact stem>.<target>.log`` beside the output: the one line on the console names it."""
    import traceback

    if not isinstance(error, ConversionError):
        return
    text = "".join(native_log).strip()
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path = Path(options.output_dir) / artifact_filename(name, precision, f".{target}.log", options.io)
    try:
        manifest_mod.write_text_atomic(path, f"edgekit: {error}\n\n--- converter output ---\n{text}\n\n--- traceback ---\n{trace}")
    except EdgekitError:
        return  # the log is a courtesy: never let it replace the real error
    error.hint = f"{error.hint}; log: {path}" if error.hint else f"log: {path}"


def _check_decoder(prepared, runtime, eval_samples, decoder: str, precision: str, parity) -> None:
    """--decoder: greedy generation with the artifact against eager PyTorch, exact where weights stay float32."""
    from edgekit.generate import check_greedy

    result, reasons = check_greedy(prepared, runtime, eval_samples.samples, decoder, exact_required=precision == "none")
    parity.greedy = result
    if reasons:
        parity.reasons.extend(reasons)
        parity.status = "failed"


def _state_pairs(prepared, options) -> list[dict[str, str]]:
    """Which outputs feed which inputs at the next step (also when verification did not run)."""
    from edgekit.verify import describe_state

    return describe_state(prepared, options)


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
        "state": parity.stateful["pairs"] if parity.stateful else _state_pairs(prepared, options),
        "status": parity.status,
        "target_details": converted.details,
        "command": options.command_line or " ".join(sys.argv),
        **({"decoder": parity.greedy["decoder"]} if parity.greedy else {}),
    }
