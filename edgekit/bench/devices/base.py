"""The Device interface: push, run with a timeout, pull, describe. The bench orchestration
(edgekit/bench/runner.py) is written once against it; host, SSH, adb and iOS implement it.

A device declares what it can do (``capabilities``) and the strategies in edgekit/bench/strategies.py
pick by capability, never by ``kind``: STAGE (copy files onto it), RUN (run a command line there),
PYTHON (run edgekit's measuring module with its own Python), APP (launch an edgekit sample app,
``app`` names which). A new device kind is one module with a Device subclass and one line in
edgekit/bench/devices/__init__.py's DEVICE_KINDS (or an ``edgekit.devices`` entry point).

A device reports trouble by raising DeviceFault with the result status it maps to ("unreachable",
"unauthorized", "timeout", "missing-runner", "error") and one line a user can act on.
"""
from __future__ import annotations

import subprocess
from typing import ClassVar, Sequence


class DeviceFault(Exception):
    """A failure that becomes one result's status and error line; the run carries on."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


STAGE, RUN, PYTHON, APP = "stage", "run", "python", "app"
CAPABILITIES = (STAGE, RUN, PYTHON, APP)


class Device:
    kind: ClassVar[str] = ""
    #: device strings this kind answers to: a prefix such as "ssh://", or an exact word such as "host"
    prefixes: ClassVar[tuple[str, ...]] = ()
    #: the device string's form, for --help and errors ("ssh://[user@]host[:port]")
    form: ClassVar[str] = ""
    #: what the strategies may ask of it (STAGE, RUN, PYTHON, APP)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: with APP: which sample app runs there ("android", "ios"; edgekit.package.APPS)
    app: ClassVar[str | None] = None
    id: str = ""
    #: folder on the device where artifacts, runners and results go
    workdir: str = ""

    @classmethod
    def from_spec(cls, spec: str, *, ssh_config: str | None = None, app: str | None = None) -> "Device":
        """Build the device from its string; ``app`` is --app (a sample app id), ``ssh_config`` --ssh-config."""
        return cls(spec)  # type: ignore[call-arg]

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    @classmethod
    def discover(cls, *, ssh_config: str | None = None, probe: bool = False) -> tuple[list[dict], list[str]]:
        """Devices of this kind `edgekit devices` can see: rows of {"id", "kind", "state", "model",
        "detail"}, and notes (a missing tool is a note, not an error). Default: none."""
        return [], []

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
        """Best-effort clean-up of a file or folder the bench pushed (``rm -rf`` on RUN devices)."""
        if not self.can(RUN):
            return
        import shlex

        try:
            self.shell(f"rm -rf {shlex.quote(remote)}", 60, "cleaning up")
        except DeviceFault:
            pass

    # -- STAGE / RUN ---------------------------------------------------------------------------------
    def stage(self, local: str) -> str:
        """Copy an artifact (and its manifest) where RUN can read it; the path there."""
        raise NotImplementedError

    def abi(self) -> str | None:
        """The ABI native runner binaries must be built for (Android: arm64-v8a), where it matters."""
        return None

    def shell(self, command: str, timeout: float, doing: str) -> tuple[int, str, str]:
        """One shell command line on the device (RUN devices)."""
        raise NotImplementedError

    # -- PYTHON ------------------------------------------------------------------------------------
    def python(self) -> list[str]:
        """The argv prefix that starts the device's Python."""
        raise NotImplementedError

    def prepare_python(self) -> None:
        """Make edgekit's measuring module importable by python() (a board gets a copy once)."""

    # -- state ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Device state a number was taken under (governor, frequency, thermal, OS build), where the
        device tells; PYTHON devices report it from the measuring process itself."""
        return {}

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


def run_tool(argv: Sequence[str], timeout: float, *, what: str, missing: str) -> tuple[int, str, str]:
    """``run_local`` for the host tool that reaches a kind of device (adb, xcrun devicectl): without
    the tool, the device cannot be reached, and ``missing`` says how to get it."""
    try:
        return run_local(argv, timeout, what=what)
    except DeviceFault as exc:
        if exc.status == "missing-runner":
            raise DeviceFault("unreachable", missing) from None
        raise


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually the one that says what went wrong."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
