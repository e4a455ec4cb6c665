"""The interfaces every target backend implements: Target (convert) and Runtime (run).

verify.py and the bench runner only talk to a Runtime; the pipeline only talks to a Target.
Nothing here imports an ML framework.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib.util
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from edgekit.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgekit.export import ExportedModel
    from edgekit.options import ConvertOptions


def package_version(dist: str) -> str:
    """Installed version of a distribution, for manifests ("not installed" when it is not)."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an artifact as its runtime sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # set for quantized (integer) tensors
    zero_point: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.scale is not None:
            out["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        quant = data.get("quantization") or {}
        return cls(data["name"], tuple(data["shape"]), data["dtype"], quant.get("scale"), quant.get("zero_point"))


class Runtime(abc.ABC):
    """Loads one artifact and runs it on numpy arrays, in the artifact's own I/O order.

    verify.py and the bench runner only ever talk to this interface, never to a library directly."""

    @abc.abstractmethod
    def load(self, path: str, threads: int = 1) -> "Runtime":
        """Load ``path``; returns self so that ``Runtime().load(p)`` reads as one step."""

    #: filled by ``load``: the artifact's inputs and outputs as its runtime sees them
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    def inputs(self) -> list[TensorSpec]:
        """The artifact's inputs, in the order ``run`` takes them."""
        return list(self._inputs)

    def outputs(self) -> list[TensorSpec]:
        """The artifact's outputs, in the order ``run`` returns them."""
        return list(self._outputs)

    @abc.abstractmethod
    def run(self, inputs: Sequence["np.ndarray"]) -> list["np.ndarray"]:
        """One inference on numpy arrays of the dtypes ``inputs()`` names."""

    def version(self) -> str:
        """The runtime library and version, for the manifest ("unknown" when a runtime cannot tell)."""
        return "unknown"


@dataclass
class ConvertedArtifact:
    """What a target hands back: the file (in a staging folder) and what it knows about it."""

    path: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    converter: dict[str, str]  # library name -> version
    details: dict[str, Any] = field(default_factory=dict)  # target-specific facts for the manifest
    # When the artifact cannot be executed here, why (e.g. Core ML on Linux); verify then reports
    # status "unverified" with this reason instead of running parity.
    unverifiable_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Files that ship beside the artifact (e.g. ExecuTorch's bundled program), staged in the same
    # folder: each is published as <artifact stem><its suffix>, together with the artifact and its
    # manifest, and listed in the manifest's "extra_files".
    extra_files: list[str] = field(default_factory=list)


def choice(default: Any, choices: Sequence[Any], flag: str, *, lower: bool = False) -> Any:
    """A settings field that only takes one of ``choices``; ``flag`` names it in messages
    (``lower``: text is compared and kept lower-cased)."""
    return field(default=default, metadata={"kind": "choice", "choices": tuple(choices), "flag": flag, "lower": lower})


def number(default: int, flag: str, *, minimum: int | None = None, maximum: int | None = None) -> Any:
    """A whole-number settings field within [minimum, maximum]."""
    return field(default=default, metadata={"kind": "number", "flag": flag, "minimum": minimum, "maximum": maximum})


def switch(default: bool, flag: str) -> Any:
    """A true/false settings field."""
    return field(default=default, metadata={"kind": "switch", "flag": flag})


@dataclass(frozen=True)
class TargetSettings:
    """The base of a target's own options: a frozen dataclass built once from
    ``ConvertOptions.target_options[<target>]`` (the CLI fills that dict from the target's flags,
    a pipeline file from its ``[convert.options.<target>]`` table, library callers pass a dict).

    Unknown keys and values outside a field's declared range are refused with the valid ones listed;
    ``None`` means "not given" (the default). A subclass adds cross-field rules in ``validate`` and
    rules that depend on the precision in ``check_precision``. Nothing here imports a framework: the
    pipeline builds every target's settings before it loads the model."""

    @classmethod
    def from_options(cls, values: Mapping[str, Any], target: str, precision: str | None = None):
        names = [f.name for f in dataclasses.fields(cls)]
        given = {k: v for k, v in dict(values or {}).items() if v is not None}
        unknown = sorted(set(given) - set(names), key=str)
        if unknown:
            import difflib

            close = difflib.get_close_matches(str(unknown[0]), names, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"the {target} target has no option {', '.join(map(repr, unknown))}{guess}; "
                             f"its options: {', '.join(names) or 'none'}")
        checked = {f.name: _checked(f, given[f.name]) for f in dataclasses.fields(cls) if f.name in given}
        settings = cls(**checked)
        settings.validate()
        if precision is not None:
            settings.check_precision(precision)
        return settings

    def validate(self) -> None:
        """Cross-field checks; raise UsageError. Default: none."""

    def check_precision(self, precision: str) -> None:
        """Checks that depend on --quantize; raise UsageError. Default: none."""


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """One given value against its field's declaration (choice / number / switch); UsageError says
    what the field takes."""
    meta = f.metadata
    flag = meta.get("flag", f.name)
    kind = meta.get("kind")
    if kind == "choice":
        if meta.get("lower") and isinstance(value, str):
            value = value.lower()
        if value not in meta["choices"]:
            raise UsageError(f"{flag} {value!r}: choose one of {', '.join(map(str, meta['choices']))}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{flag} takes a whole number, not {value!r}")
        low, high = meta.get("minimum"), meta.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"from {low} to {high}" if low is not None and high is not None else (
                f"at least {low}" if low is not None else f"at most {high}")
            raise UsageError(f"{flag} {value}: must be {span}")
    elif kind == "switch" and not isinstance(value, bool):
        raise UsageError(f"{flag} takes true or false, not {value!r}")
    return value


@dataclass(frozen=True)
class OnDevice:
    """What an artifact of a target needs on a device. bench and package ask the target for this,
    never a table of suffixes, so a new target brings its own answers."""

    #: what a person calls the format, for messages ("TFLite / LiteRT")
    format_name: str
    #: a native benchmark binary pushed to adb/ssh devices for this format (None: no such runner)
    runner: str | None = None
    #: where to get that runner, said when it is missing
    runner_help: str = ""
    #: the Python module a Linux board needs to run the artifact with `edgekit bench --device ssh://`
    python_module: str | None = None
    #: sample app -> the runtime inside that app that loads this format (empty: no app loads it)
    apps: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: the suffixes those apps load (None: the target's main suffix only; e.g. not ExecuTorch's .bpte)
    app_suffixes: tuple[str, ...] | None = None


class Target(abc.ABC):
    """A target backend: one package under targets/ and one line in edgekit/registry.py.

    Subclasses set the class attributes below and implement convert, runtime and inspect. The
    pipeline, bench and package read only what is declared here."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # artifact file suffix, e.g. ".tflite"
    #: other suffixes this target writes or reads (Core ML's .mlmodel, ExecuTorch's .bpte)
    extra_suffixes: ClassVar[tuple[str, ...]] = ()
    precisions: ClassVar[tuple[str, ...]]
    default_precision: ClassVar[str] = "none"
    #: --quantize int8 lowers the shared PT2E program (edgekit.quantize.shared): the pipeline makes it
    #: once, with its mixed-precision search on the console, before the first such target converts
    shared_int8: ClassVar[bool] = False
    #: model I/O types the target can emit with --io ("float": quantize/dequantize inside the model)
    io_types: ClassVar[tuple[str, ...]] = ("float",)
    #: what its artifacts need on a device (runner, board Python module, sample apps)
    on_device: ClassVar[OnDevice]
    #: importable module names this target needs, and the pip extra that installs them (None: the
    #: extra named after the target, as pyproject.toml names them; "": edgekit's own dependencies)
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: its options as a typed object (targets/<name>/settings.py); none by default
    settings_class: ClassVar[type[TargetSettings]] = TargetSettings
    #: whether --dynamic axes are honoured; when not, the reason a user sees (checked before any work)
    supports_dynamic: ClassVar[bool] = False
    dynamic_unsupported_reason: ClassVar[str] = "this target exports fixed shapes"

    @classmethod
    def suffixes(cls) -> tuple[str, ...]:
        return (cls.suffix, *cls.extra_suffixes)

    @classmethod
    def suffix_of(cls, path: str) -> str | None:
        """The suffix of ``path`` when this target writes or reads it, else None (longest match)."""
        lowered = str(path).rstrip("/").lower()
        return next((s for s in sorted(cls.suffixes(), key=len, reverse=True) if lowered.endswith(s)), None)

    @classmethod
    def missing(cls) -> list[str]:
        """Required modules that are not installed, found without importing them."""
        out = []
        for mod in cls.requires:
            try:
                if importlib.util.find_spec(mod) is None:
                    out.append(mod)
            except (ImportError, ValueError):
                out.append(mod)
        return out

    @classmethod
    def available(cls) -> bool:
        return not cls.missing()

    @classmethod
    def require(cls) -> None:
        missing = cls.missing()
        if missing:
            extra = cls.name if cls.extra is None else cls.extra
            raise MissingDependencyError(f"the {cls.name} target needs {', '.join(missing)}, which", extra)

    @classmethod
    def read_settings(cls, options: "ConvertOptions", precision: str | None = None) -> Any:
        """This target's options as its typed settings; UsageError naming the valid keys or values.
        The pipeline calls it for every planned target before loading the model, convert again."""
        return cls.settings_class.from_options(options.options_for(cls.name), cls.name, precision)

    @classmethod
    def add_arguments(cls, parser) -> None:  # argparse group of this target's own flags
        """Add target-specific CLI flags (dest names must be prefixed with the target name)."""

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        """Collect this target's flags from parsed CLI args into its target_options dict."""
        return {}

    @abc.abstractmethod
    def convert(
        self,
        model: "ExportedModel",
        precision: str,
        options: "ConvertOptions",
        calibration: Sequence[tuple["np.ndarray", ...]] | None,
        workdir: str,
    ) -> ConvertedArtifact:
        """Write the artifact into ``workdir`` (a private staging folder) and describe it."""

    def add_extra_files(
        self,
        converted: ConvertedArtifact,
        model: "ExportedModel",
        samples,
        options: "ConvertOptions",
        workdir: str,
    ) -> None:
        """After verification: write files that need the evaluation samples (``samples``:
        edgekit.data.Samples), e.g. reference inputs and outputs for on-device checks, into
        ``workdir`` and append their paths to ``converted.extra_files``. Default: none."""

    def embed_manifest(self, path: str, manifest: dict[str, Any]) -> None:
        """Before publishing: store ``manifest`` (without size_bytes / sha256, which describe the
        final bytes) inside the staged artifact, for formats with a metadata slot, so that the file
        found alone still says where it came from. The digest is taken afterwards. Default: nothing."""

    @abc.abstractmethod
    def runtime(self) -> Runtime:
        """A fresh, unloaded Runtime for this target's artifacts."""

    @abc.abstractmethod
    def inspect(self, path: str) -> dict[str, Any]:
        """Op histogram, quantized tensors and I/O of an artifact, for ``edgekit inspect``."""
