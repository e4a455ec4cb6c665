"""pipeline.toml: the validated description of ``edgekit run`` (distill -> convert -> verify -> bench).

Every section and key is known here; an unknown key or a wrong value is a UsageError naming the file,
the section and the key (with the closest known key for a typo). Relative paths are taken relative
to the pipeline file's folder. Parsing uses tomllib (Python 3.11+) or tomli; nothing else is imported.

    [distill]                      # optional: without it, [convert] names the model
    teacher = "teacher.pt"
    arch = "mypkg.models:cnn"
    data = "train/"
    epochs = 5
    output = "out/student.pt2"

    [convert]
    targets = ["tflite", "onnx"]
    precisions = ["none", "int8"]
    calibration = "calib.npz"
    output_dir = "out"

    [verify]
    eval_data = "val.npz"
    tolerance = "cosine=0.99"

    [bench]
    devices = ["host"]
    runs = 50
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgekit.constants import DEFAULT_TARGET
from edgekit.errors import UsageError

# ---- value checkers: each returns the (normalised) value or raises ValueError with what was expected


def _str(v):
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a non-empty string")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _int(minimum: int | None = None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
            raise ValueError("an integer" + (f" >= {minimum}" if minimum is not None else ""))
        return v
    return check


def _float(low: float | None = None, high: float | None = None, open_low: bool = False, open_high: bool = False):
    def check(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # TOML has nan and inf
        if ok and low is not None:
            ok = v > low if open_low else v >= low
        if ok and high is not None:
            ok = v < high if open_high else v <= high
        if not ok:
            lo = "" if low is None else f"{'>' if open_low else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if open_high else '<='} {high:g}"
            raise ValueError("a number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else ""))
        return float(v)
    return check


def _choice(*options: str):
    def check(v):
        if v not in options:
            raise ValueError(f"one of {', '.join(repr(o) for o in options)}")
        return v
    return check


def _list(item: Callable, length: int | None = None, nonempty: bool = True):
    def check(v):
        if not isinstance(v, list) or (nonempty and not v) or (length is not None and len(v) != length):
            raise ValueError(f"a list of {length or ('one or more' if nonempty else 'zero or more')} values")
        return [item(x) for x in v]
    return check


def _str_or_int(v):
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError("an integer or a string like \"0,2,5\"")
    return str(v)


def _precision(v):
    from edgekit.options import PRECISIONS, get_precision

    try:
        return get_precision(_str(v)).name
    except UsageError:
        raise ValueError(f"a precision ({', '.join(PRECISIONS)})") from None


def _tolerance(v):
    from edgekit.options import Tolerance, get_precision

    try:
        Tolerance.parse(_str(v), get_precision("none").tolerance)
    except UsageError as exc:
        raise ValueError(f"a tolerance like \"cosine=0.99,top1=0.95\" ({exc})") from None
    return v


_PATH = "path"  # marker: a string resolved against the pipeline file's folder
_PATH_OR_SPEC = "path_or_spec"  # a path, or package.module:function left as is

_POS_INT, _NONNEG_INT, _ANY_INT = _int(1), _int(0), _int()
_POS_FLOAT, _NONNEG_FLOAT = _float(0, open_low=True), _float(0)
_FRACTION_OPEN = _float(0, 1, open_low=True, open_high=True)

def _names_table(value):
    """[verify.output_roles] / [verify.state]: NAME = "VALUE" pairs (edgekit/verify_roles.py)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError('a table of NAME = "VALUE" strings, e.g. [verify.output_roles] boxes = "regression"')
    return dict(value)


SCHEMA: dict[str, dict[str, Any]] = {
    "distill": {
        "teacher": _PATH_OR_SPEC, "arch": _str, "student": _PATH_OR_SPEC, "student_arch": _str,
        "keep_layers": _str_or_int, "width": _FRACTION_OPEN, "trust_pickle": _bool, "inputs": _list(_str),
        "data": _PATH_OR_SPEC, "val": _PATH_OR_SPEC, "val_split": _FRACTION_OPEN, "limit": _POS_INT,
        "tokenizer": _PATH, "max_length": _POS_INT, "image_size": _list(_POS_INT, 2),
        "mean": _list(_float()), "std": _list(_POS_FLOAT),
        "loss": _choice("auto", "kl", "mse", "cosine"), "temperature": _POS_FLOAT, "alpha": _float(0, 1),
        "hidden_loss": _choice("mse", "cosine"), "hidden_weight": _NONNEG_FLOAT, "hidden_pairs": _list(_str),
        "epochs": _POS_INT, "batch_size": _POS_INT, "lr": _POS_FLOAT, "weight_decay": _NONNEG_FLOAT,
        "warmup": _NONNEG_FLOAT, "clip_grad": _NONNEG_FLOAT, "patience": _POS_INT, "max_steps": _POS_INT,
        "seed": _ANY_INT, "amp": _choice("auto", "off", "bf16", "fp16"), "device": _str, "threads": _POS_INT,
        "checkpoint_dir": _PATH, "resume": _bool, "qat": _choice("int8"), "control": _bool, "output": _PATH, "overwrite": _bool,
    },
    "convert": {
        "model": _PATH_OR_SPEC, "arch": _str, "inputs": _list(_str), "trust_pickle": _bool,
        "targets": _list(_str), "precisions": _list(_precision), "calibration": _PATH_OR_SPEC,
        "calibration_samples": _POS_INT, "io": _choice("float", "int8"), "output_dir": _PATH, "name": _str,
        "overwrite": _bool, "image_size": _list(_POS_INT, 2), "mean": _list(_float()), "std": _list(_POS_FLOAT),
        "color_layout": _choice("RGB", "BGR"), "threads": _POS_INT, "seed": _ANY_INT, "options": "table",
    },
    "verify": {
        "enabled": _bool, "eval_data": _PATH_OR_SPEC, "eval_samples": _POS_INT, "tolerance": _tolerance,
        "strict": _bool, "output_roles": _names_table, "state": _names_table, "state_steps": _POS_INT,
    },
    "bench": {
        "devices": _list(_str), "threads": _POS_INT, "warmup": _NONNEG_INT, "runs": _POS_INT,
        "min_time": _POS_FLOAT, "timeout": _POS_FLOAT, "data": _PATH_OR_SPEC, "runner": _str, "output": _PATH,
    },
}
REQUIRED = {"distill": ("teacher", "data")}


