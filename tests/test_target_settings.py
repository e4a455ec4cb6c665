"""Every built-in target's options are a typed settings object (targets/<name>/settings.py): an
unknown key and a bad value are refused before the model is loaded, exit 2, with the valid keys or
values listed. The model file here is empty: reaching the loader would fail differently (exit 3)."""
from __future__ import annotations

import re

import pytest

from edgekit.cli import main
from edgekit.errors import EXIT_USAGE

UNKNOWN_KEY = {
    "tflite": ('int8_rout = "pt2e"',
               "the tflite target has no option 'int8_rout' (did you mean 'int8_route'?); its options: int8_route, mixed_higher"),
    "executorch": ('delegat = "xnnpack"', "the executorch target has no option 'delegat' (did you mean 'delegate'?); "
                                          "its options: delegate, bundle, bundle_samples, group_size"),
    "torchscript-lite": ("trace = false", "the torchscript-lite target has no option 'trace'; its options: script"),
    "onnx": ("opst = 17", "the onnx target has no option 'opst' (did you mean 'opset'?); its options: opset, reduce_range"),
    "coreml": ('formt = "mlmodel"', "target_options['coreml']: unknown key(s) formt; known: format, deployment_target, "
                                    "compute_units, image_input, prune, frontend, description, author, license, version"),
    "coreai": ('precision = "fp16"', "the coreai target has no option 'precision'; its options: none"),
}

BAD_VALUE = [
    ("tflite", 'int8_route = "fast"', "--tflite-int8-route 'fast': choose one of auto, pt2e, aeq"),
    ("executorch", 'delegate = "tpu"', "--delegate 'tpu': choose one of xnnpack, coreml, mps, vulkan, none"),
    ("executorch", "bundle_samples = 0", "--bundle-samples 0: must be at least 1"),
    ("executorch", 'group_size = "32"', "--executorch-group-size takes a whole number, not '32'"),
    ("torchscript-lite", 'script = "yes"', "--ptl-script takes true or false, not 'yes'"),
    ("onnx", "opset = 3", "--opset 3: the onnx target writes opsets 7 to "),
    ("onnx", "reduce_range = 1", "reduce_range (--onnx-reduce-range sets it true) takes true or false, not 1"),
    ("coreml", 'compute_units = "gpu"', "--compute-units 'gpu': choose one of all, cpu-and-ne, cpu-and-gpu, cpu-only"),
    ("coreml", 'prune = "lots"', "--prune 'lots': give the sparsity as a number between 0 and 1, e.g. 0.5"),
]


def _run(tmp_path, capsys, target: str, option_line: str, precision: str = "none") -> tuple[int, str]:
    model = tmp_path / "model.pt2"
    model.write_bytes(b"")
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(
        f'[convert]\nmodel = "{model}"\ninputs = ["x:1x8"]\ntargets = ["{target}"]\nprecisions = ["{precision}"]\n'
        f'output_dir = "{tmp_path / "out"}"\n' + ('calibration = "random"\n' if precision == "int8" else "")
        + f'\n[convert.options.{target}]\n{option_line}\n'
    )
    code = main(["run", str(pipeline)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("target", sorted(UNKNOWN_KEY))
def test_an_unknown_key_is_refused_with_the_valid_ones(target, tmp_path, capsys):
    option_line, message = UNKNOWN_KEY[target]
    code, err = _run(tmp_path, capsys, target, option_line)
    assert code == EXIT_USAGE, err
    assert f"error: {message}\n" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("target,option_line,message", BAD_VALUE, ids=[f"{t}:{o.split()[0]}" for t, o, _ in BAD_VALUE])
def test_a_bad_value_is_refused_with_the_valid_ones(target, option_line, message, tmp_path, capsys):
    code, err = _run(tmp_path, capsys, target, option_line)
    assert code == EXIT_USAGE, err
    assert f"error: {message}" in err and len(err.strip().splitlines()[-1]) < 200


def test_a_rule_that_depends_on_the_precision(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, "onnx", "opset = 11", precision="int8")
    assert code == EXIT_USAGE
    assert "error: --quantize int8 on the onnx target needs --opset 13 or newer (got 11)" in err


def test_flags_and_library_callers_meet_the_same_checks(tmp_path, capsys):
    import edgekit
    from edgekit.errors import UsageError

    model = tmp_path / "model.pt2"
    model.write_bytes(b"")
    code = main(["convert", str(model), "-t", "executorch", "--delegate", "TPU", "-i", "x:1x8", "-o", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "error: --delegate 'tpu': choose one of xnnpack, coreml, mps, vulkan, none" in capsys.readouterr().err
    with pytest.raises(UsageError, match="the tflite target has no option 'route'") as err:
        edgekit.convert(str(model), target="tflite", inputs=["x:1x8"], output_dir=str(tmp_path),
                        target_options={"tflite": {"route": "aeq"}})
    assert err.value.exit_code == EXIT_USAGE


def test_settings_take_their_defaults_and_normalise():
    from edgekit.options import ConvertOptions
    from edgekit.registry import get_target_class

    def settings(target, **values):
        options = ConvertOptions(targets=(target,), target_options={target: values})
        return get_target_class(target).read_settings(options, "none")

    assert settings("executorch", delegate="XNNPACK", bundle_samples=None).delegate == "xnnpack"
    assert settings("executorch").bundle_samples == 8 and settings("executorch").group_size == 32
    assert settings("tflite").int8_route == "auto" and settings("tflite", int8_route="aeq").int8_route == "aeq"
    assert settings("onnx").opset == 18 and settings("onnx", reduce_range=False).reduce_range is False
    assert settings("torchscript-lite", script=True).script is True
    assert settings("coreml", format="mlmodel").suffix == ".mlmodel"


def test_every_builtin_target_is_covered_here():
    """A target added to the registry gets a row in UNKNOWN_KEY (and in BAD_VALUE when it has options)."""
    import dataclasses

    from edgekit.registry import TARGETS, get_target_class
    from edgekit.targets.base import Target

    assert set(UNKNOWN_KEY) == set(TARGETS)
    for name in TARGETS:
        cls = get_target_class(name)
        has_options = bool(dataclasses.fields(cls.settings_class)) or cls.read_settings.__func__ is not Target.read_settings.__func__
        assert has_options == (name in {t for t, _, _ in BAD_VALUE}), name


@pytest.mark.parametrize("key,message", [
    ("tfilte", "target_options: unknown target 'tfilte'; did you mean 'tflite'?"),
    ("litert", "target_options['litert']: key it by the target's name, 'tflite'"),
])
def test_options_for_no_target_are_refused_not_ignored(key, message, tmp_path):
    import edgekit
    from edgekit.errors import UsageError

    model = tmp_path / "model.pt2"
    model.write_bytes(b"")
    with pytest.raises(UsageError, match=re.escape(message)):
        edgekit.convert(str(model), target="tflite", inputs=["x:1x8"], output_dir=str(tmp_path),
                        target_options={key: {"int8_route": "aeq"}})
