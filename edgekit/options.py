"""Precisions, input specs, tolerances and the convert options: frozen and validated when built.

This module is the one place that names precisions and their default verification thresholds.
It imports no ML framework.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from edgekit.constants import DEFAULT_TARGET
from edgekit.errors import UsageError


@dataclass(frozen=True)
class Tolerance:
    """Verification thresholds. ``top1`` is enforced only on real (not random) inputs, only on outputs
    whose role is class scores, and on the inputs where FP32 is confident (edgekit/verify.py says why).

    ``per_output`` holds overrides for single outputs, as ``(output, key, value)`` triples (a tuple, so
    that the object stays hashable): ``--tolerance cosine=0.98,logits:top1=0.99,boxes:max_abs=0.5``.
    """

    cosine: float
    top1: float
    max_abs: float | None = None  # optional absolute bound on the largest error
    max_rel: float | None = None  # optional bound on max_abs / the largest |value| of the original
    per_output: tuple[tuple[str, str, float], ...] = ()

    KEYS = ("cosine", "top1", "max_abs", "max_rel")

    def __post_init__(self):
        for key in self.KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            _check_tolerance_value(key, value)
        for output, key, value in self.per_output:
            if key not in self.KEYS:
                raise UsageError(f"--tolerance {output}:{key}: unknown key; use {', '.join(self.KEYS)}")
            _check_tolerance_value(f"{output}:{key}", value)

    @classmethod
    def parse(cls, text: str, default: "Tolerance") -> "Tolerance":
        """``0.98`` (cosine), ``cosine=0.98,top1=0.95,max_abs=0.1,max_rel=0.05``, and per output
        ``NAME:KEY=VALUE`` (``logits:top1=0.99``; ``NAME:VALUE`` sets that output's cosine)."""
        values = {key: getattr(default, key) for key in cls.KEYS}
        per_output = list(default.per_output)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            if not sep:
                key, raw = "cosine", part
                if ":" in part:
                    output, _, raw = part.rpartition(":")
                    key = f"{output}:cosine"
            output, colon, key = key.strip().rpartition(":")
            key = key.strip().replace("-", "_")
            if key not in cls.KEYS:
                raise UsageError(
                    f"--tolerance: unknown key {key!r}; use cosine, top1, max_abs or max_rel, optionally per "
                    "output as NAME:KEY, e.g. cosine=0.98,top1=0.95,logits:top1=0.99"
                )
            try:
                number = float(raw)
            except ValueError:
                raise UsageError(f"--tolerance: {key} must be a number, got {raw!r}") from None
            if colon:
                if not output.strip():
                    raise UsageError(f"--tolerance {part!r}: the output name before ':' is empty")
                per_output.append((output.strip(), key, number))
            else:
                values[key] = number
        return cls(**values, per_output=tuple(per_output))

    def for_output(self, name: str) -> "Tolerance":
        """The thresholds that apply to output ``name`` (its overrides applied, none carried on)."""
        values = {key: getattr(self, key) for key in self.KEYS}
        for output, key, value in self.per_output:
            if output == name:
                values[key] = value
        return Tolerance(**values)

    def outputs_named(self) -> list[str]:
        return sorted({output for output, _, _ in self.per_output})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in self.KEYS}
        if self.per_output:
            per: dict[str, dict[str, float]] = {}
            for output, key, value in self.per_output:
                per.setdefault(output, {})[key] = value
            out["per_output"] = per
        return out


def _check_tolerance_value(key: str, value: float) -> None:
    import math

    base = key.rpartition(":")[2]
    if not isinstance(value, (int, float)) or math.isnan(value):
        raise UsageError(f"--tolerance {key} must be a number, got {value!r}")
    if base == "cosine" and not -1.0 <= value <= 1.0:
        raise UsageError(f"--tolerance {key}={value:g}: cosine similarity lies between -1 and 1")
    if base == "top1" and not 0.0 <= value <= 1.0:
        raise UsageError(f"--tolerance {key}={value:g}: top-1 agreement is a share between 0 and 1")
    if base in ("max_abs", "max_rel") and not (value >= 0 and math.isfinite(value)):
        raise UsageError(f"--tolerance {key}={value:g}: an error bound must be a finite number >= 0")


@dataclass(frozen=True)
class Precision:
    name: str
    description: str
    tolerance: Tolerance
    needs_calibration: bool = False
    weight_bits: int = 32


_FP32 = Tolerance(cosine=0.99999, top1=0.99)
_FP16 = Tolerance(cosine=0.999, top1=0.99)
_INT8 = Tolerance(cosine=0.99, top1=0.98)
# 4- and 6-bit weights lose more than int8; these thresholds still catch a broken artifact
# (a flipped sign or a wrong scale drives cosine far below 0.95) without failing healthy ones.
_LOWBIT = Tolerance(cosine=0.97, top1=0.90)

