"""ios: devices through the sample app's benchmark mode and `xcrun devicectl`: the exact command
lines, the parsing of devicectl's JSON, and the whole path against a stand-in xcrun that replays
devicectl (tests/bench/fake_tools.py). Nothing here ran on a Mac or an iPhone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.bench import run_bench
from edgekit.bench.devices.ios import IOSDevice, describe_details, parse_devicectl_list
from edgekit.bench.launch import ios_app_arguments
from edgekit.cli import main

FIXTURES = Path(__file__).with_name("fixtures")
UDID = "00008110-001A2B3C4D5E6F70"


def test_devicectl_command_lines():
    device = IOSDevice(f"ios:{UDID}")
    args = ios_app_arguments("m.pte", "m-1.json", device.id, runs=30, warmup=2, threads=2)
    assert device.launch_argv(args) == [
        "device", "process", "launch", "--device", UDID, "--terminate-existing", "dev.edgekit.demo",
        "--benchmark", "--model", "m.pte", "--runs", "30", "--warmup", "2", "--threads", "2",
        "--output", "m-1.json", "--device-id", f"ios:{UDID}"]
    assert device.copy_from_argv("Documents/edgekit-bench/m-1.json", "/tmp/r.json") == [
        "device", "copy", "from", "--device", UDID, "--domain-type", "appDataContainer",
        "--domain-identifier", "dev.edgekit.demo", "--source", "Documents/edgekit-bench/m-1.json",
        "--destination", "/tmp/r.json"]
    assert device.info_argv("/tmp/i.json") == ["device", "info", "details", "--device", UDID, "--json-output", "/tmp/i.json"]
    assert IOSDevice(f"ios:{UDID}", bundle_id="com.example.bench").launch_argv([])[-1] == "com.example.bench"


def test_devicectl_json_is_read_into_device_rows():
    rows = parse_devicectl_list(json.loads((FIXTURES / "devicectl_list_devices.json").read_text()))
    assert [(r["id"], r["state"], r["model"]) for r in rows] == [
        (f"ios:{UDID}", "ready", "iPhone 13 Pro"),
        ("ios:00008027-000A1B2C3D4E5F60", "unauthorized", "iPad"),
        ("ios:00008012-0011223344556677", "offline", "iPhone 8"),
    ]
    details = json.loads((FIXTURES / "devicectl_device_details.json").read_text())["result"]
    assert describe_details(details) == {"model": "iPhone 13 Pro", "os": "iOS 17.4.1", "cpu": "arm64e", "cores": None}


@pytest.fixture
def pte_files(tmp_path):
    """Two .pte files for the iOS stand-in, which never reads a model (the app on the phone would);
    the bench side only needs files whose target the registry knows."""
    files = {}
    for name in ("small_cnn.pte", "not_packaged.pte"):
        path = tmp_path / name
        path.write_bytes(b"\x00\x00\x00\x00ET12" + bytes(64))
        files[name] = str(path)
    return files


def test_the_ios_app_benchmark_mode(fake_tools, pte_files, capsys):
    fake_tools.scenario(app_installed=True, packaged=["small_cnn.pte"])
    ok, missing = run_bench([pte_files["small_cnn.pte"], pte_files["not_packaged.pte"]], [f"ios:{UDID}"], timeout=2)
    assert ok["status"] == "ok", ok["error"]
    assert ok["settings"]["runner"] == "ios-app" and ok["device"]["id"] == f"ios:{UDID}"
    assert ok["timings_ms"]["p50"] == pytest.approx(0.407) and ok["artifact"]["path"].endswith("small_cnn.pte")
    # the memory number is the app's load delta, named as such; the state the app reported is kept
    assert ok["memory"]["definition"] == "load-delta" and ok["memory"]["model_rss_bytes"] == 4243456
    assert ok["device_state"]["thermal_state"] == "nominal"
    assert ok["device_state"]["runtime"] == "executorch 1.5.0 (swiftpm-1.5.0)"
    assert missing["status"] == "timeout"
    assert missing["error"] == (f"ios:{UDID}: the sample app wrote no result for not_packaged.pte within 2 s "
                                "(--timeout); is not_packaged.pte packaged into the app (edgekit package --app ios)?")
    launches = [c for c in fake_tools.calls("xcrun") if c[1:4] == ["device", "process", "launch"]]
    assert len(launches) == 2 and launches[0][-2:] == ["--device-id", f"ios:{UDID}"]
    capsys.readouterr()
    assert main(["devices", "--json"]) == 0
    ios = [d for d in json.loads(capsys.readouterr().out)["devices"] if d["kind"] == "ios"]
    assert [(d["id"], d["state"]) for d in ios][:2] == [(f"ios:{UDID}", "ready"), ("ios:00008027-000A1B2C3D4E5F60", "unauthorized")]


@pytest.mark.slow
def test_a_tflite_is_refused_at_once_on_ios(fake_tools, tflite_artifacts):
    """The iOS app loads Core ML and ExecuTorch only: a .tflite is refused in one line before any
    launch, instead of waiting out --timeout for a record the app never writes."""
    import time

    fake_tools.scenario(app_installed=True, packaged=["small_cnn_int8.tflite"])
    start = time.monotonic()
    (record,) = run_bench([tflite_artifacts["int8"]], [f"ios:{UDID}"], timeout=30)
    assert time.monotonic() - start < 15
    assert record["status"] == "missing-runner" and record["settings"]["runner"] == "ios-app"
    assert record["error"] == (f"ios:{UDID}: the ios sample app cannot load small_cnn_int8.tflite (TFLite / LiteRT); "
                               "it loads Core ML (.mlpackage, .mlmodel), Core AI (.aimodel) and ExecuTorch (.pte)")
    assert not [c for c in fake_tools.calls("xcrun") if c[1:4] == ["device", "process", "launch"]]


def test_the_ios_stand_in_refuses_what_the_app_cannot_load(fake_tools, tmp_path):
    """Asked directly (as a hand-edited models.json could), the stand-in app answers like
    Runners.open's default case: an error record, not a measurement."""
    import os
    import subprocess

    fake_tools.scenario(app_installed=True, packaged=["m.tflite"])
    xcrun = os.environ["EDGEKIT_XCRUN"]
    args = ios_app_arguments("m.tflite", "out.json", f"ios:{UDID}", runs=5, warmup=1, threads=1)
    done = subprocess.run([xcrun, "devicectl", *IOSDevice(f"ios:{UDID}").launch_argv(args)], capture_output=True, text=True)
    assert done.returncode == 0
    record = json.loads((fake_tools.root / "containers/dev.edgekit.demo/Documents/edgekit-bench/out.json").read_text())
    assert record["status"] == "error" and record["error"] == "m.tflite: runtime 'tflite' is not in the iOS app"
    # each stand-in says in its first line which tool output it replays, and from which version
    tools = Path(__file__).with_name("fake_tools.py").read_text().splitlines()[0]
    assert tools.startswith('"""Replays adb 1.0.41 (platform-tools 29.0.6)') and "Xcode 16 devicectl" in tools
    adbd = Path(__file__).with_name("fake_adbd.py").read_text().splitlines()[0]
    assert adbd.startswith('"""Replays the adbd side of AOSP') and "adb 1.0.41" in adbd


def test_ios_faults(fake_tools, pte_files):
    (gone,) = run_bench([pte_files["small_cnn.pte"]], ["ios:0000-NOT-HERE"])
    assert gone["status"] == "unreachable"
    assert gone["error"].startswith("ios:0000-NOT-HERE: the device is not connected (DeviceIdentifier = 0000-NOT-HERE)")
    (no_app,) = run_bench([pte_files["small_cnn.pte"]], [f"ios:{UDID}"])
    assert no_app["status"] == "error"
    assert no_app["error"] == (f"ios:{UDID}: cannot launch dev.edgekit.demo: ERROR: The application could not be launched: "
                               "dev.edgekit.demo is not installed. (is the edgekit sample app installed?)")
