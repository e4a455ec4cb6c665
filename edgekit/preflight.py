"""Checks made before any long work: everything that can be refused without converting is refused
first, in one line (options that need the model's input shapes, existing outputs, free space).

convert() calls these in order: calibration and destinations before loading the model; sample
memory and normalisation once the input shapes are known; free space per target before converting.
"""
from __future__ import annotations

from pathlib import Path

from edgekit import manifest as manifest_mod
from edgekit.errors import UsageError
from edgekit.options import ConvertOptions, get_precision


def artifact_filename(name: str, precision: str, suffix: str, io: str = "float") -> str:
    stem = name if precision == "none" else f"{name}_{precision}"
    return f"{stem}_io-int8{suffix}" if io == "int8" else f"{stem}{suffix}"


def check_calibration_given(plan, options: ConvertOptions) -> None:
    """int8 without --calibration is refused before the model is loaded (read_data says it again
    for callers that reach it another way)."""
    if options.calibration is None and any(
        get_precision(p).needs_calibration for _, p, error in plan if error is None
    ):
        raise UsageError(
            "--quantize int8 needs --calibration PATH (.npz, .npy, image folder or module:function); "
            "--calibration random accepts random data, at a cost in accuracy"
        )


def check_target_option_names(options: ConvertOptions) -> None:
    """``target_options`` is keyed by target name: a key naming no target, or an alias, would be
    silently ignored, so it is refused (each target checks its own keys: Target.read_settings)."""
    from edgekit.registry import canonical

    for key in options.target_options:
        try:
            name = canonical(str(key))
        except UsageError as exc:
            raise UsageError(f"target_options: {exc}") from None
        if name != key:
            raise UsageError(f"target_options[{key!r}]: key it by the target's name, {name!r}")


def expected_suffix(target_obj, options: ConvertOptions) -> str:
    """The suffix a target will write, known before converting: its main one, or the one a
    ``format`` option names (Core ML's --format mlmodel)."""
    fmt = options.options_for(target_obj.name).get("format")
    if fmt and f".{str(fmt).lstrip('.')}" in target_obj.suffixes():
        return f".{str(fmt).lstrip('.')}"
    return target_obj.suffix


def check_destinations_free(plan, options: ConvertOptions, name: str) -> None:
    """Without --overwrite, an artifact or manifest that already exists is refused before any work
    (publish checks again at the end, for whatever appeared meanwhile)."""
    if options.overwrite:
        return
    for target_obj, precision, error in plan:
        if error is not None:
            continue
        destination = Path(options.output_dir) / artifact_filename(name, precision, expected_suffix(target_obj, options), options.io)
        for existing in (destination, manifest_mod.manifest_path(destination)):
            if existing.exists() or existing.is_symlink():
                raise manifest_mod.OutputError(f"{existing} exists; pass --overwrite to replace it")


def check_normalisation(specs, options: ConvertOptions) -> None:
    """--mean/--std give one value or one per channel of the image input."""
    if options.mean is None and options.std is None:
        return
    image = next((s for s in specs if len(s.shape) == 4), None)
    if image is None:
        raise UsageError("--mean/--std apply to an image input (NCHW or NHWC); the model has none")
    channels = image.shape[1] if image.shape[1] in (1, 3, 4) else image.shape[3]
    for flag, values in (("--mean", options.mean), ("--std", options.std)):
        if values is not None and len(values) not in (1, channels):
            raise UsageError(
                f"{flag} has {len(values)} values; input {image.name!r} has {channels} channels (give 1 or {channels})"
            )


def check_sample_memory(specs, options: ConvertOptions) -> None:
    """Verification keeps every sample, and every reference output, in memory: refuse counts that
    cannot fit (half of this machine's memory) before reading any data."""
    from edgekit.options import _memory_bytes

    if options.eval_samples is None:  # every --eval-data sample: read_data bounds that by memory
        return
    memory = _memory_bytes()
    per_sample = sum(s.nbytes for s in specs)
    calibration = options.calibration_samples if options.calibration is not None else 0
    needed = per_sample * (options.eval_samples + calibration)
    if memory is not None and needed > memory // 2:
        fits = max(1, (memory // 2) // max(per_sample, 1) - calibration)
        raise UsageError(
            f"--eval-samples {options.eval_samples}" + (f" with --calibration-samples {calibration}" if calibration else "") + " "
            f"would hold {needed / 2**30:.3g} GiB of inputs; this machine has {memory / 2**30:.3g} GiB "
            f"(use at most about {fits} eval samples)"
        )


def check_free_space(prepared, precision: str, stage: Path) -> None:
    """Refuse before converting when the artifact's weights alone cannot fit on the output's disk:
    some converters abort the whole process (no exception to catch) when a native write fails.
    The estimate is a lower bound (weights at the precision's width), so it never refuses a fit."""
    import shutil

    module = prepared.module
    try:
        tensors = list(module.parameters()) + list(module.buffers())
        weights = sum(t.numel() * t.element_size() for t in tensors)
    except Exception:  # a module without parameters(): nothing to estimate from
        return
    need = weights * get_precision(precision).weight_bits // 32
    free = shutil.disk_usage(stage).free
    if need > free:
        raise manifest_mod.OutputError(
            f"no space left on the device holding {str(stage.parent)!r}: the {precision if precision != 'none' else 'float32'} weights alone need "
            f"{need / 1024:.0f} KiB, {free / 1024:.0f} KiB are free; nothing was written",
            hint="free some space or choose another -o",
        )
