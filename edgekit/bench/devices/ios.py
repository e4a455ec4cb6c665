"""iPhones and iPads through Xcode's `xcrun devicectl` (macOS, Xcode 15 or later).

An iOS device runs no user binaries, so it is measured through the edgekit iOS sample app's
benchmark mode: the app (with the artifact packaged into it by `edgekit package --app ios`) is
launched with benchmark arguments, and the result record it writes into its data container is
copied back. Device string:
``ios:UDID`` (as `xcrun devicectl list devices` or `edgekit devices` shows it).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Sequence

from edgekit.bench.devices.base import APP, Device, DeviceFault, last_line, run_tool
from edgekit.errors import UsageError

CONTAINER_DIR = "Documents/edgekit-bench"  # inside the app's data container: where its records go


def xcrun_path() -> str:
    return os.environ.get("EDGEKIT_XCRUN") or shutil.which("xcrun") or "xcrun"


def devicectl(args: Sequence[str], timeout: float, what: str) -> tuple[int, str, str]:
    return run_tool([xcrun_path(), "devicectl", *args], timeout, what=what,
                    missing="xcrun devicectl is not available here: iOS devices need macOS with Xcode 15 or later")


class IOSDevice(Device):
    kind = "ios"
    prefixes = ("ios:",)
    form = "ios:UDID"
    # an iPhone runs no user binaries: only the sample app, launched with arguments
    capabilities = frozenset({APP})
    app = "ios"
    workdir = CONTAINER_DIR

    @classmethod
    def from_spec(cls, spec, *, ssh_config=None, app=None):
        return cls(spec, bundle_id=app)

    @classmethod
    def discover(cls, *, ssh_config=None, probe=False):
        rows, note = list_ios_devices()
        return rows, [note] if note else []

    def __init__(self, spec: str, bundle_id: str | None = None):
        udid = spec.split(":", 1)[1] if ":" in spec else ""
        if not udid:
            raise UsageError(f"--device {spec!r}: expected ios:UDID (see `edgekit devices`)")
        self.udid = udid
        self.id = f"ios:{udid}"
        from edgekit.bench.launch import IOS_BUNDLE_ID

        self.bundle_id = bundle_id or os.environ.get("EDGEKIT_IOS_APP") or IOS_BUNDLE_ID
        self._details: dict | None = None

    # -- command construction (tested without a Mac: these are the exact argv lists) ---------------
    def info_argv(self, json_path: str) -> list[str]:
        return ["device", "info", "details", "--device", self.udid, "--json-output", json_path]

    def copy_to_argv(self, local: str, remote: str) -> list[str]:
        return ["device", "copy", "to", "--device", self.udid, "--domain-type", "appDataContainer",
                "--domain-identifier", self.bundle_id, "--source", local, "--destination", remote]

    def copy_from_argv(self, remote: str, local: str) -> list[str]:
        return ["device", "copy", "from", "--device", self.udid, "--domain-type", "appDataContainer",
                "--domain-identifier", self.bundle_id, "--source", remote, "--destination", local]

    def launch_argv(self, app_arguments: Sequence[str]) -> list[str]:
        # returns once the app is launched; the caller polls for the record
        from edgekit.bench.launch import ios_launch_argv

        return ios_launch_argv(self.udid, self.bundle_id, list(app_arguments))

    # -- Device ------------------------------------------------------------------------------------
    def _devicectl(self, args: Sequence[str], timeout: float, doing: str) -> tuple[int, str, str]:
        code, out, err = devicectl(args, timeout, f"{self.id}: {doing}")
        if code != 0:
            text = f"{out}\n{err}"
            lowered = text.lower()
            if "not paired" in lowered or "pairing" in lowered or "trust" in lowered:
                raise DeviceFault("unauthorized", f"{self.id}: the device is not paired with this Mac: unlock it and "
                                  f"accept 'Trust This Computer' ({last_line(text)})")
            if "not found" in lowered and "device" in lowered or "unavailable" in lowered or "disconnected" in lowered:
                raise DeviceFault("unreachable", f"{self.id}: the device is not connected ({last_line(text)})")
        return code, out, err

    def check(self) -> None:
        self.details()

    def details(self) -> dict:
        if self._details is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "info.json")
                code, out, err = self._devicectl(self.info_argv(path), 60, "reading device details")
                if code != 0:
                    raise DeviceFault("unreachable", f"{self.id}: {last_line(err) or last_line(out) or 'devicectl failed'}")
                try:
                    with open(path, encoding="utf-8") as fh:
                        self._details = json.load(fh).get("result", {})
                except (OSError, ValueError):
                    self._details = {}
        return self._details

    def describe(self) -> dict:
        return describe_details(self.details())

    def state(self) -> dict:
        # the app adds the thermal state it reads (ProcessInfo.thermalState) to its record
        device = self.details().get("deviceProperties") or {}
        build = device.get("osBuildUpdate")
        return {"os_build": f"{device.get('osVersionNumber')} ({build})" if build else device.get("osVersionNumber")}

    def push(self, local: str, remote: str) -> None:
        code, out, err = self._devicectl(self.copy_to_argv(local, remote), 600, f"copying {os.path.basename(local)}")
        if code != 0:
            raise DeviceFault("error", f"{self.id}: cannot copy into {self.bundle_id}'s container: "
                              f"{last_line(err) or last_line(out)} (is the edgekit sample app installed?)")

    def pull(self, remote: str, local: str) -> None:
        code, out, err = self._devicectl(self.copy_from_argv(remote, local), 600, "fetching results")
        if code != 0:
            raise FileNotFoundError(remote)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        return self._devicectl(self.launch_argv(argv), timeout, "running the benchmark")



def describe_details(result: dict) -> dict:
    """The device section from `devicectl device info details` / a `list devices` entry."""
    hardware = result.get("hardwareProperties") or {}
    device = result.get("deviceProperties") or {}
    os_version = device.get("osVersionNumber")
    platform = hardware.get("platform") or "iOS"
    return {
        "model": hardware.get("marketingName") or hardware.get("productType") or hardware.get("deviceType"),
        "os": f"{platform} {os_version}" if os_version else None,
        "cpu": (hardware.get("cpuType") or {}).get("name"),
        "cores": None,
    }


def list_ios_devices(timeout: float = 60) -> tuple[list[dict], str | None]:
    """Physical devices from `xcrun devicectl list devices`, or a note when the tool is absent."""
    if not (os.environ.get("EDGEKIT_XCRUN") or shutil.which("xcrun")):
        return [], "iOS: xcrun not found (listing iOS devices needs macOS with Xcode 15 or later)"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "devices.json")
        try:
            code, out, err = devicectl(["list", "devices", "--json-output", path], timeout, "listing iOS devices")
        except DeviceFault as exc:
            return [], exc.message
        if code != 0:
            return [], f"iOS: devicectl failed: {last_line(err) or last_line(out)}"
        try:
            with open(path, encoding="utf-8") as fh:
                return parse_devicectl_list(json.load(fh)), None
        except (OSError, ValueError) as exc:
            return [], f"iOS: unreadable devicectl output ({exc})"


def parse_devicectl_list(document: dict) -> list[dict]:
    out = []
    for entry in (document.get("result") or {}).get("devices") or []:
        hardware = entry.get("hardwareProperties") or {}
        if hardware.get("reality") == "simulated":
            continue
        connection = entry.get("connectionProperties") or {}
        pairing, tunnel = connection.get("pairingState"), connection.get("tunnelState")
        # "disconnected" is the idle state of an attached device (devicectl opens the tunnel on demand);
        # "unavailable" means it cannot be reached now
        if pairing and pairing != "paired":
            state = "unauthorized"
        elif tunnel == "unavailable":
            state = "offline"
        else:
            state = "ready"
        info = describe_details(entry)
        out.append({
            "id": f"ios:{hardware.get('udid') or entry.get('identifier')}",
            "kind": "ios",
            "state": state,
            "model": info["model"],
            "detail": " ".join(x for x in ((entry.get("deviceProperties") or {}).get("name"), info["os"],
                                           connection.get("transportType")) if x) or None,
        })
    return out
