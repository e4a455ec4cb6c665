"""The calibration algorithms around PT2E's prepare/calibrate, by recipe: cross-layer equalization
and SmoothQuant change the float graph before it is prepared; bias correction changes the biases of
the calibrated graph. Each is exact on the float model (equalization and SmoothQuant rescale, bias
correction only moves the int8 model towards the float one), so a recipe is judged like any other
candidate: on the held-back calibration samples (edgekit/quantize/pt2e.py).

Named opt-ins (``--int8-calibration NAME``), measured in docs/quantize.md ("Algorithms"):
"""
from __future__ import annotations

from typing import Any, Sequence

from edgekit.quantize.config import Recipe

#: the named recipes of ``--int8-calibration`` beyond the plain observers
NAMED = {
    "cle": Recipe("histogram", equalize=True),
    "bias-correction": Recipe("histogram", bias_correction=True),
    "cle-bias-correction": Recipe("histogram", equalize=True, bias_correction=True),
    "smoothquant": Recipe("histogram", smoothquant=0.5),
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


def after_calibrate(prepared, recipe: Recipe, samples: Sequence[tuple]) -> dict[str, Any]:
    """Apply the recipe's post-calibration corrections to ``prepared`` in place; returns notes."""
    notes: dict[str, Any] = {}
    if recipe.bias_correction:
        from edgekit.quantize.equalize import correct_bias

        corrected = correct_bias(prepared, samples)
        notes["bias_corrected_layers"] = len(corrected)
    return notes
