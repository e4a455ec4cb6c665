"""Target name -> backend class, resolved lazily. Adding a target is one line in TARGETS.

Modules are imported only when a target is asked for; target modules themselves import their
ML libraries inside functions, so resolving a class stays cheap.
"""
from __future__ import annotations

import difflib
import importlib

from edgekit.errors import UsageError

# name -> "module:Class". Order is the order of `--target all` and of tables.
TARGETS: dict[str, str] = {
    "tflite": "edgekit.targets.tflite:TFLiteTarget",
    "coreml": "edgekit.targets.coreml:CoreMLTarget",
    "executorch": "edgekit.targets.executorch:ExecuTorchTarget",
    "torchscript-lite": "edgekit.targets.torchscript_lite:TorchScriptLiteTarget",
    "onnx": "edgekit.targets.onnx:ONNXTarget",
}
ALIASES: dict[str, str] = {"litert": "tflite", "pytorch-mobile": "executorch", "ptl": "torchscript-lite"}


def canonical(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TARGETS:
        close = difflib.get_close_matches(key, list(TARGETS) + list(ALIASES), n=1)
        hint = f"did you mean {ALIASES.get(close[0], close[0])!r}? " if close else ""
        raise UsageError(f"unknown target {name!r}; {hint}known targets: {', '.join(TARGETS)}")
    return key


def get_target_class(name: str):
    module_name, _, class_name = TARGETS[canonical(name)].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_target(name: str):
    return get_target_class(name)()


def resolve_targets(names) -> list[str]:
    """Expand 'all' (every installed target) and aliases; keep order, drop repeats."""
    out: list[str] = []
    for name in names:
        if name.lower() == "all":
            out.extend(n for n in TARGETS if get_target_class(n).available())
        else:
            out.append(canonical(name))
    return list(dict.fromkeys(out))


def target_for_artifact(path: str):
    """The target whose suffix matches an artifact path (for inspect and bench)."""
    lowered = path.rstrip("/").lower()
    for name in TARGETS:
        cls = get_target_class(name)
        if lowered.endswith(cls.suffix):
            return cls()
        for extra_suffix in getattr(cls, "extra_suffixes", ()):
            if lowered.endswith(extra_suffix):
                return cls()
    raise UsageError(
        f"{path}: not an artifact edgekit knows (suffixes: "
        + ", ".join(get_target_class(n).suffix for n in TARGETS)
        + ")"
    )