PRECISIONS: Mapping[str, Precision] = MappingProxyType(
    {
        p.name: p
        for p in (
            Precision("none", "float32, no quantization", _FP32),
            Precision("fp16", "float16 weights (and compute where the runtime supports it)", _FP16, weight_bits=16),
            Precision("int8-dynamic", "int8 weights, activations quantized at run time", _INT8, weight_bits=8),
            Precision(
                "int8",
                "full integer: per-channel int8 weights, int8 activations from calibration",
                _INT8,
                needs_calibration=True,
                weight_bits=8,
            ),
            Precision("int8-weight-only", "int8 weights, float compute", _INT8, weight_bits=8),
            Precision("int4-weight-only", "blockwise int4 weights, float compute", _LOWBIT, weight_bits=4),
            Precision("int8-int4", "int8 dynamic activations, 4-bit grouped linear weights", _LOWBIT, weight_bits=4),
            Precision("palettize8", "8-bit k-means lookup-table weights", _INT8, weight_bits=8),
            Precision("palettize6", "6-bit k-means lookup-table weights", _LOWBIT, weight_bits=6),
            Precision("palettize4", "4-bit k-means lookup-table weights", _LOWBIT, weight_bits=4),
        )
    }
)
PRECISION_ALIASES = {"fp32": "none", "float32": "none", "float16": "fp16", "dynamic": "int8-dynamic"}


def get_precision(name: str) -> Precision:
    key = PRECISION_ALIASES.get(name, name)
    if key not in PRECISIONS:
        raise UsageError(
            f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    return PRECISIONS[key]


_DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
_ITEMSIZE = {"float32": 4, "float16": 2, "int64": 8, "int32": 4, "int8": 1, "uint8": 1, "bool": 1}
# Upper bound for --eval-samples / --calibration-samples: beyond it a run is a mistake, not a test.
MAX_SAMPLES = 100_000


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def _check_fits_memory(spec: "InputSpec") -> None:
    """Refuse a shape whose element count overflows int64 or whose one tensor exceeds this
    machine's memory: caught here in one line instead of as a native allocation failure."""
    count = 1
    for d in spec.shape:
        count *= d
    shape = "x".join(map(str, spec.shape))
    if count >= 2**63:
        raise UsageError(f"input {spec.name!r}: shape {shape} has {count:.3g} elements, more than a tensor can index (2^63)")
    memory = _memory_bytes()
    if memory is not None and spec.nbytes > memory:
        raise UsageError(
            f"input {spec.name!r}: shape {shape} ({spec.dtype}) needs {spec.nbytes / 2**30:.3g} GiB for one tensor; "
            f"this machine has {memory / 2**30:.3g} GiB of memory"
        )
_INPUT_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*):(?P<shape>\d+(?:x\d+)*)(?::(?P<dtype>\w+))?$")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in _DTYPES:
            raise UsageError(f"input {self.name!r}: unsupported dtype {self.dtype!r}; use one of {', '.join(_DTYPES)}")
        if any(d <= 0 for d in self.shape):
            raise UsageError(f"input {self.name!r}: every dimension must be positive, got {self.shape}")
        _check_fits_memory(self)

    @property
    def nbytes(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count * _ITEMSIZE[self.dtype]

    @classmethod
    def parse(cls, text: str) -> "InputSpec":
        """``NAME:SHAPE[:DTYPE]``, SHAPE like ``1x3x224x224``."""
        match = _INPUT_RE.match(text.strip())
        if not match:
            raise UsageError(
                f"--input {text!r}: expected NAME:SHAPE[:DTYPE], e.g. x:1x3x224x224 or ids:1x128:int64"
            )
        shape = tuple(int(d) for d in match["shape"].split("x"))
        return cls(match["name"], shape, match["dtype"] or "float32")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


_DYNAMIC_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*):(?P<axis>\d+)(?::(?P<min>\d+)-(?P<max>\d+))?$")


@dataclass(frozen=True)
class DynamicAxis:
    """``--dynamic NAME:AXIS[:MIN-MAX]``: an input dimension that may vary at run time."""

    input: str
    axis: int
    min: int = 1
    max: int = 1024

    @classmethod
    def parse(cls, text: str) -> "DynamicAxis":
        match = _DYNAMIC_RE.match(text.strip())
        if not match:
            raise UsageError(f"--dynamic {text!r}: expected NAME:AXIS[:MIN-MAX], e.g. x:0 or ids:1:1-512")
        lo, hi = int(match["min"] or 1), int(match["max"] or 1024)
        if lo > hi:
            raise UsageError(f"--dynamic {text!r}: MIN must not exceed MAX")
        return cls(match["name"], int(match["axis"]), lo, hi)


IO_TYPES = ("float", "int8")


