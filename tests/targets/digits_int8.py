"""One check for every target's int8 on a real task: the digits classifier, converted at none and
int8, keeps its top-1 agreement and its accuracy on the held-out digits."""
from __future__ import annotations

import edgekit


def assert_int8_keeps_digits_accuracy(digits, target, tmp_path) -> dict:
    """Convert the trained digits CNN for ``target`` (a Target instance) at none and int8; assert int8
    passes with top-1 agreement >= 0.98 on every test image and loses at most one point of accuracy.
    Returns {precision: Artifact} for target-specific checks."""
    from edgekit.demo import artifact_accuracy

    data = digits["data"]
    arts = {
        p: edgekit.convert(digits["model"], target=target.name, quantize=p, arch="edgekit.demo:digits_cnn",
                           inputs=["x:1x1x8x8"], calibration=digits["calibration"], eval_data=digits["eval"],
                           eval_samples=len(data.x_test), output_dir=str(tmp_path))[0]
        for p in ("none", "int8")
    }
    assert arts["int8"].status == "passed"
    assert arts["int8"].parity["top1"] >= 0.98 and arts["int8"].parity["samples"] == len(data.x_test)
    fp32_acc = artifact_accuracy(target, arts["none"].path, data)
    int8_acc = artifact_accuracy(target, arts["int8"].path, data)
    assert fp32_acc >= 0.95
    assert fp32_acc - int8_acc <= 0.01
    return arts
