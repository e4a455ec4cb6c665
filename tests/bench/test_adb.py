"""adb: devices. The real Debian adb client for "no such device" and "unauthorized" (the latter via
a protocol-level stand-in for a phone's adbd, tests/bench/fake_adbd.py); a stand-in adb that
replays what the real tools print (tests/bench/fake_tools.py) for a phone that is attached.
No path here ran on a real phone."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.bench import run_bench
from edgekit.bench.settings import BenchSettings
from edgekit.bench.strategies import NativeRunner
from edgekit.cli import main
from edgekit.manifest import read as read_manifest
from tests.bench.fake_adbd import UnauthorizedAdbd

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


# -- the real adb client ------------------------------------------------------------------------------

def test_real_adb_without_the_device(real_adb, tflite_artifacts, capsys):
    records = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"]], ["adb:R58M123ABC"])
    assert [r["status"] for r in records] == ["unreachable", "unreachable"]
    assert records[0]["error"] == ("adb:R58M123ABC: the device is not attached or went away while checking the device "
                                   "(error: device 'R58M123ABC' not found); `edgekit devices` lists what adb sees")
    assert records[0]["device"]["kind"] == "adb" and records[0]["settings"]["runner"] == "benchmark_model"
    capsys.readouterr()
    assert main(["devices", "--json"]) == 0
    assert [d["kind"] for d in json.loads(capsys.readouterr().out)["devices"]] == ["host"]


def test_real_adb_with_an_unauthorized_device(real_adb, tflite_artifacts, capsys):
    phone = UnauthorizedAdbd()
    try:
        serial = f"127.0.0.1:{phone.port}"
        subprocess.run([real_adb, "connect", serial], capture_output=True, timeout=60)
        capsys.readouterr()
        assert main(["devices"]) == 0
        table = capsys.readouterr().out
        row = next(line for line in table.splitlines() if line.startswith(f"adb:{serial}"))
        assert row.split()[1:3] == ["adb", "unauthorized"]
        (record,) = run_bench([tflite_artifacts["int8"]], [f"adb:{serial}"])
    finally:
        phone.close()
    assert phone.public_keys_offered >= 1  # the real adb server offered its key: the phone's prompt
    assert record["status"] == "unauthorized"
    assert record["error"] == (f"adb:{serial}: device unauthorized: unlock the phone and accept the "
                               "'Allow USB debugging' prompt, then run again")


# -- the stand-in adb (replays; see fixtures/README.md) --------------------------------------------------

def put_runner(bench_cache: Path, runner_binaries, name="benchmark_model") -> Path:
    folder = bench_cache / "runners" / "arm64-v8a"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(runner_binaries[name], folder / name)
    return folder / name


def test_benchmark_model_from_the_runner_cache(fake_tools, bench_cache, runner_binaries, tflite_artifacts):
    cached = put_runner(bench_cache, runner_binaries)
    try:
        (record,) = run_bench([tflite_artifacts["int8"]], ["adb:R58M123ABC"], threads=2, cpu_mask="0xF0")
    finally:
        cached.unlink()
    assert record["status"] == "ok", record["error"]
    t = record["timings_ms"]
    assert (t["count"], t["mean"], t["p50"], t["min"], t["max"]) == pytest.approx((50, 0.63986, 0.636, 0.618, 0.702))
    assert (t["p5"], t["p95"], t["p90"]) == (pytest.approx(0.621), pytest.approx(0.671), None)
    # benchmark_model's one memory number: its process's peak RSS, named so; the footprint delta
    # keeps its own key and is never reported as the model's share
    assert record["memory"]["peak_rss_bytes"] == int(9.67188 * MIB)
    assert record["memory"]["definition"] == "process-peak" and record["memory"]["model_rss_bytes"] is None
    assert record["memory"]["footprint_delta_bytes"] == int(3.125 * MIB)
    state = record["device_state"]
    assert state["cpu_governor"] == "sched_pixel" and state["cpu_freq_mhz"] == [1803] * 4 + [2348] * 2 + [2850] * 2
    assert state["thermal_c"]["BIG"] == pytest.approx(38.512) and state["delegate"] == "XNNPACK"
    assert state["os_build"].startswith("google/panther/panther:14/")
    assert record["device"] == {"id": "adb:R58M123ABC", "kind": "adb", "model": "Google Pixel 7",
                                "os": "Android 14 (API 34)", "cpu": "Google GS201", "cores": 8}
    assert record["runtime"] == {"name": "benchmark_model", "version": None, "delegate": "XNNPACK"}
    assert record["settings"]["runner"] == "benchmark_model" and record["cpu_mask"] == "0xF0"
    flops = read_manifest(tflite_artifacts["int8"])["flops"]
    assert record["compute"]["gflops_per_s"] == pytest.approx(flops / (0.636e-3) / 1e9)
    assert "benchmark_model reports no p90/p99" in record["warnings"][0]
    run = next(c for c in fake_tools.calls("adb") if c[2] == "shell" and c[3].startswith("cd "))
    assert run[3] == ("cd /data/local/tmp/edgekit && taskset f0 timeout 300 ./benchmark_model "
                      "--graph=/data/local/tmp/edgekit/small_cnn_int8.tflite --num_threads=2 --warmup_runs=5 "
                      "--warmup_min_secs=0 --num_runs=50 --min_secs=0 --max_secs=300 --report_peak_memory_footprint=true")
    pushed = [c[3:] for c in fake_tools.calls("adb") if c[2] == "push"]
    assert pushed[0] == [str(cached), "/data/local/tmp/edgekit/benchmark_model"]
    # the artifact was removed from the phone afterwards; the runner stays for the next run
    assert sorted(p.name for p in (fake_tools.root / "data/local/tmp/edgekit").iterdir()) == ["benchmark_model"]


def fake_file(folder: Path, name: str, magic: bytes) -> str:
    """A file for the stand-in phone, which never runs a model: only its first bytes (the format's
    identifier) are read, as the real runners check them first."""
    path = folder / name
    path.write_bytes(b"\x00\x00\x00\x00" + magic + bytes(64))
    return str(path)


def test_executor_runner_1_5_through_the_phone(fake_tools, runner_binaries, tmp_path):
    pte = fake_file(tmp_path, "small_cnn.pte", b"ET12")
    (record,) = run_bench([pte], ["adb:R58M123ABC"], runner=runner_binaries["executor_runner"], runs=5)
    assert record["status"] == "ok", record["error"]
    assert record["settings"]["runner"] == "executor_runner"
    # ExecuTorch 1.4+'s "Setting up CPU planned buffer" lines: the arena is read, and named
    assert record["memory"]["arena_bytes"] == 12352 + 2048 and record["memory"]["definition"] == "planned-arena"
    assert record["timings_ms"]["p50"] == pytest.approx(0.812) and record["samples_ms"] == pytest.approx(
        [1.104, 0.823, 0.801, 0.797, 0.812])


def test_the_phone_stand_in_refuses_what_the_real_tools_refuse(fake_tools, runner_binaries, tmp_path):
    """A runner never pushed: toybox sh's 127. benchmark_model given a .pte: TFLite's identifier
    check. executor_runner given a .tflite: Program::load's parse failure."""
    adb = [str(fake_tools.folder / "adb"), "-s", "R58M123ABC"]
    work = "/data/local/tmp/edgekit"

    def shell(command):
        return subprocess.run([*adb, "shell", command], capture_output=True, text=True)

    def push(local, remote):
        assert subprocess.run([*adb, "push", local, remote], capture_output=True).returncode == 0

    push(fake_file(tmp_path, "m.pte", b"ET12"), f"{work}/m.pte")
    push(fake_file(tmp_path, "m.tflite", b"TFL3"), f"{work}/m.tflite")
    missing = shell(f"cd {work} && ./benchmark_model --graph={work}/m.tflite")
    assert (missing.returncode, missing.stderr.strip()) == (127, "/system/bin/sh: ./benchmark_model: inaccessible or not found")
    push(runner_binaries["benchmark_model"], f"{work}/benchmark_model")
    push(runner_binaries["executor_runner"], f"{work}/executor_runner")
    wrong = shell(f"cd {work} && ./benchmark_model --graph={work}/m.pte")
    assert wrong.returncode == 1 and "Model provided has model identifier 'ET12', should be 'TFL3'" in wrong.stderr
    wrong = shell(f"cd {work} && ./executor_runner --model_path={work}/m.tflite")
    assert wrong.returncode == 1 and f"Failed to parse model file {work}/m.tflite" in wrong.stderr


