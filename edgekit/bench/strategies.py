"""How one artifact gets measured on one device: edgekit's Python measuring module (devices that
can run Python: host, SSH boards), the native runner the artifact's target names (benchmark_model,
executor_runner: devices that can run commands, adb), or a sample app's benchmark mode (devices that
launch an app: adb, iOS). Strategies are chosen by the device's declared capabilities and by what the
artifact's target declares (targets/base.py OnDevice), never by a device kind or a suffix table.
Each strategy pushes what it needs, runs it through the Device interface, and hands back one result
record; the orchestration in runner.py never looks inside.
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
import time
import uuid
from pathlib import Path

from edgekit.bench import launch, schema
from edgekit.bench.devices.base import APP, PYTHON, RUN, STAGE, Device, DeviceFault, last_line
from edgekit.bench.machine import cache_dir
from edgekit.bench.settings import BenchSettings
from edgekit.bench.stats import throughput



def on_device(artifact: str):
    """What the artifact's target declares it needs on a device (runner, board module, apps)."""
    from edgekit.registry import target_for_artifact

    return target_for_artifact(artifact).on_device


def grace_s(timeout: float) -> float:
    """Time on top of --timeout for connection set-up, the baseline-memory child and the peak probe;
    the measuring process ends itself at --timeout, this only catches a device that stopped answering."""
    return min(60.0, 5.0 + timeout)


def runners_dir(abi: str) -> Path:
    """Where users put native runners per Android ABI: <cache>/runners/<abi>/ (~/.cache/edgekit/...)."""
    return cache_dir() / "runners" / abi


def read_manifest(artifact: str):
    """The typed manifest beside the artifact, or None. runner.check_artifacts has refused, before
    anything ran, a manifest this edgekit cannot read; a fault record never fails on one."""
    from edgekit.manifest import ManifestError, beside

    try:
        return beside(artifact)
    except ManifestError:
        return None


def _parity(artifact: str) -> dict | None:
    manifest = read_manifest(artifact)
    return manifest.parity if manifest else None


def artifact_info(artifact: str) -> dict:
    """The artifact section, computed on this machine (path as the user gave it, made absolute)."""
    from edgekit.manifest import file_digest
    from edgekit.registry import target_for_artifact

    manifest = read_manifest(artifact)
    size, sha = file_digest(artifact) if os.path.exists(artifact) else (0, None)
    return {
        "path": os.path.abspath(artifact),
        "name": os.path.basename(artifact.rstrip("/")),
        "target": manifest.target if manifest else target_for_artifact(artifact).name,
        "precision": manifest.precision if manifest else None,
        "size_bytes": size,
        "sha256": sha,
    }


def fault_record(artifact: str, device: Device, device_info: dict, fault: DeviceFault, runner: str,
                 settings: BenchSettings) -> dict:
    record = schema.empty_record(
        artifact_info(artifact), {"id": device.id, "kind": device.kind, **device_info},
        settings.as_record(runner), fault.status, fault.message, parity=_parity(artifact),
    )
    record["warnings"] = []
    return record


