"""Core ML settings: formats, deployment targets, compute units, and which precision needs which OS.

One place for the facts that decide what a Core ML conversion may do; imports no ML framework, so the
CLI can validate flags before anything heavy loads. ``CoreMLSettings.build`` turns the
``target_options["coreml"]`` dict (from the CLI or a library caller) into one validated, frozen object.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edgekit.errors import UsageError

FORMATS = {"mlpackage": ".mlpackage", "mlmodel": ".mlmodel"}
FORMAT_KIND = {"mlpackage": "mlprogram", "mlmodel": "neuralnetwork"}

# Core ML specification version per OS release: Apple ships one per year, iOS and macOS in step.
# The ML Program format (.mlpackage) starts at spec 6 (iOS15 / macOS12).
SPEC_VERSIONS = {
    "iOS13": 4, "iOS14": 5, "iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9,
    "macOS10.15": 4, "macOS11": 5, "macOS12": 6, "macOS13": 7, "macOS14": 8, "macOS15": 9,
}
MLPROGRAM_MIN_SPEC = 6
IOS_BY_SPEC = {v: k for k, v in SPEC_VERSIONS.items() if k.startswith("iOS")}
MACOS_BY_SPEC = {v: k for k, v in SPEC_VERSIONS.items() if k.startswith("macOS")}

# What each precision needs from the Core ML runtime (ML Program ops it emits):
#   fp32/fp16: plain ML Program (iOS15); int8-weight-only and palettizeN: constexpr_affine_dequantize /
#   constexpr_lut_to_dense (iOS16); int8 (W8A8): activation quantize/dequantize ops (iOS17);
#   int4-weight-only: blockwise constexpr_blockwise_shift_scale (iOS18).
MIN_SPEC = {
    "none": 6, "fp16": 6, "int8-weight-only": 7, "palettize8": 7, "palettize6": 7, "palettize4": 7,
    "int8": 8, "int4-weight-only": 9,
}
PRUNE_MIN_SPEC = 7  # constexpr_sparse_to_dense
JOINT_MIN_SPEC = 9  # pruning combined with quantization or palettization (sparse + lut / sparse + affine)
# The legacy neural network (.mlmodel) stores fp16, linear int8 and lookup-table weights natively.
MLMODEL_PRECISIONS = ("none", "fp16", "int8-weight-only", "palettize8", "palettize6", "palettize4")
MLMODEL_MIN_SPEC = 4  # iOS13: the oldest target coremltools converts PyTorch models for

COMPUTE_UNITS = {"all": "ALL", "cpu-and-ne": "CPU_AND_NE", "cpu-and-gpu": "CPU_AND_GPU", "cpu-only": "CPU_ONLY"}
FRONTENDS = ("torch.export", "torchscript")
METADATA_KEYS = ("description", "author", "license", "version")
OPTION_KEYS = (
    "format", "deployment_target", "compute_units", "image_input", "prune", "frontend", *METADATA_KEYS,
)


def canonical_deployment_target(text: str) -> str:
    """'ios16' -> 'iOS16'; unknown names list the known ones."""
    for name in SPEC_VERSIONS:
        if name.lower() == text.strip().lower():
            return name
    raise UsageError(f"--deployment-target {text!r}: choose one of {', '.join(SPEC_VERSIONS)}")


def same_family(spec: int, like: str) -> str:
    """The release of ``like``'s OS family (iOS or macOS) with Core ML spec ``spec``."""
    return (MACOS_BY_SPEC if like.startswith("macOS") else IOS_BY_SPEC)[spec]


def required_spec(precision: str, file_format: str, prune: float | None) -> int:
    if file_format == "mlmodel":
        return MLMODEL_MIN_SPEC
    spec = MIN_SPEC[precision]
    if prune:
        spec = max(spec, PRUNE_MIN_SPEC if precision in ("none", "fp16") else JOINT_MIN_SPEC)
    return spec