def test_the_android_app_refuses_a_format_it_cannot_load(fake_tools, tmp_path):
    fake_tools.scenario(app_installed=True)
    onnx = fake_file(tmp_path, "m.onnx", b"ONNX")
    (record,) = run_bench([onnx], ["adb:R58M123ABC"])
    assert record["status"] == "missing-runner" and record["settings"]["runner"] == "android-app"
    assert record["error"] == ("adb:R58M123ABC: the android sample app cannot load m.onnx (ONNX); it loads "
                               "TFLite / LiteRT (.tflite) and ExecuTorch (.pte)")
    assert not [c for c in fake_tools.calls("adb") if c[2] == "push"]


def test_executor_runner_command_line():
    runner = NativeRunner("executor_runner", "/x/executor_runner")
    argv = runner.argv("/data/local/tmp/edgekit/m.pte", BenchSettings(threads=4, runs=20, timeout=60))
    assert argv == ["timeout", "60", "./executor_runner", "--model_path=/data/local/tmp/edgekit/m.pte",
                    "--num_executions=20", "--cpu_threads=4"]


def test_a_missing_runner_says_where_to_put_it(fake_tools, bench_cache, tflite_artifacts, capsys):
    (record,) = run_bench([tflite_artifacts["int8"]], ["adb:R58M123ABC"])
    assert record["status"] == "missing-runner"
    folder = bench_cache / "runners" / "arm64-v8a"
    assert record["error"].startswith(f"adb:R58M123ABC: no benchmark_model for arm64-v8a: pass --runner PATH or put it at "
                                      f"{folder / 'benchmark_model'} (LiteRT publishes prebuilt benchmark_model binaries")
    assert "warning: [adb:R58M123ABC] small_cnn_int8.tflite: missing-runner:" in capsys.readouterr().err


