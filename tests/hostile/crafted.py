"""Hostile files built from real ones: archives whose pickles would run code (a marker file shows
whether they did), truncated and corrupt artifacts. Everything is made programmatically, per test."""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path


class _MarkerPayload:
    """Unpickling this runs ``open(marker, "w")``: proof that code from a model file ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker: str | os.PathLike) -> bytes:
    return pickle.dumps(_MarkerPayload(str(marker)), protocol=2)


def rewrite_zip(source: Path, dest: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> Path:
    """Copy a zip entry by entry, replacing entries whose name ends with a key of ``replace``,
    and adding ``add`` entries under the archive's root folder. Stored (uncompressed), as torch writes."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = zin.read(info.filename)
            for tail, new in replace.items():
                if info.filename.endswith("/" + tail):
                    data = new
            zout.writestr(info.filename, data)
        for tail, new in add.items():
            zout.writestr(f"{root}/{tail}", new)
    return dest


def _config(source: Path, tail: str) -> dict:
    with zipfile.ZipFile(source) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/" + tail))
        return json.loads(zf.read(name))


def pt2_pickled_weight(source: Path, dest: Path, marker) -> Path:
    """A weight flagged use_pickle: torch.export.load would torch.load(weights_only=False) it."""
    cfg = _config(source, "data/weights/model_weights_config.json")
    first = next(iter(cfg["config"].values()))
    first["use_pickle"] = True
    return rewrite_zip(source, dest, {
        "data/weights/model_weights_config.json": json.dumps(cfg).encode(),
        "data/weights/" + first["path_name"]: evil_pickle(marker),
    })


def pt2_pickled_constant(source: Path, dest: Path, marker, prefix: str = "tensor_") -> Path:
    """A constant entry: a use_pickle tensor (torch.load) or an opaque object (pickle.loads)."""
    cfg = _config(source, "data/constants/model_constants_config.json")
    cfg["config"]["evil"] = {"path_name": f"{prefix}0", "is_param": False, "use_pickle": True, "tensor_meta": None}
    return rewrite_zip(
        source, dest, {"data/constants/model_constants_config.json": json.dumps(cfg).encode()},
        add={f"data/constants/{prefix}0": evil_pickle(marker)},
    )


def pt2_evil_sample_inputs(source: Path, dest: Path, marker) -> Path:
    """Example inputs that fail weights_only: torch retries them with weights_only=False."""
    return rewrite_zip(source, dest, {"data/sample_inputs/model.pt": evil_pickle(marker)})


def pt2_legacy(source: Path, dest: Path, marker) -> Path:
    """The pre-2.7 layout torch.export.load still falls back to, with a pickled state_dict."""
    with zipfile.ZipFile(source) as zin:
        program = zin.read(next(n for n in zin.namelist() if n.endswith("/models/model.json")))
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        from torch._export.serde.schema import SCHEMA_VERSION

        zout.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
        zout.writestr("serialized_exported_program.json", program)
        zout.writestr("serialized_state_dict.pt", evil_pickle(marker))
        zout.writestr("serialized_constants.pt", evil_pickle(marker))
        zout.writestr("serialized_example_inputs.pt", evil_pickle(marker))
    return dest


def torchscript_evil(source: Path, dest: Path, marker, entry: str = "constants.pkl") -> Path:
    """A TorchScript archive whose data.pkl / constants.pkl holds a GLOBAL + REDUCE."""
    return rewrite_zip(source, dest, {entry: evil_pickle(marker)})


def truncated(source: Path, dest: Path, keep: float = 0.5) -> Path:
    data = Path(source).read_bytes()
    dest.write_bytes(data[: max(1, int(len(data) * keep))])
    return dest


_CONSTRUCTOR_C = """
#include <stdio.h>
__attribute__((constructor)) static void ran(void) { FILE *f = fopen("%s", "w"); if (f) fclose(f); }
"""


def native_library(marker, workdir: Path) -> bytes:
    """A shared library whose constructor creates ``marker`` when it is loaded (dlopen). Built with
    the system C compiler; without one, bytes that are no library (the refusal does not need one)."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return b"\x7fELF not really"
    source = workdir / "payload.c"
    source.write_text(_CONSTRUCTOR_C % str(marker))
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(workdir / "payload.so"), str(source)], check=True)
    return (workdir / "payload.so").read_bytes()


def pt2_aoti_library(source: Path, dest: Path, marker) -> Path:
    """An AOTInductor package entry: torch.export.load dlopens its wrapper library."""
    library = native_library(marker, dest.parent)
    meta = json.dumps({"AOTI_DEVICE_KEY": "cpu"}).encode()
    return rewrite_zip(source, dest, add={
        "data/aotinductor/model/model.wrapper.so": library,
        "data/aotinductor/model/model.wrapper_metadata.json": meta,
    })
