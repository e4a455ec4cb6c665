"""Device strings -> Device objects, and the list `edgekit devices` prints."""
from __future__ import annotations

from edgekit.bench.devices.base import Device, DeviceFault
from edgekit.errors import UsageError

__all__ = ["Device", "DeviceFault", "parse_device", "list_devices", "DEVICE_FORMS"]

DEVICE_FORMS = "host, ssh://[user@]host[:port], adb:SERIAL, ios:UDID"


def parse_device(spec: str, *, ssh_config: str | None = None, app: str | None = None) -> Device:
    text = spec.strip()
    if text in ("host", "local", "localhost"):
        from edgekit.bench.devices.host import HostDevice

        return HostDevice()
    if text.startswith("ssh://"):
        from edgekit.bench.devices.ssh import SSHDevice

        return SSHDevice(text, ssh_config=ssh_config)
    if text.startswith("adb:"):
        from edgekit.bench.devices.adb import AdbDevice

        return AdbDevice(text)
    if text.startswith("ios:"):
        from edgekit.bench.devices.ios import IOSDevice

        return IOSDevice(text, bundle_id=app)
    raise UsageError(f"--device {spec!r}: unknown device; use one of {DEVICE_FORMS}")


def list_devices(*, ssh_config: str | None = None, probe_ssh: bool = False) -> tuple[list[dict], list[str]]:
    """Every device edgekit can see: (rows of {"id", "kind", "state", "model", "detail"}, notes)."""
    from edgekit.bench.devices.adb import list_adb_devices
    from edgekit.bench.devices.ios import list_ios_devices
    from edgekit.bench.devices.ssh import SSHDevice, configured_hosts
    from edgekit.bench.machine import describe_machine

    host = describe_machine()
    rows = [{"id": "host", "kind": "host", "state": "ready", "model": host["cpu"], "detail": f"{host['cores']} cores, {host['os']}"}]
    notes: list[str] = []
    adb_rows, note = list_adb_devices()
    rows += adb_rows
    if note:
        notes.append(note)
    ios_rows, note = list_ios_devices()
    rows += ios_rows
    if note:
        notes.append(note)
    for entry in configured_hosts(ssh_config):
        spec = f"ssh://{entry['alias']}"
        target = (f"{entry['user']}@" if entry["user"] else "") + (entry["hostname"] or entry["alias"]) + (f":{entry['port']}" if entry["port"] else "")
        state = "configured"
        if probe_ssh:
            device = SSHDevice(spec, ssh_config=ssh_config, connect_timeout=5, multiplex=False)
            try:
                device.check()
                state = "ready"
            except DeviceFault as fault:
                state = fault.status
        rows.append({"id": spec, "kind": "ssh", "state": state, "model": None, "detail": target})
    return rows, notes
