"""Bench fixtures: real .tflite artifacts (converted once per session), a private OpenSSH server,
the real adb client on a private server port, and the stand-in adb / xcrun for phones."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.sshd import free_port, start_sshd

# The emulated arm64 board takes minutes: collected where .ci/run installed its tools (as root).
collect_ignore = [] if os.environ.get("EDGEKIT_ARM_BOARD") == "1" else ["test_arm_board.py"]


@pytest.fixture(scope="session", autouse=True)
def bench_cache(tmp_path_factory):
    """Keep the GEMM-peak cache and runner folder out of the user's ~/.cache during tests."""
    folder = tmp_path_factory.mktemp("edgekit-cache")
    old = os.environ.get("EDGEKIT_CACHE_DIR")
    os.environ["EDGEKIT_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("EDGEKIT_CACHE_DIR", None)
    else:
        os.environ["EDGEKIT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tflite_artifacts(tmp_path_factory):
    """{"fp32", "int8", "bare"}: small_cnn converted with the real converter (manifests beside the
    first two); "bare" is the fp32 file copied without its manifest."""
    from edgekit.pipeline import convert
    from tests import models

    folder = tmp_path_factory.mktemp("artifacts")
    module = models.small_cnn()
    fp32 = convert(module, target="tflite", inputs=["x:1x3x32x32"], output_dir=str(folder), name="small_cnn_fp32")
    int8 = convert(module, target="tflite", quantize="int8", calibration="random", inputs=["x:1x3x32x32"],
                   output_dir=str(folder), name="small_cnn")
    bare_dir = folder / "bare"
    bare_dir.mkdir()
    bare = bare_dir / "no_manifest.tflite"
    shutil.copy(fp32[0].path, bare)
    return {"fp32": fp32[0].path, "int8": int8[0].path, "bare": str(bare)}


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd") / "ssh")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def board_dir(tmp_path_factory):
    """The "board's" edgekit folder, shared by the SSH tests (edgekit is unpacked there once)."""
    return tmp_path_factory.mktemp("board")


@pytest.fixture
def board_spec(sshd, board_dir):
    """A device string for the local sshd: this venv's Python as the board's, the shared board folder."""
    return f"{sshd.alias_spec}?python={sys.executable}&dir={board_dir}"


@pytest.fixture
def real_adb(tmp_path, monkeypatch):
    """The real adb client, on a private server port and a private home (its key lives there);
    the server it starts is stopped afterwards."""
    if not shutil.which("adb"):
        pytest.fail("the adb client is not installed: apt-get install adb")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEKIT_ADB", raising=False)
    (tmp_path / "home").mkdir()
    yield shutil.which("adb")
    subprocess.run(["adb", "kill-server"], capture_output=True, timeout=30)


class FakeTools:
    """The stand-in adb / xcrun (tests/bench/fake_tools.py) with a scenario and a call log."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.root = folder / "root"

    def scenario(self, **values) -> None:
        base = {"serial": "R58M123ABC", "udid": "00008110-001A2B3C4D5E6F70", "app_installed": False}
        (self.folder / "scenario.json").write_text(json.dumps({**base, **values}))

    def calls(self, tool: str | None = None) -> list[list[str]]:
        path = self.folder / "calls.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [row[1:] for row in rows if tool is None or row[0] == tool]


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    folder = tmp_path / "fake-tools"
    folder.mkdir()
    script = Path(__file__).with_name("fake_tools.py")
    for tool in ("adb", "xcrun"):
        wrapper = folder / tool
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {script} {tool} \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_TOOLS_DIR", str(folder))
    monkeypatch.setenv("EDGEKIT_ADB", str(folder / "adb"))
    monkeypatch.setenv("EDGEKIT_XCRUN", str(folder / "xcrun"))
    tools = FakeTools(folder)
    tools.scenario()
    return tools


@pytest.fixture
def runner_binaries(tmp_path):
    """Placeholder files standing for benchmark_model / executor_runner builds: only pushed, never
    executed here (the stand-in adb replays what the real binaries print)."""
    folder = tmp_path / "runners"
    folder.mkdir()
    out = {}
    for name in ("benchmark_model", "executor_runner"):
        path = folder / name
        path.write_text("#!/system/bin/sh\n# placeholder: the stand-in adb replays this runner's output\n")
        out[name] = str(path)
    return out