@dataclass(frozen=True)
class Pipeline:
    path: str
    distill: dict[str, Any] | None
    convert: dict[str, Any] | None
    verify: dict[str, Any]
    bench: dict[str, Any] | None


def _closest(key: str, known) -> str:
    match = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {match[0]!r}?" if match else f"; known keys: {', '.join(known)}"


def _resolve(value: str, base: Path, kind: str) -> str:
    if os.path.isabs(value):
        return value
    candidate = base / value
    if kind == _PATH_OR_SPEC and ":" in value and not candidate.exists() and not value.startswith((".", "/")):
        return value  # package.module:function
    return str(candidate)


def _section(name: str, table: Any, base: Path, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [{name}] must be a table, got {type(table).__name__}")
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in schema:
            raise UsageError(f"{where}: [{name}] unknown key {key!r}{_closest(key, schema)}")
        check = schema[key]
        try:
            if check in (_PATH, _PATH_OR_SPEC):
                out[key] = _resolve(_str(value), base, check)
            elif check == "table":
                out[key] = _target_options(value)
            else:
                out[key] = check(value)
        except ValueError as exc:
            raise UsageError(f"{where}: [{name}] {key} must be {exc}, got {value!r}") from None
    for key in REQUIRED.get(name, ()):
        if key not in out:
            raise UsageError(f"{where}: [{name}] needs {key!r}")
    return out


def _target_options(value):
    from edgekit.registry import targets, canonical

    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("a table of per-target tables, e.g. [convert.options.coreml]")
    out = {}
    for target, options in value.items():
        try:
            out[canonical(target)] = dict(options)
        except UsageError:
            raise ValueError(f"per-target tables named after targets ({', '.join(targets())}), not {target!r}") from None
    return out


def parse(document: dict[str, Any], path: str = "pipeline.toml") -> Pipeline:
    base = Path(path).resolve().parent
    for name in document:
        if name not in SCHEMA:
            raise UsageError(f"{path}: unknown section [{name}]{_closest(name, SCHEMA).replace('keys', 'sections')}")
    sections = {name: _section(name, document[name], base, path) for name in SCHEMA if name in document}
    distill, convert = sections.get("distill"), sections.get("convert")
    if distill is not None:
        distill.setdefault("output", str(base / "student.pt2"))  # beside the file, like every relative path
    if distill is None and convert is None:
        raise UsageError(f"{path}: nothing to do: give a [distill] and/or a [convert] section")
    if convert is not None:
        if distill is None and "model" not in convert:
            raise UsageError(f"{path}: [convert] needs 'model' when there is no [distill] section")
        if distill is not None and "model" in convert:
            raise UsageError(f"{path}: [convert] model is the distilled student; remove 'model' or the [distill] section")
        _check_targets(convert, path)
    for later in ("verify", "bench"):
        if later in sections and convert is None:
            raise UsageError(f"{path}: [{later}] needs a [convert] section (it works on converted artifacts)")
    return Pipeline(str(path), distill, convert, sections.get("verify", {}), sections.get("bench"))


def _check_targets(convert: dict[str, Any], where: str) -> None:
    """Target names and precision support, before any long work starts."""
    from edgekit.registry import canonical, get_target_class

    names = []
    for name in convert.get("targets", [DEFAULT_TARGET]):
        try:
            names.append(canonical(name))
        except UsageError as exc:
            raise UsageError(f"{where}: [convert] targets: {exc}") from None
    convert["targets"] = list(dict.fromkeys(names))
    for precision in convert.get("precisions", []):
        for name in convert["targets"]:
            cls = get_target_class(name)
            if precision not in cls.precisions:
                raise UsageError(f"{where}: [convert] the {name} target does not support precision {precision!r}; "
                                 f"it supports: {', '.join(cls.precisions)}")


def load(path: str) -> Pipeline:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("reading pipeline.toml on Python 3.10 needs tomli (pip install tomli)") from None
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (a pipeline file is TOML; see docs/distill.md)") from None
    return parse(document, path)
