"""Fixtures for hostile inputs: the CLI in a subprocess, tiny model files, small filesystems.

Every case checks what a user sees: the exit code, exactly one ``error:`` line, no traceback, and
(where it applies) that no code from a model file ran and nothing was left in the output folder.
"""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_MARKS = (".edgekit-stage-", ".edgekit-probe-", ".edgekit-old-")


def run_cli(*argv, cwd=None, timeout=300, preexec_fn=None, env=None):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=full_env, preexec_fn=preexec_fn)


def leftovers(folder: Path) -> list[str]:
    """edgekit's private files (staging folders, probes, backups) under ``folder``."""
    if not Path(folder).exists():
        return []
    return [str(p) for p in Path(folder).rglob("*") if any(m in p.name for m in PRIVATE_MARKS)]


def check_failure(proc, code: int, *, out: Path | None = None, marker: Path | None = None,
                  allowed: tuple[str, ...] = (), says: str | None = None) -> str:
    """The documented exit code, one error line, no traceback, no marker, nothing half-written."""
    err = proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{err[-3000:]}"
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith("error: "), errors
    assert "Traceback" not in err and "Traceback" not in proc.stdout, err[-3000:]
    if says is not None:
        assert says in errors[0], errors[0]
    if marker is not None:
        assert not Path(marker).exists(), "code from the model file ran"
    if out is not None:
        assert leftovers(out) == [], leftovers(out)
        present = sorted(p.name for p in Path(out).iterdir()) if Path(out).exists() else []
        assert present == sorted(allowed), present
    return errors[0]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """Real model files of every safe form, made once: tiny.pt2 (ExportedProgram), tiny.pt
    (state_dict), tiny_ts.pt (TorchScript), whole.pt (a full pickle), and mid.pt2."""
    import torch

    from tests.hostile import models

    folder = tmp_path_factory.mktemp("hostile-models")
    tiny = models.tiny().eval()
    x = torch.randn(1, 8)
    torch.export.save(torch.export.export(tiny, (x,)), folder / "tiny.pt2")
    torch.save(tiny.state_dict(), folder / "tiny.pt")
    torch.jit.save(torch.jit.trace(tiny, x), folder / "tiny_ts.pt")
    mid = models.mid().eval()
    torch.export.save(torch.export.export(mid, (torch.randn(1, 128),)), folder / "mid.pt2")
    return folder


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "CODE_RAN"


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class SmallDisk:
    """A filesystem of ``size`` bytes: a real tmpfs where mount is allowed (root), else the same
    limit simulated with RLIMIT_FSIZE in the child (writes past it fail with EFBIG)."""

    def __init__(self, path: Path, size_kib: int):
        self.path = path
        self.size = size_kib * 1024
        self.mounted = _mount_tmpfs(path, f"size={size_kib}k")

    def preexec(self):
        if self.mounted:
            return None

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.size))
        return limit

    def close(self):
        if self.mounted:
            _unmount(self.path)


@pytest.fixture
def small_disk(tmp_path):
    disks = []

    def make(size_kib: int) -> SmallDisk:
        disk = SmallDisk(tmp_path / f"disk{len(disks)}", size_kib)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.close()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written into, even by root: a read-only tmpfs (else chmod 500,
    which holds for a non-root user)."""
    path = tmp_path / "ro"
    if not _mount_tmpfs(path, "ro,size=64k"):
        path.mkdir(exist_ok=True)
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    yield path
    _unmount(path)


@contextlib.contextmanager
def mounted_over(path: Path):
    """A directory made a mount point: renaming it fails with EBUSY (a path 'blocked' by the system)."""
    ok = _mount_tmpfs(path, "size=16k")
    try:
        yield ok
    finally:
        if ok:
            _unmount(path)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory):
    """One real, verified ONNX artifact of the tiny model (through the Python API), made once."""
    import edgekit

    out = tmp_path_factory.mktemp("hostile-onnx")
    [art] = edgekit.convert(model_factory="tests.hostile.models:tiny", inputs=["x:1x8"], target="onnx",
                            output_dir=str(out), name="tiny", eval_samples=4)
    assert art.status == "passed", art.error
    return Path(art.path)


@pytest.fixture
def onnx_manifest(onnx_artifact):
    from edgekit import manifest as manifest_mod

    return manifest_mod.read(onnx_artifact)
