"""One int8 decision, handed to every target: the digits CNN through ExecuTorch and ONNX in one run."""
from __future__ import annotations

import pytest

import edgekit
from edgekit import manifest


@pytest.mark.slow
def test_one_decision_serves_executorch_and_onnx(digits, tmp_path):
    data = digits["data"]
    arts = edgekit.convert(digits["model"], target=["executorch", "onnx"], quantize="int8", arch="edgekit.demo:digits_cnn",
                           inputs=["x:1x1x8x8"], calibration=digits["calibration"], eval_data=digits["eval"],
                           eval_samples=len(data.x_test), output_dir=str(tmp_path))
    assert [a.status for a in arts] == ["passed", "passed"], [a.parity.get("reasons") for a in arts]
    blocks = [manifest.read(a.path)["target_details"]["quantization"] for a in arts]
    # the same search result: calibrated once, the same candidates and scores in both manifests
    assert blocks[0]["candidates"] == blocks[1]["candidates"] and blocks[0]["chosen"] == blocks[1]["chosen"]
    assert [c["name"] for c in blocks[0]["candidates"]] == ["histogram", "histogram+bias-correction", "minmax", "percentile"]
    assert blocks[0]["heldout_samples"] == 25 and blocks[0]["calibration_samples"] == 100
    for block in blocks:
        assert block["coverage"]["weight_share"] == 1.0 and block["coverage"]["ops_quantized"] == 4
    assert all(a.parity["top1"] >= 0.99 for a in arts)
    assert "full 8-bit range" in blocks[1]["weights"] and blocks[1]["weight_range"]["bits"] == 8
