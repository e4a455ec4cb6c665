"""A tired user's mistakes: each is refused with its documented code and one line, before any
long work (no "load ..." stage for what can be told without the model), never as exit 70."""
from __future__ import annotations

import numpy as np
import pytest

from tests.hostile.conftest import check_failure, run_cli

TINY = ("--model", "tests.hostile.models:tiny", "-i", "x:1x8", "-t", "onnx")


@pytest.mark.parametrize("source, says", [
    ("def build(:\n    pass\n", "SyntaxError"),
    ("raise RuntimeError('cannot find my weights')\n", "importing 'usermod' raised RuntimeError: cannot find my weights"),
])
def test_arch_module_that_is_broken(source, says, model_dir, tmp_path):
    (tmp_path / "usermod.py").write_text(source)
    out = tmp_path / "out"
    proc = run_cli("convert", model_dir / "tiny.pt", "--arch", "usermod:build", "-t", "onnx", "-o", out, cwd=tmp_path)
    line = check_failure(proc, 3, out=out, says=says)
    if "SyntaxError" in says:
        assert "usermod.py:1" in line


def test_model_factory_returning_something_else(tmp_path):
    proc = run_cli("convert", "--model", "tests.hostile.models:not_a_module", "-i", "x:1x8", "-o", tmp_path / "out")
    check_failure(proc, 3, says="returned dict, not a torch.nn.Module")


@pytest.mark.parametrize("flags, says", [
    (("--mean", "0.5,0.5"), "--mean has 2 values; input 'x' has 3 channels (give 1 or 3)"),
    (("--std", "0.2,0.2,0.2,0.2,0.2"), "--std has 5 values"),
])
def test_normalisation_that_does_not_match_the_channels(flags, says, tmp_path):
    proc = run_cli("convert", "--model", "tests.models:small_cnn", "-i", "x:1x3x32x32", "-t", "onnx",
                   *flags, "-o", tmp_path / "out")
    check_failure(proc, 2, out=tmp_path / "out", says=says)