def check_name(name: str) -> str:
    """An artifact base name is a plain file name: no folder part, nothing that climbs out of -o."""
    seps = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    if (
        not name.strip() or name in (".", "..") or name.startswith(".") or "\0" in name
        or any(sep in name for sep in seps) or os.path.isabs(name)
    ):
        raise UsageError(f"--name {name!r}: give a plain file name (no folder, no leading dot); -o chooses the folder")
    return name


DEFAULT_EVAL_SAMPLES = 32  # held-back calibration samples and random inputs; --eval-data is used whole


def _check_verify_declarations(options: "ConvertOptions") -> None:
    """--output-role and --state values and --state-steps, refused before any work (names are checked
    against the model once it is loaded: edgekit.verify_roles.check_declarations)."""
    from edgekit.verify_roles import check_roles, normalise_assignments

    # the Python API may pass {"boxes": "regression"} or ["boxes=regression"]: one form from here on
    object.__setattr__(options, "output_roles", normalise_assignments(options.output_roles, "--output-role"))
    object.__setattr__(options, "state", normalise_assignments(options.state, "--state"))
    check_roles(options.output_roles)
    if not 1 <= options.state_steps <= 10_000:
        raise UsageError(f"--state-steps must be between 1 and 10,000, got {options.state_steps}")
    if ("none", "none") in options.state and len(options.state) > 1:
        raise UsageError("--state none turns state detection off: do not combine it with --state OUT=IN")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything one conversion needs besides the model: built once, validated here."""

    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    precision: str | None = None  # None: each target's own default (documented per target)
    io: str = "float"
    calibration: str | None = None  # path, module:function, or "random"
    calibration_samples: int = 100
    int8_calibration: str = "auto"  # --int8-calibration (edgekit.quantize.config.CALIBRATIONS)
    mixed_precision: str = "auto"  # --mixed-precision: auto | off | weights=W,flops=F (edgekit.quantize.auto_mixed)
    eval_data: str | None = None
    # None: every --eval-data sample (up to a memory bound, said loudly), else DEFAULT_EVAL_SAMPLES
    eval_samples: int | None = None
    image_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color_layout: str = "RGB"
    labels: tuple[str, ...] | None = None
    tolerance: str | None = None
    verify: bool = True
    strict: bool = False
    dynamic: tuple[DynamicAxis, ...] = ()
    threads: int = 1
    seed: int = 0
    output_dir: str = "."
    name: str | None = None
    overwrite: bool = False
    # Per-target settings (e.g. {"coreml": {"deployment_target": "iOS16"}}); each target validates its own.
    target_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    command_line: str | None = None
    # a decoder step with its cache as I/O: "auto" or token=NAME,pos=NAME,logits=NAME (edgekit/generate.py)
    decoder: str | None = None
    # verification: declared output roles and state pairs (("none", "none") turns state detection off)
    output_roles: tuple[tuple[str, str], ...] = ()
    state: tuple[tuple[str, str], ...] = ()
    state_steps: int = 8

    def __post_init__(self):
        if self.precision is not None:
            object.__setattr__(self, "precision", get_precision(self.precision).name)
        if self.io not in IO_TYPES:
            raise UsageError(f"--io {self.io!r}: choose float or int8")
        if self.io == "int8" and self.precision != "int8":
            raise UsageError("--io int8 needs --quantize int8 (integer inputs need calibrated activation ranges)")
        from edgekit.quantize.config import CALIBRATIONS

        if self.int8_calibration not in CALIBRATIONS:
            raise UsageError(f"--int8-calibration {self.int8_calibration!r}: choose one of {', '.join(CALIBRATIONS)}")
        from edgekit.quantize.auto_mixed import parse_mixed_precision

        parse_mixed_precision(self.mixed_precision)  # refused here, before any work
        for flag, value in (("--calibration-samples", self.calibration_samples), ("--eval-samples", self.eval_samples)):
            if value is not None and not 1 <= value <= MAX_SAMPLES:
                raise UsageError(f"{flag} must be between 1 and {MAX_SAMPLES:,}, got {value}")
        if self.name is not None:
            check_name(self.name)
        if self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.color_layout not in ("RGB", "BGR"):
            raise UsageError("--color-layout must be RGB or BGR")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise UsageError("--mean and --std must have the same number of values")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UsageError("--std values must be non-zero")
        for flag, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None and not all(math.isfinite(v) for v in values):
                raise UsageError(f"{flag} values must be finite numbers, got {', '.join(map(str, values))}")
        if not self.targets:
            raise UsageError("no target given")
        if self.tolerance is not None:
            Tolerance.parse(self.tolerance, _FP32)  # fail early on a malformed value
        _check_verify_declarations(self)

    def tolerance_for(self, precision: str) -> Tolerance:
        default = get_precision(precision).tolerance
        return Tolerance.parse(self.tolerance, default) if self.tolerance else default

    def options_for(self, target: str) -> Mapping[str, Any]:
        return self.target_options.get(target, {})
