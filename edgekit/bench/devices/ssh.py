"""Linux boards over SSH (Raspberry Pi, Jetson, any Linux box): the system ssh and scp.

Using the system client means ~/.ssh/config (aliases, ProxyJump, IdentityFile) applies as it does
in a terminal. edgekit runs it with BatchMode=yes (no password prompt can hang a bench) and a
ConnectTimeout. On the board: edgekit's source is unpacked once per version under
~/.cache/edgekit/board/<hash>/ and the measuring module runs with the board's Python, which needs
numpy and the artifact's runtime (e.g. `pip install ai-edge-litert`).

Device string: ``ssh://[user@]host[:port]`` or ``ssh://alias`` (a Host from ~/.ssh/config);
``?python=/path/to/python`` picks the board's interpreter (default python3), ``?dir=/path`` the
board's edgekit folder (default ~/.cache/edgekit: the unpacked source, the GEMM-peak cache and each
run's scratch files live there).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from edgekit.bench.devices.base import PYTHON, RUN, STAGE, Device, DeviceFault, last_line, run_local
from edgekit.errors import UsageError

BOARD_CACHE = ".cache/edgekit"  # relative to the login's home folder, unless ?dir= says otherwise
MIN_PYTHON = (3, 10)

_UNAUTHORIZED = ("permission denied", "host key verification failed", "too many authentication failures")
_UNREACHABLE = (
    "connection refused", "could not resolve hostname", "timed out", "no route to host", "network is unreachable",
    "closed by remote host", "connection reset", "connection closed", "broken pipe", "lost connection",
    "name or service not known", "kex_exchange_identification",
)


def parse_spec(spec: str) -> tuple[str | None, str, int | None, dict[str, str]]:
    """ssh://user@host:port?python=... -> (user, host, port, options)."""
    parts = urlsplit(spec)
    if parts.scheme != "ssh" or not parts.hostname:
        raise UsageError(f"--device {spec!r}: expected ssh://[user@]host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--device {spec!r}: the port must be a number") from None
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"python", "dir"}
    if unknown:
        raise UsageError(f"--device {spec!r}: unknown option {sorted(unknown)[0]!r} (known: python, dir)")
    # urlsplit lower-cases the host; keep the user's spelling (ssh config Host names are case-sensitive)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host = netloc.rsplit(":", 1)[0] if parts.port is not None else netloc
    return parts.username, host, port, options


