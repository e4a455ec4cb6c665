"""The library keeps the CLI's promises: strict raises, NaN from the user's model is the model's."""
from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import run_cli


@pytest.mark.slow
def test_strict_raises_on_a_failed_artifact(tmp_path):
    import edgekit
    from edgekit.errors import EXIT_VERIFY_FAILED, VerificationFailed

    out = tmp_path / "out"
    with pytest.raises(VerificationFailed, match=r"strict: onnx \[int8-dynamic\] failed") as err:
        edgekit.convert(model_factory="tests.hostile.models:mid", inputs=["x:1x128"], target="onnx",
                        quantize="int8-dynamic", tolerance="cosine=0.9999999,top1=0.9,max_abs=1e-9",
                        output_dir=str(out), eval_samples=4, strict=True)
    assert err.value.exit_code == EXIT_VERIFY_FAILED
    [art] = err.value.artifacts
    assert art.status == "failed" and json.loads((out / "model_int8-dynamic.onnx.edgekit.json").read_text())["status"] == "failed"


def test_strict_raises_the_targets_own_error(tmp_path):
    import edgekit
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="--quantize int8 needs --calibration"):
        edgekit.convert(model_factory="tests.hostile.models:tiny", inputs=["x:1x8"], target="onnx", quantize="int8",
                        output_dir=str(tmp_path / "out"), strict=True)


@pytest.mark.slow
def test_model_that_outputs_nan_is_not_an_edgekit_bug(tmp_path):
    """log() of a negative number is NaN in PyTorch and in the artifact alike: the artifact is kept,
    and nothing blames edgekit (the post-embed check compares NaN-equal)."""
    out = tmp_path / "out"
    proc = run_cli("convert", "--model", "tests.hostile.models:log_net", "-i", "x:1x8", "-t", "onnx", "-o", out,
                   "--eval-samples", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "edgekit bug" not in proc.stderr and "error:" not in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads((out / "model.onnx.edgekit.json").read_text())
    assert doc["status"] == "passed" and sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.edgekit.json"]


def test_nan_equal_post_embed_check():
    """_check_unchanged's comparison: NaN in the same places is the same output; elsewhere it is not."""
    import numpy as np

    from edgekit.pipeline import _same

    a = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    assert _same(a, a.copy())
    assert not _same(a, np.array([1.0, 2.0, np.nan], dtype=np.float32))
    assert not _same(a, a.astype(np.float64))
    assert _same(np.array([1, 2]), np.array([1, 2]))


def test_api_name_outside_the_output_folder(tmp_path):
    import edgekit
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="give a plain file name"):
        edgekit.convert(model_factory="tests.hostile.models:tiny", inputs=["x:1x8"], target="onnx",
                        output_dir=str(tmp_path / "out"), name="../../etc/x")
    assert not (tmp_path / "out").exists()
