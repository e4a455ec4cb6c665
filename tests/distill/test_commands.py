"""`edgekit distill` and `edgekit run` as a user runs them: tables, exit codes, error lines, and the
student going on through `edgekit convert` (verified) and `edgekit bench`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.errors import EXIT_DATA, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE


def _json_at_end(out: str):
    """The JSON document edgekit printed last. Under pytest, litert-torch's logger writes to the stream
    that was sys.stdout when it was first imported (pytest's capture), beyond convert's descriptor
    redirection; in a terminal stdout holds only the JSON (tests/targets/test_tflite.py checks that)."""
    start = 0 if out.startswith("{") else out.rindex("\n{\n") + 1
    return json.loads(out[start:])


def _distill_args(digits_teacher, output, *extra):
    return ["distill", "--teacher", digits_teacher["teacher"], "--arch", digits_teacher["arch"], "-i", digits_teacher["input"],
            "--data", digits_teacher["train"], "--val", digits_teacher["val"], "--epochs", "2", "--lr", "3e-3",
            "--no-control", "-o", str(output), "-q", *extra]


@pytest.fixture(scope="module")
def student_pt2(digits_teacher, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_student")
    assert main(_distill_args(digits_teacher, folder / "student.pt2")) == EXIT_OK
    return folder / "student.pt2"


def test_distill_prints_teacher_and_student_side_by_side(student_pt2, digits_teacher, capsys, tmp_path):
    assert student_pt2.exists() and (student_pt2.parent / "student.ckpt" / "last.pt").exists()
    assert main(_distill_args(digits_teacher, tmp_path / "s.pt2", "--json", "--no-checkpoint")) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["metric"]["name"] == "accuracy" and report["files"]["pt2"] == str(tmp_path / "s.pt2")
    assert not (tmp_path / "s.ckpt").exists()


def test_distill_table(digits_teacher, capsys, tmp_path):
    assert main(_distill_args(digits_teacher, tmp_path / "t.pt2", "--epochs", "1", "--no-checkpoint")) == EXIT_OK
    out = capsys.readouterr().out
    for text in ("parameters", "FLOPs (batch 1)", "host latency (ms)", "val accuracy", "% kept", "fewer"):
        assert text in out


def test_existing_output_needs_overwrite(student_pt2, digits_teacher, capsys):
    assert main(_distill_args(digits_teacher, student_pt2)) == EXIT_OUTPUT
    assert f"error: {student_pt2} exists; pass --overwrite to replace it" in capsys.readouterr().err


@pytest.mark.parametrize("make, code, message", [
    (lambda d: np.savez(d / "nan.npz", x=np.full((20, 64), np.nan, np.float32)), EXIT_DATA, "contains 1280 NaN/Inf values"),
    (lambda d: np.savez(d / "shape.npz", x=np.zeros((20, 63), np.float32)), EXIT_DATA, "has shape (20, 63), expected (N, 64)"),
    (lambda d: (d / "empty").mkdir(), EXIT_DATA, "the folder holds no images and no .txt/.csv files"),
])
def test_bad_data_exits_4_with_one_line(digits_teacher, tmp_path, capsys, make, code, message):
    make(tmp_path)
    source = next(p for p in tmp_path.iterdir())
    args = _distill_args(digits_teacher, tmp_path / "x.pt2")
    args[args.index("--data") + 1] = str(source)
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --data") and message in err and "\n" not in err
    assert not (tmp_path / "x.pt2").exists()


def test_auto_refusal_exits_2_and_says_what_to_do(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((20, 3, 8, 8)).astype(np.float32))
    code = main(["distill", "--teacher", "tests.distill.test_students:residual", "-i", "x:1x3x8x8",
                 "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "r.pt2"), "-q"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: --student auto cannot shrink Residual: node 'add'" in err
    assert "pass --student package.module:factory or a student model file" in err


@pytest.mark.slow
def test_the_student_pt2_converts_and_verifies_with_edgekit_convert(student_pt2, digits_teacher, tmp_path, capfd):
    code = main(["convert", str(student_pt2), "-t", "tflite", "--calibration", digits_teacher["train"],
                 "--quantize", "int8", "--eval-data", digits_teacher["val"], "-o", str(tmp_path), "--json"])
    out = _json_at_end(capfd.readouterr().out)
    assert code == EXIT_OK, out
    (artifact,) = out["artifacts"]
    assert artifact["status"] == "passed" and artifact["parity"]["real_inputs"] is True
    assert artifact["parity"]["top1"] >= 0.95


@pytest.mark.slow
def test_run_pipeline_distills_converts_verifies_and_benches(digits_teacher, tmp_path, capfd):
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f"""
[distill]
teacher = "{digits_teacher['teacher']}"
arch = "{digits_teacher['arch']}"
inputs = ["{digits_teacher['input']}"]
data = "{digits_teacher['train']}"
val = "{digits_teacher['val']}"
epochs = 2
lr = 0.003
output = "out/student.pt2"

[convert]
targets = ["tflite"]
precisions = ["none"]
output_dir = "out"

[verify]
eval_data = "{digits_teacher['val']}"

[bench]
devices = ["host"]
warmup = 2
runs = 5
output = "out/bench.json"
""", encoding="utf-8")
    code = main(["run", str(pipeline), "--json"])
    result = _json_at_end(capfd.readouterr().out)
    assert code == EXIT_OK, result
    assert result["distill"]["metric"]["student"] > 0.85
    (artifact,) = result["artifacts"]
    assert artifact["status"] == "passed" and artifact["path"] == str(tmp_path / "out" / "student.tflite")
    (record,) = result["bench"]
    assert record["status"] == "ok" and record["timings_ms"]["p50"] > 0
    assert (tmp_path / "out" / "bench.json").exists()