@pytest.mark.parametrize("shape, says", [
    ("x:4294967296x4294967296x4", "more than a tensor can index (2^63)"),
    ("x:100000x100000x100", "GiB for one tensor; this machine has"),
])
def test_input_shape_that_cannot_exist(shape, says, tmp_path):
    proc = run_cli("convert", "--model", "tests.hostile.models:tiny", "-i", shape, "-o", tmp_path / "out")
    line = check_failure(proc, 2, says=says)
    assert "c10" not in proc.stderr and "frame #" not in proc.stderr and len(line) < 300
    assert "load ..." not in proc.stderr  # refused while parsing, before torch is even imported


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs", "sub/dir", ".hidden", ".."])
def test_name_that_leaves_the_output_folder(name, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", *TINY, "-o", out, "--name", name)
    check_failure(proc, 2, says="give a plain file name")
    assert not (tmp_path / "escaped.onnx").exists() and not out.exists()


def test_int8_without_calibration_is_refused_before_loading(tmp_path):
    proc = run_cli("convert", *TINY, "--quantize", "int8", "-o", tmp_path / "out")
    check_failure(proc, 2, says="--quantize int8 needs --calibration")
    assert "load ..." not in proc.stderr


def test_existing_artifact_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.onnx").write_bytes(b"my old artifact")
    proc = run_cli("convert", *TINY, "--name", "tiny", "-o", out)
    check_failure(proc, 7, says="tiny.onnx exists; pass --overwrite", out=out, allowed=("tiny.onnx",))
    assert "load ..." not in proc.stderr and (out / "tiny.onnx").read_bytes() == b"my old artifact"


@pytest.mark.parametrize("value, says", [
    ("1000000", "--eval-samples must be between 1 and 100,000"),
    ("0", "--eval-samples must be between 1 and 100,000"),
])
def test_eval_samples_out_of_bounds(value, says, tmp_path):
    check_failure(run_cli("convert", *TINY, "--eval-samples", value, "-o", tmp_path / "out"), 2, says=says)


def test_eval_samples_that_do_not_fit_in_memory(tmp_path):
    proc = run_cli("convert", "--model", "tests.hostile.models:tiny", "-i", "x:1x8", "--eval-samples", "100000",
                   "-i", "y:1x3x2048x2048", "-o", tmp_path / "out")
    # two inputs for a one-input model would fail later; the memory bound is said first
    check_failure(proc, 2, says="GiB of inputs; this machine has")


def test_output_folder_is_a_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    check_failure(run_cli("convert", *TINY, "-o", target), 7, says="is a file")


def test_output_folder_is_read_only(read_only_dir):
    check_failure(run_cli("convert", *TINY, "-o", read_only_dir / "out"), 7, says="cannot write to output folder")


def test_missing_model_file(tmp_path):
    check_failure(run_cli("convert", tmp_path / "nope.pt2", "-o", tmp_path / "out"), 3, says="no such file")


def test_random_bytes_as_model(tmp_path):
    junk = tmp_path / "model.pt2"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    check_failure(run_cli("convert", junk, "-o", tmp_path / "out"), 3, says="not a PyTorch model file")


def test_truncated_pt2(model_dir, tmp_path):
    from tests.hostile import crafted

    cut = crafted.truncated(model_dir / "tiny.pt2", tmp_path / "cut.pt2", 0.6)
    check_failure(run_cli("convert", cut, "-o", tmp_path / "out"), 3, out=tmp_path / "out", says="corrupt or truncated")


def test_run_with_a_binary_pipeline_file(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_bytes(bytes(range(256)) * 8)
    check_failure(run_cli("run", path), 2, says="not a text file")


@pytest.mark.parametrize("body, says", [
    ('[convert]\nmodel = "m.pt2"\nname = "../up"\noutput_dir = "out"\n', "give a plain file name"),
    ('[distill]\nteacher = "t.pt"\ndata = "d.npz"\nlr = nan\n', "lr must be a number > 0"),
    ('[convert]\nmodel = "m.pt2"\noutput_dir = "out"\n[bench]\noutput = "afile/results.json"\n', "cannot write there"),
])
def test_run_refuses_bad_values_before_any_stage(body, says, tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    path = tmp_path / "pipeline.toml"
    path.write_text(body)
    proc = run_cli("run", path)
    check_failure(proc, 7 if "cannot write" in says else 2, says=says)


@pytest.mark.parametrize("flag", ["--lr", "--temperature", "--alpha", "--weight-decay"])
def test_distill_refuses_non_finite_numbers(flag, tmp_path):
    proc = run_cli("distill", "--teacher", "tests.hostile.models:tiny", "-i", "x:1x8", "--data", tmp_path / "d.npz",
                   flag, "nan", "-o", tmp_path / "s.pt2")
    check_failure(proc, 2, says=f"{flag} must be a finite number, got nan")


def test_archive_torch_logs_a_traceback_for_is_one_line(tmp_path):
    """torch.export.load logs a warning with a full traceback before its legacy fallback fails:
    without --verbose the user sees edgekit's line only; with it, torch's own log too."""
    import zipfile

    path = tmp_path / "flat.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive_format", "pt2")
        zf.writestr("version", "9")
    check_failure(run_cli("convert", path, "-o", tmp_path / "out"), 3, says="cannot load ExportedProgram")
    verbose = run_cli("convert", path, "-o", tmp_path / "out", "--verbose")
    assert verbose.returncode == 3 and "Ran into the following error when deserializing" in verbose.stderr


def test_demo_into_a_read_only_folder_fails_before_training(read_only_dir):
    proc = run_cli("demo", "-o", read_only_dir / "demo")
    check_failure(proc, 7, says="cannot write to output folder")
    assert "train" not in proc.stderr


def test_api_inspect_of_a_damaged_artifact(tmp_path):
    import edgekit
    from edgekit.errors import ModelLoadError

    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(ModelLoadError, match="cannot read as a tflite artifact") as err:
        edgekit.inspect(str(path))
    assert err.value.exit_code == 3


@pytest.mark.parametrize("flags, says", [
    (("--labels", "{binary}"), "not a UTF-8 text file"),
    (("--image-size", "0x0"), "sides from 1 to 65536"),
    (("--image-size", "100000000x100000000"), "sides from 1 to 65536"),
])
def test_convert_option_files_and_sizes(flags, says, tmp_path):
    binary = tmp_path / "labels.txt"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    proc = run_cli("convert", *TINY, *(f.format(binary=binary) for f in flags), "-o", tmp_path / "out")
    check_failure(proc, 2, says=says)
