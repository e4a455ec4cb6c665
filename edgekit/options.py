"""Precisions, input specs, tolerances and the convert options: frozen and validated when built.

This module is the one place that names precisions and their default verification thresholds.
It imports no ML framework.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Tolerance:
    """Verification thresholds. ``top1`` is enforced only on real (not random) inputs."""

    cosine: float
    top1: float
    max_abs: float | None = None  # optional absolute bound on the largest error

    @classmethod
    def parse(cls, text: str, default: "Tolerance") -> "Tolerance":
        """``0.98`` (cosine) or ``cosine=0.98,top1=0.95,max_abs=0.1``."""
        values = dataclasses.asdict(default)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            if not sep:
                key, raw = "cosine", part
            key = key.strip().replace("-", "_")
            if key not in values:
                raise UsageError(
                    f"--tolerance: unknown key {key!r}; use cosine, top1 or max_abs, e.g. cosine=0.98,top1=0.95"
                )
            try:
                values[key] = float(raw)
            except ValueError:
                raise UsageError(f"--tolerance: {key} must be a number, got {raw!r}") from None
        return cls(**values)


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


@dataclass(frozen=True)
class ConvertOptions:
    """Everything one conversion needs besides the model: built once, validated here."""

    targets: tuple[str, ...] = ("tflite",)
    precision: str | None = None  # None: each target's own default (documented per target)
    io: str = "float"
    calibration: str | None = None  # path, module:function, or "random"
    calibration_samples: int = 100
    eval_data: str | None = None
    eval_samples: int = 32
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

    def __post_init__(self):
        if self.precision is not None:
            object.__setattr__(self, "precision", get_precision(self.precision).name)
        if self.io not in IO_TYPES:
            raise UsageError(f"--io {self.io!r}: choose float or int8")
        if self.io == "int8" and self.precision != "int8":
            raise UsageError("--io int8 needs --quantize int8 (integer inputs need calibrated activation ranges)")
        if self.calibration_samples < 1:
            raise UsageError("--calibration-samples must be at least 1")
        if self.eval_samples < 1:
            raise UsageError("--eval-samples must be at least 1")
        if self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.color_layout not in ("RGB", "BGR"):
            raise UsageError("--color-layout must be RGB or BGR")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise UsageError("--mean and --std must have the same number of values")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UsageError("--std values must be non-zero")
        if not self.targets:
            raise UsageError("no target given")
        if self.tolerance is not None:
            Tolerance.parse(self.tolerance, _FP32)  # fail early on a malformed value

    def tolerance_for(self, precision: str) -> Tolerance:
        default = get_precision(precision).tolerance
        return Tolerance.parse(self.tolerance, default) if self.tolerance else default

    def options_for(self, target: str) -> Mapping[str, Any]:
        return self.target_options.get(target, {})
