"""`--io int8` tells the truth: a softmax output the int8 program leaves float becomes int8 in the
file (TFLite), the manifest's I/O dtypes are the file's, and float I/O left under --io int8 is refused."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgekit.errors import ConversionError
from edgekit.options import ConvertOptions
from edgekit.targets.base import TensorSpec


def test_int8_output_parameters():
    from edgekit.targets.tflite.io_types import int8_params

    assert int8_params(0.0, 0.97) == (1 / 256, -128)  # probabilities: TFLite's softmax scale
    scale, zero_point = int8_params(-3.0, 5.0)
    assert scale == pytest.approx(8 / 255) and zero_point == -32
    assert int8_params(2.0, 4.0) == (pytest.approx(4 / 255), -128)  # the range always holds 0


def test_float_io_left_under_io_int8_is_refused():
    from edgekit.pipeline import _check_integer_io

    converted = SimpleNamespace(inputs=[TensorSpec("x", (1, 8), "int8", 0.1, 0)],
                                outputs=[TensorSpec("probs", (1, 10), "float32", None, None)])
    with pytest.raises(ConversionError, match=r"^tflite --io int8: output 'probs' \(float32\) stays float in the "
                                              r"artifact; not published as integer I/O"):
        _check_integer_io("tflite", converted, ConvertOptions(precision="int8", io="int8"))
    _check_integer_io("tflite", converted, ConvertOptions(precision="int8"))  # --io float: nothing to check


@pytest.mark.slow
def test_softmax_output_is_int8_in_the_file(outlier_files, digits_split, tmp_path):
    import edgekit
    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from tests.quantize.outlier_model import Probabilities, train_outlier_cnn

    model = Probabilities(train_outlier_cnn(digits_split, outlier=1.0))
    [art] = edgekit.convert(model.eval(), target="tflite", quantize="int8", io="int8", inputs=["x:1x1x8x8"],
                            calibration=outlier_files["calibration"], eval_data=outlier_files["eval"],
                            output_dir=str(tmp_path), int8_calibration="minmax",  # one recipe, one route: cheaper
                            target_options={"tflite": {"int8_route": "pt2e"}})
    assert art.status == "passed" and art.parity["cosine"] > 0.999
    [inp], [out] = art.manifest["inputs"], art.manifest["outputs"]
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert out["quantization"] == {"scale": 1 / 256, "zero_point": -128}
    assert art.manifest["target_details"]["int8"]["int8_outputs_added"] == {out["name"]: {"scale": 1 / 256, "zero_point": -128}}
    runtime = TFLiteRuntime().load(art.path)
    assert [s.dtype for s in runtime.inputs()] == ["int8"] and [s.dtype for s in runtime.outputs()] == ["int8"]