def _compute(manifest, p50_or_mean: float | None) -> dict:
    flops = manifest.flops if manifest else None
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
        device.prepare_python()

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
            device.remove(remote_artifact)  # a device that used the file in place leaves it alone
        if record is None:
            raise self._no_record(device, artifact, code, out, err, settings)
        record["device"] = {**record["device"], "id": device.id, "kind": device.kind}
        record["artifact"] = {**record["artifact"], "path": os.path.abspath(artifact)}
        if settings.data:
            record["settings"]["inputs"] = settings.data
        if record["status"] != "ok" and record["error"] and device.id != "host":
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
    """The native runner an artifact's target names, pushed to a device that can stage and run it
    (benchmark_model for .tflite, executor_runner for .pte; parsers.NATIVE_TOOLS drives each)."""

    def __init__(self, kind: str, binary: str):
        from edgekit.bench.parsers import NATIVE_TOOLS

        self.name = kind
        self.binary = binary
        self.remote = None
        self.tool = NATIVE_TOOLS[kind]

    def prepare(self, device, settings) -> None:
        device.shell(f"mkdir -p {shlex.quote(device.workdir)}", 60, "preparing the device")
        self.remote = device.remote_path(self.name)
        device.push(self.binary, self.remote)
        device.shell(f"chmod 755 {shlex.quote(self.remote)}", 60, "preparing the runner")

    def argv(self, remote_artifact: str, settings: BenchSettings) -> list[str]:
        prefix = ["taskset", settings.cpu_mask.lower().removeprefix("0x")] if settings.cpu_mask else []
        # toybox `timeout` ends a hung runner on the phone itself (killing adb here would not)
        prefix += ["timeout", str(max(1, int(settings.timeout)))]
        return prefix + [f"./{self.name}", *self.tool.arguments(remote_artifact, settings)]

    def measure(self, device, artifact, settings, device_info) -> dict:
        from edgekit.bench.parsers import RunnerOutputError

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
                              f"is it built for {device.abi() or 'this device'}?")
        if code != 0:
            raise DeviceFault("error", f"{device.id}: {self.name} failed on {name}: {last_line(text) or f'exit status {code}'}")
        try:
            parsed = self.tool.parse(text)
        except RunnerOutputError as exc:
            raise DeviceFault("error", f"{device.id}: {exc}") from None
        manifest = read_manifest(artifact)
        timings = parsed["timings_ms"]
        warnings = self.tool.notes(parsed)
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
            "settings": settings.as_record(self.name, inputs=self.tool.inputs),
            "timings_ms": timings,
            "throughput_ips": throughput(timings["mean"]),
            "memory": parsed["memory"],
            "compute": _compute(manifest, timings["p50"] or timings["mean"]),
            "parity": manifest.parity if manifest else None,
            "status": "ok", "error": None,
            "environment": schema.environment(),
            "warnings": warnings,
            "cpu_mask": settings.cpu_mask,
        }
        if parsed.get("samples_ms"):
            record["samples_ms"] = parsed["samples_ms"]
        if parsed.get("p95_ms") is not None:
            record["timings_ms"] = {**timings, "p5": parsed["p5_ms"], "p95": parsed["p95_ms"]}
        return schema.parse_result(record)


class AppStrategy(Strategy):
    """A sample app's benchmark mode. Refuses at once, in one line, an artifact the app cannot load
    (the artifact's target lists the apps that load it), instead of waiting out --timeout."""

    app = ""
    POLL_S = 1.0

    def installed(self, device: Device) -> bool:
        """Whether the app can be found on the device without launching it (where the device tells)."""
        return True

    def check_loadable(self, device: Device, artifact: str) -> None:
        from edgekit.package import app_loads, describe_app_formats

        name = os.path.basename(artifact.rstrip("/"))
        loads, fmt = app_loads(self.app, artifact)
        if not loads:
            raise DeviceFault("missing-runner", f"{device.id}: the {self.app} sample app cannot load {name} ({fmt}); it loads "
                              f"{describe_app_formats(self.app)}")

    def wait_for_record(self, device: Device, remote: str, name: str, settings: BenchSettings, on_timeout) -> dict:
        deadline = time.monotonic() + settings.timeout
        while True:
            record = self.poll(device, remote)
            if record is not None:
                return record
            if time.monotonic() > deadline:
                raise on_timeout()
            time.sleep(self.POLL_S)

    def poll(self, device: Device, remote: str) -> dict | None:
        return _fetch(device, remote)


