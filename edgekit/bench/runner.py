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
from edgekit.errors import DataError, EdgekitError, UsageError

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
    from edgekit.manifest import ManifestError, beside
    from edgekit.registry import target_for_artifact

    if not artifacts:
        raise UsageError("give at least one artifact to measure")
    paths = []
    for path in artifacts:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such artifact")
        target_for_artifact(path)  # an unknown suffix is a usage error before anything runs
        try:  # a manifest this edgekit cannot read is refused now, not guessed from on a device
            beside(path)
        except ManifestError as exc:
            raise DataError(str(exc)) from None
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
                records.append(strategies.fault_record(path, device, info, fault, strategies.runner_name(device, settings, path), settings))
            return records
        prepared: set[int] = set()
        lost: DeviceFault | None = None
        cache: dict = {}
        state_cache: dict = {}
        for path in artifacts:
            start = time.perf_counter()
            runner_name = strategies.runner_name(device, settings, path)
            if lost is not None:
                fault = DeviceFault(lost.status, f"{device.id}: not measured: the device was lost earlier in this run ({lost.status})")
                records.append(strategies.fault_record(path, device, info, fault, runner_name, settings))
                progress.result(device, records[-1], 0.0)
                continue
            progress.info(f"  [{device.id}] measuring {os.path.basename(path.rstrip('/'))} ..."
                          + (f" ({settings.rounds} rounds)" if settings.rounds > 1 else ""))
            rounds = []
            for _ in range(settings.rounds):
                record, fault = _measure_once(device, path, settings, info, cache, prepared)
                rounds.append(record)
                if fault is not None:
                    lost = fault
                if record["status"] != "ok":
                    break
            record = _stamp_state(combine_rounds(rounds), device, state_cache)
            records.append(record)
            progress.result(device, record, time.perf_counter() - start)
    finally:
        close = getattr(device, "close", None)
        if close:
            close()
    return records


def _measure_once(device, path, settings, info, cache, prepared) -> tuple[dict, DeviceFault | None]:
    """One round of one artifact: (record, the fault that lost the device or None)."""
    runner_name = strategies.runner_name(device, settings, path)
    try:
        strategy = strategies.select(device, path, settings, cache)
        runner_name = strategy.name
        if id(strategy) not in prepared:
            strategy.prepare(device, settings)
            prepared.add(id(strategy))
        return strategy.measure(device, path, settings, info), None
    except DeviceFault as fault:
        record = strategies.fault_record(path, device, info, fault, runner_name, settings)
        return record, fault if fault.status in _DEVICE_LOST else None
    except (OSError, EdgekitError) as exc:  # e.g. a result file a device wrote that is not a record
        fault = DeviceFault("error", f"{device.id}: {exc}")
        return strategies.fault_record(path, device, info, fault, runner_name, settings), None


def combine_rounds(rounds: list[dict]) -> dict:
    """Several rounds of one artifact -> one record: the round with the median p50 stands for all
    (its timings, samples and memory), and ``rounds`` holds every round's p50 with the interval."""
    from edgekit.bench.report import typical_ms
    from edgekit.bench.stats import rounds_interval

    ok = [r for r in rounds if r["status"] == "ok" and typical_ms(r) is not None]
    if len(rounds) == 1 or len(ok) != len(rounds):
        record = rounds[-1]
        if len(rounds) > 1 and record["status"] == "ok":
            record["rounds"] = rounds_interval([typical_ms(r) for r in ok])
        return record
    ordered = sorted(ok, key=typical_ms)
    record = dict(ordered[(len(ordered) - 1) // 2])
    record["rounds"] = rounds_interval([typical_ms(r) for r in ok])
    return record


def _stamp_state(record: dict, device: Device, cache: dict) -> dict:
    """Every number carries the state it was taken under: what the measuring process read itself
    (PYTHON devices), else what the device tells (read once per device), plus runtime and delegate."""
    if "state" not in cache:
        try:
            cache["state"] = device.state()
        except DeviceFault:
            cache["state"] = {}
    runtime = record.get("runtime") or {}
    state = {**cache["state"], **(record.get("device_state") or {})}
    state.setdefault("runtime", " ".join(x for x in (runtime.get("name"), runtime.get("version")) if x) or None)
    state.setdefault("delegate", runtime.get("delegate"))
    record["device_state"] = state
    return record


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
    rounds: int = 1,
    progress_stream=None,
) -> list[dict]:
    """Measure every artifact on every device; one result record per (device, artifact), device
    order first. Records follow edgekit.bench.schema; failures are records with a status, not
    exceptions. Raises UsageError for bad arguments (missing file, unknown suffix or device)."""
    settings = BenchSettings(threads=threads, warmup=warmup, runs=runs, min_time=min_time, timeout=timeout, data=data,
                             runner=runner, cpu_mask=cpu_mask, seed=seed, app=app, ssh_config=ssh_config, peak=peak, rounds=rounds)
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
