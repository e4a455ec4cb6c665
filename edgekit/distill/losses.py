"""Distillation losses.

- ``kl``: soft-target KL divergence at temperature T, scaled by T^2 (Hinton et al.), so its gradients
  keep their size as T changes; with hard labels, ``alpha * KL + (1 - alpha) * cross-entropy``.
- ``mse`` / ``cosine``: for outputs that are embeddings, not class scores.
- hidden-state loss (``mse`` or ``cosine``) between paired intermediate outputs, through a learned
  projection where the student's width differs from the teacher's (dropped after training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from edgekit.errors import UsageError

OUTPUT_LOSSES = ("kl", "mse", "cosine")
# defaults (docs/distill.md says why and what they measured)
TEMPERATURE = 4.0
ALPHA = 0.9
HIDDEN_LOSSES = ("mse", "cosine")


def soft_target_kl(student_logits, teacher_logits, temperature: float):
    import torch.nn.functional as F

    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    # KL(teacher || student), averaged over every position that carries a distribution
    kl = F.kl_div(log_p_student.reshape(-1, log_p_student.shape[-1]), log_p_teacher.reshape(-1, log_p_teacher.shape[-1]),
                  reduction="batchmean", log_target=True)
    return kl * t * t


def hard_label_ce(student_logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(student_logits.float().reshape(-1, student_logits.shape[-1]), labels.reshape(-1))


def embedding_loss(student, teacher, kind: str, dim: int = -1):
    """``mse`` or ``cosine`` (1 - cosine similarity along ``dim``, averaged)."""
    import torch.nn.functional as F

    student, teacher = student.float(), teacher.float()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=dim, eps=1e-8)).mean()
    raise UsageError(f"unknown embedding loss {kind!r}; choose mse or cosine")


def feature_axis(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> int:
    """The axis that holds features: the one whose size differs, else channels (1) for 4-D maps, else last."""
    if len(student_shape) != len(teacher_shape):
        raise UsageError(f"hidden states of rank {len(student_shape)} and {len(teacher_shape)} cannot be matched")
    differ = [i for i, (s, t) in enumerate(zip(student_shape, teacher_shape)) if s != t]
    if len(differ) > 1:
        raise UsageError(f"hidden states {tuple(student_shape)} and {tuple(teacher_shape)} differ in more than one axis")
    if differ:
        return differ[0]
    return 1 if len(student_shape) >= 4 else len(student_shape) - 1


def _projection_class():
    import torch.nn as nn

    class Projection(nn.Module):
        """A linear map of the student's features to the teacher's width, along ``axis``."""

        def __init__(self, student_width: int, teacher_width: int, axis: int):
            super().__init__()
            self.axis = axis
            self.linear = nn.Linear(student_width, teacher_width, bias=False)

        def forward(self, x):
            return self.linear(x.movedim(self.axis, -1)).movedim(-1, self.axis)

    return Projection


def first_tensor(value):
    """A module's output as one tensor (Hugging Face layers may return tuples)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    hidden = getattr(value, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise UsageError(f"a hidden-state module returned {type(value).__name__}, not a tensor")


@dataclass(frozen=True)
class LossConfig:
    output: str = "kl"  # kl | mse | cosine
    temperature: float = TEMPERATURE
    alpha: float = ALPHA  # weight of the soft-target term when hard labels exist
    hidden: str | None = None  # None | mse | cosine
    hidden_weight: float = 1.0
    labels_only: bool = False  # the control run: cross-entropy on the labels, no teacher

    def __post_init__(self):
        if self.output not in OUTPUT_LOSSES:
            raise UsageError(f"--loss {self.output!r}: choose one of {', '.join(OUTPUT_LOSSES)}")
        if self.hidden is not None and self.hidden not in HIDDEN_LOSSES:
            raise UsageError(f"--hidden-loss {self.hidden!r}: choose one of {', '.join(HIDDEN_LOSSES)}")
        if self.temperature <= 0:
            raise UsageError(f"--temperature {self.temperature}: must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--alpha {self.alpha}: must be between 0 and 1")
        if self.hidden_weight < 0:
            raise UsageError(f"--hidden-weight {self.hidden_weight}: must not be negative")


def make_projections(student_hidden: dict[str, Any], teacher_hidden: dict[str, Any], pairs):
    """A ModuleDict of projections, one per pair whose widths differ (keys: the student module name)."""
    import torch.nn as nn

    Projection = _projection_class()
    projections = nn.ModuleDict()
    for teacher_name, student_name in pairs:
        s_shape, t_shape = student_hidden[student_name].shape, teacher_hidden[teacher_name].shape
        axis = feature_axis(s_shape, t_shape)
        if s_shape[axis] != t_shape[axis]:
            projections[student_name.replace(".", "__")] = Projection(s_shape[axis], t_shape[axis], axis)
    return projections


def distillation_loss(
    config: LossConfig,
    student_outputs: Sequence[Any],
    teacher_outputs: Sequence[Any],
    labels=None,
    student_hidden: dict[str, Any] | None = None,
    teacher_hidden: dict[str, Any] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    projections=None,
) -> tuple[Any, dict[str, float]]:
    """Total loss and its parts (for the progress line). Outputs are flat lists of tensors."""
    if config.labels_only:
        hard = hard_label_ce(student_outputs[0], labels)
        return hard, {"ce": float(hard.detach())}
    parts: dict[str, Any] = {}
    total = 0.0
    for i, (s, t) in enumerate(zip(student_outputs, teacher_outputs)):
        if config.output == "kl":
            soft = soft_target_kl(s, t, config.temperature)
            if labels is not None and i == 0:
                hard = hard_label_ce(s, labels)
                parts["ce"] = hard
                total = total + config.alpha * soft + (1.0 - config.alpha) * hard
            else:
                total = total + soft
            parts["kl"] = parts.get("kl", 0.0) + soft
        else:
            emb = embedding_loss(s, t, config.output)
            parts[config.output] = parts.get(config.output, 0.0) + emb
            total = total + emb
    if config.hidden and pairs:
        hidden_total = 0.0
        for teacher_name, student_name in pairs:
            s_h, t_h = student_hidden[student_name], teacher_hidden[teacher_name]
            key = student_name.replace(".", "__")
            axis = feature_axis(s_h.shape, t_h.shape)
            if projections is not None and key in projections:
                s_h = projections[key](s_h)
            hidden_total = hidden_total + embedding_loss(s_h, t_h, config.hidden, dim=axis)
        hidden_total = hidden_total / len(pairs)
        parts["hidden"] = hidden_total
        total = total + config.hidden_weight * hidden_total
    return total, {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in parts.items()}