class AndroidApp(AppStrategy):
    """The edgekit Android sample app's BenchmarkActivity (sample_apps/android; docs/bench.md).

    The artifact, its manifest and a one-entry models.json (edgekit.package.model_entry) are pushed
    into the app's external files folder, the activity is started with the model's absolute path,
    and the record it writes to files/edgekit-bench/ is polled for and pulled.
    """

    name = "android-app"
    app = "android"

    def __init__(self, component: str | None = None):
        self.component = launch.android_component(component)
        self.package = self.component.split("/", 1)[0]

    def installed(self, device) -> bool:
        code, out, _ = device.shell(f"pm path {shlex.quote(self.package)}", 60, "looking for the sample app")
        return code == 0 and "package:" in out

    def prepare(self, device, settings) -> None:
        if not self.installed(device):
            raise DeviceFault("missing-runner", f"{device.id}: the edgekit sample app ({self.package}) is not installed; "
                              "build it with `edgekit package --app android` and install it (the commands it prints)")

    def poll(self, device, remote):
        code, out, _ = device.shell(f"test -f {shlex.quote(remote)} && echo ready", 60, "waiting for the app")
        return _fetch(device, remote) if "ready" in out else None

    def measure(self, device, artifact, settings, device_info) -> dict:
        from edgekit.manifest import manifest_path
        from edgekit.package import MODEL_INFO_FILE, model_entry, model_info

        self.check_loadable(device, artifact)
        name = os.path.basename(artifact.rstrip("/"))
        manifest = read_manifest(artifact)
        if manifest is None:
            raise DeviceFault("error", f"{device.id}: the sample app needs {name}'s manifest ({name}.edgekit.json, "
                              "written by edgekit convert) to know its inputs")
        folder, results = launch.android_models_dir(self.package), launch.android_results_dir(self.package)
        output = f"{Path(name).stem}-{uuid.uuid4().hex[:8]}.json"
        device.shell(f"mkdir -p {shlex.quote(folder)} {shlex.quote(results)}", 60, "preparing the app folders")
        device.push(artifact, f"{folder}/{name}")
        device.push(str(manifest_path(artifact)), f"{folder}/{manifest_path(artifact).name}")
        with tempfile.TemporaryDirectory(prefix="edgekit-app-") as tmp:
            info = Path(tmp) / MODEL_INFO_FILE
            info.write_text(json.dumps(model_info([model_entry(manifest, name, "android")], "android"), indent=1))
            device.push(str(info), f"{folder}/{MODEL_INFO_FILE}")
        argv = launch.android_start_argv(f"{folder}/{name}", output, device.id, runs=settings.runs, warmup=settings.warmup,
                                         threads=settings.threads, component=self.component)
        code, out, err = device.shell(shlex.join(argv), 120, "starting the sample app")
        if code != 0 or "Error" in out:
            raise DeviceFault("error", f"{device.id}: cannot start {self.component}: {last_line(err) or last_line(out)}")

        def timed_out():
            device.shell(f"am force-stop {shlex.quote(self.package)}", 60, "stopping the app")
            return DeviceFault("timeout", f"{device.id}: the sample app wrote no result for {name} within "
                               f"{settings.timeout:g} s (--timeout); stopped (adb logcat -s EdgekitBench says why)")

        remote_result = f"{results}/{output}"
        record = self.wait_for_record(device, remote_result, name, settings, timed_out)
        device.remove(remote_result)
        device.remove(f"{folder}/{name}")
        return _adopt(record, device, artifact)


class IOSApp(AppStrategy):
    """The edgekit iOS sample app's benchmark mode (sample_apps/ios Benchmark.swift; docs/bench.md).

    iOS apps cannot load models from outside their bundle in this app, so the artifact must have
    been packaged into it (`edgekit package --app ios`); the app is launched with --benchmark, and
    its record (Documents/edgekit-bench/OUTPUT) is polled for and copied back.
    """

    name = "ios-app"
    app = "ios"

    def measure(self, device, artifact, settings, device_info) -> dict:
        self.check_loadable(device, artifact)
        name = os.path.basename(artifact.rstrip("/"))
        output = f"{Path(name).stem}-{uuid.uuid4().hex[:8]}.json"
        arguments = launch.ios_app_arguments(name, output, device.id, runs=settings.runs, warmup=settings.warmup,
                                             threads=settings.threads)
        code, out, err = device.run(arguments, 120)
        if code != 0:
            raise DeviceFault("error", f"{device.id}: cannot launch {getattr(device, 'bundle_id', 'the app')}: "
                              f"{last_line(err) or last_line(out)} (is the edgekit sample app installed?)")

        def timed_out():
            return DeviceFault("timeout", f"{device.id}: the sample app wrote no result for {name} within "
                               f"{settings.timeout:g} s (--timeout); is {name} packaged into the app "
                               "(edgekit package --app ios)?")

        record = self.wait_for_record(device, f"{launch.IOS_RESULTS_DIR}/{output}", name, settings, timed_out)
        return _adopt(record, device, artifact)


