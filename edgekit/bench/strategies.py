"""How one artifact gets measured on one device: edgekit's Python measuring module (host, SSH),
LiteRT's benchmark_model or ExecuTorch's executor_runner (adb), or a sample app's benchmark mode
(adb, iOS). Each strategy pushes what it needs, runs it through the Device interface, and hands
back one result record; the orchestration in runner.py never looks inside.
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
import time
import uuid
from pathlib import Path

from edgekit.bench import schema
from edgekit.bench.devices.base import Device, DeviceFault, last_line
from edgekit.bench.machine import cache_dir
from edgekit.bench.settings import BenchSettings
from edgekit.bench.stats import throughput

RUNNER_FILES = {".tflite": "benchmark_model", ".pte": "executor_runner"}
RUNNER_SOURCES = {
    "benchmark_model": "LiteRT publishes prebuilt benchmark_model binaries (android_aarch64, android_arm) "
                       "on its 'Measure performance' page (ai.google.dev/edge/litert); or build "
                       "//tensorflow/lite/tools/benchmark:benchmark_model with Bazel",
    "executor_runner": "build it from the ExecuTorch repository for Android (examples/portable/executor_runner, "
                       "with the Android NDK toolchain and the XNNPACK backend)",
}


def grace_s(timeout: float) -> float:
    """Time on top of --timeout for connection set-up, the baseline-memory child and the peak probe;
    the measuring process ends itself at --timeout, this only catches a device that stopped answering."""
    return min(60.0, 5.0 + timeout)


def runners_dir(abi: str) -> Path:
    """Where users put native runners per Android ABI: <cache>/runners/<abi>/ (~/.cache/edgekit/...)."""
    return cache_dir() / "runners" / abi


def read_manifest(artifact: str) -> dict | None:
    from edgekit.manifest import manifest_path

    path = manifest_path(artifact)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def artifact_info(artifact: str) -> dict:
    """The artifact section, computed on this machine (path as the user gave it, made absolute)."""
    from edgekit.manifest import file_digest
    from edgekit.registry import target_for_artifact

    manifest = read_manifest(artifact) or {}
    size, sha = file_digest(artifact) if os.path.exists(artifact) else (0, None)
    return {
        "path": os.path.abspath(artifact),
        "name": os.path.basename(artifact.rstrip("/")),
        "target": manifest.get("target") or target_for_artifact(artifact).name,
        "precision": manifest.get("precision"),
        "size_bytes": size,
        "sha256": sha,
    }


def fault_record(artifact: str, device: Device, device_info: dict, fault: DeviceFault, runner: str,
                 settings: BenchSettings) -> dict:
    record = schema.empty_record(
        artifact_info(artifact), {"id": device.id, "kind": device.kind, **device_info},
        settings.as_record(runner), fault.status, fault.message, parity=(read_manifest(artifact) or {}).get("parity"),
    )
    record["warnings"] = []
    return record


def _compute(manifest: dict | None, p50_or_mean: float | None) -> dict:
    flops = (manifest or {}).get("flops")
    section = {"flops": flops if isinstance(flops, int) else None, "gflops_per_s": None, "peak_gflops": None, "peak_share": None}
    if section["flops"] and p50_or_mean:
        section["gflops_per_s"] = section["flops"] / (p50_or_mean * 1e-3) / 1e9
    return section


def _fetch(device: Device, remote: str) -> dict | None:
    """Pull a result file from the device and validate it; None when the device wrote none."""
    with tempfile.TemporaryDirectory(prefix="edgekit-result-") as tmp:
        local = os.path.join(tmp, "result.json")
        try:
            device.pull(remote, local)
        except FileNotFoundError:
            return None
        if not os.path.exists(local):
            return None
        return schema.load_results(local)[0]


class Strategy:
    name = ""

    def prepare(self, device: Device, settings: BenchSettings) -> None:
        """Once per device, before its first artifact."""

    def measure(self, device: Device, artifact: str, settings: BenchSettings, device_info: dict) -> dict:
        raise NotImplementedError


class PythonMeasure(Strategy):
    """edgekit.bench.measure in a fresh process: on this host, or on a board with its own Python."""

    name = "python"

    def prepare(self, device, settings) -> None:
        if device.kind != "ssh":
            return
        from edgekit.bench import bundle

        device.check_python()
        with tempfile.TemporaryDirectory(prefix="edgekit-bundle-") as folder:
            device.install_measuring_module(*bundle.build(folder))

    def measure(self, device, artifact, settings, device_info) -> dict:
        remote_artifact = device.stage(artifact)
        remote_data = device.stage(settings.data) if settings.data else None
        remote_out = device.remote_path(f"result-{uuid.uuid4().hex[:10]}.json")
        argv = device.python() + [
            "-m", "edgekit.bench.measure", remote_artifact, "--out", remote_out,
            "--threads", str(settings.threads), "--warmup", str(settings.warmup), "--runs", str(settings.runs),
            "--seed", str(settings.seed), "--timeout", f"{settings.timeout:g}",
        ]
        if settings.min_time:
            argv += ["--min-time", f"{settings.min_time:g}"]
        if remote_data:
            argv += ["--data", remote_data]
        if not settings.peak:
            argv.append("--no-peak")
        try:
            code, out, err = device.run(argv, settings.timeout + grace_s(settings.timeout))
            record = _fetch(device, remote_out)
        finally:
            device.remove(remote_out)
            if device.kind != "host":
                device.remove(remote_artifact)
        if record is None:
            raise self._no_record(device, artifact, code, out, err, settings)
        record["device"] = {**record["device"], "id": device.id, "kind": device.kind}
        record["artifact"] = {**record["artifact"], "path": os.path.abspath(artifact)}
        if settings.data:
            record["settings"]["inputs"] = settings.data
        if record["status"] != "ok" and record["error"] and device.kind != "host":
            record["error"] = f"{device.id}: {record['error']}"
        return record

    @staticmethod
    def _no_record(device, artifact, code, out, err, settings) -> DeviceFault:
        name = os.path.basename(artifact)
        if code in (-14, 128 + 14):  # SIGALRM from the measuring module's own --timeout
            return DeviceFault("timeout", f"{device.id}: {name} did not finish within {settings.timeout:g} s (--timeout); stopped")
        if code == 127:
            return DeviceFault("missing-runner", f"{device.id}: {device.python()[0]} not found ({last_line(err)})")
        detail = last_line(err) or last_line(out) or f"exit status {code}"
        return DeviceFault("error", f"{device.id}: measuring {name} failed: {detail}")


class NativeRunner(Strategy):
    """A runner binary pushed to an Android device: benchmark_model (.tflite) or executor_runner (.pte)."""

    def __init__(self, kind: str, binary: str):
        self.name = kind
        self.binary = binary
        self.remote = None

    def prepare(self, device, settings) -> None:
        device.shell(f"mkdir -p {shlex.quote(device.workdir)}", 60, "preparing the device")
        self.remote = device.remote_path(self.name)
        device.push(self.binary, self.remote)
        device.shell(f"chmod 755 {shlex.quote(self.remote)}", 60, "preparing the runner")

    def argv(self, remote_artifact: str, settings: BenchSettings) -> list[str]:
        prefix = ["taskset", settings.cpu_mask.lower().removeprefix("0x")] if settings.cpu_mask else []
        # toybox `timeout` ends a hung runner on the phone itself (killing adb here would not)
        prefix += ["timeout", str(max(1, int(settings.timeout)))]
        if self.name == "benchmark_model":
            return prefix + [
                f"./{self.name}", f"--graph={remote_artifact}", f"--num_threads={settings.threads}",
                f"--warmup_runs={settings.warmup}", "--warmup_min_secs=0", f"--num_runs={settings.runs}",
                f"--min_secs={settings.min_time or 0:g}", f"--max_secs={settings.timeout:g}",
                "--report_peak_memory_footprint=true",
            ]
        return prefix + [f"./{self.name}", f"--model_path={remote_artifact}", f"--num_executions={settings.runs}",
                         f"--cpu_threads={settings.threads}"]

    def measure(self, device, artifact, settings, device_info) -> dict:
        from edgekit.bench.parsers import RunnerOutputError, parse_benchmark_model, parse_executor_runner

        remote_artifact = device.stage(artifact)
        try:
            code, out, err = device.run(self.argv(remote_artifact, settings), settings.timeout + grace_s(settings.timeout))
        finally:
            device.remove(remote_artifact)
        text = f"{out}\n{err}"
        name = os.path.basename(artifact)
        if code == 124:
            raise DeviceFault("timeout", f"{device.id}: {self.name} on {name} did not finish within {settings.timeout:g} s (--timeout); stopped")
        if code in (126, 127):
            raise DeviceFault("missing-runner", f"{device.id}: cannot execute {self.name} on the device ({last_line(text)}); "
                              f"is it built for {getattr(device, 'abi', lambda: '?')()}?")
        if code != 0:
            raise DeviceFault("error", f"{device.id}: {self.name} failed on {name}: {last_line(text) or f'exit status {code}'}")
        try:
            parsed = parse_benchmark_model(text) if self.name == "benchmark_model" else parse_executor_runner(text)
        except RunnerOutputError as exc:
            raise DeviceFault("error", f"{device.id}: {exc}") from None
        manifest = read_manifest(artifact)
        timings = parsed["timings_ms"]
        warnings = []
        if self.name == "executor_runner":
            warnings.append("executor_runner reports only the mean over all runs (first run included, no warm-up); "
                            "std and percentiles need the Android sample app's benchmark mode")
        else:
            warnings.append("benchmark_model reports no p90/p99 (median, p5 and p95 only, on TF 2.15+ builds)")
        if settings.data:
            warnings.append(f"{self.name} feeds its own inputs; --data is used on the host, SSH boards and the apps")
        if settings.cpu_mask:
            warnings.append(f"pinned with taskset {settings.cpu_mask}")
        delegate = "XNNPACK" if "XNNPACK delegate" in text else None
        record = {
            "schema_version": schema.SCHEMA_VERSION, "kind": schema.RESULT_KIND,
            "artifact": artifact_info(artifact),
            "device": {"id": device.id, "kind": device.kind, **device_info},
            "runtime": {"name": self.name, "version": None, "delegate": delegate},
            "settings": settings.as_record(self.name, inputs="random" if self.name == "benchmark_model" else "ones"),
            "timings_ms": timings,
            "throughput_ips": throughput(timings["mean"]),
            "memory": parsed["memory"],
            "compute": _compute(manifest, timings["p50"] or timings["mean"]),
            "parity": (manifest or {}).get("parity"),
            "status": "ok", "error": None,
            "environment": schema.environment(),
            "warnings": warnings,
            "cpu_mask": settings.cpu_mask,
        }
        if parsed.get("p95_ms") is not None:
            record["timings_ms"] = {**timings, "p5": parsed["p5_ms"], "p95": parsed["p95_ms"]}
        return schema.parse_result(record)


class AndroidApp(Strategy):
    """The edgekit Android sample app's BenchmarkActivity (sample_apps/android; docs/bench.md).

    The artifact, its manifest and a one-entry models.json (edgekit.package.model_entry) are pushed
    into the app's external files folder, the activity is started with the model's absolute path,
    and the record it writes to files/edgekit-bench/ is polled for and pulled.
    """

    name = "android-app"
    POLL_S = 1.0

    def __init__(self, component: str | None = None):
        from edgekit.package import ANDROID_PACKAGE

        component = component or f"{ANDROID_PACKAGE}/.BenchmarkActivity"
        if "/" not in component:
            component = f"{component}/.BenchmarkActivity"
        self.component = component
        self.package = component.split("/", 1)[0]

    def models_dir(self) -> str:
        return f"/sdcard/Android/data/{self.package}/files/edgekit-models"

    def results_dir(self) -> str:
        return f"/sdcard/Android/data/{self.package}/files/edgekit-bench"

    def start_command(self, model_path: str, output: str, device_id: str, settings: BenchSettings) -> str:
        argv = ["am", "start", "-W", "-S", "-n", self.component, "--es", "model", model_path,
                "--ei", "runs", str(settings.runs), "--ei", "warmup", str(settings.warmup),
                "--ei", "threads", str(settings.threads), "--es", "output", output, "--es", "device_id", device_id]
        return shlex.join(argv)

    def installed(self, device) -> bool:
        code, out, _ = device.shell(f"pm path {shlex.quote(self.package)}", 60, "looking for the sample app")
        return code == 0 and "package:" in out

    def prepare(self, device, settings) -> None:
        if not self.installed(device):
            raise DeviceFault("missing-runner", f"{device.id}: the edgekit sample app ({self.package}) is not installed; "
                              "build it with `edgekit package --app android` and install it (./gradlew installDebug)")

    def measure(self, device, artifact, settings, device_info) -> dict:
        from edgekit.manifest import manifest_path
        from edgekit.package import MODEL_INFO_FILE, model_entry, model_info

        name = os.path.basename(artifact.rstrip("/"))
        manifest = read_manifest(artifact)
        if manifest is None:
            raise DeviceFault("error", f"{device.id}: the sample app needs {name}'s manifest ({name}.edgekit.json, "
                              "written by edgekit convert) to know its inputs")
        folder, results = self.models_dir(), self.results_dir()
        output = f"{Path(name).stem}-{uuid.uuid4().hex[:8]}.json"
        device.shell(f"mkdir -p {shlex.quote(folder)} {shlex.quote(results)}", 60, "preparing the app folders")
        device.push(artifact, f"{folder}/{name}")
        device.push(str(manifest_path(artifact)), f"{folder}/{manifest_path(artifact).name}")
        with tempfile.TemporaryDirectory(prefix="edgekit-app-") as tmp:
            info = Path(tmp) / MODEL_INFO_FILE
            info.write_text(json.dumps(model_info([model_entry(manifest, name, "android")], "android"), indent=1))
            device.push(str(info), f"{folder}/{MODEL_INFO_FILE}")
        code, out, err = device.shell(self.start_command(f"{folder}/{name}", output, device.id, settings), 120,
                                      "starting the sample app")
        if code != 0 or "Error" in out:
            raise DeviceFault("error", f"{device.id}: cannot start {self.component}: {last_line(err) or last_line(out)}")
        remote_result = f"{results}/{output}"
        deadline = time.monotonic() + settings.timeout
        while True:
            code, out, _ = device.shell(f"test -f {shlex.quote(remote_result)} && echo ready", 60, "waiting for the app")
            if "ready" in out:
                break
            if time.monotonic() > deadline:
                device.shell(f"am force-stop {shlex.quote(self.package)}", 60, "stopping the app")
                raise DeviceFault("timeout", f"{device.id}: the sample app wrote no result for {name} within "
                                  f"{settings.timeout:g} s (--timeout); stopped (adb logcat -s EdgekitBench says why)")
            time.sleep(self.POLL_S)
        record = _fetch(device, remote_result)
        device.remove(remote_result)
        device.remove(f"{folder}/{name}")
        if record is None:
            raise DeviceFault("error", f"{device.id}: the sample app's result for {name} vanished before it was fetched")
        return _adopt(record, device, artifact)


class IOSApp(Strategy):
    """The edgekit iOS sample app's benchmark mode (sample_apps/ios Benchmark.swift; docs/bench.md).

    iOS apps cannot load models from outside their bundle in this app, so the artifact must have
    been packaged into it (`edgekit package --app ios`); the app is launched with --benchmark, and
    its record (Documents/edgekit-bench/OUTPUT) is polled for and copied back.
    """

    name = "ios-app"
    POLL_S = 1.0
    RESULTS_DIR = "Documents/edgekit-bench"

    def app_arguments(self, model_name: str, output: str, device_id: str, settings: BenchSettings) -> list[str]:
        return ["--benchmark", "--model", model_name, "--runs", str(settings.runs), "--warmup", str(settings.warmup),
                "--threads", str(settings.threads), "--output", output, "--device-id", device_id]

    def measure(self, device, artifact, settings, device_info) -> dict:
        name = os.path.basename(artifact.rstrip("/"))
        output = f"{Path(name).stem}-{uuid.uuid4().hex[:8]}.json"
        code, out, err = device.run(self.app_arguments(name, output, device.id, settings), 120)
        if code != 0:
            raise DeviceFault("error", f"{device.id}: cannot launch {device.bundle_id}: {last_line(err) or last_line(out)} "
                              "(is the edgekit sample app installed?)")
        deadline = time.monotonic() + settings.timeout
        while True:
            record = _fetch(device, f"{self.RESULTS_DIR}/{output}")
            if record is not None:
                return _adopt(record, device, artifact)
            if time.monotonic() > deadline:
                raise DeviceFault("timeout", f"{device.id}: the sample app wrote no result for {name} within "
                                  f"{settings.timeout:g} s (--timeout); is {name} packaged into the app "
                                  "(edgekit package --app ios)?")
            time.sleep(self.POLL_S)


def _adopt(record: dict, device: Device, artifact: str) -> dict:
    """An app's record, tied to the device string and the local artifact path the user gave."""
    record["device"] = {**record["device"], "id": device.id, "kind": device.kind}
    # the apps name a model by its manifest name; rows compare across devices by file name
    record["artifact"] = {**record["artifact"], "path": os.path.abspath(artifact),
                          "name": os.path.basename(artifact.rstrip("/"))}
    if record["status"] != "ok" and record.get("error"):
        record["error"] = f"{device.id}: {record['error']}"
    if record.get("parity") is None:
        record["parity"] = (read_manifest(artifact) or {}).get("parity")
    record.setdefault("warnings", [])
    return schema.parse_result(record)


