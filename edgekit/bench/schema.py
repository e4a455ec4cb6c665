"""The bench result schema: one record per artifact and device, versioned.

Shared with the sample apps (sample_apps/, edgekit/package.py), which write exactly this shape from
their benchmark mode. Change it compatibly: keys may be ADDED (minor bump), never renamed or dropped.
Nothing here imports numpy or an ML framework, so the board-side measuring module and the CLI can
both use it cheaply.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

from edgekit.errors import DataError

SCHEMA_VERSION = "1.0"
RESULT_KIND = "edgekit.bench.result"

STATUSES = ("ok", "error", "timeout", "missing-runner", "unreachable", "unauthorized")
# Device kinds and runner names are open sets (a device kind is one module + one registry line, see
# edgekit/bench/devices); a record only has to name them in this form.
_NAME = re.compile(r"^[a-z][a-z0-9_.+-]*$")

# One definition of memory per runner: the number a runner's "memory" means, named in every record
# (memory.definition) and in the report's column. docs/bench.md says how each is taken.
MEMORY_DEFINITIONS: dict[str, tuple[str, str]] = {
    # definition id -> (the memory key that holds the number, what it is)
    "model-share": ("model_rss_bytes", "peak RSS of the measuring process minus the peak RSS of a "
                    "twin process that imports the same runtime and loads no model"),
    "load-delta": ("model_rss_bytes", "the app's resident memory after loading the model minus before"),
    "process-peak": ("peak_rss_bytes", "peak RSS of the runner process (benchmark_model's periodic monitoring)"),
    "planned-arena": ("arena_bytes", "the sum of the program's memory-planned CPU buffers"),
}
RUNNER_MEMORY = {"python": "model-share", "android-app": "load-delta", "ios-app": "load-delta",
                 "benchmark_model": "process-peak", "executor_runner": "planned-arena"}

# section -> {key: JSON type}; a key marked "?" is optional and filled with None. float means any number.
_DECLARED: dict[str, dict[str, type]] = {
    "artifact": {"path": str, "name": str, "target": str, "precision?": str, "size_bytes": int, "sha256?": str},
    "device": {"id": str, "kind": str, "model?": str, "os?": str, "cpu?": str, "cores?": int},
    "runtime": {"name": str, "version?": str, "delegate?": str},
    "settings": {"threads": int, "warmup": int, "runs": int, "min_time_s?": float, "inputs": str, "runner": str},
    # std..max are null only where a native runner does not report them (benchmark_model prints no
    # p90/p99; executor_runner only a total); edgekit's own measuring and the sample apps fill them all
    "timings_ms": {"load?": float, "first?": float, "mean": float, "std?": float, "min?": float, "p50?": float,
                   "p90?": float, "p99?": float, "max?": float, "count": int},
    # definition: a MEMORY_DEFINITIONS id
    "memory": {"peak_rss_bytes?": int, "baseline_rss_bytes?": int, "model_rss_bytes?": int, "arena_bytes?": int,
               "definition?": str},
    "compute": {"flops?": int, "gflops_per_s?": float, "peak_gflops?": float, "peak_share?": float},
    "environment": {"edgekit": str, "python?": str, "hostname?": str, "timestamp": str},
}
_NUM = (int, float)
# section -> {key: (required?, allowed Python types)}, as parse_result checks them
_SECTIONS: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    section: {key.rstrip("?"): (not key.endswith("?"), _NUM if kind is float else (kind,))
              for key, kind in keys.items()}
    for section, keys in _DECLARED.items()
}
# Sections whose keys vary with the device and runner (edgekit/bench/machine.py device_state, the
# apps' own state, runner.combine_rounds): objects or null, their keys documented in docs/bench.md.
FREEFORM_SECTIONS = ("device_state", "rounds")
# Sections a failed record (status != "ok") may leave null: nothing was measured.
_NULLABLE_WHEN_FAILED = ("timings_ms", "runtime")
_OPTIONAL_SECTIONS = ("memory", "compute")


def _type_name(types: tuple[type, ...]) -> str:
    return "number" if types == _NUM else " or ".join(t.__name__ for t in types)


def _check_value(where: str, value: Any, types: tuple[type, ...]) -> Any:
    # bool is an int in Python, never a valid count or size here
    if isinstance(value, bool) or not isinstance(value, types):
        raise DataError(f"bench result: {where} must be a {_type_name(types)}, got {type(value).__name__}")
    return value


def parse_result(obj: dict) -> dict:
    """Validate one result record; fill optional keys with None; return the normalised copy.

    Raises DataError naming the bad or missing key. Extra keys are kept (later minor versions add keys).
    """
    if not isinstance(obj, dict):
        raise DataError(f"bench result: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version")
    if not isinstance(version, str):
        raise DataError("bench result: missing key 'schema_version'")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"bench result: schema_version {version!r} is not readable by this edgekit (reads {SCHEMA_VERSION.split('.')[0]}.x)")
    if obj.get("kind") != RESULT_KIND:
        raise DataError(f"bench result: key 'kind' must be {RESULT_KIND!r}, got {obj.get('kind')!r}")
    status = obj.get("status")
    if status not in STATUSES:
        raise DataError(f"bench result: key 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
    out = dict(obj)
    for section, keys in _SECTIONS.items():
        value = obj.get(section)
        if value is None and (section in _OPTIONAL_SECTIONS or (status != "ok" and section in _NULLABLE_WHEN_FAILED)):
            out[section] = None if section in _NULLABLE_WHEN_FAILED else {k: None for k in keys}
            continue
        if section not in obj:
            raise DataError(f"bench result: missing key {section!r}")
        if not isinstance(value, dict):
            raise DataError(f"bench result: {section!r} must be an object, got {type(value).__name__}")
        normal = dict(value)
        for key, (required, types) in keys.items():
            item = value.get(key)
            if item is None:
                if required:
                    raise DataError(f"bench result: missing key '{section}.{key}'")
                normal[key] = None
                continue
            _check_value(f"'{section}.{key}'", item, types)
        out[section] = normal
    for where, value in (("device.kind", out["device"]["kind"]), ("settings.runner", out["settings"]["runner"])):
        if not _NAME.match(value):
            raise DataError(f"bench result: '{where}' must be a lower-case name such as 'ssh' or 'benchmark_model', got {value!r}")
    memory = out["memory"]
    if memory.get("definition") is None and out["settings"]["runner"] in RUNNER_MEMORY:
        memory["definition"] = RUNNER_MEMORY[out["settings"]["runner"]]
    if memory["definition"] is not None and memory["definition"] not in MEMORY_DEFINITIONS:
        raise DataError(f"bench result: 'memory.definition' must be one of {', '.join(MEMORY_DEFINITIONS)}, "
                        f"got {memory['definition']!r}")
    for key in ("throughput_ips", "error"):
        out.setdefault(key, None)
    if out["throughput_ips"] is not None:
        _check_value("'throughput_ips'", out["throughput_ips"], _NUM)
    if out["error"] is not None:
        _check_value("'error'", out["error"], (str,))
    if status != "ok" and not out["error"]:
        raise DataError(f"bench result: status {status!r} needs an 'error' line saying what happened")
    for section in FREEFORM_SECTIONS:
        if out.get(section) is not None and not isinstance(out[section], dict):
            raise DataError(f"bench result: {section!r} must be an object or null, got {type(out[section]).__name__}")
    parity = out.get("parity")
    if parity is not None and not isinstance(parity, dict):
        raise DataError(f"bench result: 'parity' must be an object or null, got {type(parity).__name__}")
    out["parity"] = parity
    return out


def memory_value(record: dict) -> tuple[int | None, str | None]:
    """(bytes, definition id) of a record's one memory number, as its runner defines it."""
    memory = record.get("memory") or {}
    definition = memory.get("definition")
    if definition not in MEMORY_DEFINITIONS:
        return None, None
    return memory.get(MEMORY_DEFINITIONS[definition][0]), definition


