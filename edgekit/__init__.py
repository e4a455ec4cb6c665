"""edgekit: take a fine-tuned PyTorch model to phones and edge boards, verified.

The public API mirrors the CLI. Importing edgekit imports no ML framework; each function pulls in
what it needs when called.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "convert", "inspect"]


def convert(*args, **kwargs):
    """See :func:`edgekit.pipeline.convert`."""
    from edgekit.pipeline import convert as _convert

    return _convert(*args, **kwargs)


def inspect(path: str):
    """Inputs, outputs, op histogram, quantized tensors and size of an artifact."""
    from edgekit.registry import target_for_artifact

    return target_for_artifact(path).inspect(path)
