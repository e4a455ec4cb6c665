"""Facts about the machine the measuring runs on (this host, or a board over SSH). Stdlib only."""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_name() -> str | None:
    """The CPU model: /proc/cpuinfo on Linux (x86 'model name', Arm 'Hardware'/'Model'), else platform."""
    text = _read("/proc/cpuinfo")
    if text:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                fields.setdefault(key.strip().lower(), value.strip())
        for key in ("model name", "hardware", "cpu model", "processor"):
            value = fields.get(key)
            if value and not value.isdigit():
                return value
        implementer, part = fields.get("cpu implementer"), fields.get("cpu part")
        if implementer and part:
            return f"Arm implementer {implementer} part {part}"
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or None


def board_model() -> str | None:
    """Single-board computers name themselves in the device tree (Raspberry Pi, Jetson)."""
    return _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model")


def describe_machine() -> dict:
    """The device section of a result, for the machine this code runs on."""
    return {
        "model": board_model() or platform.machine() or None,
        "os": platform.platform(terse=False),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
    }


def fingerprint() -> str:
    """A key that changes when the machine does (for per-machine caches such as the GEMM peak)."""
    parts = [socket.gethostname(), platform.machine(), cpu_name() or "?", str(os.cpu_count())]
    return "|".join(parts)


def cache_dir() -> Path:
    """EDGEKIT_CACHE_DIR, else $XDG_CACHE_HOME/edgekit, else ~/.cache/edgekit."""
    explicit = os.environ.get("EDGEKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgekit"
