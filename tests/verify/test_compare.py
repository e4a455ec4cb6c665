"""compare() on arrays: roles, the honest top-1 measure, non-finite values, per-output tolerances.

No converter here: these run in milliseconds. The arrays are shaped like what real models emit
(logits of a confident classifier, boxes, CTC log-probabilities, LSTM states, unit embeddings).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.errors import UsageError
from edgekit.options import PRECISIONS, Tolerance
from edgekit.verify import Parity, compare
from edgekit.verify_roles import MIN_CONFIDENT, detect_state_pairs, parse_assignments, check_roles

INT8 = PRECISIONS["int8"].tolerance
RNG = np.random.default_rng(0)


def _samples(array):
    """(N, ...) -> N samples of one output, each with a batch axis of 1."""
    return [[a[None]] for a in array]


def _run(ref, got, name="output_0", tolerance=INT8, real=True, roles=None):
    outputs, reasons = compare(_samples(ref), _samples(got), [name], tolerance, real, roles)
    return outputs[0], reasons


def confident_logits(n=40, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes))
    logits[np.arange(n), rng.integers(0, classes, n)] += 6.0  # one clear winner per row
    return logits


def test_confident_logits_are_class_scores_and_top1_is_enforced_on_confident_rows():
    ref = confident_logits()
    got = ref.copy()
    # flip 3 rows where FP32 hesitates (two near-equal winners) and none where it is confident
    hesitant = np.array([0, 1, 2])
    ref[hesitant, 0], ref[hesitant, 1] = 3.0, 2.99
    ref[hesitant, 2:] = 0.0
    got[hesitant] = ref[hesitant]
    got[hesitant, 1] = 3.01
    out, reasons = _run(ref, got)
    assert out.role == "class_scores" and "confident on" in out.role_reason
    assert out.top1_all == pytest.approx(37 / 40)
    assert out.confident_samples == 37 and out.top1_confident == 1.0
    assert out.top1 == 1.0 and out.enforced == "confident"
    assert reasons == []  # cosine stays high; the flips are where FP32 itself hesitates


def test_a_flip_on_a_confident_row_fails_with_the_basis_named():
    ref = confident_logits(n=60)
    got = ref.copy()
    winner = ref[5].argmax()
    got[5, winner] -= 20.0  # confident row flipped
    out, reasons = _run(ref, got, tolerance=Tolerance(cosine=0.0, top1=0.99))
    assert out.top1 == pytest.approx(59 / 60)
    assert reasons == ["output_0: top-1 agreement 0.983 on the 60 of 60 inputs where FP32 is confident < 0.99"]


def test_too_few_confident_rows_fall_back_to_all_inputs_and_say_so():
    ref = np.zeros((12, 10))
    ref[:, 0], ref[:, 1] = 1.0, 0.95  # every row hesitant
    got = ref.copy()
    got[:4, 1] = 1.05  # four hesitant flips
    out, reasons = _run(ref, got, roles={"output_0": ("class_scores", "declared")}, tolerance=Tolerance(0.0, 0.98))
    assert out.confident_samples == 0 < MIN_CONFIDENT
    assert out.enforced == "all" and out.top1 == pytest.approx(8 / 12)
    assert reasons == [
        "output_0: top-1 agreement 0.667 on all 12 inputs (only 0 where FP32 is confident, fewer than 10) < 0.98"
    ]


def test_box_regression_gets_no_top1_but_is_checked_with_errors():
    boxes = RNG.uniform(0, 1, (200, 4))
    got = boxes + RNG.uniform(-0.03, 0.03, boxes.shape)  # small errors move the argmax of close rows
    out, reasons = _run(boxes, got, name="output_1", tolerance=Tolerance(cosine=0.99, top1=0.99, max_rel=0.05))
    assert out.role == "regression" and out.role_reason == "last dimension 4 (boxes, points, offsets)"
    assert out.top1 is None and out.enforced is None
    assert out.top1_all < 0.99  # reported, for information: it would have failed a good artifact
    assert reasons == []
    out, reasons = _run(boxes, got, name="output_1", tolerance=Tolerance(cosine=0.5, top1=0.99, max_rel=0.01))
    assert len(reasons) == 1 and reasons[0].startswith("output_1: max error relative to the largest value")


def test_named_landmarks_are_regression_even_with_ten_values():
    landmarks = RNG.standard_normal((32, 10)) * 3
    got = landmarks[:, ::-1].copy()
    out, _ = _run(landmarks, landmarks, name="landmarks")
    assert out.role == "regression" and out.top1 is None


def test_pixel_coordinates_are_not_mistaken_for_logits():
    coords = RNG.uniform(0, 112, (32, 10))  # 5 landmarks in pixels: non-negative, not probabilities
    out, reasons = _run(coords, coords[:, ::-1].copy(), tolerance=Tolerance(cosine=-1.0, top1=0.99))
    assert out.role == "other" and out.top1 is None and reasons == []


def test_per_token_log_probabilities_in_3d_get_top1_enforced():
    logits = RNG.standard_normal((16, 20, 30))  # batch of 16 utterances, 20 frames, 30 symbols (CTC)
    logits[..., 0] += 5.0  # blank dominates, as in CTC
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ref = logp[:, None]  # each sample (1, 20, 30)
    got = ref.copy()
    got[:, 0, :5, 0] -= 30.0  # the first 5 frames of every utterance lose their (confident) blank
    outputs, reasons = compare([[r] for r in ref], [[g] for g in got], ["output_0"], Tolerance(0.0, 0.98), True)
    out = outputs[0]
    assert out.role == "class_scores" and out.role_reason == "rows are log-probabilities (exp sums to 1)"
    assert out.rows == 16 * 20 and out.enforced == "confident"
    assert out.top1 < 0.8 and reasons and "top-1 agreement" in reasons[0]


def test_unit_norm_embeddings_and_hidden_states_get_no_top1():
    emb = RNG.standard_normal((32, 384))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out, _ = _run(emb, emb)
    assert out.role == "embedding" and out.top1 is None
    hidden = RNG.standard_normal((8, 16, 384)) * 0.5  # (batch, tokens, width): a transformer's hidden states
    out, _ = _run(hidden, hidden)
    assert out.role == "other" and out.top1 is None and "confident on only 0%" in out.role_reason


def test_declared_role_wins_over_detection():
    boxes = RNG.uniform(0, 1, (32, 4))
    out, _ = _run(boxes, boxes, roles={"output_0": ("class_scores", "declared")})
    assert out.role == "class_scores" and out.role_reason == "declared" and out.top1 == 1.0


def test_random_inputs_report_top1_but_never_enforce_it():
    ref = confident_logits()
    got = -ref
    out, reasons = _run(ref, got, tolerance=Tolerance(cosine=-1.0, top1=0.99), real=False)
    assert out.role == "class_scores" and out.top1 == 0.0 and out.enforced is None
    assert reasons == []


def test_identical_nan_pattern_is_not_a_failure_and_metrics_use_finite_positions():
    ref = confident_logits(n=20)
    ref[3, 2] = np.nan
    ref[7, :] = np.inf
    got = ref.copy()
    got[~np.isfinite(ref)] = ref[~np.isfinite(ref)]
    got[0, 0] += 1e-7
    out, reasons = _run(ref, got, tolerance=PRECISIONS["none"].tolerance)
    assert reasons == []
    assert out.nonfinite == {"reference": 11, "artifact": 11, "mismatched": 0}
    assert out.cosine == pytest.approx(1.0) and math.isfinite(out.max_abs)
    assert out.rows == 18  # top-1 only on rows finite on both sides


def test_a_different_nonfinite_pattern_fails():
    ref = RNG.standard_normal((8, 64))
    got = ref.copy()
    got[2, 5] = np.inf  # fp16 overflow where fp32 is finite
    got[4, 1] = np.nan
    out, reasons = _run(ref, got)
    assert out.nonfinite == {"reference": 0, "artifact": 2, "mismatched": 2}
    assert reasons == [
        "output_0: NaN/Inf pattern differs from the original's at 2 of 512 values (original 0 NaN/Inf, artifact 2)"
    ]
    # NaN where the original has +Inf is a difference too
    ref[1, 1], got[1, 1] = np.inf, np.nan
    out, reasons = _run(ref, got)
    assert out.nonfinite["mismatched"] == 3


def test_all_values_nonfinite_in_both_does_not_raise():
    ref = np.full((4, 8), np.nan)
    out, reasons = _run(ref, ref.copy())
    assert reasons == [] and math.isnan(out.cosine) and out.to_dict()["cosine"] is None
    parity = Parity("passed", [out])
    assert parity.worst_cosine is None and parity.to_dict()["nonfinite"]["reference"] == 32


def test_per_output_tolerance_applies_to_that_output_only():
    ref = confident_logits(n=40)
    got = ref + RNG.standard_normal(ref.shape) * 0.3
    tol = Tolerance.parse("cosine=0.9,output_0:cosine=0.9999", INT8)
    outputs, reasons = compare([[r[None], r[None]] for r in ref], [[g[None], g[None]] for g in got],
                               ["output_0", "logits"], tol, True)
    assert [r.split(":")[0] for r in reasons] == ["output_0"] and "< 0.9999" in reasons[0]


def test_parity_dict_keeps_the_compatible_keys():
    ref = confident_logits(n=30)
    outputs, reasons = compare(_samples(ref), _samples(ref), ["logits"], INT8, True)
    doc = Parity("passed", outputs, INT8, 30, "eval.npz", True, reasons).to_dict()
    assert doc["cosine"] == pytest.approx(1.0) and doc["top1"] == 1.0
    assert doc["enforced"] == "confident" and doc["top1_all"] == 1.0 and doc["confident_samples"] == 30
    assert doc["outputs"][0]["role"] == "class_scores" and doc["state"] == [] and doc["stateful"] is None


def test_state_pairs_by_name_and_by_position():
    class Spec:
        def __init__(self, name, shape, dtype="float32"):
            self.name, self.shape, self.dtype = name, shape, dtype

    lstm_inputs = [Spec("x", (1, 5, 8)), Spec("h0", (1, 1, 16)), Spec("c0", (1, 1, 16))]
    pairs = detect_state_pairs(lstm_inputs, ["output_0", "output_1", "output_2"], [(1, 4), (1, 1, 16), (1, 1, 16)], [True] * 3)
    assert [(p.output, p.input, p.how) for p in pairs] == [("output_1", "h0", "position"), ("output_2", "c0", "position")]
    pairs = detect_state_pairs(lstm_inputs, ["y", "h_n", "c_n"], [(1, 4), (1, 1, 16), (1, 1, 16)], [True] * 3)
    assert [(p.output, p.input, p.how) for p in pairs] == [("h_n", "h0", "names"), ("c_n", "c0", "names")]
    # an autoencoder (every input has an output of its shape) and a one-input model have no state
    assert detect_state_pairs([Spec("x", (1, 8))], ["output_0"], [(1, 8)], [True]) == []
    two = [Spec("image", (1, 3, 16, 16)), Spec("features", (1, 6))]
    assert detect_state_pairs(two, ["logits", "embedding"], [(1, 5), (1, 4)], [True, True]) == []
    # by position only into inputs named like state: (x, y) -> (a, b) with b shaped like y is no recurrence
    plain = [Spec("x", (1, 16)), Spec("y", (1, 16))]
    assert detect_state_pairs(plain, ["a", "b"], [(1, 8), (1, 16)], [True, True]) == []
    ids = [Spec("ids", (1, 12), "int64"), Spec("mask", (1, 12), "int64")]
    assert detect_state_pairs(ids, ["a", "b"], [(1, 12), (1, 12)], [True, True]) == []


def test_malformed_declarations_are_usage_errors():
    with pytest.raises(UsageError, match="--output-role .boxes.: expected NAME=VALUE"):
        parse_assignments(["boxes"], "--output-role")
    with pytest.raises(UsageError, match="unknown role; choose one of class_scores, regression, state, embedding, other"):
        check_roles([("boxes", "bbox")])
    with pytest.raises(UsageError, match="cosine similarity lies between -1 and 1"):
        Tolerance.parse("5", INT8)
    with pytest.raises(UsageError, match="logits:top1=1.5: top-1 agreement is a share between 0 and 1"):
        Tolerance.parse("logits:top1=1.5", INT8)


def test_a_per_output_top1_tolerance_asks_for_top1_on_that_output():
    from edgekit.options import ConvertOptions
    from edgekit.verify_roles import roles_from

    options = ConvertOptions(tolerance="output_1:top1=0.9", output_roles={"output_2": "regression"})
    assert roles_from(options, []) == {
        "output_1": ("class_scores", "--tolerance output_1:top1 given"),
        "output_2": ("regression", "declared"),
    }


def test_peaked_but_hesitant_2d_logits_are_class_scores_and_wide_3d_spread_is_not():
    # a 157-class intent head on out-of-domain text: rarely confident, yet far from uniform
    logits = RNG.standard_normal((40, 157))
    logits[np.arange(40), RNG.integers(0, 157, 40)] += 4.5
    out, _ = _run(logits, logits)
    assert out.role == "class_scores" and out.confident_samples < 0.25 * 40
    # hidden states with a large spread over a wide last axis look peaked too, but per token they are not scores
    hidden = RNG.standard_normal((4, 32, 2048)) * 3
    out, _ = _run(hidden, hidden)
    assert out.role == "other" and out.top1 is None
