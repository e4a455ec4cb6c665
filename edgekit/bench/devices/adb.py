"""Android phones over adb: push to /data/local/tmp/edgekit/, run a native runner or the sample app.

The adb client is the one on PATH (Debian: `apt-get install adb`; Android SDK platform-tools), or
EDGEKIT_ADB. Device string: ``adb:SERIAL`` (the first column of `adb devices -l`).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from typing import Sequence

from edgekit.bench.devices.base import APP, RUN, STAGE, Device, DeviceFault, last_line, run_tool
from edgekit.errors import UsageError

WORKDIR = "/data/local/tmp/edgekit"
#: adb prints these when a device went away between two commands (adb/client/commandline.cpp, transport.cpp)
_GONE = ("not found", "no devices/emulators found", "device offline", "error: closed", "protocol fault",
         "connection reset", "device still authorizing", "failed to get feature set")


def adb_path() -> str:
    return os.environ.get("EDGEKIT_ADB") or shutil.which("adb") or "adb"


def adb_command(args: Sequence[str], timeout: float, what: str) -> tuple[int, str, str]:
    return run_tool([adb_path(), *args], timeout, what=what, missing="adb is not installed on this machine (apt-get "
                    "install adb, or the Android SDK platform-tools; EDGEKIT_ADB=/path/to/adb)")


class AdbDevice(Device):
    kind = "adb"
    prefixes = ("adb:",)
    form = "adb:SERIAL"
    capabilities = frozenset({STAGE, RUN, APP})
    app = "android"
    workdir = WORKDIR

    def __init__(self, spec: str):
        serial = spec.split(":", 1)[1] if ":" in spec else ""
        if not serial:
            raise UsageError(f"--device {spec!r}: expected adb:SERIAL (see `edgekit devices`)")
        self.serial = serial
        self.id = f"adb:{serial}"
        self._props: dict[str, str] | None = None
        self._cores: int | None = None

    def adb(self, *args: str, timeout: float = 120, doing: str = "talking to the device") -> tuple[int, str, str]:
        code, out, err = adb_command(["-s", self.serial, *args], timeout, f"{self.id}: {doing}")
        text = f"{out}\n{err}".lower()
        if code != 0 and "unauthorized" in text:
            raise DeviceFault("unauthorized", f"{self.id}: device unauthorized: unlock the phone and accept the "
                              "'Allow USB debugging' prompt, then run again")
        if code != 0 and any(s in text for s in _GONE):
            raise DeviceFault("unreachable", f"{self.id}: the device is not attached or went away while {doing} "
                              f"({last_line(err) or last_line(out)}); `edgekit devices` lists what adb sees")
        return code, out, err

    @classmethod
    def discover(cls, *, ssh_config=None, probe=False):
        rows, note = list_adb_devices()
        return rows, [note] if note else []

    def check(self) -> None:
        code, out, err = self.adb("get-state", timeout=30, doing="checking the device")
        state = out.strip()
        if code != 0 or state != "device":
            raise DeviceFault("unreachable", f"{self.id}: device state is {state or last_line(err) or 'unknown'}, not ready")

    def properties(self) -> dict[str, str]:
        if self._props is None:
            code, out, _ = self.adb("shell", "getprop; echo __edgekit_cpus__; cat /sys/devices/system/cpu/possible",
                                    timeout=60, doing="reading device properties")
            props, cores_text = parse_getprop(out)
            self._props = props
            self._cores = cores_from_possible(cores_text)
        return self._props

    def abi(self) -> str:
        return self.properties().get("ro.product.cpu.abi") or "arm64-v8a"

    def describe(self) -> dict:
        p = self.properties()
        maker, model = p.get("ro.product.manufacturer", ""), p.get("ro.product.model", "")
        release, sdk = p.get("ro.build.version.release"), p.get("ro.build.version.sdk")
        soc = " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x)
        return {
            "model": " ".join(x for x in (maker, model) if x) or None,
            "os": f"Android {release} (API {sdk})" if release else None,
            "cpu": soc or p.get("ro.board.platform") or p.get("ro.hardware") or None,
            "cores": self._cores,
        }

    def push(self, local: str, remote: str) -> None:
        code, out, err = self.adb("push", local, remote, timeout=600, doing=f"pushing {os.path.basename(local)}")
        if code != 0:
            raise DeviceFault("error", f"{self.id}: cannot push {os.path.basename(local)} ({last_line(err) or last_line(out)})")

    def pull(self, remote: str, local: str) -> None:
        code, out, err = self.adb("pull", remote, local, timeout=600, doing="fetching results")
        if code != 0:
            text = f"{out}\n{err}".lower()
            if "no such file" in text or "does not exist" in text:
                raise FileNotFoundError(remote)
            raise DeviceFault("error", f"{self.id}: cannot pull {remote} ({last_line(err) or last_line(out)})")

    def shell(self, command: str, timeout: float, doing: str) -> tuple[int, str, str]:
        """`adb shell` with one command line (adb passes the device's exit status back, Android 7+)."""
        return self.adb("shell", command, timeout=timeout, doing=doing)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        return self.shell(f"cd {shlex.quote(self.workdir)} && {shlex.join(argv)}", timeout, "measuring")

    def stage(self, local: str) -> str:
        self.shell(f"mkdir -p {shlex.quote(self.workdir)}", 60, "preparing the device")
        remote = self.remote_path(os.path.basename(local.rstrip("/")))
        self.push(local, remote)
        return remote

    def state(self) -> dict:
        """Governor, frequency and thermal zones from sysfs; the OS build from getprop."""
        script = ("cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor; echo __f; "
                  "cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq; echo __t; "
                  "for z in /sys/class/thermal/thermal_zone*; do echo \"$(cat $z/type) $(cat $z/temp)\"; done")
        try:
            code, out, _ = self.shell(script, 60, "reading the device state")
        except DeviceFault:
            return {}
        from edgekit.bench.machine import parse_state

        state = parse_state(out)
        props = self.properties()
        state["os_build"] = props.get("ro.build.fingerprint") or props.get("ro.build.display.id")
        return state


def parse_getprop(text: str) -> tuple[dict[str, str], str]:
    """`getprop` prints `[key]: [value]` lines; anything after our marker is the cpu list."""
    head, _, tail = text.partition("__edgekit_cpus__")
    props = dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]", head, flags=re.M))
    return props, tail.strip()


