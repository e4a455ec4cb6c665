"""Broken artifacts and reports: inspect, bench and package on damaged or hostile input."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.hostile import crafted
from tests.hostile.conftest import check_failure, run_cli

RNG = np.random.default_rng(7)


def _garbage(path, header: bytes = b""):
    path.write_bytes(header + RNG.bytes(3000))
    return path


@pytest.mark.parametrize("name, header, says", [
    ("model.tflite", b"", "cannot read as a tflite artifact"),
    ("model.tflite", b"\x1c\x00\x00\x00TFL3", "cannot read as a tflite artifact"),  # right magic, garbage body
    ("model.onnx", b"", "not a readable ONNX file"),
    ("model.ptl", b"", "not a TorchScript Lite archive"),
    ("model.pte", b"\x1c\x00\x00\x00ET12", "not a readable ExecuTorch program"),
])
def test_inspect_corrupt_artifact(name, header, says, tmp_path):
    path = _garbage(tmp_path / name, header)
    check_failure(run_cli("inspect", path), 3, says=says)


def test_inspect_empty_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"")
    check_failure(run_cli("inspect", path), 3, says="empty file, not a tflite artifact")


def test_inspect_empty_mlpackage(tmp_path):
    (tmp_path / "model.mlpackage").mkdir()
    check_failure(run_cli("inspect", tmp_path / "model.mlpackage"), 3, says="empty folder, not a coreml artifact")


@pytest.mark.slow
def test_inspect_mlpackage_with_a_corrupt_manifest(tmp_path):
    package = tmp_path / "model.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text('{"fileFormatVersion": "1.0.0", "itemInfoEntries": {')
    check_failure(run_cli("inspect", package), 3, says="cannot read as a coreml artifact")


def test_inspect_truncated_real_onnx(onnx_artifact, tmp_path):
    cut = crafted.truncated(onnx_artifact, tmp_path / "cut.onnx", 0.5)
    check_failure(run_cli("inspect", cut), 3, says=str(cut))


def test_inspect_unknown_suffix(tmp_path):
    path = _garbage(tmp_path / "model.caffemodel")
    check_failure(run_cli("inspect", path), 2, says="not an artifact edgekit knows")


def test_bench_report_into_a_place_that_cannot_be_written(onnx_artifact, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    proc = run_cli("bench", onnx_artifact, "--json", blocker / "results.json", "--runs", "1")
    check_failure(proc, 7, says="--json")
    assert "bench:" not in proc.stderr  # refused before any measuring


def test_bench_html_into_a_read_only_folder(onnx_artifact, read_only_dir):
    proc = run_cli("bench", onnx_artifact, "--html", read_only_dir / "report.html", "--runs", "1")
    check_failure(proc, 7, says="--html")


def test_bench_html_path_is_a_folder(onnx_artifact, tmp_path):
    check_failure(run_cli("bench", onnx_artifact, "--html", tmp_path, "--runs", "1"), 7, says="is a folder")


def test_bench_data_with_nan_is_a_data_error(onnx_artifact, tmp_path):
    data = tmp_path / "data.npz"
    x = np.ones((4, 1, 8), dtype=np.float32)
    x[2, 0, 3] = np.nan
    np.savez(data, x=x)
    check_failure(run_cli("bench", onnx_artifact, "--data", data, "--runs", "1"), 4, says="contains 1 NaN/Inf values")


def test_bench_warns_when_an_artifact_no_longer_matches_its_manifest(onnx_artifact, tmp_path):
    copy = tmp_path / "tiny.onnx"
    shutil.copy(onnx_artifact, copy)
    shutil.copy(f"{onnx_artifact}.edgekit.json", f"{copy}.edgekit.json")
    with open(copy, "ab") as fh:
        fh.write(b"\0")  # one byte appended after edgekit wrote it
    data = tmp_path / "data.npy"
    np.save(data, np.full((2, 1, 8), np.inf, dtype=np.float32))
    proc = run_cli("bench", copy, "--data", data, "--runs", "1")
    check_failure(proc, 4)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "does not match its manifest (sha256" in warnings[0]


@pytest.mark.parametrize("argv, says", [
    (("package", "--app", "android", "{model}"), "not an artifact edgekit knows"),
    (("package", "--app", "android", "{missing}"), "no such artifact"),
    (("package", "--app", "android", "{onnx}", "--app-dir", "{tmp}"), "not the edgekit android sample app"),
])
def test_package_refuses_bad_input(argv, says, model_dir, onnx_artifact, tmp_path):
    values = {"model": model_dir / "tiny.pt2", "missing": tmp_path / "gone.tflite", "onnx": onnx_artifact, "tmp": tmp_path}
    proc = run_cli(*(a.format(**values) for a in argv))
    check_failure(proc, 2, says=says)
    assert sorted(os.listdir(tmp_path)) == []