@dataclass(frozen=True)
class CoreMLSettings:
    format: str
    deployment_target: str
    deployment_target_default: bool  # chosen by edgekit as the lowest the precision allows
    compute_units: str
    image_input: str | None  # None: no image input; "": the first image-shaped input; else its name
    prune: float | None
    frontend: str
    metadata: Mapping[str, str]

    @property
    def spec_version(self) -> int:
        return SPEC_VERSIONS[self.deployment_target]

    @property
    def suffix(self) -> str:
        return FORMATS[self.format]

    @classmethod
    def build(cls, values: Mapping[str, Any], precision: str) -> "CoreMLSettings":
        unknown = sorted(set(values) - set(OPTION_KEYS))
        if unknown:
            raise UsageError(f"target_options['coreml']: unknown key(s) {', '.join(unknown)}; known: {', '.join(OPTION_KEYS)}")
        file_format = str(values.get("format") or "mlpackage").lower()
        if file_format not in FORMATS:
            raise UsageError(f"--format {file_format!r}: choose mlpackage (ML Program, iOS15+) or mlmodel (neural network, older devices)")
        prune = values.get("prune")
        if prune is not None:
            if isinstance(prune, bool) or not isinstance(prune, (int, float, str)):
                raise UsageError(f"--prune {prune!r}: give the sparsity as a number between 0 and 1, e.g. 0.5")
            try:
                prune = float(prune)
            except ValueError:
                raise UsageError(f"--prune {prune!r}: give the sparsity as a number between 0 and 1, e.g. 0.5") from None
            if not 0.0 < prune < 1.0:
                raise UsageError(f"--prune {prune:g}: the sparsity must be between 0 and 1 (exclusive), e.g. 0.5")
        if file_format == "mlmodel":
            if precision not in MLMODEL_PRECISIONS:
                raise UsageError(
                    f"--quantize {precision} needs the ML Program format ({IOS_BY_SPEC[MIN_SPEC[precision]]}+): "
                    f"drop --format mlmodel, or use one of {', '.join(MLMODEL_PRECISIONS)}"
                )
            if prune:
                raise UsageError("--prune needs the ML Program format (iOS16+): drop --format mlmodel")
        needed = required_spec(precision, file_format, prune)
        given = values.get("deployment_target")
        if given:
            target = canonical_deployment_target(str(given))
            spec = SPEC_VERSIONS[target]
            if file_format == "mlpackage" and spec < MLPROGRAM_MIN_SPEC:
                raise UsageError(
                    f"--deployment-target {target}: the ML Program format (.mlpackage) needs "
                    f"{same_family(MLPROGRAM_MIN_SPEC, target)} or later; pass --format mlmodel for older devices"
                )
            if spec < needed:
                what = f"--quantize {precision}" + (" with --prune" if prune else "")
                raise UsageError(
                    f"{what} needs --deployment-target {same_family(needed, target)} or later "
                    f"({IOS_BY_SPEC[needed]} / {MACOS_BY_SPEC[needed]}); got {target}"
                )
        else:
            target = IOS_BY_SPEC[needed]
        units = str(values.get("compute_units") or "all").lower()
        if units not in COMPUTE_UNITS:
            raise UsageError(f"--compute-units {units!r}: choose one of {', '.join(COMPUTE_UNITS)}")
        frontend = str(values.get("frontend") or "torch.export")
        if frontend not in FRONTENDS:
            raise UsageError(f"--coreml-frontend {frontend!r}: choose torch.export or torchscript")
        if precision == "int8" and frontend == "torchscript":  # int8 is the shared PT2E (torch.export) program
            raise UsageError(
                "--quantize int8 with --coreml-frontend torchscript: coremltools' TorchScript frontend does not read "
                "the int8 program's quantize/dequantize ops; use the default torch.export frontend"
            )
        image_input = values.get("image_input")
        metadata = {k: str(values[k]) for k in METADATA_KEYS if values.get(k) not in (None, "")}
        return cls(
            format=file_format,
            deployment_target=target,
            deployment_target_default=not given,
            compute_units=units,
            image_input=None if image_input is None or image_input is False else ("" if image_input is True else str(image_input)),
            prune=prune,
            frontend=frontend,
            metadata=metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model_type": FORMAT_KIND[self.format],
            "deployment_target": self.deployment_target,
            "deployment_target_default": self.deployment_target_default,
            "specification_version": self.spec_version,
            "compute_units": self.compute_units,
            "frontend": self.frontend,
            "prune": self.prune,
        }
