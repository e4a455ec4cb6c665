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

SCHEMA_VERSION = "1.1"  # 1.1: optional extra_files (files shipped beside the artifact)
MANIFEST_SUFFIX = ".edgekit.json"
STATUSES = ("passed", "failed", "unverified", "skipped")

# Top-level keys every manifest carries (README.md "Manifest schema" documents each).
REQUIRED_KEYS = (
    "schema_version",
    "name",
    "target",
    "precision",
    "io",
    "inputs",
    "outputs",
    "size_bytes",
    "sha256",
    "versions",
    "calibration",
    "parity",
    "status",
)


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


def validate(manifest: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {', '.join(missing)}")
    if manifest["status"] not in STATUSES:
        raise ValueError(f"manifest status {manifest['status']!r} is not one of {STATUSES}")


def read(path: str | os.PathLike) -> dict[str, Any]:
    """Read the manifest of an artifact (pass the artifact or the manifest path)."""
    path = Path(path)
    if not str(path).endswith(MANIFEST_SUFFIX):
        path = manifest_path(path)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


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


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create the output folder if needed and prove it is writable, before any long work starts."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".edgekit-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {str(out)!r}: {exc.strerror or exc}") from None
    return out


@contextlib.contextmanager
def staging_dir(output_dir: str | os.PathLike) -> Iterator[Path]:
    """A private folder beside the destination; removed on exit whatever happens."""
    out = check_output_dir(output_dir)
    stage = Path(tempfile.mkdtemp(prefix=".edgekit-stage-", dir=out))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
    destination) and its manifest into place.

    The manifest is written into the staging folder first, then artifact, extras and manifest are
    renamed (each atomic on one filesystem), the manifest last: an artifact is complete once its
    manifest is there. An existing file is replaced only with ``overwrite``.
    """
    validate(manifest)
    dest_manifest = manifest_path(destination)
    if not overwrite:
        for existing in (destination, dest_manifest, *(dest for _, dest in extras)):
            if existing.exists():
                raise OutputError(f"{existing} exists; pass --overwrite to replace it")
    staged_manifest = manifest_path(staged_artifact)
    staged_manifest.write_text(dumps(manifest), encoding="utf-8")
    backup = None
    try:
        if destination.exists():
            backup = destination.with_name(f".{destination.name}.edgekit-old")
            os.replace(destination, backup) if destination.is_file() else destination.rename(backup)
        os.replace(staged_artifact, destination) if staged_artifact.is_file() else staged_artifact.rename(destination)
        for staged_extra, extra_destination in extras:
            os.replace(staged_extra, extra_destination)
        os.replace(staged_manifest, dest_manifest)
    except OSError as exc:
        if backup is not None and backup.exists() and not destination.exists():
            backup.rename(destination)
        raise OutputError(f"cannot write {destination}: {exc.strerror or exc}") from None
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True) if backup.is_dir() else backup.unlink(missing_ok=True)
    return destination
