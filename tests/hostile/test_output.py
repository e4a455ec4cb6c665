"""Atomic output for real: a full disk, SIGTERM/SIGHUP mid-conversion, runs killed outright, a
publish that fails half-way, and a converter failure that keeps its log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile.conftest import ROOT, check_failure, dead_pid, leftovers, mounted_over, run_cli


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "torchscript-lite"])
def test_disk_full_during_the_native_write(target, model_dir, small_disk):
    """144 KiB: the 139 KiB of weights pass the early estimate, the artifact's write then fills the
    disk (torch's own lite writer used to abort the process here, leaving its staging folder)."""
    disk = small_disk(144)
    out = disk.path / "out"
    proc = run_cli("convert", model_dir / "mid.pt2", "-t", target, "-o", out, "--eval-samples", "4",
                   preexec_fn=disk.preexec())
    check_failure(proc, 7, out=out, says="no space left on the device")


def test_disk_too_small_for_the_weights_is_refused_before_converting(model_dir, small_disk):
    disk = small_disk(64)
    out = disk.path / "out"
    proc = run_cli("convert", model_dir / "mid.pt2", "-t", "onnx", "-o", out, preexec_fn=disk.preexec())
    check_failure(proc, 7, out=out, says="weights alone need 139 KiB")
    assert "convert ..." not in proc.stderr


def _staging(out: Path) -> list[Path]:
    return list(out.glob(".edgekit-stage-*")) if out.exists() else []


def _start_and_signal(args, out: Path, signum: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not _staging(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _staging(out), "the conversion never reached its staging folder"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, says", [
    (signal.SIGTERM, 143, "terminated by SIGTERM"),
    (signal.SIGHUP, 129, "terminated by SIGHUP"),
])
def test_signal_mid_conversion_cleans_up(signum, code, says, model_dir, tmp_path):
    out = tmp_path / "out"
    proc = _start_and_signal(["convert", model_dir / "mid.pt2", "-t", "onnx", "-o", out], out, signum)
    check_failure(proc, code, out=out, says=says)


_SIGNAL_IN_NATIVE_CODE = """
import os, signal, sys
from edgekit import cli, manifest, ui
with cli._signals_as_exceptions(), manifest.staging_dir(sys.argv[1]) as stage:
    (stage / "model.onnx").write_bytes(b"half a model")
    with ui.captured_native_output():
        print("a converter's own line")
        os.kill(os.getpid(), signal.SIGTERM)
        print("never reached", file=sys.__stderr__)
"""


def test_signal_inside_a_converter_leaves_at_once_and_cleans_up(tmp_path):
    """Inside a converter's native section the handler does not raise (an exception crossing a C++
    frame aborted the process with SIGABRT in CI): it puts the terminal back, removes the staging
    folder and exits 143 with the one error line the user reads."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_IN_NATIVE_CODE, str(out)], capture_output=True,
                          text=True, env=env, timeout=60)
    check_failure(proc, 143, out=out, says="terminated by SIGTERM; nothing half-written was left")
    assert "never reached" not in proc.stderr and "a converter's own line" not in proc.stdout + proc.stderr


def _host():
    from edgekit.manifest import _host_tag

    return _host_tag()


def test_stale_staging_of_a_killed_run_is_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    stale = out / f".edgekit-stage-{dead_pid()}.{_host()}-x1y2"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half a model")
    live = out / f".edgekit-stage-{os.getpid()}.{_host()}-alive"  # a run still going: left alone
    other_host = out / f".edgekit-stage-{dead_pid()}.abcdef-x"  # another machine's run on a shared disk
    live.mkdir()
    other_host.mkdir()
    proc = run_cli("convert", tmp_path / "nope.pt2", "-o", out)
    check_failure(proc, 3, says="no such file")
    assert not stale.exists() and live.exists() and other_host.exists()
    live.rmdir()
    other_host.rmdir()


def test_backup_of_a_killed_publish_goes_back_into_place(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    backup = out / f".model.onnx.edgekit-old-{dead_pid()}.{_host()}"
    backup.write_bytes(b"the artifact before the killed publish")
    proc = run_cli("convert", tmp_path / "nope.pt2", "-o", out)
    check_failure(proc, 3)
    assert (out / "model.onnx").read_bytes() == b"the artifact before the killed publish"
    assert leftovers(out) == []


def _staged(tmp_path, manifest):
    stage = tmp_path / "out" / f".edgekit-stage-{os.getpid()}.{_host()}-t"
    stage.mkdir(parents=True)
    (stage / "model.pte").write_bytes(b"new program")
    (stage / "model.bpte").write_bytes(b"new bundle")
    return stage


def test_publish_that_fails_half_way_rolls_back(tmp_path, onnx_manifest):
    """The bundle's destination is blocked (a mount point cannot be renamed: EBUSY) after the
    artifact was already moved: the old artifact, manifest and bundle must all stay."""
    from edgekit import manifest as manifest_mod
    from edgekit.errors import OutputError

    out = tmp_path / "out"
    stage = _staged(tmp_path, onnx_manifest)
    (out / "m.pte").write_bytes(b"old program")
    (out / "m.pte.edgekit.json").write_text('{"old": true}')
    blocked = out / "m.bpte"
    blocked.mkdir()
    with mounted_over(blocked) as ok:
        if not ok:  # no mount here (not root): the same failure, from the filesystem call itself
            pytest.MonkeyPatch().setattr(os, "replace", _failing_replace(blocked))
        with pytest.raises(OutputError, match="m.bpte.*nothing was changed"):
            manifest_mod.publish(stage / "model.pte", onnx_manifest, out / "m.pte", True,
                                 [(stage / "model.bpte", blocked)])
        assert (out / "m.pte").read_bytes() == b"old program"
        assert json.loads((out / "m.pte.edgekit.json").read_text()) == {"old": True}
        assert blocked.is_dir()
        assert leftovers(out) == [str(stage)] and (stage / "model.pte").read_bytes() == b"new program"


def _failing_replace(blocked):
    real = os.replace

    def replace(src, dst):
        if Path(src) == blocked:
            raise OSError(16, "Device or resource busy", str(src))
        return real(src, dst)
    return replace


def test_publish_replaces_everything_with_overwrite(tmp_path, onnx_manifest):
    from edgekit import manifest as manifest_mod

    out = tmp_path / "out"
    stage = _staged(tmp_path, onnx_manifest)
    (out / "m.pte").write_bytes(b"old program")
    (out / "m.bpte").write_bytes(b"old bundle")
    manifest_mod.publish(stage / "model.pte", onnx_manifest, out / "m.pte", True, [(stage / "model.bpte", out / "m.bpte")])
    assert (out / "m.pte").read_bytes() == b"new program" and (out / "m.bpte").read_bytes() == b"new bundle"
    assert json.loads((out / "m.pte.edgekit.json").read_text())["target"] == onnx_manifest["target"]
    assert sorted(p.name for p in out.iterdir()) == [stage.name, "m.bpte", "m.pte", "m.pte.edgekit.json"]


@pytest.mark.slow
def test_converter_failure_keeps_its_log_beside_the_output(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "--model", "tests.hostile.models:zeta", "-i", "x:1x8", "-t", "onnx", "-o", out,
                   "--eval-samples", "4")
    line = check_failure(proc, 5, out=out, allowed=("model.onnx.log",), says="cannot convert op aten.")
    assert f"log: {out / 'model.onnx.log'}" in line
    log = (out / "model.onnx.log").read_text()
    assert log.startswith("edgekit: torch.onnx cannot convert op aten.") and "--- traceback ---" in log
    assert "zeta" in log
