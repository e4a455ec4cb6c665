"""Target name -> backend class, resolved lazily. Adding a target is one line in TARGETS, or, from
another distribution, one entry point in the ``edgekit.targets`` group (``name = "module:Class"``):
plugins are found with importlib.metadata the first time the registry is listed or misses a name, so
they also work in bench's measuring subprocess and on a board.

Modules are imported only when a target is asked for; target modules themselves import their
ML libraries inside functions, so resolving a class stays cheap.
"""
from __future__ import annotations

import difflib

from edgekit.errors import UsageError
from edgekit.plugins import Registry

# name -> "module:Class". Order is the order of `--target all` and of tables.
TARGETS: dict[str, str] = {
    "tflite": "edgekit.targets.tflite:TFLiteTarget",
    "coreml": "edgekit.targets.coreml:CoreMLTarget",
    "coreai": "edgekit.targets.coreai:CoreAITarget",
    "executorch": "edgekit.targets.executorch:ExecuTorchTarget",
    "torchscript-lite": "edgekit.targets.torchscript_lite:TorchScriptLiteTarget",
    "onnx": "edgekit.targets.onnx:ONNXTarget",
}
ALIASES: dict[str, str] = {"litert": "tflite", "pytorch-mobile": "executorch", "ptl": "torchscript-lite"}
REGISTRY = Registry(TARGETS, "edgekit.targets", "target")


def targets() -> dict[str, str]:
    """Every known target, built-in first, in the order of `--target all` and of tables."""
    return REGISTRY.refs()


def canonical(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    known = TARGETS if key in TARGETS else targets()
    if key not in known:
        close = difflib.get_close_matches(key, list(known) + list(ALIASES), n=1)
        hint = f"did you mean {ALIASES.get(close[0], close[0])!r}? " if close else ""
        raise UsageError(f"unknown target {name!r}; {hint}known targets: {', '.join(known)}")
    return key


def get_target_class(name: str):
    return REGISTRY.load(canonical(name))


def get_target(name: str):
    return get_target_class(name)()


def resolve_targets(names) -> list[str]:
    """Expand 'all' (every installed target) and aliases; keep order, drop repeats."""
    out: list[str] = []
    for name in names:
        if name.lower() == "all":
            out.extend(n for n in targets() if get_target_class(n).available())
        else:
            out.append(canonical(name))
    return list(dict.fromkeys(out))


def target_for_artifact(path: str):
    """The target that writes an artifact with this suffix (for inspect, bench and package)."""
    classes = [get_target_class(n) for n in TARGETS]
    matches = [(len(cls.suffix_of(path)), cls) for cls in classes if cls.suffix_of(path)]
    if not matches:  # only then load plugins: a broken plugin never stands between a user and a .tflite
        classes += [get_target_class(n) for n in REGISTRY.plugins()]
        matches = [(len(cls.suffix_of(path)), cls) for cls in classes if cls.suffix_of(path)]
    if not matches:
        known = ", ".join(s for cls in classes for s in cls.suffixes())
        raise UsageError(f"{path}: not an artifact edgekit knows (suffixes: {known})")
    return max(matches, key=lambda m: m[0])[1]()
