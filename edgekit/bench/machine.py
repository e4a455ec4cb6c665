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


def _cpu_paths(pattern: str) -> list[str]:
    import glob
    import re

    return sorted(glob.glob(pattern), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])


def device_state() -> dict:
    """The state a number is taken under, read where this code runs (sysfs on Linux): CPU governor,
    per-core current frequency, thermal zones, OS build. Unreadable facts are None, never guessed."""
    governors = sorted({g for g in (_read(p) for p in _cpu_paths("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")) if g})
    freqs = [_read(p) for p in _cpu_paths("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")]
    thermal = {}
    for zone in _cpu_paths("/sys/class/thermal/thermal_zone*"):
        kind, temp = _read(f"{zone}/type"), _read(f"{zone}/temp")
        if kind and temp and temp.lstrip("-").isdigit():
            thermal[kind] = int(temp) / 1000.0
    release = _read("/etc/os-release") or ""
    pretty = next((line.split("=", 1)[1].strip('"') for line in release.splitlines() if line.startswith("PRETTY_NAME=")), None)
    return {
        "cpu_governor": ",".join(governors) or None,
        "cpu_freq_mhz": [int(f) // 1000 for f in freqs if f and f.isdigit()] or None,
        "thermal_c": thermal or None,
        "os_build": " / ".join(x for x in (pretty, f"{platform.system()} {platform.release()} {platform.version()}") if x),
    }


def parse_state(text: str) -> dict:
    """The same facts from a device shell's output: governor, '__f', frequencies (kHz), '__t',
    'zone-type millidegrees' lines (edgekit/bench/devices/adb.py writes that script)."""
    head, _, rest = text.partition("__f")
    freq_text, _, thermal_text = rest.partition("__t")
    governor = head.strip().splitlines()[0].strip() if head.strip() else None
    thermal = {}
    for line in thermal_text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            thermal[parts[0]] = int(parts[1]) / 1000.0
    freqs = [int(x) // 1000 for x in freq_text.split() if x.isdigit()]
    return {"cpu_governor": governor if governor and " " not in governor else None,
            "cpu_freq_mhz": freqs or None, "thermal_c": thermal or None}


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
