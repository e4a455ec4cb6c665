"""Verification through a real converter and runtime (ONNX + onnxruntime: the cheapest to import):
stateful models stepped with their state fed back, non-finite outputs, roles on real outputs, and
--eval-data used whole."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit import manifest
from edgekit.cli import main
from edgekit.errors import EXIT_OK, EXIT_USAGE, EXIT_VERIFY_FAILED

pytestmark = pytest.mark.slow

LSTM_INPUTS = ["-i", "x:1x4x8", "-i", "h0:1x1x16", "-i", "c0:1x1x16"]


def _convert(capsys, *args):
    code = main(["convert", *args, "-t", "onnx", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    return code, out, captured.err


@pytest.fixture(scope="session")
def lstm_data(tmp_path_factory):
    """24 real-shaped steps with the initial state at zero, as a recurrent model starts."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("lstm") / "eval.npz"
    np.savez(path, x=rng.standard_normal((24, 1, 4, 8)).astype(np.float32),
             h0=np.zeros((24, 1, 1, 16), np.float32), c0=np.zeros((24, 1, 1, 16), np.float32))
    return str(path)


def test_stateful_lstm_is_verified_over_steps_and_the_pairs_reach_the_manifest(lstm_data, tmp_path, capsys):
    code, out, err = _convert(capsys, "--model", "tests.verify.models:lstm", *LSTM_INPUTS,
                              "--eval-data", lstm_data, "-o", str(tmp_path))
    assert code == EXIT_OK, err
    parity = out["artifacts"][0]["parity"]
    assert parity["state"] == [
        {"output": "output_1", "input": "h0", "detected_by": "position"},
        {"output": "output_2", "input": "c0", "detected_by": "position"},
    ]
    assert parity["stateful"]["steps"] == 8 and parity["stateful"]["sequences"] == 3  # 24 samples / 8 steps
    assert [s["step"] for s in parity["stateful"]["per_step"]] == list(range(1, 9))
    assert all(s["cosine"] > 0.99999 for s in parity["stateful"]["per_step"])
    assert [o["role"] for o in parity["outputs"]] == ["other", "state", "state"]
    doc = manifest.read(tmp_path / "model.onnx")
    assert doc["state"] == parity["state"] and doc["status"] == "passed"


def test_an_artifact_that_drops_its_state_fails_at_step_2(lstm_data, tmp_path):
    """One step from the data (zero state) cannot tell; feeding the state back does."""
    from edgekit.data import load_samples
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import ConvertOptions, InputSpec, PRECISIONS
    from edgekit.targets.onnx.target import ONNXTarget
    from edgekit.verify import verify

    specs = [InputSpec.parse(s) for s in LSTM_INPUTS[1::2]]
    good = prepare(load_model(None, model="tests.verify.models:lstm"), specs)
    broken = prepare(load_model(None, model="tests.verify.models:lstm_forgetting_state"), specs)
    target = ONNXTarget()
    converted = target.convert(broken, "none", ConvertOptions(targets=("onnx",)), None, str(tmp_path))
    runtime = target.runtime().load(converted.path)
    samples = load_samples(lstm_data, good.inputs)
    tolerance = PRECISIONS["none"].tolerance

    single = verify(good, runtime, samples, tolerance, ConvertOptions(state=(("none", "none"),)))
    assert single.status == "passed" and single.stateful is None

    stepped = verify(good, runtime, samples, tolerance, ConvertOptions(state=(("output_1", "h0"), ("output_2", "c0"))))
    assert stepped.status == "failed"
    assert stepped.stateful["per_step"][0]["cosine"] > 0.99999 > stepped.stateful["per_step"][1]["cosine"]
    assert any(r.startswith("output_0: cosine") for r in stepped.reasons)
    assert stepped.to_dict()["state"][0] == {"output": "output_1", "input": "h0", "detected_by": "declared"}


def test_nan_where_the_model_gives_nan_is_reported_not_failed(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((20, 1, 8)).astype(np.float32))  # about half negative: log -> NaN
    code, out, err = _convert(capsys, "--model", "tests.verify.models:log_of_input", "-i", "x:1x8",
                              "--eval-data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out"))
    assert code == EXIT_OK, err
    parity = out["artifacts"][0]["parity"]
    nonfinite = parity["outputs"][0]["nonfinite"]
    assert nonfinite["reference"] == nonfinite["artifact"] > 40 and nonfinite["mismatched"] == 0
    assert parity["cosine"] > 0.99999 and "edgekit bug" not in err


def test_int8_zero_where_float_is_small_gives_inf_fails_with_exit_1_and_is_kept(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x = rng.uniform(1.0, 10.0, (40, 1, 8)).astype(np.float32)
    x[:, :, 0] = 1e-3  # rounds to the int8 zero (scale about 10/255): log -> -Inf in the artifact only
    np.save(tmp_path / "x.npy", x)
    code, out, err = _convert(capsys, "--model", "tests.verify.models:log_after_linear", "-i", "x:1x8", "--quantize", "int8",
                              "--calibration", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out"))
    assert code == EXIT_VERIFY_FAILED, err
    art = out["artifacts"][0]
    assert art["status"] == "failed"
    nonfinite = art["parity"]["outputs"][0]["nonfinite"]
    assert nonfinite["reference"] == 0 and nonfinite["artifact"] == nonfinite["mismatched"] >= 8
    assert "NaN/Inf pattern differs from the original's at" in err and "edgekit bug" not in err
    assert manifest.read(art["path"])["status"] == "failed"


def test_box_output_is_not_judged_by_top1_and_eval_data_is_used_whole(tmp_path, capsys):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((120, 1, 16)).astype(np.float32))
    code, out, err = _convert(capsys, "--model", "tests.verify.models:detector", "-i", "x:1x16",
                              "--eval-data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out"))
    assert code == EXIT_OK, err
    parity = out["artifacts"][0]["parity"]
    assert parity["samples"] == 120  # not cut to 32
    scores, boxes = parity["outputs"]
    assert scores["role"] == "class_scores" and scores["enforced"] == "confident" and scores["top1"] == 1.0
    assert boxes["role"] == "regression" and boxes["top1"] is None and boxes["enforced"] is None
    assert parity["top1"] == 1.0 and parity["enforced"] == "confident"


def test_eval_samples_cut_is_said_and_unknown_output_names_are_refused_before_work(tmp_path, capsys):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((50, 1, 16)).astype(np.float32))
    code = main(["convert", "--model", "tests.verify.models:detector", "-i", "x:1x16", "--eval-samples", "20",
                 "--eval-data", str(tmp_path / "x.npy"), "-t", "onnx", "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == EXIT_OK and manifest.read(tmp_path / "out" / "model.onnx")["parity"]["samples"] == 20
    assert "verifying on the first 20 of 50 --eval-data samples (--eval-samples 20)" in captured.err
    # 20 samples hold fewer than 10 where FP32 is confident: top-1 falls back to all inputs, and the table says so
    assert "1.000 (a)" in captured.out
    assert "(a) top-1 agreement on all inputs (enforced: too few confident inputs)" in captured.out
    code, out, err = _convert(capsys, "--model", "tests.verify.models:detector", "-i", "x:1x16",
                              "--output-role", "boxes=regression", "-o", str(tmp_path / "out2"))
    assert code == EXIT_USAGE
    assert "error: --output-role: the model has no output named 'boxes' (outputs: output_0, output_1)" in err
    assert not (tmp_path / "out2" / "model.onnx").exists()