def cores_from_possible(text: str) -> int | None:
    """/sys/devices/system/cpu/possible, e.g. '0-7' or '0-3,4-7' -> 8."""
    total = 0
    for part in text.strip().split(","):
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = part.split("-")
            total += int(hi) - int(lo) + 1
        elif part.isdigit():
            total += 1
        else:
            return None
    return total or None


def list_adb_devices(timeout: float = 30) -> tuple[list[dict], str | None]:
    """`adb devices -l` -> [{"id", "kind", "state", "model", "detail"}], plus a note when adb is missing."""
    try:
        code, out, err = adb_command(["devices", "-l"], timeout, "listing Android devices")
    except DeviceFault as exc:
        return [], exc.message
    if code != 0:
        return [], f"adb devices failed: {last_line(err) or code}"
    return parse_adb_devices(out), None


_STATES = {"device": "ready", "unauthorized": "unauthorized", "offline": "offline", "authorizing": "authorizing",
           "recovery": "recovery", "sideload": "sideload", "bootloader": "bootloader", "host": "host"}


def parse_adb_devices(text: str) -> list[dict]:
    """Parse `adb devices -l` (adb/client/adb_client + transport.cpp list format: serial, state, key:value...)."""
    devices = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith(("List of devices", "*", "adb server", "daemon")):
            continue
        match = re.match(r"^(\S+)\s+(no permissions.*?(?=\s+\S+:\S+|$)|\S+)(.*)$", line)
        if not match:
            continue
        serial, raw_state, rest = match.groups()
        fields = dict(re.findall(r"(\S+?):(\S+)", rest))
        state = "no-permissions" if raw_state.startswith("no permissions") else _STATES.get(raw_state, raw_state)
        devices.append({
            "id": f"adb:{serial}",
            "kind": "adb",
            "state": state,
            "model": fields.get("model", "").replace("_", " ") or None,
            "detail": raw_state if state == "no-permissions" else " ".join(f"{k}:{v}" for k, v in fields.items() if k in ("usb", "product", "device")) or None,
        })
    return devices
