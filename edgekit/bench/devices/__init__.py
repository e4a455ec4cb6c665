"""Device strings -> Device objects, and the list `edgekit devices` prints."""
from __future__ import annotations

from edgekit.bench.devices.base import Device, DeviceFault
from edgekit.errors import UsageError
from edgekit.plugins import Registry

__all__ = ["Device", "DeviceFault", "parse_device", "list_devices", "device_kinds", "device_forms", "DEVICE_KINDS"]

# kind -> "module:Class". A new device kind is one module with a Device subclass (its prefixes, form
# and capabilities declared) and one line here, or an entry point in the "edgekit.devices" group.
DEVICE_KINDS: dict[str, str] = {
    "host": "edgekit.bench.devices.host:HostDevice",
    "ssh": "edgekit.bench.devices.ssh:SSHDevice",
    "adb": "edgekit.bench.devices.adb:AdbDevice",
    "ios": "edgekit.bench.devices.ios:IOSDevice",
}
REGISTRY = Registry(DEVICE_KINDS, "edgekit.devices", "device kind")


def device_kinds() -> dict[str, type]:
    """kind -> Device class, built-in first (imports each device module: they import no ML library)."""
    return {kind: REGISTRY.load(kind) for kind in REGISTRY.refs()}


def device_forms() -> str:
    return ", ".join(cls.form for cls in device_kinds().values())


def parse_device(spec: str, *, ssh_config: str | None = None, app: str | None = None) -> Device:
    text = spec.strip()
    for cls in device_kinds().values():
        if any(text == p or (p.endswith((":", "/")) and text.startswith(p)) for p in cls.prefixes):
            return cls.from_spec(text, ssh_config=ssh_config, app=app)
    raise UsageError(f"--device {spec!r}: unknown device; use one of {device_forms()}")


def list_devices(*, ssh_config: str | None = None, probe_ssh: bool = False) -> tuple[list[dict], list[str]]:
    """Every device edgekit can see, kind by kind (each kind's Device.discover): (rows of {"id",
    "kind", "state", "model", "detail"}, notes)."""
    rows: list[dict] = []
    notes: list[str] = []
    for cls in device_kinds().values():
        found, said = cls.discover(ssh_config=ssh_config, probe=probe_ssh)
        rows += found
        notes += said
    return rows, notes
