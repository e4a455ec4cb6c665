"""edgekit devices: what edgekit can measure on: this host, Android (adb), iOS, configured SSH hosts."""
from __future__ import annotations

import json

from edgekit.cli import add_common


def add_parser(sub) -> None:
    p = sub.add_parser("devices", help="list Android, iOS and SSH devices for edgekit bench, with their state")
    p.add_argument("--probe", action="store_true", help="connect to each configured SSH host to tell its state")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh config file (default ~/.ssh/config)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_common(p)


def run(args) -> int:
    from edgekit.bench.devices import list_devices
    from edgekit.ui import table

    rows, notes = list_devices(ssh_config=args.ssh_config, probe_ssh=args.probe)
    if args.json:
        print(json.dumps({"devices": rows, "notes": notes}, indent=2))
        return 0
    print(table(["device", "kind", "state", "model", "detail"],
                [[r["id"], r["kind"], r["state"], r["model"] or "-", r["detail"] or "-"] for r in rows]))
    for note in notes:
        print(f"note: {note}")
    return 0
