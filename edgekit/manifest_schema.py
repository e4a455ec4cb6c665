"""The manifest schema (``<artifact>.edgekit.json``): one typed definition for the writer and every reader.

The pipeline builds a :class:`Manifest`; inspect, bench, package and the apps' model-info writer read
one with :func:`Manifest.from_dict` (or :func:`edgekit.manifest.load`). Versioning: a minor bump adds
optional keys (an older reader keeps them in ``extra`` and writes them back unchanged); a major bump
changes meaning, and a reader refuses a major version it does not know.

Blocks whose content belongs to one part of edgekit stay open mappings, each owned by that part:
``parity`` (edgekit/verify.py), ``target_details`` (the target), ``calibration`` (edgekit/data.py),
``quantization`` (edgekit/quantize). Standard library only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

SCHEMA_VERSION = "1.2"  # 1.1: extra_files; 1.2: optional quantization, state, decoder
SUPPORTED_MAJOR = 1
STATUSES = ("passed", "failed", "unverified", "skipped")


class ManifestError(ValueError):
    """A manifest that is not one this edgekit can read (bad JSON shape, unknown major version)."""


@dataclass
class TensorEntry:
    """One input or output of the artifact, in the artifact's own names and order."""

    name: str
    shape: list[int]
    dtype: str
    quantization: dict[str, Any] | None = None  # {"scale", "zero_point"} for integer I/O
    model_input: str | None = None  # the source model's input this one feeds
    model_output: str | None = None  # the source model's output this one is
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> "TensorEntry":
        return _build(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


@dataclass
class Manifest:
    name: str
    target: str
    precision: str
    io: str
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    size_bytes: int | None
    sha256: str | None
    versions: dict[str, str]
    calibration: dict[str, Any] | None
    parity: dict[str, Any]
    status: str
    schema_version: str = SCHEMA_VERSION
    format: str | None = None
    precision_default: bool = False
    dynamic_axes: list[dict[str, Any]] = field(default_factory=list)
    flops: int | None = None
    source: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None
    labels: list[str] | None = None
    target_details: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None  # what the shared quantization layer decided (1.2)
    state: list[dict[str, str]] | None = None  # outputs fed back as inputs between steps (1.2)
    decoder: dict[str, Any] | None = None  # a decoder step's token/position/logits/cache roles (1.2)
    extra_files: list[dict[str, Any]] | None = None  # files shipped beside the artifact (1.1)
    command: str | None = None
    #: keys a newer minor version added, kept so that a rewrite loses nothing
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ManifestError(f"manifest status {self.status!r} is not one of {', '.join(STATUSES)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Manifest":
        if not isinstance(data, Mapping):
            raise ManifestError(f"a manifest is a JSON object, not {type(data).__name__}")
        check_version(data.get("schema_version"))
        values = dict(data)
        for key in ("inputs", "outputs"):
            if not isinstance(values.get(key), list):
                raise ManifestError(f"manifest {key!r} must be a list")
            values[key] = [TensorEntry.from_dict(entry, f"{key}[{i}]") for i, entry in enumerate(values[key])]
        return _build(cls, values, "manifest")

    def to_dict(self) -> dict[str, Any]:
        out = _dump(self)
        out["inputs"] = [t.to_dict() for t in self.inputs]
        out["outputs"] = [t.to_dict() for t in self.outputs]
        return out

    # the readers' questions, answered once
    @property
    def cosine(self) -> float | None:
        return (self.parity or {}).get("cosine")

    @property
    def top1(self) -> float | None:
        return (self.parity or {}).get("top1")

    @property
    def coverage(self) -> dict[str, Any] | None:
        """What the quantization layer counted as really quantized (edgekit/quantize/coverage.py
        Coverage.to_dict): from the shared ``quantization`` block, else wherever the target put it."""
        for block in (self.quantization, self.target_details):
            found = find_nested(block, "coverage", Mapping)
            if found is not None and "weight_share" in found:
                return dict(found)
        return None

    def state_links(self) -> list[dict[str, Any]]:
        """The state pairs as positions in the artifact's own I/O: ``{"output": i, "input": j,
        "output_name", "input_name"}`` (output i of one step is fed to input j of the next).
        The pairs name the source model's tensors; the artifact's entries say which is which."""
        links = []
        for pair in self.state or []:
            if not isinstance(pair, Mapping):
                raise ManifestError(f"manifest state entries are {{\"output\": ..., \"input\": ...}} objects, not {pair!r}")
            out = _position(self.outputs, pair.get("output"), "model_output")
            inp = _position(self.inputs, pair.get("input"), "model_input")
            if out is None or inp is None:
                missing = pair.get("output") if out is None else pair.get("input")
                raise ManifestError(f"manifest state pair {pair.get('output')!r} -> {pair.get('input')!r} names "
                                    f"{missing!r}, which is not among the artifact's {'outputs' if out is None else 'inputs'}")
            links.append({"output": out, "input": inp, "output_name": self.outputs[out].name,
                          "input_name": self.inputs[inp].name})
        return links


def _position(entries: list[TensorEntry], name: Any, source_key: str) -> int | None:
    for i, entry in enumerate(entries):
        if getattr(entry, source_key) == name:
            return i
    return next((i for i, entry in enumerate(entries) if entry.name == name), None)


def find_nested(block: Any, key: str, kind: type | tuple[type, ...] = object) -> Any:
    """The first value of type ``kind`` stored under ``key`` anywhere in nested mappings (depth
    first), or None. The blocks one part of edgekit owns (target_details, quantization) have no fixed
    layout; a reader finds a fact in them by its key."""
    if isinstance(block, Mapping):
        found = block.get(key)
        if found is not None and isinstance(found, kind):
            return found
        for value in block.values():
            found = find_nested(value, key, kind)
            if found is not None:
                return found
    return None


def check_version(version: Any) -> None:
    """Refuse a manifest whose major version this edgekit does not know (or that has none)."""
    if not isinstance(version, str) or not version.split(".")[0].isdigit():
        raise ManifestError(f"manifest schema_version {version!r} is not a version like {SCHEMA_VERSION!r}")
    major = int(version.split(".")[0])
    if major != SUPPORTED_MAJOR:
        raise ManifestError(
            f"manifest schema {version} is not readable by this edgekit (it reads {SUPPORTED_MAJOR}.x); "
            "upgrade edgekit, or re-convert the model"
        )


def _build(cls, data: Mapping[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ManifestError(f"{where} lacks {', '.join(missing)}")
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    try:
        return cls(**known, extra=extra)
    except TypeError as exc:  # pragma: no cover - a field added without a default
        raise ManifestError(f"{where}: {exc}") from None


def _dump(obj) -> dict[str, Any]:
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "extra"}
    # optional keys a reader of an older minor version would not expect stay out when empty
    for key in ("quantization", "state", "decoder", "extra_files", "model_input", "model_output"):
        if key in out and out[key] is None:
            del out[key]
    out.update(obj.extra)
    return out