def test_a_hung_runner_is_stopped_on_the_phone(fake_tools, runner_binaries, tflite_artifacts):
    fake_tools.scenario(hang=True)
    (record,) = run_bench([tflite_artifacts["int8"]], ["adb:R58M123ABC"], runner=runner_binaries["benchmark_model"], timeout=2)
    assert record["status"] == "timeout"
    assert record["error"] == "adb:R58M123ABC: benchmark_model on small_cnn_int8.tflite did not finish within 2 s (--timeout); stopped"


def test_a_phone_unplugged_mid_run(fake_tools, runner_binaries, tflite_artifacts):
    fake_tools.scenario(vanish_after_pushes=1)
    records = run_bench([tflite_artifacts["int8"], tflite_artifacts["fp32"], tflite_artifacts["bare"]],
                        ["adb:R58M123ABC", "host"], runner=runner_binaries["benchmark_model"], runs=5, peak=False)
    phone, host = records[:3], records[3:]
    assert [r["status"] for r in phone] == ["ok", "unreachable", "unreachable"]
    assert phone[1]["error"] == ("adb:R58M123ABC: the device is not attached or went away while pushing small_cnn_fp32.tflite "
                                 "(adb: error: failed to get feature set: device 'R58M123ABC' not found); "
                                 "`edgekit devices` lists what adb sees")
    assert phone[2]["error"] == "adb:R58M123ABC: not measured: the device was lost earlier in this run (unreachable)"
    assert [r["status"] for r in host] == ["ok", "ok", "ok"]  # the other device carried on


