"""edgekit's own source, packed for a board: what `ssh://` devices run the measuring module from.

Why the source tree and not a wheel: a board needs only the pure-Python files (the measuring module
imports numpy and the artifact's runtime, nothing else from edgekit's dependencies), while
`pip install edgekit` there would pull torch. The tarball holds every .py file of the installed
edgekit package plus edgekit.targets (placed at edgekit/targets/ as in an installed wheel), so any
target's Runtime works on the board without a list of files to keep in step. It is unpacked once
per content hash under ~/.cache/edgekit/board/<hash>/ on the board and reused.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

_DATA_SUFFIXES = (".py", ".json", ".txt", ".md")


def _package_files() -> list[tuple[str, Path]]:
    """(name inside the tarball, file on disk) for edgekit and edgekit.targets."""
    import edgekit
    import edgekit.targets

    roots = [("edgekit", Path(edgekit.__path__[0]))]
    targets_dir = Path(edgekit.targets.__path__[0])
    if targets_dir.parent.resolve() != roots[0][1].resolve():  # editable install: targets/ lives beside
        roots.append(("edgekit/targets", targets_dir))
    files = []
    for prefix, root in roots:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file() or path.suffix not in _DATA_SUFFIXES:
                continue
            rel = path.relative_to(root)
            if prefix == "edgekit" and rel.parts[0] == "targets" and len(roots) > 1:
                continue
            files.append((f"{prefix}/{rel.as_posix()}", path))
    return files


def build(dest_dir: str | os.PathLike) -> tuple[Path, str]:
    """Write edgekit-<hash>.tar.gz into dest_dir (reproducible: fixed mtimes); return (path, hash)."""
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for name, path in _package_files():
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    short = digest.hexdigest()[:16]
    path = Path(dest_dir) / f"edgekit-{short}.tar.gz"
    path.write_bytes(buffer.getvalue())
    return path, short
