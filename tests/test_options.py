import pytest

from edgekit.errors import EXIT_USAGE, UsageError
from edgekit.options import PRECISIONS, ConvertOptions, DynamicAxis, InputSpec, Tolerance, get_precision


def test_input_spec_parses_shape_and_dtype():
    spec = InputSpec.parse("ids:1x128:int64")
    assert (spec.name, spec.shape, spec.dtype) == ("ids", (1, 128), "int64")
    assert InputSpec.parse("x:1x3x224x224").dtype == "float32"


@pytest.mark.parametrize("text", ["x", "x:", "x:1xx3", "1x:3", "x:1x3:complex"])
def test_input_spec_rejects_malformed(text):
    with pytest.raises(UsageError) as err:
        InputSpec.parse(text)
    assert err.value.exit_code == EXIT_USAGE
    assert "--input" in str(err.value) or "dtype" in str(err.value)


def test_precision_aliases_and_unknown_names():
    assert get_precision("fp32").name == "none"
    with pytest.raises(UsageError, match="unknown precision 'int3'; choose one of: none, fp16"):
        get_precision("int3")


def test_default_thresholds_match_the_documented_table():
    assert PRECISIONS["none"].tolerance == Tolerance(cosine=0.99999, top1=0.99)
    assert PRECISIONS["fp16"].tolerance == Tolerance(cosine=0.999, top1=0.99)
    assert PRECISIONS["int8"].tolerance == Tolerance(cosine=0.99, top1=0.98)
    assert PRECISIONS["int8"].needs_calibration and not PRECISIONS["int8-dynamic"].needs_calibration


def test_tolerance_override_keeps_unnamed_defaults():
    tol = Tolerance.parse("top1=0.9", PRECISIONS["int8"].tolerance)
    assert (tol.cosine, tol.top1) == (0.99, 0.9)
    assert Tolerance.parse("0.95", PRECISIONS["int8"].tolerance).cosine == 0.95
    with pytest.raises(UsageError, match="unknown key 'snr'"):
        Tolerance.parse("snr=3", PRECISIONS["int8"].tolerance)


def test_options_reject_contradictions_when_built():
    with pytest.raises(UsageError, match="--io int8 needs --quantize int8"):
        ConvertOptions(precision="fp16", io="int8")
    with pytest.raises(UsageError, match="same number of values"):
        ConvertOptions(mean=(0.5, 0.5, 0.5), std=(0.2,))
    with pytest.raises(UsageError, match="--calibration-samples"):
        ConvertOptions(calibration_samples=0)


def test_dynamic_axis_parse():
    axis = DynamicAxis.parse("ids:1:1-512")
    assert (axis.input, axis.axis, axis.min, axis.max) == ("ids", 1, 1, 512)
    with pytest.raises(UsageError, match="MIN must not exceed MAX"):
        DynamicAxis.parse("x:0:9-2")


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/b", "a\\b", ".hidden", "..", "", "a\0b"])
def test_name_must_be_a_plain_file_name(name):
    with pytest.raises(UsageError, match="give a plain file name"):
        ConvertOptions(name=name)
    assert ConvertOptions(name="my_model-v2").name == "my_model-v2"


@pytest.mark.parametrize("field, flag", [("eval_samples", "--eval-samples"), ("calibration_samples", "--calibration-samples")])
def test_sample_counts_are_bounded(field, flag):
    with pytest.raises(UsageError, match=f"{flag} must be between 1 and 100,000, got 100001"):
        ConvertOptions(**{field: 100_001})
    assert getattr(ConvertOptions(**{field: 100_000}), field) == 100_000


def test_input_shapes_that_cannot_be_allocated():
    with pytest.raises(UsageError, match=r"more than a tensor can index \(2\^63\)"):
        InputSpec.parse("x:4294967296x4294967296x2")
    with pytest.raises(UsageError, match=r"input 'x': shape 1000000x1000000 \(float32\) needs 3.73e\+03 GiB for one tensor"):
        InputSpec.parse("x:1000000x1000000")
    assert InputSpec.parse("x:1x3x224x224").nbytes == 3 * 224 * 224 * 4


def test_mean_and_std_must_be_finite():
    with pytest.raises(UsageError, match="--mean values must be finite numbers"):
        ConvertOptions(mean=(0.5, float("nan"), 0.5))
