"""This machine: artifacts are measured where they lie, each in a fresh Python subprocess."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Sequence

from edgekit.bench.devices.base import PYTHON, RUN, STAGE, Device, run_local
from edgekit.bench.machine import describe_machine


class HostDevice(Device):
    kind = "host"
    id = "host"
    prefixes = ("host", "local", "localhost")
    form = "host"
    capabilities = frozenset({STAGE, RUN, PYTHON})

    def __init__(self):
        # A private working folder: the measuring child runs there so that nothing in the user's
        # current folder (a stray edgekit/ checkout) shadows the installed package.
        self.workdir = tempfile.mkdtemp(prefix="edgekit-bench-")

    @classmethod
    def from_spec(cls, spec, *, ssh_config=None, app=None):
        return cls()

    @classmethod
    def discover(cls, *, ssh_config=None, probe=False):
        host = describe_machine()
        return [{"id": "host", "kind": "host", "state": "ready", "model": host["cpu"],
                 "detail": f"{host['cores']} cores, {host['os']}"}], []

    def describe(self) -> dict:
        return describe_machine()

    def python(self) -> list[str]:
        return [sys.executable]

    def stage(self, local: str) -> str:
        """Artifacts are used in place (no copy); the manifest beside them is found as is."""
        return os.path.abspath(local)

    def push(self, local: str, remote: str) -> None:
        if os.path.abspath(local) == os.path.abspath(remote):
            return
        if os.path.isdir(local):
            shutil.copytree(local, remote, dirs_exist_ok=True)
        else:
            shutil.copy2(local, remote)

    def pull(self, remote: str, local: str) -> None:
        self.push(remote, local)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return run_local(argv, timeout, what="the measuring process on the host", cwd=self.workdir, env=env)

    def remove(self, remote: str) -> None:
        """Only what the bench wrote into its own folder: artifacts measured in place are never touched."""
        if os.path.commonpath([os.path.abspath(remote), self.workdir]) != self.workdir:
            return
        if os.path.isdir(remote):
            shutil.rmtree(remote, ignore_errors=True)
        elif os.path.exists(remote):
            os.unlink(remote)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
