"""Replays adb 1.0.41 (platform-tools 29.0.6), LiteRT benchmark_model (TF 2.16), ExecuTorch 1.5 executor_runner and Xcode 16 devicectl.

STAND-INS for `adb` talking to an Android phone and `xcrun devicectl` talking to an iPhone.
NOT captured from devices: there is no phone or Mac here. Each replays what the real tool prints,
written from its source and documentation (see fixtures/README.md for which file follows which
tool version): adb 1.0.41 (platform-tools 29.0.6, the Debian client; its "device not found" and
push/pull lines are the ones the real client printed on this machine), Android toybox `timeout`
(exit 124), `pm path`, `am start -W`, LiteRT `benchmark_model`, ExecuTorch `executor_runner`, and
Xcode 15/16 `devicectl`. The phone's file system is a folder (FAKE_TOOLS_DIR/root); the sample
apps' benchmark mode writes the contract's result record (fixtures/*_app_result.json).

It refuses what the real tools refuse: a runner that was never pushed ("inaccessible or not found",
127, toybox sh); benchmark_model given a file that is not a TFLite flatbuffer (its
FlatBufferModel check: "Model provided has model identifier '...', should be 'TFL3'", exit 1);
executor_runner given a file that is not an ExecuTorch program ("Failed to parse model file", exit
1); the Android app asked for a model whose runtime it lacks (Runners.open's error record); the iOS
app asked for a model it cannot load (Runners.open's error record) or one not packaged (no record).

Usage (through wrapper scripts the tests write): fake_tools.py adb ARGS... | fake_tools.py xcrun ARGS...
Scenario (FAKE_TOOLS_DIR/scenario.json): serial, udid, app_installed, benchmark_output, hang,
vanish_after_pushes (the phone disappears after that many artifact pushes). Every call is logged
to FAKE_TOOLS_DIR/calls.jsonl for the tests to assert on the exact command lines.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent / "fixtures"
# the runtimes each sample app's Runners.open knows (sample_apps/*/Runners.kt, ModelRunner.swift)
ANDROID_RUNTIMES = ("litert", "executorch")
IOS_RUNTIMES = {".mlpackage": "coreml", ".mlmodel": "coreml", ".pte": "executorch"}
STATE = Path(os.environ["FAKE_TOOLS_DIR"])
ROOT = STATE / "root"


def scenario() -> dict:
    return json.loads((STATE / "scenario.json").read_text())


def counters() -> dict:
    path = STATE / "counters.json"
    return json.loads(path.read_text()) if path.exists() else {}


def bump(key: str) -> int:
    data = counters()
    data[key] = data.get(key, 0) + 1
    (STATE / "counters.json").write_text(json.dumps(data))
    return data[key]


def on_device(path: str) -> Path:
    return ROOT / path.lstrip("/")


def log(argv: list[str]) -> None:
    with open(STATE / "calls.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(argv) + "\n")


# -- adb ------------------------------------------------------------------------------------------

def adb(argv: list[str]) -> int:
    sc = scenario()
    serial = sc.get("serial", "R58M123ABC")
    if argv[:2] == ["devices", "-l"]:
        print("List of devices attached")
        if not counters().get("vanished"):
            print(f"{serial:<22} device usb:1-1 product:panther model:Pixel_7 device:panther transport_id:1")
        print()
        return 0
    if argv[0] != "-s":
        print(f"fake adb: unsupported call {argv}", file=sys.stderr)
        return 1
    asked, command, rest = argv[1], argv[2], argv[3:]
    if asked != serial or counters().get("vanished"):
        # the real client's words for a serial it cannot see (adb 1.0.41, seen on this machine)
        if command in ("push", "pull"):
            print(f"adb: error: failed to get feature set: device '{asked}' not found", file=sys.stderr)
        else:
            print(f"error: device '{asked}' not found", file=sys.stderr)
        return 1
    if command == "get-state":
        print("device")
        return 0
    if command == "push":
        local, remote = rest
        if local.endswith((".tflite", ".pte", ".onnx")):
            if bump("artifact_pushes") > sc.get("vanish_after_pushes", 10**6):
                bump("vanished")
                print(f"adb: error: failed to get feature set: device '{asked}' not found", file=sys.stderr)
                return 1
        target = on_device(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local, target)
        size = os.path.getsize(local)
        print(f"{local}: 1 file pushed, 0 skipped. 38.2 MB/s ({size} bytes in 0.001s)")
        return 0
    if command == "pull":
        remote, local = rest
        source = on_device(remote)
        if not source.exists():
            print(f"adb: error: failed to stat remote object '{remote}': No such file or directory", file=sys.stderr)
            return 1
        shutil.copy(source, local)
        print(f"{remote}: 1 file pulled, 0 skipped. 12.1 MB/s ({source.stat().st_size} bytes in 0.001s)")
        return 0
    if command == "shell":
        return shell(" ".join(rest), sc)
    print(f"fake adb: unsupported command {command}", file=sys.stderr)
    return 1


def shell(line: str, sc: dict) -> int:
    if line.startswith("getprop"):
        print((HERE / "getprop_pixel.txt").read_text(), end="")
        print("__edgekit_cpus__")
        print("0-7")
        return 0
    if line.startswith("cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"):
        # edgekit's device-state script (edgekit/bench/devices/adb.py): sysfs as a Pixel 7 (GS201:
        # 4 x 1803, 2 x 2348, 2 x 2850 MHz) shows it, thermal zones in millidegrees
        print("sched_pixel\n__f")
        print("\n".join(["1803000"] * 4 + ["2348000"] * 2 + ["2850000"] * 2))
        print("__t\nBIG 38512\nMID 37120\nLITTLE 36004\nbattery 29500")
        return 0
    if line.startswith("pm path "):
        if sc.get("app_installed"):
            print(f"package:/data/app/~~Qm9ndXM=/{line.split()[2]}-ZmFrZQ==/base.apk")
            return 0
        return 1  # pm prints nothing and fails for a package that is not installed
    if line.startswith("am start"):
        return am_start(shlex.split(line))
    if line.startswith("am force-stop"):
        return 0
    if line.startswith("cd "):
        folder, _, command = line[3:].partition(" && ")
        return run_in(shlex.split(folder)[0], shlex.split(command), sc)
    for part in line.split(" && "):  # mkdir -p / chmod / rm -rf / test -f ... && echo ready
        words = shlex.split(part)
        if words[:2] == ["mkdir", "-p"]:
            for folder in words[2:]:
                on_device(folder).mkdir(parents=True, exist_ok=True)
        elif words[:2] == ["rm", "-rf"]:
            target = on_device(words[2])
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        elif words[0] == "chmod":
            pass
        elif words[:2] == ["test", "-f"]:
            if not on_device(words[2]).is_file():
                return 1
        elif words[0] == "echo":
            print(" ".join(words[1:]))
        else:
            print(f"/system/bin/sh: {words[0]}: inaccessible or not found", file=sys.stderr)
            return 127
    return 0


def run_in(folder: str, argv: list[str], sc: dict) -> int:
    limit = None
    if argv[0] == "taskset":
        argv = argv[2:]
    if argv[0] == "timeout":
        limit, argv = float(argv[1]), argv[2:]
    program = on_device(f"{folder}/{argv[0][2:]}") if argv[0].startswith("./") else None
    if program is None or not program.exists():
        print(f"/system/bin/sh: {argv[0]}: inaccessible or not found", file=sys.stderr)
        return 127
    if sc.get("hang"):  # the runner never returns: toybox timeout ends it with status 124
        time.sleep(limit if limit is not None else 3600)
        return 124
    name = os.path.basename(argv[0])
    model = next(a.split("=", 1)[1] for a in argv if a.startswith(("--graph=", "--model_path=")))
    magic = on_device(model).read_bytes()[4:8]
    if name == "benchmark_model" and magic != b"TFL3":
        # tflite::FlatBufferModel::VerifyAndBuildFromFile, then BenchmarkTfLiteModel::LoadModel
        sys.stderr.write(f"INFO: Loaded model {model}\nERROR: Model provided has model identifier "
                         f"'{magic.decode('latin-1')}', should be 'TFL3'\n\nERROR: Failed to mmap model {model}\n")
        return 1
    if name == "executor_runner" and not magic.startswith(b"ET"):
        sys.stderr.write(f"E 00:00:00.000120 executorch:executor_runner.cpp:563] Failed to parse model file {model}\n")
        return 1
    fixture = (sc.get("benchmark_output", "benchmark_model_2.16_android.txt") if name == "benchmark_model"
               else sc.get("executor_output", "executor_runner_1.5_android.txt"))
    text = (HERE / fixture).read_text()
    if name == "executor_runner":  # ET_LOG goes to stderr, the printed outputs to stdout
        cut = text.index("Output")
        sys.stderr.write(text[:cut])
        sys.stdout.write(text[cut:])
    else:
        sys.stderr.write(text)  # TFLITE_LOG writes to stderr
    return 0


def am_start(words: list[str]) -> int:
    """BenchmarkActivity (sample_apps/android): --es model ABSOLUTE_PATH beside a models.json listing
    it; the record goes to files/edgekit-bench/OUTPUT. Without models.json the real app logs the
    failure and writes nothing, as here."""
    component = words[words.index("-n") + 1]
    extras = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w in ("--es", "--ei", "--ez")}
    package = component.split("/")[0]
    print(f"Starting: Intent {{ cmp={component} (has extras) }}")
    print("Status: ok\nLaunchState: COLD\nActivity: " + component + "\nTotalTime: 412\nWaitTime: 415\nComplete")
    model = on_device(extras["model"])
    info = model.parent / "models.json"
    entries = [m for m in json.loads(info.read_text())["models"] if m["file"] == model.name] if info.exists() else []
    if model.exists() and entries and not scenario().get("hang"):
        record = json.loads((HERE / "android_app_result.json").read_text())
        if entries[0]["runtime"] not in ANDROID_RUNTIMES:  # Runners.open: error(...) -> an error record
            record.update(status="error", runtime=None, timings_ms=None, throughput_ips=None,
                          error=f"IllegalStateException: {model.name}: runtime '{entries[0]['runtime']}' is not in the Android app")
        record["artifact"].update(path=extras["model"], name=model.name, size_bytes=model.stat().st_size)
        record["device"]["id"] = extras.get("device_id", "adb:unknown")
        record["settings"].update(runs=int(extras["runs"]), warmup=int(extras["warmup"]), threads=int(extras["threads"]))
        results = on_device(f"/sdcard/Android/data/{package}/files/edgekit-bench")
        results.mkdir(parents=True, exist_ok=True)
        (results / extras["output"]).write_text(json.dumps(record))
    return 0


# -- xcrun devicectl --------------------------------------------------------------------------------

def xcrun(argv: list[str]) -> int:
    sc = scenario()
    if argv[0] != "devicectl":
        print(f"xcrun: error: unable to find utility \"{argv[0]}\"", file=sys.stderr)
        return 72
    args = argv[1:]
    opt = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--") and not args[i + 1].startswith("--")}
    if args[:2] == ["list", "devices"]:
        shutil.copy(HERE / "devicectl_list_devices.json", opt["--json-output"])
        return 0
    if opt.get("--device") and opt["--device"] != sc.get("udid"):
        print(f"ERROR: The specified device was not found. (com.apple.dt.CoreDeviceError error 1000.)\n"
              f"         DeviceIdentifier = {opt['--device']}", file=sys.stderr)
        return 1
    if args[:3] == ["device", "info", "details"]:
        shutil.copy(HERE / "devicectl_device_details.json", opt["--json-output"])
        return 0
    container = ROOT / "containers" / opt.get("--domain-identifier", "")
    if args[:3] == ["device", "copy", "to"]:
        if not sc.get("app_installed"):
            print(f"ERROR: Failed to find the app container for {opt['--domain-identifier']}.", file=sys.stderr)
            return 1
        target = container / opt["--destination"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(opt["--source"], target)
        print(f"Copied {opt['--source']} to {opt['--destination']}.")
        return 0
    if args[:3] == ["device", "copy", "from"]:
        source = container / opt["--source"]
        if not source.exists():
            print(f"ERROR: The file couldn't be opened because there is no such file. ({opt['--source']})", file=sys.stderr)
            return 1
        shutil.copy(source, opt["--destination"])
        return 0
    if args[:3] == ["device", "process", "launch"]:
        # Benchmark.swift: --benchmark --model FILE (packaged in the app bundle) ... --output OUT;
        # the record goes to Documents/edgekit-bench/OUT. An unpackaged model: the app writes nothing.
        rest = args[3:]
        bundle = next(w for i, w in enumerate(rest) if not w.startswith("--") and rest[i - 1] != "--device")
        if not sc.get("app_installed"):
            print(f"ERROR: The application could not be launched: {bundle} is not installed.", file=sys.stderr)
            return 1
        app_args = rest[rest.index(bundle) + 1:]
        named = {app_args[i][2:]: app_args[i + 1] for i in range(len(app_args) - 1)
                 if app_args[i].startswith("--") and not app_args[i + 1].startswith("--")}
        print(f"Launched application with {bundle} bundle identifier.")
        if named["model"] in sc.get("packaged", []):
            record = json.loads((HERE / "ios_app_result.json").read_text())
            runtime = IOS_RUNTIMES.get(os.path.splitext(named["model"])[1])
            if runtime is None:  # Runners.open's default case -> BenchmarkReport.error
                record.update(status="error", runtime=None, timings_ms=None, throughput_ips=None,
                              error=f"{named['model']}: runtime '{named['model'].rsplit('.', 1)[-1]}' is not in the iOS app")
            record["artifact"].update(path=f"/private/var/containers/Bundle/Application/X/EdgekitDemo.app/{named['model']}",
                                      name=named["model"])
            record["device"]["id"] = named.get("device-id", "ios:unknown")
            folder = ROOT / "containers" / bundle / "Documents" / "edgekit-bench"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / named["output"]).write_text(json.dumps(record))
        return 0
    print(f"fake xcrun: unsupported {args}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    tool, arguments = sys.argv[1], sys.argv[2:]
    log([tool, *arguments])
    sys.exit(adb(arguments) if tool == "adb" else xcrun(arguments))
