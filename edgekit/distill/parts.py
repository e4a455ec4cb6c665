"""Pieces of the distillation loop: hidden-state hooks, the progress line, the schedule, batching,
evaluation (outputs over a data set, the metric) and checkpoints (atomic write, fingerprinted read).
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from edgekit.distill.losses import first_tensor
from edgekit.errors import OutputError, UsageError

CHECKPOINT_NAME = "last.pt"


class HiddenCapture:
    """Forward hooks that keep the outputs of named submodules for the hidden-state loss."""

    def __init__(self, module, names):
        self.values: dict[str, Any] = {}
        self.handles = []
        for name in names:
            try:
                sub = module.get_submodule(name)
            except AttributeError:
                raise UsageError(f"--hidden-pair: the model has no module named {name!r}") from None
            self.handles.append(sub.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(_module, _inputs, output):
            self.values[name] = first_tensor(output)
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


class Progress:
    """One status line per epoch on stderr, redrawn in place on a terminal."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.last = 0.0

    def update(self, epoch: int, epochs: int, step: int, steps: int, loss: float, metric: str | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        # on a terminal: redraw 5 times a second; in a log: a line a minute, so long epochs show life
        if (now - self.last < (0.2 if self.tty else 60.0)) and (step < steps or not self.tty):
            return
        if not self.tty and self.last == 0.0:
            self.last = now
            return
        self.last = now
        filled = int(20 * step / max(1, steps))
        text = f"  epoch {epoch}/{epochs} [{'#' * filled}{'.' * (20 - filled)}] {step}/{steps} loss {loss:.4f}"
        text += f"  {metric}" if metric else ""
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=self.stream, flush=True)

    def epoch_done(self, epoch: int, epochs: int, loss: float, metric_name: str, value: float, seconds: float, note: str = "") -> None:
        if not self.enabled:
            return
        prefix = "\r" if self.tty else ""
        print(f"{prefix}  epoch {epoch}/{epochs}  loss {loss:.4f}  val {metric_name} {value:.4f}  {seconds:.1f}s{note}" + " " * 10,
              file=self.stream, flush=True)


def flat(out) -> list:
    from edgekit.export import flatten_outputs

    return flatten_outputs(out)


def lr_lambda(total_steps: int, warmup: float) -> Callable[[int], float]:
    warmup_steps = int(round(warmup * total_steps)) if warmup < 1 else int(warmup)
    warmup_steps = min(warmup_steps, max(0, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def batches(n: int, batch_size: int, epoch: int, seed: int, rank: int, world: int, shuffle: bool = True) -> list:
    import torch
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def outputs_over(module, data, batch_size: int, device) -> list:
    """Flat outputs of ``module`` for every sample, concatenated (on the CPU)."""
    import torch

    from edgekit.distill.teacher import batched_forward

    chunks: list[list] = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            inputs = [t[start : start + batch_size].to(device) for t in data.inputs]
            chunks.append([o.detach().float().cpu() for o in flat(batched_forward(module, inputs))])
    return [torch.cat([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def metric_name(data, output_loss: str) -> str:
    if output_loss == "kl":
        return "accuracy" if data.labels is not None else "agreement"
    return "cosine"


def score(outputs: list, reference: list, labels, name: str) -> float:
    """accuracy (vs labels), agreement (argmax vs the teacher's) or mean cosine to the teacher."""
    import torch
    import torch.nn.functional as F

    s, t = outputs[0], reference[0]
    if name == "accuracy":
        return float((s.reshape(-1, s.shape[-1]).argmax(-1) == labels.reshape(-1)).float().mean())
    if name == "agreement":
        return float((s.reshape(-1, s.shape[-1]).argmax(-1) == t.reshape(-1, t.shape[-1]).argmax(-1)).float().mean())
    values = [F.cosine_similarity(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), dim=1) for a, b in zip(outputs, reference)]
    return float(torch.stack([v.mean() for v in values]).mean())


# ---- checkpoints -------------------------------------------------------------------------------

def _fingerprint(state: dict) -> list:
    return sorted((k, list(v.shape)) for k, v in state.items() if hasattr(v, "shape"))


def save_checkpoint(folder: str, payload: dict) -> None:
    """Atomic: a temp file in the folder, then rename over the last checkpoint."""
    import torch

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{CHECKPOINT_NAME}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path / CHECKPOINT_NAME)
    except OSError as exc:
        raise OutputError(f"cannot write checkpoint in {folder}: {exc.strerror or exc}") from None


def load_checkpoint(folder: str, expected: list) -> dict:
    import torch

    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        raise UsageError(f"--resume: no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"--resume: cannot read {path} ({type(exc).__name__})") from None
    if payload.get("fingerprint") != expected:
        raise UsageError(f"--resume: {path} was written for a different student or loss setting")
    return payload
