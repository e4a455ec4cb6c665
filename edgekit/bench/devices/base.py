"""The Device interface: push, run with a timeout, pull, describe. The bench orchestration
(edgekit/bench/runner.py) is written once against it; host, SSH, adb and iOS implement it.

A device reports trouble by raising DeviceFault with the result status it maps to ("unreachable",
"unauthorized", "timeout", "missing-runner", "error") and one line a user can act on.
"""
from __future__ import annotations

import subprocess
from typing import Sequence


class DeviceFault(Exception):
    """A failure that becomes one result's status and error line; the run carries on."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Device:
    kind: str = ""
    id: str = ""
    #: folder on the device where artifacts, runners and results go
    workdir: str = ""

    def check(self) -> None:
        """Raise DeviceFault when the device cannot be used (unreachable, unauthorized)."""

    def describe(self) -> dict:
        """{"model", "os", "cpu", "cores"} as far as the device tells."""
        return {"model": None, "os": None, "cpu": None, "cores": None}

    def push(self, local: str, remote: str) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: str) -> None:
        raise NotImplementedError

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """Run argv on the device; (exit code, stdout, stderr). Raises DeviceFault("timeout") on a hang."""
        raise NotImplementedError

    def remove(self, remote: str) -> None:
        """Best-effort clean-up of a file or folder the bench pushed."""

    def remote_path(self, name: str) -> str:
        return f"{self.workdir.rstrip('/')}/{name}"

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{type(self).__name__} {self.id}>"


def run_local(argv: Sequence[str], timeout: float, *, what: str, input_text: str | None = None, cwd: str | None = None,
              env: dict | None = None) -> tuple[int, str, str]:
    """Run a host program (ssh, scp, adb, xcrun) with a hard timeout; its whole process group dies with it."""
    import os
    import signal

    try:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            text=True, cwd=cwd, env=env, start_new_session=True,
        )
    except FileNotFoundError:
        raise DeviceFault("missing-runner", f"{argv[0]} is not installed on this machine ({what})") from None
    try:
        out, err = proc.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.communicate()
        raise DeviceFault("timeout", f"{what} did not finish within {timeout:g} s (--timeout)") from None
    return proc.returncode, out, err


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually the one that says what went wrong."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