class SSHDevice(Device):
    kind = "ssh"
    prefixes = ("ssh://",)
    form = "ssh://[user@]host[:port]"
    capabilities = frozenset({STAGE, RUN, PYTHON})

    @classmethod
    def from_spec(cls, spec, *, ssh_config=None, app=None):
        return cls(spec, ssh_config=ssh_config)

    @classmethod
    def discover(cls, *, ssh_config=None, probe=False):
        """The Host entries of the ssh config; with probe, each is connected to for its state."""
        rows = []
        for entry in configured_hosts(ssh_config):
            spec = f"ssh://{entry['alias']}"
            target = (f"{entry['user']}@" if entry["user"] else "") + (entry["hostname"] or entry["alias"]) + (
                f":{entry['port']}" if entry["port"] else "")
            state = "configured"
            if probe:
                device = cls(spec, ssh_config=ssh_config, connect_timeout=5, multiplex=False)
                try:
                    device.check()
                    state = "ready"
                except DeviceFault as fault:
                    state = fault.status
            rows.append({"id": spec, "kind": "ssh", "state": state, "model": None, "detail": target})
        return rows, []

    def __init__(self, spec: str, *, ssh_config: str | None = None, connect_timeout: int = 10, multiplex: bool = True):
        self.user, self.host, self.port, options = parse_spec(spec)
        self.python_path = options.get("python", "python3")
        self.board_dir = options.get("dir")
        self.ssh_config = ssh_config or os.environ.get("EDGEKIT_SSH_CONFIG") or None
        self.connect_timeout = connect_timeout
        self.multiplex = multiplex
        self._control_dir = tempfile.mkdtemp(prefix="edgekit-ssh-") if multiplex else None
        target = f"{self.user}@{self.host}" if self.user else self.host
        self.id = f"ssh://{target}" + (f":{self.port}" if self.port else "")
        self.destination = target
        self.bundle_dir: str | None = None
        self._connected = False
        self.cache = self.board_dir or BOARD_CACHE  # made absolute by check(), once the board's home is known
        self.run_name = f"run-{uuid.uuid4().hex[:12]}"  # private to this bench run: runs may share a board
        self.workdir = f"{self.cache}/{self.run_name}"
        self._made_workdir = False

    # -- the ssh / scp command lines -------------------------------------------------------------
    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3"]
        if self.multiplex:
            # one connection for the dozen commands an artifact takes (a handshake costs ~0.5 s on a
            # board over Wi-Fi); the master ends with close(), or 60 s after the last use
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=60"]
        if self.ssh_config:
            opts[:0] = ["-F", self.ssh_config]
        return opts

    def ssh_argv(self, remote_command: str) -> list[str]:
        argv = ["ssh", *self._options()]
        if self.port:
            argv += ["-p", str(self.port)]
        return argv + [self.destination, remote_command]

    def scp_argv(self, sources: Sequence[str], target: str, recursive: bool = False) -> list[str]:
        argv = ["scp", "-q", *self._options()]
        if self.port:
            argv += ["-P", str(self.port)]
        if recursive:
            argv.append("-r")
        return argv + list(sources) + [target]

    def _fault(self, code: int, err: str, doing: str) -> DeviceFault:
        text = err.lower()
        line = last_line(err) or f"ssh exit status {code}"
        if any(s in text for s in _UNAUTHORIZED):
            hint = ("add your key with `ssh-copy-id` (edgekit runs ssh with BatchMode=yes: no password prompts)"
                    if "permission denied" in text else "connect once with `ssh` to check and accept the host key")
            return DeviceFault("unauthorized", f"{self.id}: {line} ({hint})")
        if self._connected or "closed by remote host" in text or "broken pipe" in text or "connection reset" in text:
            # it answered before: the board went away (power, network) while we were using it
            return DeviceFault("unreachable", f"{self.id}: the connection dropped while {doing} ({line})")
        return DeviceFault("unreachable", f"{self.id}: cannot reach the board while {doing} ({line})")

    def _ssh(self, remote_command: str, timeout: float, doing: str) -> tuple[int, str, str]:
        code, out, err = run_local(self.ssh_argv(remote_command), timeout, what=f"{self.id}: {doing}")
        if code == 255:  # ssh's own failure (the remote command's status is passed through otherwise)
            raise self._fault(code, err, doing)
        return code, out, err

    # -- Device ------------------------------------------------------------------------------------
    def check(self) -> None:
        code, out, err = self._ssh('echo edgekit-ok "$HOME"', self.connect_timeout + 20, "connecting")
        words = out.split()
        if len(words) < 2 or words[0] != "edgekit-ok":
            raise DeviceFault("unreachable", f"{self.id}: the board did not answer ({last_line(err) or code})")
        self._connected = True
        if not self.board_dir:
            self.cache = f"{words[1].rstrip('/')}/{BOARD_CACHE}"
        self.workdir = f"{self.cache}/{self.run_name}"

    def describe(self) -> dict:
        script = (
            "uname -srm; cat /proc/device-tree/model 2>/dev/null | tr -d '\\0'; echo; "
            "grep -m1 -E '^(model name|Hardware|Model)' /proc/cpuinfo; nproc"
        )
        try:
            code, out, _ = self._ssh(script, 30, "describing the board")
        except DeviceFault:
            return super().describe()
        lines = [line.strip() for line in out.splitlines()]
        info = {"model": None, "os": lines[0] if lines else None, "cpu": None, "cores": None}
        for line in lines[1:]:
            if line.isdigit():
                info["cores"] = int(line)
            elif ":" in line:
                info["cpu"] = line.split(":", 1)[1].strip()
            elif line and info["model"] is None:
                info["model"] = line
        return info

    def python(self) -> list[str]:
        return [self.python_path]

    def prepare_python(self) -> None:
        from edgekit.bench import bundle

        self.check_python()
        with tempfile.TemporaryDirectory(prefix="edgekit-bundle-") as folder:
            self.install_measuring_module(*bundle.build(folder))

    def shell(self, command: str, timeout: float, doing: str) -> tuple[int, str, str]:
        return self._ssh(command, timeout, doing)

    def check_python(self) -> None:
        """The board's Python exists and is new enough for edgekit's measuring module."""
        probe = f"{shlex.quote(self.python_path)} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
        code, out, err = self._ssh(probe, 60, "checking the board's Python")
        if code != 0:
            raise DeviceFault("missing-runner", f"{self.id}: no Python at {self.python_path!r} on the board "
                              f"({last_line(err) or code}); install python3 or pass ?python=/path in the device string")
        found = tuple(int(x) for x in re.findall(r"\d+", out.strip())[:2])
        if found < MIN_PYTHON:
            raise DeviceFault("missing-runner", f"{self.id}: the board's Python is {out.strip()}; edgekit's measuring "
                              f"module needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later (?python=/path picks another)")

    def install_measuring_module(self, local_bundle: Path, bundle_hash: str) -> None:
        """Unpack edgekit's source on the board once per version; the measuring module runs from there."""
        bundle_dir = f"{self.cache}/board/{bundle_hash}"
        marker = f"{bundle_dir}/edgekit/bench/measure.py"
        code, out, _ = self._ssh(f"test -f {shlex.quote(marker)} && echo present", 60, "looking for edgekit on the board")
        if "present" not in out:
            self._ssh(f"mkdir -p {shlex.quote(self.cache)}/board", 60, "preparing the board")
            remote_tar = f"{self.cache}/board/{local_bundle.name}"
            self._scp_to(str(local_bundle), remote_tar, False, "copying edgekit to the board")
            tmp_dir = f"{bundle_dir}.partial-{uuid.uuid4().hex[:6]}"
            code, _, err = self._ssh(
                f"mkdir -p {shlex.quote(tmp_dir)} && tar -xzf {shlex.quote(remote_tar)} -C {shlex.quote(tmp_dir)} && "
                f"rm -f {shlex.quote(remote_tar)} && (mv {shlex.quote(tmp_dir)} {shlex.quote(bundle_dir)} 2>/dev/null || rm -rf {shlex.quote(tmp_dir)})",
                120, "unpacking edgekit on the board",
            )
            if code != 0:
                raise DeviceFault("error", f"{self.id}: cannot unpack edgekit on the board ({last_line(err)})")
        self.bundle_dir = bundle_dir

    def stage(self, local: str) -> str:
        """Copy an artifact (and its manifest, if any) into this run's folder on the board."""
        from edgekit.manifest import manifest_path

        self._ensure_workdir()
        name = os.path.basename(local.rstrip("/"))
        remote = self.remote_path(name)
        sources = [local]
        manifest = manifest_path(local)
        if manifest.exists():
            sources.append(str(manifest))
        self._scp_to_many(sources, self.workdir + "/", os.path.isdir(local), f"copying {name} to the board")
        return remote

    def _ensure_workdir(self) -> None:
        if not self._made_workdir:
            self._ssh(f"mkdir -p {shlex.quote(self.workdir)}", 60, "preparing the board")
            self._made_workdir = True

    def _scp_to(self, local: str, remote: str, recursive: bool, doing: str) -> None:
        self._scp_to_many([local], remote, recursive, doing)

    def _scp_to_many(self, sources: list[str], remote: str, recursive: bool, doing: str) -> None:
        code, _, err = run_local(self.scp_argv(sources, f"{self.destination}:{remote}", recursive), 600, what=f"{self.id}: {doing}")
        if code != 0:
            raise self._fault(code, err, doing)

    def push(self, local: str, remote: str) -> None:
        self._ensure_workdir()
        self._scp_to(local, remote, os.path.isdir(local), f"copying {os.path.basename(local)} to the board")

    def pull(self, remote: str, local: str) -> None:
        code, _, err = run_local(self.scp_argv([f"{self.destination}:{remote}"], local), 600, what=f"{self.id}: fetching results")
        if code != 0:
            if "no such file" in err.lower():
                raise FileNotFoundError(remote)
            raise self._fault(code, err, "fetching results")

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """Run argv on the board from edgekit's unpacked source folder (so `-m edgekit...` resolves there)."""
        cwd = self.bundle_dir or "."
        # EDGEKIT_CACHE_DIR: the board's own caches (GEMM peak) stay in the board folder. The
        # trailing `exit $?` keeps the login shell from exec-ing the program: a process killed by a
        # signal (its own --timeout alarm) must come back as status 128+N, whereas sshd reports a
        # signal death as exit-signal, which the ssh client turns into 255 (its own failure code).
        command = f"cd {shlex.quote(cwd)} && EDGEKIT_CACHE_DIR={shlex.quote(self.cache)} {shlex.join(argv)}; exit $?"
        return self._ssh(command, timeout, "measuring")

    def close(self) -> None:
        if self._made_workdir:
            self.remove(self.workdir)
        if self.multiplex:
            try:  # stop the shared connection now rather than 60 s from now
                port = ["-p", str(self.port)] if self.port else []
                run_local(["ssh", *self._options(), *port, "-O", "exit", self.destination], 15, what=f"{self.id}: closing")
            except DeviceFault:
                pass
            shutil.rmtree(self._control_dir, ignore_errors=True)


def configured_hosts(config_path: str | None = None) -> list[dict]:
    """Host entries of an ssh config (wildcards left out): [{"alias", "hostname", "user", "port"}]."""
    path = Path(config_path or os.path.expanduser("~/.ssh/config"))
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    hosts: list[dict] = []
    current: list[dict] = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.replace("=", " ", 1).partition(" ")
        key, value = key.lower(), value.strip().strip('"')
        if key == "host":
            current = [{"alias": name, "hostname": None, "user": None, "port": None}
                       for name in value.split() if not any(c in name for c in "*?!")]
            hosts.extend(current)
        elif key == "match":
            current = []
        elif key in ("hostname", "user", "port"):
            for entry in current:
                if entry[key] is None:
                    entry[key] = int(value) if key == "port" and value.isdigit() else value
    return hosts
