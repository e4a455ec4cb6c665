"""What each artifact FILE really holds at its precision (issue 11 item 6): the readers of
edgekit.quantize.artifact_coverage on real conversions of one small CNN, the refusal of a
mostly-float int8 file, and the warning for any other mostly-unquantized one."""
from __future__ import annotations

import pytest

from edgekit.errors import ConversionError
from edgekit.quantize.coverage import check_artifact
from tests.quantize.conftest import convert_outlier

CONV = 16 * 1 * 9 + 32 * 16 * 9  # the two convolutions' weights; the three linear layers hold the rest
TOTAL = 39888

# target, precision -> what the file holds: weight elements by stored type, compute ops by kind, and
# the share of weights at the precision (ExecuTorch fp16 and TorchScript Lite int8-dynamic leave the
# convolutions float32; Core ML weight-only skips tensors under coremltools' 2,048-element threshold)
EXPECTED = {
    ("executorch", "fp16"): ({"float16": TOTAL}, {"float16": 5}, 1.0),  # conv filters stay fp16 in the file
    ("torchscript-lite", "int8-dynamic"): ({"float32": CONV, "int8": TOTAL - CONV}, {"dynamic-int8": 3, "float32": 2}, 0.8809),
    # ONNX int8-dynamic: convolutions int8 per output channel, weight-only (targets/onnx/quantize.py)
    ("onnx", "int8-dynamic"): ({"int8": TOTAL}, {"dynamic-int8": 3, "weight-only": 2}, 1.0),
    ("coreml", "int8-weight-only"): ({"float16": 2512, "int8": 37376}, {"float16": 3, "weight-only": 2}, 0.937),
}


@pytest.mark.slow
@pytest.mark.parametrize("target,precision", list(EXPECTED))
def test_manifest_coverage_is_read_from_the_file(outlier_files, tmp_path, target, precision):
    [art] = convert_outlier(outlier_files, tmp_path, [target], precision, verify=False)
    coverage = art.manifest["quantization"]["coverage"]
    weights, ops, share = EXPECTED[(target, precision)]
    assert coverage["precision"] == precision and coverage["weights_by_dtype"] == weights
    assert coverage["ops_by_kind"] == ops and coverage["weight_share"] == share
    assert len(coverage["float_ops"]) == coverage["ops_total"] - coverage["ops_quantized"]


@pytest.mark.slow
def test_a_float_file_is_refused_as_int8_and_reported_as_fp16(outlier_files, tmp_path):
    [art] = convert_outlier(outlier_files, tmp_path, ["tflite"], "none", verify=False)
    assert "quantization" not in art.manifest  # float32 claims nothing
    with pytest.raises(ConversionError, match=r"tflite int8: only 0.0% of weights and 0/5 compute ops are int8 in the "
                                              r"artifact \(float: depthwise_conv_2d_1, conv_2d_2, fully_connected_\d+, .*\); not published as int8"):
        check_artifact(art.path, "tflite", "int8", "tflite")
    block, warning = check_artifact(art.path, "tflite", "fp16", "tflite")
    assert block["coverage"]["weights_by_dtype"] == {"float32": TOTAL}
    assert warning == (f"tflite [fp16]: only 0.0% of the weights are stored at fp16 (weight elements by type: "
                       f"float32 {TOTAL:,}); the artifact is mostly unquantized")
