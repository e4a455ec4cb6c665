"""The manifest (``<artifact>.edgekit.json``): its schema, and atomic output of artifact + manifest.

Apps and the bench runner read manifests; change the schema compatibly and bump SCHEMA_VERSION
(minor: added fields; major: changed meaning).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgekit.errors import OutputError
from edgekit.manifest_schema import SCHEMA_VERSION, STATUSES, Manifest, ManifestError  # noqa: F401  (re-exported)

MANIFEST_SUFFIX = ".edgekit.json"


def manifest_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact).rstrip("/") + MANIFEST_SUFFIX)


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, sha256) of a file, or of a directory artifact (e.g. .mlpackage) file by file."""
    path = Path(path)
    digest = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    return size, digest.hexdigest()


def validate(manifest: dict[str, Any]) -> Manifest:
    """The typed manifest, or ValueError (ManifestError) naming what is wrong."""
    return Manifest.from_dict(manifest)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """Read the manifest of an artifact (pass the artifact or the manifest path)."""
    path = Path(path)
    if not str(path).endswith(MANIFEST_SUFFIX):
        path = manifest_path(path)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load(path: str | os.PathLike) -> Manifest:
    """Read and type-check the manifest of an artifact; ManifestError when it is not one edgekit reads."""
    path = Path(path) if str(path).endswith(MANIFEST_SUFFIX) else manifest_path(path)
    try:
        return Manifest.from_dict(read(path))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a manifest (not UTF-8 text)") from None
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def beside(artifact: str | os.PathLike) -> Manifest | None:
    """The typed manifest written beside ``artifact``; None when there is none. ManifestError when
    there is one this edgekit cannot read (damaged, or an unknown major schema version): a reader
    never falls back to guessing from a manifest it does not understand."""
    path = manifest_path(artifact)
    if not path.exists():
        return None
    try:
        return load(path)
    except OSError as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc.strerror or exc})") from None


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False, default=_json_default) + "\n"