def select(device: Device, artifact: str, settings: BenchSettings, cache: dict) -> Strategy:
    """The strategy for this artifact on this device (one instance per device and kind, reused)."""
    if device.kind in ("host", "ssh"):
        return cache.setdefault("python", PythonMeasure())
    if device.kind == "ios":
        return cache.setdefault("ios-app", IOSApp())
    suffix = os.path.splitext(artifact.rstrip("/"))[1].lower()
    if "android-app" in settings.runners():
        return cache.setdefault("android-app", AndroidApp(settings.app))
    wanted = RUNNER_FILES.get(suffix)
    binary = _runner_binary(wanted, settings, device) if wanted else None
    if binary:
        return cache.setdefault(f"{wanted}:{binary}", NativeRunner(wanted, binary))
    app = cache.setdefault("android-app", AndroidApp(settings.app))
    if app.installed(device):
        return app
    if not wanted:
        raise DeviceFault("missing-runner", f"{device.id}: no native runner measures {suffix} files on Android; install "
                          "the edgekit sample app, whose benchmark mode does (--runner android-app)")
    folder = runners_dir(device.abi())
    raise DeviceFault("missing-runner", f"{device.id}: no {wanted} for {device.abi()}: pass --runner PATH or put it at "
                      f"{folder / wanted} ({RUNNER_SOURCES[wanted]})")


def _runner_binary(wanted: str, settings: BenchSettings, device) -> str | None:
    explicit = [r for r in settings.runners() if os.path.isfile(r)]
    for path in explicit:  # an executor_runner* file serves .pte, any other binary serves .tflite
        is_et = "executor_runner" in os.path.basename(path)
        if is_et == (wanted == "executor_runner"):
            return path
    cached = runners_dir(device.abi()) / wanted
    return str(cached) if cached.is_file() else None
