"""What the shared quantizer is asked to do (QuantConfig) and what each recipe it tried scored
(Candidate). Plain dataclasses, no ML framework imported."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import UsageError

#: activation observers edgekit can calibrate with (torchao observers, plus percentile, MSE and
#: mean-minmax: edgekit/quantize/observers.py, observers_extra.py)
OBSERVERS = ("minmax", "histogram", "percentile", "moving-average", "mse", "mean-minmax")
#: named opt-in algorithms (edgekit/quantize/algorithms.py): observer + graph transforms
ALGORITHMS = ("cle", "bias-correction", "cle-bias-correction", "smoothquant", "adaround")
#: what ``--int8-calibration`` accepts: one observer, one algorithm, or "auto" (try the candidates, keep the best)
CALIBRATIONS = ("auto",) + OBSERVERS + ALGORITHMS


@dataclass(frozen=True)
class QuantConfig:
    """Static int8 (per-channel symmetric weights, calibrated int8 activations) and how to search it.

    ``observer="auto"`` tries the recipes of ``auto_candidates`` (bounded by ``max_candidates``) and
    keeps the one that best agrees with the float model on the held-back calibration split.
    """

    observer: str = "auto"
    heldout_fraction: float = 0.25
    min_heldout: int = 4  # fewer held-back samples than this: no search, the default recipe is used
    max_candidates: int = 4
    seed: int = 0
    percentile: float = 99.99
    float_nodes: tuple[str, ...] = ()  # graph node names kept in float (mixed precision)
    int16_nodes: tuple[str, ...] = ()  # int16-activation hook; the search keeps layers float and TFLite may realise them as 16x8 (targets/tflite/int16x8.py)

    def __post_init__(self):
        if self.observer not in CALIBRATIONS:
            raise UsageError(f"unknown int8 calibration {self.observer!r}; valid: {', '.join(CALIBRATIONS)}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise UsageError(f"heldout_fraction must be between 0 and 1, got {self.heldout_fraction}")
        if self.max_candidates < 1:
            raise UsageError("max_candidates must be at least 1")
        if not 50.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (50, 100], got {self.percentile}")

    def candidates(self, norm_linear: bool = False) -> list["Recipe"]:
        """The recipes to try, best guess first (the first is used when there is nothing to judge on).
        ``norm_linear``: the graph has LayerNorm -> linear groups (found by structure:
        smoothquant.has_norm_linear), where SmoothQuant can act."""
        if self.observer in ALGORITHMS:
            from edgekit.quantize.algorithms import named_recipe

            return [named_recipe(self.observer)]
        if self.observer != "auto":
            return [Recipe(self.observer)]
        # order = measured preference (docs/quantize.md, "Algorithms"); moving-average and
        # mean-minmax are not candidates: per-sample ranges clip (EfficientNet-Lite0 confident
        # top-1 0.49 / 0.66); bias correction is (cosine 0.9912 -> 0.9970 on it); CLE and MSE are
        # opt-ins (no gain on the CNNs), AdaRound too (bias correction's gain for ~100x its time)
        recipes = [Recipe("histogram"), Recipe("histogram", bias_correction=True), Recipe("minmax"), Recipe("percentile")]
        if norm_linear:  # MiniLM, 64 calibrate / 200 held out: cosine 0.9949 (auto's pick) -> 0.9968, top-1 equal
            recipes.insert(2, Recipe("histogram", smoothquant=0.5))
        return recipes[: self.max_candidates]


@dataclass(frozen=True)
class Recipe:
    observer: str
    equalize: bool = False  # cross-layer equalization before prepare (edgekit/quantize/equalize.py)
    bias_correction: bool = False  # after calibration (edgekit/quantize/equalize.py)
    smoothquant: float = 0.0  # SmoothQuant alpha; 0 = off (edgekit/quantize/smoothquant.py)
    adaround: bool = False  # learned weight rounding after calibration (edgekit/quantize/adaround.py)

    @property
    def name(self) -> str:
        parts = [self.observer] + (["cle"] if self.equalize else []) + (["adaround"] if self.adaround else []) \
            + (["bias-correction"] if self.bias_correction else [])
        return "+".join(parts + ([f"smoothquant{self.smoothquant:g}"] if self.smoothquant else []))


@dataclass
class Candidate:
    """One recipe tried, with its held-out scores (None when it was not scored) or its error."""

    recipe: Recipe
    top1_confident: float | None = None
    top1: float | None = None
    cosine: float | None = None
    confident_inputs: int = 0
    heldout_inputs: int = 0
    error: str | None = None
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.recipe.name

    def key(self) -> tuple:
        """Sort key, best last: what verification enforces, top-1 agreement on the inputs where FP32
        is confident, then cosine. Top-1 on all inputs is recorded but does not decide: on a few
        dozen held-back samples it mostly counts near-ties where FP32 itself hesitates (measured: it
        preferred a TFLite recipe that keeps 0.58 of EfficientNet-Lite0's confident answers over one
        that keeps 1.00). A failed candidate sorts below every scored one."""
        if self.error is not None:
            return (-1.0, -1.0)
        return tuple(-1.0 if v is None else v for v in (self.top1_confident, self.cosine))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "observer": self.recipe.observer}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(
                top1_confident=_round(self.top1_confident), top1=_round(self.top1), cosine=_round(self.cosine, 6),
                confident_inputs=self.confident_inputs, heldout_inputs=self.heldout_inputs,
            )
        out["seconds"] = round(self.seconds, 2)
        out.update(self.notes)
        return out


def _round(value: float | None, digits: int = 4):
    return None if value is None else round(float(value), digits)
