"""Knowledge distillation: a smaller student that keeps the teacher's accuracy, ready for convert.

    from edgekit.distill import distill
    result = distill("model.pt", arch="pkg.mod:factory", data="train/", epochs=5, output="student.pt2")

Modules: teacher (loading), students (auto / factory / file), data, losses, train (the loop, DDP),
parts (its pieces: hooks, progress, evaluation, checkpoints), lrfind (the learning-rate range test),
control (the student trained without the teacher), qat (PT2E quantization-aware distillation),
report, api (the orchestration).
Nothing here imports torch at package import.
"""
from __future__ import annotations

__all__ = ["distill"]


def distill(*args, **kwargs):
    """See :func:`edgekit.distill.api.distill`."""
    from edgekit.distill.api import distill as _distill

    return _distill(*args, **kwargs)
