"""Automatic mixed precision on a small real model: the fewest layers leave int8, each for a
reason, and the config it hands to the shared quantizer gives the score it promised."""
from __future__ import annotations

import pytest

from edgekit.errors import UsageError
from edgekit.options import Tolerance
from edgekit.quantize import QuantConfig
from edgekit.quantize.mixed import Budget, Int8Variants, run_outputs, score, search_mixed_precision
from edgekit.quantize.pt2e import quantize_program


@pytest.fixture(scope="module")
def strict_variants(depthwise_exported, calibration, evaluation, depthwise_program, depthwise_diagnosis):
    """A tolerance between int8 and float: int8 misses it, some float layers reach it."""
    return _strict(depthwise_exported, calibration, evaluation, depthwise_program, depthwise_diagnosis)


def _strict(depthwise_exported, calibration, evaluation, depthwise_program, depthwise_diagnosis):
    base = depthwise_diagnosis.baseline
    best = depthwise_diagnosis.keep_float_top["2"]
    threshold = (base.cosine + best["cosine"]) / 2
    return Int8Variants(depthwise_exported, depthwise_program, calibration, evaluation,
                        Tolerance(cosine=threshold, top1=0.98))


def test_search_keeps_the_fewest_layers_that_meet_the_tolerance(strict_variants, depthwise_diagnosis):
    ranked = depthwise_diagnosis.layers
    decision = search_mixed_precision(strict_variants, ranked, budget=Budget(1.0, 1.0))
    assert decision.met and decision.final.passed and not decision.baseline.passed
    assert 1 <= len(decision.kept) <= 2
    kept = {k.node for k in decision.kept}
    assert kept <= {l.node for l in ranked[:2]}
    # minimal: without any one kept layer the tolerance is missed
    for layer in [l for l in ranked if l.node in kept]:
        rest = {n: "float" for l in ranked if l.node in kept - {layer.node} for n in l.group}
        assert not strict_variants.evaluate(rest).passed
    for k in decision.kept:
        assert k.precision == "float" and k.why.startswith("diagnose rank ")
    doc = decision.to_json()
    assert doc["met"] is True and doc["evaluations"][0]["kept"] == [] and doc["evaluations"][0]["passed"] is False


def test_decision_config_is_what_the_shared_quantizer_builds(strict_variants, depthwise_diagnosis, depthwise_exported,
                                                             calibration, evaluation):
    decision = search_mixed_precision(strict_variants, depthwise_diagnosis.layers, budget=Budget(1.0, 1.0))
    config = decision.config(QuantConfig(observer="minmax"))
    assert set(config.float_nodes) == set(decision.float_nodes) and config.float_nodes
    program = quantize_program(depthwise_exported, calibration, config)
    result = score(strict_variants.reference, run_outputs(program.converted(), evaluation), strict_variants.tolerance)
    assert result.passed
    assert result.cosine == pytest.approx(decision.final.cosine, abs=1e-6)


def test_budget_and_impossible_tolerance_report_the_best_found(depthwise_exported, calibration, evaluation,
                                                              depthwise_program, depthwise_diagnosis):
    ranked = depthwise_diagnosis.layers
    impossible = Int8Variants(depthwise_exported, depthwise_program, calibration, evaluation, Tolerance(cosine=1.0, top1=1.0))
    decision = search_mixed_precision(impossible, ranked, budget=Budget(max_weight_share=0.2, max_flop_share=0.5))
    assert not decision.met and decision.kept
    assert decision.weight_share <= 0.2 and decision.flop_share <= 0.5
    assert decision.final.snr_db > decision.baseline.snr_db
    assert decision.summary.startswith("no mix within the budget meets the tolerance")
    nothing = search_mixed_precision(impossible, ranked, budget=Budget(0.0, 0.0))
    assert not nothing.met and nothing.kept == [] and nothing.summary == "no layer fits the budget"
    with pytest.raises(UsageError, match="float or int16"):
        search_mixed_precision(impossible, ranked, higher="fp16")
    with pytest.raises(UsageError, match="max_flop_share"):
        Budget(max_flop_share=1.5)
