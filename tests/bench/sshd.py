"""A private OpenSSH server on 127.0.0.1 for the SSH device tests: the real sshd from Debian's
openssh-server, started as the current user with its own host key, authorized key, config and
pid file in a temporary folder. Nothing in /etc/ssh or ~/.ssh is read or changed; the client side
gets its own ssh config (passed with -F) and known_hosts.

Root only: sshd refuses to start without its privilege-separation folder /run/sshd (the empty
runtime folder the ssh service creates at boot); it is created when missing.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_sshd() -> str | None:
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _sftp_server() -> str:
    for candidate in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"):
        if os.path.exists(candidate):
            return candidate
    return "internal-sftp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHServer:
    folder: Path
    port: int
    user: str
    client_config: Path
    process: subprocess.Popen

    @property
    def alias_spec(self) -> str:
        return "ssh://board"

    @property
    def url_spec(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(folder: Path) -> SSHServer:
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError("sshd is not installed: apt-get install openssh-server")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    host_key, client_key = folder / "host_key", folder / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_key.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    user = getpass.getuser()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {user}\nSubsystem sftp {_sftp_server()}\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n"
    )
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text().split(' ')[0]} "
                     f"{(folder / 'host_key.pub').read_text().split(' ')[1]}\n")
    client_config = folder / "ssh_config"
    client_config.write_text(
        f"Host board\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n\n"
        f"Host *\n  IdentityFile {client_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(folder / "sshd.log", "wb"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return SSHServer(folder, port, user, client_config, process)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("sshd did not start listening within 15 s")
