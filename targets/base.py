"""The interfaces every target backend implements: Target (convert) and Runtime (run).

verify.py and the bench runner only talk to a Runtime; the pipeline only talks to a Target.
Nothing here imports an ML framework.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from edgekit.errors import MissingDependencyError

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


class Runtime:
    """Loads one artifact and runs it on numpy arrays, in the artifact's own I/O order."""

    #: where parity can be checked on this machine; a runtime that cannot execute here sets a reason
    def load(self, path: str, threads: int = 1) -> "Runtime":
        raise NotImplementedError

    def inputs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def outputs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def run(self, inputs: Sequence["np.ndarray"]) -> list["np.ndarray"]:
        raise NotImplementedError

    def version(self) -> str:
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


class Target:
    """A target backend. Subclasses set the class attributes and implement convert and runtime."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # artifact file suffix, e.g. ".tflite"
    precisions: ClassVar[tuple[str, ...]]
    default_precision: ClassVar[str] = "none"
    #: importable module names this target needs, and the extra that installs them
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: whether --dynamic axes are honoured; when not, the reason a user sees (checked before any work)
    supports_dynamic: ClassVar[bool] = False
    dynamic_unsupported_reason: ClassVar[str] = "this target exports fixed shapes"

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
            raise MissingDependencyError(f"the {cls.name} target needs {', '.join(missing)}, which", cls.extra)

    @classmethod
    def add_arguments(cls, parser) -> None:  # argparse group of this target's own flags
        """Add target-specific CLI flags (dest names must be prefixed with the target name)."""

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        """Collect this target's flags from parsed CLI args into its target_options dict."""
        return {}

    def convert(
        self,
        model: "ExportedModel",
        precision: str,
        options: "ConvertOptions",
        calibration: Sequence[tuple["np.ndarray", ...]] | None,
        workdir: str,
    ) -> ConvertedArtifact:
        """Write the artifact into ``workdir`` (a private staging folder) and describe it."""
        raise NotImplementedError

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

    def runtime(self) -> Runtime:
        raise NotImplementedError

    def inspect(self, path: str) -> dict[str, Any]:
        """Op histogram, quantized tensors and I/O of an artifact, for ``edgekit inspect``."""
        raise NotImplementedError