def _json_default(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# Private names edgekit writes beside outputs; each carries the pid of the run that made it, so a
# later run can tell a folder of a killed run (pid gone) from one of a run still going.
STAGE_PREFIX = ".edgekit-stage-"
PROBE_PREFIX = ".edgekit-probe-"
BACKUP_TAG = ".edgekit-old-"
# errno values that mean "the disk (or quota, or file-size limit) is full", not "edgekit broke"
_FULL_ERRNOS = {28, 27, 122}  # ENOSPC, EFBIG, EDQUOT


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or anything it was raised from is a full-disk / quota / size-limit error,
    also when a native library only kept the message ("No space left on device")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in ("No space left on device", "Disk quota exceeded", "File too large")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(where: str | os.PathLike) -> OutputError:
    return OutputError(f"no space left on the device holding {str(where)!r}; nothing was written",
                       hint="free some space or choose another -o")


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create the output folder if needed and prove it is writable, before any long work starts.

    Also removes what killed runs left behind here (see :func:`remove_stale`)."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        _probe(out)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(out) from None
        raise OutputError(f"cannot write to output folder {str(out)!r}: {exc.strerror or exc}") from None
    remove_stale(out)
    return out


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Prove that a report file (bench --json/--html, ...) can be written, before any measuring:
    its folder (or the nearest existing one above it) takes a file, and the path is not a folder.
    Nothing is created."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{flag} {str(target)!r} is a folder; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:  # probe where the folders would be made
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        _probe(folder)
        if target.exists() and not os.access(target, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(folder) from None
        raise OutputError(f"{flag} {str(target)!r}: cannot write there ({exc.strerror or exc})") from None
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a whole file or nothing: a temporary file beside it, renamed into place."""
    target = Path(path)
    with _signals_deferred():
        fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f"{PROBE_PREFIX}{_owner_tag()}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this is a plain file for the user
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(target.parent) from None
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM/SIGHUP while a private file or folder is created and not yet owned by a
    ``finally`` that removes it; a signal that came meanwhile is delivered right after."""
    import signal

    wanted = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: OSError when it cannot take one."""
    with _signals_deferred():
        fd, name = tempfile.mkstemp(dir=folder, prefix=f"{PROBE_PREFIX}{_owner_tag()}-")
        os.close(fd)
        os.unlink(name)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _owner_tag() -> str:
    """``<pid>.<host>``: which run on which machine owns a private name (an output folder on a
    shared filesystem may hold a live run of another machine, whose pid means nothing here)."""
    return f"{os.getpid()}.{_host_tag()}"


def _owner_pid(name: str) -> int | None:
    """The pid in a name this machine's edgekit made (``.edgekit-stage-<pid>.<host>-...``,
    ``.x.edgekit-old-<pid>.<host>``); None for anything else."""
    tag = None
    for prefix in (STAGE_PREFIX, PROBE_PREFIX):
        if name.startswith(prefix):
            tag = name[len(prefix):].split("-", 1)[0]
    if tag is None and name.startswith(".") and BACKUP_TAG in name:
        tag = name.rsplit(BACKUP_TAG, 1)[1]
    pid, _, host = (tag or "").partition(".")
    return int(pid) if pid.isdigit() and host == _host_tag() else None


def remove_stale(folder: Path) -> list[str]:
    """Remove staging folders and probes of runs that are no longer alive (killed with SIGKILL, or a
    native abort); a backup of a killed publish goes back into place when its original is missing.
    Returns what was cleaned, for the log."""
    import logging

    cleaned = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return cleaned
    for entry in entries:
        pid = _owner_pid(entry.name)
        if pid is None or _pid_alive(pid):
            continue
        try:
            if BACKUP_TAG in entry.name and not entry.name.startswith((STAGE_PREFIX, PROBE_PREFIX)):
                original = entry.with_name(entry.name[1:].rsplit(BACKUP_TAG, 1)[0])
                if not original.exists() and not manifest_path(original).exists():
                    os.replace(entry, original)
                    cleaned.append(f"restored {original.name}")
                    continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            cleaned.append(entry.name)
        except OSError:
            continue
    if cleaned:
        logging.getLogger(__name__).info("removed what killed runs left in %s: %s", folder, ", ".join(cleaned))
    return cleaned


# Staging folders of this process that are still open: a signal that cannot be raised as an
# exception (see ``ui.in_native_section``) removes them before the process leaves.
_live_stages: set[Path] = set()


def remove_live_stages() -> None:
    for stage in list(_live_stages):
        shutil.rmtree(stage, ignore_errors=True)
        _live_stages.discard(stage)


@contextlib.contextmanager
def staging_dir(output_dir: str | os.PathLike) -> Iterator[Path]:
    """A private folder beside the destination; removed on exit whatever happens (errors, Ctrl-C,
    SIGTERM/SIGHUP, which the CLI turns into exceptions). A run killed outright leaves it behind
    with its pid in the name, and the next run removes it."""
    out = check_output_dir(output_dir)
    stage = None
    try:
        with _signals_deferred():  # made and owned by this ``finally`` with no signal in between
            try:
                stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{_owner_tag()}-", dir=out))
            except OSError as exc:
                raise (disk_full_error(out) if is_disk_full(exc) else OutputError(f"cannot write to {str(out)!r}: {exc.strerror or exc}")) from None
            _live_stages.add(stage)
        yield stage
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            _live_stages.discard(stage)


def extra_destinations(staged_files, destination: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(staged path, destination) for files that ship beside an artifact: ``<artifact stem><suffix
    of the staged file>``, e.g. model_int8.pte -> model_int8.bpte."""
    stem = destination.name[: -len(suffix)] if suffix and destination.name.endswith(suffix) else destination.stem
    return [(Path(p), destination.with_name(stem + Path(p).suffix)) for p in staged_files]


def extra_file_entry(staged: Path, destination: Path) -> dict[str, Any]:
    size, sha = file_digest(staged)
    return {"path": destination.name, "size_bytes": size, "sha256": sha}


def publish(
    staged_artifact: Path,
    manifest: dict[str, Any],
    destination: Path,
    overwrite: bool,
    extras: "list[tuple[Path, Path]] | tuple" = (),
) -> Path:
    """Move a staged artifact, the files that ship beside it (``extras``: staged path,
    destination) and its manifest into place, all or nothing.

    The manifest is written into the staging folder first; then each destination that exists is
    moved aside (a backup named with this run's pid) and the staged file renamed in (atomic on one
    filesystem), the manifest last: an artifact is complete once its manifest is there. If any step
    fails, every step already done is undone (new files back to staging, backups back into place),
    so the old artifact, its manifest and its extra files stay exactly as they were. An existing
    file is replaced only with ``overwrite``.
    """
    manifest = validate(manifest).to_dict()  # written as the schema types it
    dest_manifest = manifest_path(destination)
    if not overwrite:
        for existing in (destination, dest_manifest, *(dest for _, dest in extras)):
            if existing.exists() or existing.is_symlink():
                raise OutputError(f"{existing} exists; pass --overwrite to replace it")
    staged_manifest = manifest_path(staged_artifact)
    try:
        staged_manifest.write_text(dumps(manifest), encoding="utf-8")
    except OSError as exc:
        raise (disk_full_error(destination.parent) if is_disk_full(exc) else OutputError(f"cannot write {staged_manifest}: {exc.strerror or exc}")) from None
    moves = [(Path(staged_artifact), destination), *((Path(a), Path(b)) for a, b in extras), (staged_manifest, dest_manifest)]
    done: list[tuple[Path, Path, Path | None]] = []  # (staged, destination, backup)
    try:
        for staged, dest in moves:
            backup = None
            if dest.exists() or dest.is_symlink():
                backup = dest.with_name(f".{dest.name}{BACKUP_TAG}{_owner_tag()}")
                os.replace(dest, backup)
            done.append((staged, dest, backup))
            os.replace(staged, dest)
    except OSError as exc:
        _roll_back(done)
        if is_disk_full(exc):
            raise disk_full_error(destination.parent) from None
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}; nothing was changed") from None
    except BaseException:  # Ctrl-C / SIGTERM between two renames: leave the old files, not a mix
        _roll_back(done)
        raise
    for _, _, backup in done:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True) if backup.is_dir() and not backup.is_symlink() else backup.unlink(missing_ok=True)
    return destination


