"""The distillation loop: AdamW, linear warm-up then cosine decay, gradient clipping, mixed precision on
a GPU, a progress line, evaluation every epoch, early stopping, checkpoints and resume, seeds, and
DistributedDataParallel when started by torchrun (gloo on CPU, NCCL on GPUs).

Determinism: shuffling uses a sampler seeded by (seed, epoch), and a checkpoint stores the RNG state,
so a run resumed from epoch k ends with the same weights as one that never stopped.
Distributed: ``--batch-size`` is per process; every process holds the data, takes its shard of each
epoch (DistributedSampler), and evaluates the full validation set itself, so that every process
reaches the same early-stopping decision without extra communication. Only rank 0 writes.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit.distill.losses import LossConfig, distillation_loss, first_tensor, make_projections
from edgekit.errors import OutputError, UsageError

CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.05  # a fraction of all steps (< 1) or a number of steps
    clip_grad: float | None = 1.0
    patience: int | None = None  # stop after this many epochs without a better validation metric
    max_steps: int | None = None
    seed: int = 0
    amp: str = "auto"  # auto (bf16/fp16 on a GPU, off on CPU) | off | bf16 | fp16
    device: str = "auto"
    eval_batch_size: int = 256
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    checkpoint_dir: str | None = None
    resume: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            raise UsageError(f"--lr {self.lr}: must be positive")
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup}: must not be negative")
        if self.patience is not None and self.patience < 1:
            raise UsageError("--patience must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise UsageError(f"--amp {self.amp!r}: choose auto, off, bf16 or fp16")
        if self.resume and not self.checkpoint_dir:
            raise UsageError("--resume needs a checkpoint folder (--checkpoint-dir)")


@dataclass
class TrainResult:
    metric: str  # accuracy | agreement | cosine
    teacher_metric: float | None
    best_metric: float
    best_epoch: int
    epochs_run: int
    steps: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    world_size: int = 1
    amp: str | None = None
    device: str = "cpu"


# ---- distributed ---------------------------------------------------------------------------------

def distributed_context() -> tuple[int, int]:
    """(rank, world size); joins the process group when torchrun started us."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        import torch

        backend = "nccl" if torch.cuda.is_available() and os.environ.get("EDGEKIT_DIST_BACKEND") != "gloo" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def resolve_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None


# ---- pieces ----------------------------------------------------------------------------------------

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


# ---- the loop ------------------------------------------------------------------------------------

