"""ios: devices through the sample app's benchmark mode and `xcrun devicectl`: the exact command
lines, the parsing of devicectl's JSON, and the whole path against a stand-in xcrun that replays
devicectl (tests/bench/fake_tools.py). Nothing here ran on a Mac or an iPhone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.bench import run_bench
from edgekit.bench.devices.ios import IOSDevice, describe_details, parse_devicectl_list
from edgekit.bench.settings import BenchSettings
from edgekit.bench.strategies import IOSApp
from edgekit.cli import main

FIXTURES = Path(__file__).with_name("fixtures")
UDID = "00008110-001A2B3C4D5E6F70"


def test_devicectl_command_lines():
    device = IOSDevice(f"ios:{UDID}")
    args = IOSApp().app_arguments("m.tflite", "m-1.json", device.id, BenchSettings(runs=30, warmup=2, threads=2))
    assert device.launch_argv(args) == [
        "device", "process", "launch", "--device", UDID, "--terminate-existing", "dev.edgekit.demo",
        "--benchmark", "--model", "m.tflite", "--runs", "30", "--warmup", "2", "--threads", "2",
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


@pytest.mark.slow
def test_the_ios_app_benchmark_mode(fake_tools, tflite_artifacts, capsys):
    fake_tools.scenario(app_installed=True, packaged=["small_cnn_int8.tflite"])
    ok, missing = run_bench([tflite_artifacts["int8"], tflite_artifacts["fp32"]], [f"ios:{UDID}"], timeout=2)
    assert ok["status"] == "ok", ok["error"]
    assert ok["settings"]["runner"] == "ios-app" and ok["device"]["id"] == f"ios:{UDID}"
    assert ok["timings_ms"]["p50"] == pytest.approx(0.407) and ok["artifact"]["path"].endswith("small_cnn_int8.tflite")
    assert missing["status"] == "timeout"
    assert missing["error"] == (f"ios:{UDID}: the sample app wrote no result for small_cnn_fp32.tflite within 2 s "
                                "(--timeout); is small_cnn_fp32.tflite packaged into the app (edgekit package --app ios)?")
    launches = [c for c in fake_tools.calls("xcrun") if c[1:4] == ["device", "process", "launch"]]
    assert len(launches) == 2 and launches[0][-2:] == ["--device-id", f"ios:{UDID}"]
    capsys.readouterr()
    assert main(["devices", "--json"]) == 0
    ios = [d for d in json.loads(capsys.readouterr().out)["devices"] if d["kind"] == "ios"]
    assert [(d["id"], d["state"]) for d in ios][:2] == [(f"ios:{UDID}", "ready"), ("ios:00008027-000A1B2C3D4E5F60", "unauthorized")]


@pytest.mark.slow
def test_ios_faults(fake_tools, tflite_artifacts):
    (gone,) = run_bench([tflite_artifacts["int8"]], ["ios:0000-NOT-HERE"])
    assert gone["status"] == "unreachable"
    assert gone["error"].startswith("ios:0000-NOT-HERE: the device is not connected (DeviceIdentifier = 0000-NOT-HERE)")
    (no_app,) = run_bench([tflite_artifacts["int8"]], [f"ios:{UDID}"])
    assert no_app["status"] == "error"
    assert no_app["error"] == (f"ios:{UDID}: cannot launch dev.edgekit.demo: ERROR: The application could not be launched: "
                               "dev.edgekit.demo is not installed. (is the edgekit sample app installed?)")
