"""The control run: the same student trained WITHOUT the teacher, from the same budget.

Same initial weights (the same seed, and for an auto student the same copy of the teacher's
layers), same data, epochs, batch size, optimizer, schedule and learning-rate rule (its own range
test on its own loss when --lr is not given), same best-epoch selection; the only difference is the
loss: cross-entropy on the labels instead of the distillation loss. The gap between the two is what
the teacher added. It can only be run when the data has labels and the outputs are class scores.
"""
from __future__ import annotations

from typing import Any

LOSS = "cross-entropy on the labels (no teacher)"


def reason_not_run(enabled: bool, labelled: bool, output_loss: str) -> str | None:
    """Why the control cannot (or should not) run; None when it runs."""
    if not enabled:
        return "turned off (--no-control)"
    if not labelled:
        return ("the data has no labels: without the teacher the student has nothing to learn from, "
                "so there is no control to compare with")
    if output_loss != "kl":
        return (f"the outputs are matched with the {output_loss} loss (embeddings, not class scores): "
                "labels cannot train them without the teacher")
    return None


def verdict(student: float, control: float) -> str:
    if student > control:
        return "better"
    return "matches" if student == control else "worse"


def summary(result, metric: float, metric_int8: float | None, student_metric: float) -> dict[str, Any]:
    """The report's ``control`` section for a control that ran (``result``: its TrainResult)."""
    return {
        "ran": True, "reason": None, "loss": LOSS, "metric": metric, "metric_int8": metric_int8,
        "teacher_gain": student_metric - metric, "verdict": verdict(student_metric, metric),
        "lr": result.lr, "lr_source": result.lr_source, "range_test": result.range_test,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "steps": result.steps,
        "history": result.history,
    }


def not_run(reason: str) -> dict[str, Any]:
    return {"ran": False, "reason": reason, "loss": LOSS, "metric": None, "verdict": None}


def warning(report: dict[str, Any]) -> str | None:
    """The warning line for a distilled student that does worse than its control."""
    control = report.get("control") or {}
    if control.get("verdict") != "worse":
        return None
    name = report["metric"]["name"]
    return (f"the distilled student (val {name} {report['metric']['student']:.4f}) is worse than the same student "
            f"trained without the teacher ({control['metric']:.4f}): the teacher did not help; "
            "try more epochs, another --temperature/--alpha, or train the student on the labels alone")