def _roll_back(done: list[tuple[Path, Path, Path | None]]) -> None:
    for staged, dest, backup in reversed(done):
        try:
            if (dest.exists() or dest.is_symlink()) and not staged.exists():
                os.replace(dest, staged)
            if backup is not None and (backup.exists() or backup.is_symlink()):
                os.replace(backup, dest)
        except OSError:  # keep going: restore as much as can be restored
            continue


def digest_mismatch(artifact: str | os.PathLike) -> str | None:
    """A warning when an artifact no longer matches the sha256 its manifest records (edited,
    re-converted without the manifest, truncated by a copy), else None (also when it has no manifest)."""
    mpath = manifest_path(artifact)
    if not mpath.exists():
        return None
    try:
        recorded = load(mpath).sha256
    except OSError as exc:
        return f"{mpath}: unreadable manifest ({exc.strerror or exc}); its facts are not used"
    except ManifestError:  # its reader refuses it in its own words (bench: before measuring)
        return None
    if not recorded:
        return None
    _, actual = file_digest(artifact)
    if actual != recorded:
        return (f"{artifact} does not match its manifest (sha256 {actual[:12]}... vs {str(recorded)[:12]}... recorded): "
                "it changed after edgekit wrote it; the manifest's facts may not describe it")
    return None