def load_results(path: str | os.PathLike) -> list[dict]:
    """Read a results file: one record, a list of records, or {"results": [...]}."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: no such results file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a JSON results file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("results"), list) and data.get("kind") != RESULT_KIND:
        data = data["results"]
    records = data if isinstance(data, list) else [data]
    out = []
    for index, record in enumerate(records):
        try:
            out.append(parse_result(record))
        except DataError as exc:
            where = f"{path}" if len(records) == 1 else f"{path} record {index}"
            raise DataError(f"{where}: {exc.message}") from None
    return out


def dump_results(records: list[dict], path: str | os.PathLike) -> Path:
    """Write ``{"schema_version", "kind": "edgekit.bench.results", "results": [...]}`` atomically."""
    from edgekit.errors import OutputError

    path = Path(path)
    document = {"schema_version": SCHEMA_VERSION, "kind": RESULT_KIND + "s", "results": records}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def environment() -> dict[str, Any]:
    """Where the measuring ran (the board itself for SSH; filled by the runner for phones)."""
    from edgekit import __version__

    return {
        "edgekit": __version__,
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "timestamp": now_utc(),
    }


def empty_record(
    artifact: dict[str, Any],
    device: dict[str, Any],
    settings: dict[str, Any],
    status: str,
    error: str | None,
    *,
    parity: dict | None = None,
) -> dict[str, Any]:
    """A record for an artifact that was not measured (fault): status + the one error line."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "kind": RESULT_KIND,
        "artifact": artifact,
        "device": device,
        "runtime": None,
        "settings": settings,
        "timings_ms": None,
        "throughput_ips": None,
        "memory": {k: None for k in _SECTIONS["memory"]},
        "device_state": None,
        "compute": {k: None for k in _SECTIONS["compute"]},
        "parity": parity,
        "status": status,
        "error": error,
        "environment": environment(),
    }
    return parse_result(record)