def test_the_android_app_benchmark_mode(fake_tools, tflite_artifacts):
    fake_tools.scenario(app_installed=True)  # and no runner binary: the installed app is used
    records = run_bench([tflite_artifacts["int8"], tflite_artifacts["bare"]], ["adb:R58M123ABC"], threads=4, runs=30)
    ok, bare = records
    assert ok["status"] == "ok", ok["error"]
    assert ok["settings"]["runner"] == "android-app" and ok["settings"]["runs"] == 30
    assert ok["timings_ms"]["p90"] == pytest.approx(0.748) and ok["memory"]["arena_bytes"] == 26880
    assert ok["device"]["id"] == "adb:R58M123ABC" and ok["artifact"]["path"] == str(Path(tflite_artifacts["int8"]).resolve())
    assert ok["parity"] == read_manifest(tflite_artifacts["int8"])["parity"]  # filled from the manifest
    models = "/sdcard/Android/data/dev.edgekit.demo/files/edgekit-models"
    start = next(c[3] for c in fake_tools.calls("adb") if c[2] == "shell" and c[3].startswith("am start"))
    output = start.split("--es output ")[1].split()[0]
    assert start == (f"am start -W -S -n dev.edgekit.demo/.BenchmarkActivity --es model {models}/small_cnn_int8.tflite "
                     f"--ei runs 30 --ei warmup 5 --ei threads 4 --es output {output} --es device_id adb:R58M123ABC")
    info = json.loads((fake_tools.root / models.lstrip("/") / "models.json").read_text())
    assert [m["file"] for m in info["models"]] == ["small_cnn_int8.tflite"] and info["kind"] == "edgekit.model-info"
    assert bare["status"] == "error"
    assert "the sample app needs no_manifest.tflite's manifest" in bare["error"]


def test_the_android_app_when_it_is_not_installed(fake_tools, tflite_artifacts):
    (record,) = run_bench([tflite_artifacts["int8"]], ["adb:R58M123ABC"], runner="android-app")
    assert record["status"] == "missing-runner"
    assert record["error"].startswith("adb:R58M123ABC: the edgekit sample app (dev.edgekit.demo) is not installed")


def test_devices_lists_the_attached_phone(fake_tools, capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("adb:R58M123ABC"))
    assert row.split()[1:5] == ["adb", "ready", "Pixel", "7"]


def test_adb_devices_listing_states():
    """`adb devices -l` as adb 1.0.41 formats it (serial padded to 22 columns, then state and
    key:value properties); the "no permissions" wording is the one adb prints on Linux without udev rules."""
    from edgekit.bench.devices.adb import parse_adb_devices

    text = (
        "List of devices attached\n"
        "R58M123ABC             device usb:1-1 product:beyond1ltexx model:SM_G973F device:beyond1 transport_id:1\n"
        "emulator-5554          unauthorized transport_id:2\n"
        "0123456789ABCDEF       offline usb:1-2 transport_id:3\n"
        "ZY22ABCDEF             no permissions (missing udev rules? user is in the plugdev group); "
        "see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:4\n\n"
    )
    rows = parse_adb_devices(text)
    assert [(r["id"], r["state"], r["model"]) for r in rows] == [
        ("adb:R58M123ABC", "ready", "SM G973F"),
        ("adb:emulator-5554", "unauthorized", None),
        ("adb:0123456789ABCDEF", "offline", None),
        ("adb:ZY22ABCDEF", "no-permissions", None),
    ]
    assert rows[3]["detail"].startswith("no permissions (missing udev rules?")
