"""The ExecuTorch delegates (backends) edgekit can lower to: facts apart from the lowering code.

Each delegate is a partitioner shipped inside the executorch wheel (or not: builds differ by
platform; the MPS backend, for one, is not in the Linux wheels). Availability is found by looking
for the partitioner's source file, without importing it: importing a backend pulls in its compiler
(coremltools for Core ML) and costs seconds.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from edgekit.errors import MissingDependencyError, UsageError

DEFAULT_DELEGATE = "xnnpack"


@dataclass(frozen=True)
class Delegate:
    name: str  # the --delegate value
    package: str  # the executorch.backends sub-package that holds the partitioner
    partitioner_module: str  # module path relative to executorch.backends
    partitioner_class: str
    backend_id: str  # the id the runtime registers, as recorded in a .pte ("" for none)
    runs_on: str  # where programs lowered to it execute, in words
    apple_only: bool = False
    #: other importable modules the partitioner needs, and the edgekit extra that installs them
    needs: tuple[str, ...] = ()
    extra: str = ""
    #: precisions beyond none/fp16 (quantized ones use that backend's own quantizer)
    quantized: bool = False


DELEGATES: dict[str, Delegate] = {
    d.name: d
    for d in (
        Delegate("xnnpack", "xnnpack", "xnnpack.partition.xnnpack_partitioner", "XnnpackPartitioner",
                 "XnnpackBackend", "CPU (Android, iOS, Linux, macOS, Windows)", quantized=True),
        Delegate("coreml", "apple/coreml", "apple.coreml.partition.coreml_partitioner", "CoreMLPartitioner",
                 "CoreMLBackend", "Apple devices (iOS / macOS, Core ML)", apple_only=True,
                 needs=("coremltools",), extra="coreml"),
        Delegate("mps", "apple/mps", "apple.mps.partition.mps_partitioner", "MPSPartitioner",
                 "MPSBackend", "Apple GPUs (Metal Performance Shaders)", apple_only=True),
        Delegate("vulkan", "vulkan", "vulkan.partitioner.vulkan_partitioner", "VulkanPartitioner",
                 "VulkanBackend", "GPUs with Vulkan (Android, Linux), with a runtime built with Vulkan"),
        Delegate("none", "", "", "", "", "any ExecuTorch runtime (portable kernels)"),
    )
}


def _backends_dir() -> str | None:
    try:
        spec = importlib.util.find_spec("executorch.backends")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def installed(delegate: Delegate) -> bool:
    """Is this delegate's partitioner in the installed executorch? (no import)"""
    if delegate.name == "none":
        return True
    root = _backends_dir()
    if root is None:
        return False
    return os.path.isfile(os.path.join(root, *delegate.partitioner_module.split(".")) + ".py")


def available_names() -> list[str]:
    return [d.name for d in DELEGATES.values() if installed(d)]


def resolve(name: str | None) -> Delegate:
    """The Delegate for a --delegate value; a clear error when it is unknown or not installed."""
    key = (name or DEFAULT_DELEGATE).lower()
    if key not in DELEGATES:
        raise UsageError(f"--delegate {name!r}: unknown delegate; choose one of: {', '.join(DELEGATES)}")
    delegate = DELEGATES[key]
    if not installed(delegate):
        raise UsageError(
            f"--delegate {key}: the installed executorch ({executorch_version()}) has no {delegate.backend_id} "
            f"(executorch.backends.{delegate.package.replace('/', '.')}); available here: {', '.join(available_names())}"
        )
    for module in delegate.needs:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"{module} (needed by --delegate {key})", delegate.extra)
    return delegate


def executorch_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return "not installed"


def partitioners(delegate: Delegate, precision: str) -> list[Any]:
    """The partitioner list for ``to_edge_transform_and_lower``; fp16 is the backend's own choice
    for Core ML (compute precision) and Vulkan (force_fp16); for XNNPACK the graph itself is fp16."""
    if delegate.name == "none":
        return []
    import importlib

    module = importlib.import_module(f"executorch.backends.{delegate.partitioner_module}")
    cls = getattr(module, delegate.partitioner_class)
    if delegate.name == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend

        # Core ML computes in float16 unless told otherwise: fp32 must ask for it.
        compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
        return [cls(compile_specs=CoreMLBackend.generate_compile_specs(compute_precision=compute))]
    if delegate.name == "vulkan":
        return [cls(compile_options={"force_fp16": precision == "fp16"})]
    return [cls()]


def runtime_backends() -> list[str]:
    """Backends registered in this machine's executorch runtime (imports the runtime)."""
    from executorch.runtime import Runtime

    return sorted(Runtime.get().backend_registry.registered_backend_names)


def load_kernel_libraries() -> None:
    """Register the runtime's quantized-ops kernels (int8 embeddings: quantized_decomposed::
    embedding_byte); app builds link them, the Python runtime loads them on import."""
    try:
        import executorch.kernels.quantized  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        pass  # a build without them: _check_kernels then names any op that needs them


def runtime_operators() -> set[str]:
    """Kernels registered in this machine's executorch runtime, as 'aten::cumsum.out'."""
    from executorch.runtime import Runtime

    load_kernel_libraries()
    return set(Runtime.get().operator_registry.operator_names)


def unverifiable_reason(backends_used: list[str]) -> str | None:
    """Why a program using these backend ids cannot run here, or None when it can."""
    registered = runtime_backends()
    missing = [b for b in backends_used if b not in registered]
    if not missing:
        return None
    where = {d.backend_id: d for d in DELEGATES.values() if d.backend_id}
    parts = []
    for backend in missing:
        delegate = where.get(backend)
        runs = f" runs only on {delegate.runs_on}" if delegate else " is not in this runtime"
        parts.append(f"{backend}{runs}")
    return (
        f"{'; '.join(parts)}; this host's executorch runtime has {', '.join(registered) or 'no backends'}: "
        "verify it on the device (the --bundle .bpte carries reference inputs and outputs)"
    )
