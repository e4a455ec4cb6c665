"""edgekit: take a fine-tuned PyTorch model to phones and edge boards, verified.

The public API mirrors the CLI. Importing edgekit imports no ML framework; each function pulls in
what it needs when called.

    edgekit.convert(...)                      edgekit convert
    edgekit.inspect(path)                     edgekit inspect
    edgekit.run_bench(artifacts, devices)     edgekit bench
    from edgekit.distill import distill       edgekit distill
    from edgekit.package import package       edgekit package

(distill and package live in their subpackages: a top-level function of the same name would be
replaced by the submodule the moment it is imported.)
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "convert", "inspect", "run_bench"]


def convert(*args, **kwargs):
    """See :func:`edgekit.pipeline.convert`."""
    from edgekit.pipeline import convert as _convert

    return _convert(*args, **kwargs)


def inspect(path: str):
    """Inputs, outputs, op histogram, quantized tensors and size of an artifact."""
    from edgekit.registry import target_for_artifact

    return target_for_artifact(path).inspect(path)


def run_bench(*args, **kwargs):
    """See :func:`edgekit.bench.run_bench`."""
    from edgekit.bench import run_bench as _run_bench

    return _run_bench(*args, **kwargs)