def train(
    teacher,
    student,
    train_data,
    val_data,
    loss_config: LossConfig,
    config: TrainConfig,
    *,
    hidden_pairs=(),
    set_mode: Callable[[Any, bool], None] | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Distil ``teacher`` into ``student`` (trained in place; the best epoch's weights are kept)."""
    import torch
    import torch.nn as nn

    rank, world = distributed_context()
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the same initial state on every rank
    set_mode = set_mode or (lambda m, training: m.train(training))
    from edgekit.distill.teacher import eval_mode

    eval_mode(teacher.to(device))
    student.to(device)
    pairs = list(hidden_pairs) if loss_config.hidden else []

    t_capture = HiddenCapture(teacher, [t for t, _ in pairs]) if pairs else None
    s_capture = HiddenCapture(student, [s for _, s in pairs]) if pairs else None
    projections = nn.ModuleDict()
    if pairs:  # shapes of the hidden states decide the projections
        probe = [t[:2].to(device) for t in train_data.inputs]
        with torch.no_grad():
            set_mode(student, False)
            teacher(*probe)
            student(*probe)
        projections = make_projections(s_capture.values, t_capture.values, pairs).to(device)
    container = _trainable_class()(student, projections)

    metric = metric_name(val_data, loss_config.output)
    val_reference = outputs_over(teacher, val_data, config.eval_batch_size, device)
    teacher_metric = score(val_reference, val_reference, val_data.labels, metric) if metric == "accuracy" else None
    train_cache = None if pairs else outputs_over(teacher, train_data, config.eval_batch_size, device)

    params = [p for p in container.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / world) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, config.warmup))
    amp_dtype = None
    if device.type == "cuda" and config.amp != "off":
        amp_dtype = torch.float16 if config.amp == "fp16" or (config.amp == "auto" and not torch.cuda.is_bf16_supported()) else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    ddp = container
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(container, device_ids=[device.index] if device.type == "cuda" else None)

    fingerprint = _fingerprint(container.state_dict()) + [["loss", [loss_config.output, loss_config.hidden or ""]]]
    start_epoch, step, best, best_epoch, bad_epochs, history = 0, 0, -math.inf, 0, 0, []
    best_state = None
    resumed = None
    if config.resume:
        payload = load_checkpoint(config.checkpoint_dir, fingerprint)
        container.load_state_dict(payload["container"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["rng"])
        start_epoch, step = payload["epoch"], payload["step"]
        best, best_epoch, bad_epochs = payload["best"], payload["best_epoch"], payload["bad_epochs"]
        best_state, history = payload["best_state"], list(payload["history"])
        resumed = start_epoch

    progress = Progress(enabled=not quiet and rank == 0)
    stopped_early = False
    epoch = start_epoch
    for epoch in range(start_epoch, config.epochs):
        if config.max_steps and step >= config.max_steps:
            break
        started = time.perf_counter()
        set_mode(student, True)
        projections.train()
        losses = []
        epoch_batches = batches(len(train_data), config.batch_size, epoch, config.seed, rank, world)
        for i, index in enumerate(epoch_batches):
            inputs = [t[index].to(device, non_blocking=True) for t in train_data.inputs]
            labels = None if train_data.labels is None else train_data.labels[index].to(device)
            if train_cache is not None:
                teacher_out = [c[index].to(device) for c in train_cache]
            else:
                with torch.no_grad():
                    teacher_out = [o.float() for o in flat(teacher(*inputs))]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                student_out = flat(ddp(*inputs))
                loss, parts = distillation_loss(
                    loss_config, student_out, teacher_out, labels,
                    s_capture.values if s_capture else None, t_capture.values if t_capture else None,
                    pairs, projections,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            progress.update(epoch + 1, config.epochs, i + 1, len(epoch_batches), sum(losses) / len(losses),
                            f"best val {metric} {best:.4f}" if history else None)
            if config.max_steps and step >= config.max_steps:
                break
        set_mode(student, False)
        value = score(outputs_over(student, val_data, config.eval_batch_size, device), val_reference, val_data.labels, metric)
        improved = value > best
        if improved:
            best, best_epoch, bad_epochs = value, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in container.state_dict().items()}
        else:
            bad_epochs += 1
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)), metric: value,
                        "lr": scheduler.get_last_lr()[0], "seconds": round(seconds, 2), "steps": step})
        progress.epoch_done(epoch + 1, config.epochs, history[-1]["loss"], metric, value, seconds, "" if improved else "  (no better)")
        if config.checkpoint_dir and rank == 0:
            save_checkpoint(config.checkpoint_dir, {
                "fingerprint": fingerprint, "container": container.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                "epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_state": best_state, "history": history,
            })
        if config.patience and bad_epochs >= config.patience:
            stopped_early = True
            break
    for capture in (t_capture, s_capture):
        if capture:
            capture.remove()
    if best_state is not None:
        container.load_state_dict(best_state)
    student.to("cpu")
    teacher.to("cpu")
    set_mode(student, False)
    return TrainResult(
        metric=metric, teacher_metric=teacher_metric, best_metric=best, best_epoch=best_epoch,
        epochs_run=len(history), steps=step, stopped_early=stopped_early, history=history,
        resumed_from_epoch=resumed, world_size=world,
        amp=None if amp_dtype is None else str(amp_dtype).replace("torch.", ""), device=str(device),
    )


def _trainable_class():
    import torch.nn as nn

    class Trainable(nn.Module):
        """The student and the hidden-state projections: one module for the optimizer, DDP and checkpoints."""

        def __init__(self, student, projections):
            super().__init__()
            self.student = student
            self.projections = projections

        def forward(self, *inputs):
            return self.student(*inputs)

    return Trainable