APP_STRATEGIES = {"android": AndroidApp, "ios": IOSApp}


def _adopt(record: dict, device: Device, artifact: str) -> dict:
    """An app's record, tied to the device string and the local artifact path the user gave."""
    record["device"] = {**record["device"], "id": device.id, "kind": device.kind}
    # the apps name a model by its manifest name; rows compare across devices by file name
    record["artifact"] = {**record["artifact"], "path": os.path.abspath(artifact),
                          "name": os.path.basename(artifact.rstrip("/"))}
    if record["status"] != "ok" and record.get("error"):
        record["error"] = f"{device.id}: {record['error']}"
    if record.get("parity") is None:
        record["parity"] = _parity(artifact)
    record.setdefault("warnings", [])
    return schema.parse_result(record)


def _app(device: Device, settings: BenchSettings, cache: dict) -> AppStrategy | None:
    if not device.can(APP) or device.app not in APP_STRATEGIES:
        return None
    cls = APP_STRATEGIES[device.app]
    return cache.setdefault(cls.name, cls(settings.app) if cls is AndroidApp else cls())


def runner_name(device: Device, settings: BenchSettings, artifact: str) -> str:
    """The runner a record names when a fault came before a strategy was chosen (no device I/O)."""
    if device.can(PYTHON):
        return PythonMeasure.name
    wanted = None
    try:
        wanted = on_device(artifact).runner
    except Exception:  # an unknown suffix was refused earlier; this only names a fault's runner
        pass
    if device.can(APP) and device.app in APP_STRATEGIES and (not device.can(RUN) or not wanted or
                                                           APP_STRATEGIES[device.app].name in settings.runners()):
        return APP_STRATEGIES[device.app].name
    return wanted or "unknown"


def select(device: Device, artifact: str, settings: BenchSettings, cache: dict) -> Strategy:
    """The strategy for this artifact on this device (one instance per device and kind, reused):
    a device that runs Python measures with edgekit's own module; one that runs commands uses the
    native runner the artifact's target names; one that launches the sample app uses its benchmark
    mode (asked for with --runner android-app, or when no native runner is at hand)."""
    if device.can(PYTHON):
        return cache.setdefault("python", PythonMeasure())
    app = _app(device, settings, cache)
    if app is not None and (app.name in settings.runners() or not device.can(RUN)):
        return app
    needs = on_device(artifact)
    wanted = needs.runner
    from edgekit.bench.parsers import NATIVE_TOOLS

    if device.can(RUN) and device.can(STAGE) and wanted in NATIVE_TOOLS:
        binary = _runner_binary(wanted, settings, device)
        if binary:
            return cache.setdefault(f"{wanted}:{binary}", NativeRunner(wanted, binary))
    if app is not None and app.installed(device):
        return app
    suffix = os.path.splitext(artifact.rstrip("/"))[1].lower()
    if not wanted:
        hint = "; install the edgekit sample app, whose benchmark mode does (--runner android-app)" if app else ""
        raise DeviceFault("missing-runner", f"{device.id}: no native runner measures {suffix} files ({needs.format_name}){hint}")
    folder = runners_dir(device.abi() or "default")
    raise DeviceFault("missing-runner", f"{device.id}: no {wanted} for {device.abi() or 'this device'}: pass --runner PATH "
                      f"or put it at {folder / wanted} ({needs.runner_help})")


def _runner_binary(wanted: str, settings: BenchSettings, device) -> str | None:
    """An explicit --runner file whose name is the runner's, else the cached one for the device's ABI."""
    explicit = [r for r in settings.runners() if os.path.isfile(r)]
    named = [p for p in explicit if wanted in os.path.basename(p)]
    if named:
        return named[0]
    # a binary of another name (a renamed runner) serves whatever runner is wanted
    from edgekit.registry import get_target_class, targets

    known = {get_target_class(n).on_device.runner for n in targets()} - {None}
    unnamed = [p for p in explicit if not any(k in os.path.basename(p) for k in known)]
    if unnamed:
        return unnamed[0]
    cached = runners_dir(device.abi() or "default") / wanted
    return str(cached) if cached.is_file() else None
