"""The calibration algorithms around PT2E's prepare/calibrate, by recipe: cross-layer equalization
and SmoothQuant change the float graph before it is prepared; bias correction changes the biases of
the calibrated graph. Each is exact on the float model (equalization and SmoothQuant rescale, bias
correction only moves the int8 model towards the float one), so a recipe is judged like any other
candidate: on the held-back calibration samples (edgekit/quantize/pt2e.py). AdaRound (adaround.py)
changes the calibrated weights: each is rounded up or down, whichever reconstructs its layer's output.

Named opt-ins (``--int8-calibration NAME``), measured in docs/quantize.md ("Algorithms"):
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from edgekit.quantize.config import Recipe

#: the named recipes of ``--int8-calibration`` beyond the plain observers
NAMED = {
    "cle": Recipe("histogram", equalize=True),
    "bias-correction": Recipe("histogram", bias_correction=True),
    "cle-bias-correction": Recipe("histogram", equalize=True, bias_correction=True),
    "smoothquant": Recipe("histogram", smoothquant=0.5),
    "adaround": Recipe("histogram", adaround=True),
}

__doc__ += "".join(f"\n- ``{name}``: {recipe.name}" for name, recipe in NAMED.items())


def named_recipe(name: str) -> Recipe:
    return NAMED[name]


def before_prepare(graph, recipe: Recipe, samples: Sequence[tuple]) -> dict[str, Any]:
    """Apply the recipe's graph transforms to ``graph`` in place; returns notes for the manifest."""
    notes: dict[str, Any] = {}
    if recipe.equalize:
        from edgekit.quantize.equalize import cross_layer_equalize

        pairs = cross_layer_equalize(graph, samples)
        notes["cle_pairs"] = len(pairs)
        notes["cle_relu6_pairs_kept"] = sum(1 for p in pairs if p.activation == "relu6" and p.scaled_channels == 0)
    if recipe.smoothquant:
        from edgekit.quantize.smoothquant import smooth

        smoothed = smooth(graph, samples, recipe.smoothquant)
        notes["smoothquant_norms"] = len(smoothed)
        notes["smoothquant_linears"] = sum(len(s.linears) for s in smoothed)
    return notes


def after_calibrate(prepared, recipe: Recipe, samples: Sequence[tuple],
                    say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Apply the recipe's post-calibration corrections to ``prepared`` in place; returns notes.
    ``say`` gets a progress line per layer where a step is long (AdaRound)."""
    notes: dict[str, Any] = {}
    if recipe.adaround:  # before bias correction: the shift is then measured on the weights that ship
        from edgekit.quantize.adaround import adaround

        rounded = adaround(prepared, samples, say=say)
        learned = [r for r in rounded if r.kept != "nearest"]
        notes["adaround_layers"] = len(learned)
        notes["adaround_kept_nearest"] = len(rounded) - len(learned)
        notes["adaround_weights_changed"] = sum(r.changed for r in learned)
        if learned:  # the held-out output error of the rounded layers, relative to nearest rounding
            nearest = max(1e-30, sum(r.error_nearest for r in learned))
            notes["adaround_error_ratio"] = round(sum(r.error_adaround for r in learned) / nearest, 4)
    if recipe.bias_correction:
        from edgekit.quantize.equalize import correct_bias

        corrected = correct_bias(prepared, samples)
        notes["bias_corrected_layers"] = len(corrected)
    return notes
