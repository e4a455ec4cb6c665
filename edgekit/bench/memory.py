"""Memory of the measuring process: peak RSS, and the baseline that the model's share is taken from.

The model's share is peak RSS minus the peak RSS of a fresh process that imports exactly what the
measuring process imported up to the model load (the runtime and its libraries) and loads no model.
Which modules that is, is found by watching sys.modules around the load, so it works for every
runtime without knowing its library names.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterable

_BASELINE_MARK = "EDGEKIT-BASELINE "


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_bytes() -> int | None:
    """High-water mark of resident memory of this process (VmHWM, else getrusage)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS reports bytes, Linux KiB


def current_rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def new_modules(before: Iterable[str]) -> list[str]:
    """Top-level-first list of modules imported since ``before`` (private and edgekit ones left out)."""
    seen = set(before)
    names = [n for n in list(sys.modules) if n not in seen and not n.startswith(("_", "edgekit"))]
    return sorted(set(names), key=lambda n: (n.count("."), n))


def import_and_report(modules: list[str]) -> None:
    """The baseline child: import ``modules`` (best effort) and print this process's peak RSS."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a submodule that only imports inside its parent: the parent brought it
            pass
    print(_BASELINE_MARK + json.dumps({"peak_rss_bytes": peak_rss_bytes()}), flush=True)


def baseline_rss_bytes(modules: list[str], timeout: float = 120.0) -> int | None:
    """Peak RSS of a fresh `python -m edgekit.bench.measure --baseline-modules ...` (same interpreter)."""
    argv = [sys.executable, "-m", "edgekit.bench.measure", "--baseline-modules", ",".join(modules)]
    # same interpreter, same working folder: `-m` finds the same edgekit (a board's shipped copy)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in done.stdout.splitlines():
        if line.startswith(_BASELINE_MARK):
            return json.loads(line[len(_BASELINE_MARK):]).get("peak_rss_bytes")
    return None
