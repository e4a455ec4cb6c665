"""The distillation report: teacher and student side by side (JSON and a table).

Parameters, FLOPs (torch's FlopCounterMode on one real sample, batch 1), size (the float32 state_dict as
torch.save writes it), host latency (eager PyTorch, batch 1, one thread, median of timed runs after
a warm-up) and the validation metric.
"""
from __future__ import annotations

import io
import time
from typing import Any

from edgekit.ui import human_size, table


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_dict_bytes(module) -> int:
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell()


def host_latency_ms(module, example_inputs, *, warmup: int = 3, min_time: float = 0.5, max_runs: int = 200) -> float:
    """Median batch-1 latency of eager PyTorch on one thread (what the two models cost side by side)."""
    import statistics

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(warmup):
                module(*example_inputs)
            times = []
            started = time.perf_counter()
            while len(times) < max_runs and (len(times) < 5 or time.perf_counter() - started < min_time):
                t0 = time.perf_counter()
                module(*example_inputs)
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def flops_of(module, example_inputs) -> int | None:
    """FLOPs of one forward pass on a real sample (random token ids could fall outside a vocabulary)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(*example_inputs)
        return int(counter.get_total_flops())
    except Exception:  # counting is best effort, as in convert
        return None


def model_facts(module, example_inputs, *, latency: bool = True) -> dict[str, Any]:
    from edgekit.distill.teacher import eval_mode

    eval_mode(module)
    return {
        "parameters": parameter_count(module),
        "flops": flops_of(module, example_inputs),
        "size_bytes": state_dict_bytes(module),
        "host_latency_ms": round(host_latency_ms(module, example_inputs), 4) if latency else None,
    }


def _ratio(teacher, student, higher_is_better: bool = False) -> str:
    if teacher is None or student is None or not student or not teacher:
        return "-"
    value = (student / teacher) if higher_is_better else (teacher / student)
    return f"{value:.2f}x"


def _count(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def render(report: dict[str, Any]) -> str:
    t, s = report["teacher"], report["student"]
    metric = report["metric"]
    rows = [
        ["parameters", _count(t["parameters"]), _count(s["parameters"]), _ratio(t["parameters"], s["parameters"]) + " fewer"],
        ["FLOPs (batch 1)", _count(t["flops"]), _count(s["flops"]), _ratio(t["flops"], s["flops"]) + " fewer"],
        ["size (float32)", human_size(t["size_bytes"]), human_size(s["size_bytes"]), _ratio(t["size_bytes"], s["size_bytes"]) + " smaller"],
        ["host latency (ms)", _fmt(t["host_latency_ms"], ".3f"), _fmt(s["host_latency_ms"], ".3f"),
         _ratio(t["host_latency_ms"], s["host_latency_ms"]) + " faster"],
    ]
    name = metric["name"]
    if metric.get("teacher") is not None:
        kept = metric["student"] / metric["teacher"] if metric["teacher"] else None
        rows.append([f"val {name}", _fmt(metric["teacher"], ".4f"), _fmt(metric["student"], ".4f"),
                     "-" if kept is None else f"{100 * kept:.1f} % kept"])
    else:
        rows.append([f"val {name} (vs teacher)", "1 (reference)", _fmt(metric["student"], ".4f"), ""])
    if metric.get("student_int8") is not None:
        rows.append([f"val {name}, int8 (QAT)", "", _fmt(metric["student_int8"], ".4f"), ""])
    rows.append(_control_row(report))
    text = table(["", "teacher", "student", "ratio"], rows)
    train = report["training"]
    note = (f"\n{train['epochs_run']} epochs ({train['steps']} steps), best epoch {train['best_epoch']}"
            + (", stopped early" if train["stopped_early"] else "")
            + (f", {train['world_size']} processes" if train["world_size"] > 1 else "")
            + f"; student: {report['student_description']}\n" + _settings(report))
    control = report.get("control") or {}
    if not control.get("ran"):
        note += f"\ncontrol not run: {control.get('reason')}"
    files = "\n".join(f"  {k}: {v}" for k, v in report["files"].items() if v)
    return text + note + ("\nwritten:\n" + files if files else "")


def _control_row(report: dict[str, Any]) -> list[str]:
    """The same student trained without the teacher: what the teacher added, in the metric's units."""
    control = report.get("control") or {}
    name = report["metric"]["name"]
    if not control.get("ran"):
        return [f"val {name}, no teacher (control)", "", "not run", "see below"]
    gain = control["teacher_gain"]
    word = {"better": "teacher adds", "matches": "teacher adds", "worse": "WORSE by"}[control["verdict"]]
    value = f"{gain:+.4f}" if control["verdict"] != "worse" else f"{-gain:.4f}"
    return [f"val {name}, no teacher (control)", "", _fmt(control["metric"], ".4f"), f"{word} {value}"]


def _settings(report: dict[str, Any]) -> str:
    """The values the run chose: learning rate (and how), temperature, alpha, schedule."""
    train, loss = report["training"], report["loss"]
    how = {"given": "--lr", "checkpoint": "from the checkpoint"}.get(train.get("lr_source"), train.get("lr_source"))
    text = f"lr {train.get('lr'):.3g} ({how})" if train.get("lr") is not None else "lr -"
    control = report.get("control") or {}
    if control.get("ran") and control.get("lr") is not None:
        text += f", control lr {control['lr']:.3g}"
    if loss["output"] == "kl":
        text += f"; loss kl, T {loss['temperature']:g}" + (f", alpha {loss['alpha']:g}" if report["metric"]["name"] == "accuracy" else "")
    else:
        text += f"; loss {loss['output']}"
    warmup = train.get("warmup")
    if warmup is not None:
        text += f"; {train.get('schedule', '')}" + (f" (warm-up {warmup:g}" + (" of the steps)" if warmup < 1 else " steps)"))
    return text


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
