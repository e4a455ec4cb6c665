"""The bench orchestration, written once over the Device interface.

Devices run in parallel (one thread each); on each device the artifacts run one at a time, in
order. A fault (a device that is unreachable or disappears, a hang, a missing runner or runtime)
becomes that result's status and one printed line; the other artifacts and devices carry on.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from edgekit.bench import strategies
from edgekit.bench.devices import Device, DeviceFault, parse_device
from edgekit.bench.settings import DEFAULT_TIMEOUT_S, BenchSettings
from edgekit.errors import EdgekitError, UsageError

#: statuses after which a device is not asked again in this run
_DEVICE_LOST = ("unreachable", "unauthorized")


class Progress:
    """One whole line per event on stderr (devices run in parallel: lines never interleave)."""

    def __init__(self, quiet: bool, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def fault(self, text: str) -> None:
        # shown with --quiet too: it changes what the results mean
        self._print(f"warning: {text}")

    def result(self, device: Device, record: dict, seconds: float) -> None:
        name = record["artifact"]["name"]
        if record["status"] == "ok":
            t = record["timings_ms"]
            p50 = t["p50"] if t["p50"] is not None else t["mean"]
            self.info(f"  [{device.id}] {name}: p50 {p50:.3f} ms, {t['count']} runs ({seconds:.1f} s)")
            for note in record.get("warnings") or []:
                self.fault(f"[{device.id}] {name}: {note}")
        else:
            self.fault(f"[{device.id}] {name}: {record['status']}: {record['error']}")


def _check_artifacts(artifacts: Sequence[str]) -> list[str]:
    from edgekit.registry import target_for_artifact

    if not artifacts:
        raise UsageError("give at least one artifact to measure")
    paths = []
    for path in artifacts:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such artifact")
        target_for_artifact(path)  # an unknown suffix is a usage error before anything runs
        paths.append(path)
    return paths


def bench_device(device: Device, artifacts: list[str], settings: BenchSettings, progress: Progress) -> list[dict]:
    """Every artifact on one device, one at a time; faults become records."""
    records: list[dict] = []
    info = {"model": None, "os": None, "cpu": None, "cores": None}
    try:
        try:
            device.check()
            info = device.describe()
        except DeviceFault as fault:
            progress.fault(fault.message)
            for path in artifacts:
                records.append(strategies.fault_record(path, device, info, fault, _runner_name(device, settings, path), settings))
            return records
        prepared: set[int] = set()
        lost: DeviceFault | None = None
        cache: dict = {}
        for path in artifacts:
            start = time.perf_counter()
            runner_name = _runner_name(device, settings, path)
            if lost is not None:
                fault = DeviceFault(lost.status, f"{device.id}: not measured: the device was lost earlier in this run ({lost.status})")
                records.append(strategies.fault_record(path, device, info, fault, runner_name, settings))
                progress.result(device, records[-1], 0.0)
                continue
            progress.info(f"  [{device.id}] measuring {os.path.basename(path.rstrip('/'))} ...")
            try:
                strategy = strategies.select(device, path, settings, cache)
                runner_name = strategy.name
                if id(strategy) not in prepared:
                    strategy.prepare(device, settings)
                    prepared.add(id(strategy))
                record = strategy.measure(device, path, settings, info)
            except DeviceFault as fault:
                record = strategies.fault_record(path, device, info, fault, runner_name, settings)
                if fault.status in _DEVICE_LOST:
                    lost = fault
            except (OSError, EdgekitError) as exc:  # e.g. a result file a device wrote that is not a record
                fault = DeviceFault("error", f"{device.id}: {exc}")
                record = strategies.fault_record(path, device, info, fault, runner_name, settings)
            records.append(record)
            progress.result(device, record, time.perf_counter() - start)
    finally:
        close = getattr(device, "close", None)
        if close:
            close()
    return records


def _runner_name(device: Device, settings: BenchSettings, artifact: str) -> str:
    """The runner a record names when the fault came before a runner was chosen."""
    if device.kind in ("host", "ssh"):
        return "python"
    if device.kind == "ios" or "android-app" in settings.runners():
        return f"{'ios' if device.kind == 'ios' else 'android'}-app"
    suffix = os.path.splitext(artifact.rstrip("/"))[1].lower()
    return strategies.RUNNER_FILES.get(suffix, "android-app")


def run_bench(
    artifacts: list[str],
    devices: list[str] = ["host"],  # noqa: B006 - the documented signature; never mutated
    *,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 50,
    min_time: float | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    data: str | None = None,
    runner=None,
    quiet: bool = True,
    cpu_mask: str | None = None,
    seed: int = 0,
    app: str | None = None,
    ssh_config: str | None = None,
    peak: bool = True,
    progress_stream=None,
) -> list[dict]:
    """Measure every artifact on every device; one result record per (device, artifact), device
    order first. Records follow edgekit.bench.schema; failures are records with a status, not
    exceptions. Raises UsageError for bad arguments (missing file, unknown suffix or device)."""
    settings = BenchSettings(threads=threads, warmup=warmup, runs=runs, min_time=min_time, timeout=timeout, data=data,
                             runner=runner, cpu_mask=cpu_mask, seed=seed, app=app, ssh_config=ssh_config, peak=peak)
    paths = _check_artifacts(artifacts)
    specs = list(dict.fromkeys(devices or ["host"]))
    device_objects = [parse_device(spec, ssh_config=ssh_config, app=app) for spec in specs]
    progress = Progress(quiet, progress_stream)
    progress.info(f"bench: {len(paths)} artifact(s) on {', '.join(d.id for d in device_objects)} "
                  f"(threads {threads}, warmup {warmup}, runs {runs}{f', min time {min_time:g} s' if min_time else ''})")
    with ThreadPoolExecutor(max_workers=len(device_objects), thread_name_prefix="edgekit-bench") as pool:
        futures = [pool.submit(bench_device, device, paths, settings, progress) for device in device_objects]
        results = [future.result() for future in futures]
    return [record for per_device in results for record in per_device]
