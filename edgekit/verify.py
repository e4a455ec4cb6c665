"""Parity between an artifact and the original model: one function for every target.

The artifact runs through its target's Runtime; the original runs in eager PyTorch on the same
samples. Per output: max and mean absolute error, cosine similarity, SNR (dB), and top-1 agreement
where the output looks like class scores. Thresholds come from the precision (options.py) and can be
overridden with --tolerance. Top-1 is enforced only on real inputs: random inputs make argmax noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from edgekit.options import Tolerance


@dataclass
class OutputParity:
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    snr_db: float
    top1: float | None  # None when the output does not look like class scores

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


@dataclass
class Parity:
    status: str  # passed | failed | unverified | skipped
    outputs: list[OutputParity] = field(default_factory=list)
    tolerance: Tolerance | None = None
    samples: int = 0
    data: str | None = None  # where the eval inputs came from
    real_inputs: bool = False
    reasons: list[str] = field(default_factory=list)  # why it failed or was not run

    @property
    def worst_cosine(self) -> float | None:
        return min((o.cosine for o in self.outputs), default=None)

    @property
    def worst_top1(self) -> float | None:
        values = [o.top1 for o in self.outputs if o.top1 is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "samples": self.samples,
            "data": self.data,
            "real_inputs": self.real_inputs,
            "tolerance": None if self.tolerance is None else self.tolerance.__dict__,
            "cosine": self.worst_cosine,
            "top1": self.worst_top1,
            "outputs": [o.to_dict() for o in self.outputs],
            "reasons": self.reasons,
        }


def looks_like_class_scores(shape: Sequence[int]) -> bool:
    """(batch, classes) with 2..100k classes: logits or probabilities, not a feature map."""
    return len(shape) == 2 and 2 <= shape[-1] <= 100_000


def quantize_input(x, spec):
    import numpy as np

    if spec.scale is None or np.dtype(spec.dtype).kind == "f":
        return x.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    q = np.round(x / spec.scale + spec.zero_point)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize_output(y, spec):
    import numpy as np

    if spec.scale is None or np.asarray(y).dtype.kind == "f":
        return np.asarray(y, dtype=np.float32) if np.asarray(y).dtype.kind == "f" else np.asarray(y)
    return (np.asarray(y, dtype=np.float32) - spec.zero_point) * spec.scale


def run_artifact(runtime, sample: Sequence[Any]) -> list[Any]:
    """Run one float sample through a runtime, quantizing integer inputs and dequantizing outputs."""
    in_specs, out_specs = runtime.inputs(), runtime.outputs()
    feeds = [quantize_input(x, s) for x, s in zip(sample, in_specs)]
    return [dequantize_output(y, s) for y, s in zip(runtime.run(feeds), out_specs)]


def compare(
    reference: Sequence[Sequence[Any]],
    candidate: Sequence[Sequence[Any]],
    names: Sequence[str],
    tolerance: Tolerance,
    real_inputs: bool,
) -> tuple[list[OutputParity], list[str]]:
    """Metrics over all samples per output, and the reasons (if any) the candidate fails."""
    import numpy as np

    parities, reasons = [], []
    for j, name in enumerate(names):
        ref = np.concatenate([np.asarray(r[j], dtype=np.float64).reshape(1, -1) for r in reference], axis=0)
        got = np.concatenate([np.asarray(c[j], dtype=np.float64).reshape(1, -1) for c in candidate], axis=0)
        if ref.shape != got.shape:
            reasons.append(f"{name}: shape {got.shape} differs from the original's {ref.shape}")
            parities.append(OutputParity(name, math.inf, math.inf, -1.0, -math.inf, None))
            continue
        err = got - ref
        max_abs = float(np.max(np.abs(err))) if err.size else 0.0
        mean_abs = float(np.mean(np.abs(err))) if err.size else 0.0
        cosine = _cosine(ref.ravel(), got.ravel())
        signal, noise = float(np.sum(ref**2)), float(np.sum(err**2))
        snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        top1 = None
        shape = np.asarray(reference[0][j]).shape
        if looks_like_class_scores(shape):
            r = np.concatenate([np.asarray(x[j]).reshape(-1, shape[-1]) for x in reference])
            c = np.concatenate([np.asarray(x[j]).reshape(-1, shape[-1]) for x in candidate])
            top1 = float(np.mean(np.argmax(r, axis=-1) == np.argmax(c, axis=-1)))
        if not np.isfinite(got).all():
            reasons.append(f"{name}: the artifact produced NaN/Inf")
        if cosine < tolerance.cosine:
            reasons.append(f"{name}: cosine {cosine:.6f} < {tolerance.cosine}")
        if real_inputs and top1 is not None and top1 < tolerance.top1:
            reasons.append(f"{name}: top-1 agreement {top1:.3f} < {tolerance.top1}")
        if tolerance.max_abs is not None and max_abs > tolerance.max_abs:
            reasons.append(f"{name}: max abs error {max_abs:.3g} > {tolerance.max_abs}")
        parities.append(OutputParity(name, max_abs, mean_abs, cosine, snr, top1))
    return parities, reasons


def _cosine(a, b) -> float:
    import numpy as np

    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def output_order(model_names: Sequence[str], artifact_names: Sequence[str]) -> list[int]:
    """Artifact output positions in the model's order: by name where every name matches
    (converters may sort dict outputs), else by position."""
    if sorted(model_names) == sorted(artifact_names):
        return [list(artifact_names).index(n) for n in model_names]
    return list(range(len(artifact_names)))


def verify(model, runtime, samples, tolerance: Tolerance) -> Parity:
    """Run ``samples`` (edgekit.data.Samples) through the original model and the loaded runtime."""
    reference = model.reference_many(samples.samples)
    candidate = [run_artifact(runtime, s) for s in samples.samples]
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    candidate = [[c[i] for i in order] for c in candidate]
    if len(candidate[0]) != len(reference[0]):
        return Parity(
            "failed", [], tolerance, len(samples), samples.source, samples.real,
            [f"the artifact has {len(candidate[0])} outputs, the original {len(reference[0])}"],
        )
    outputs, reasons = compare(reference, candidate, model.output_names, tolerance, samples.real)
    return Parity("failed" if reasons else "passed", outputs, tolerance, len(samples), samples.source, samples.real, reasons)
