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
    """See :func:`edgekit.pipeline.convert`. With ``strict=True`` an artifact that failed
    verification, is unverified, or could not be made raises (VerificationFailed, or the target's
    own error), as the CLI's exit code would; the artifacts stay on disk and on ``exc.artifacts``."""
    from edgekit.pipeline import convert as _convert

    artifacts = _convert(*args, **kwargs)
    if kwargs.get("strict"):
        _raise_unless_verified(artifacts)
    return artifacts


def _raise_unless_verified(artifacts) -> None:
    from edgekit.errors import VerificationFailed

    for art in artifacts:
        if art.status == "error" and getattr(art, "_exc", None) is not None:
            art._exc.artifacts = artifacts
            raise art._exc
    bad = [a for a in artifacts if a.status in ("failed", "unverified")]
    if bad:
        reasons = "; ".join(
            f"{a.target} [{a.precision}] {a.status}" + (f": {a.parity['reasons'][0]}" if a.parity.get("reasons") else "")
            for a in bad
        )
        exc = VerificationFailed(f"strict: {reasons}")
        exc.artifacts = artifacts
        raise exc


def inspect(path: str):
    """Inputs, outputs, op histogram, quantized tensors and size of an artifact."""
    from edgekit.commands.inspect import read_artifact
    from edgekit.registry import target_for_artifact

    return read_artifact(target_for_artifact(path), path)  # a damaged file: ModelLoadError, one line


def run_bench(*args, **kwargs):
    """See :func:`edgekit.bench.run_bench`."""
    from edgekit.bench import run_bench as _run_bench

    return _run_bench(*args, **kwargs)
