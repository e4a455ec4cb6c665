"""The distillation loop: AdamW at a peak learning rate the range test picks (or --lr), linear warm-up
then cosine decay, gradient clipping, mixed precision on a GPU, a progress line, evaluation every epoch, early stopping, checkpoints and resume, seeds, and
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
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edgekit.distill.losses import LossConfig, distillation_loss, make_projections
from edgekit.distill.parts import (  # noqa: F401  (flat, outputs_over, score: the api's imports)
    CHECKPOINT_NAME,
    HiddenCapture,
    Progress,
    _fingerprint,
    batches,
    flat,
    load_checkpoint,
    lr_lambda,
    metric_name,
    outputs_over,
    save_checkpoint,
    score,
)
from edgekit.errors import UsageError

SCHEDULE = "AdamW; linear warm-up, then cosine decay to 0"
SMALL_STUDENT = 1_000_000  # parameters: below this, one CPU thread unless --threads says otherwise


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None  # None: the learning-rate range test picks it (lrfind.py)
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
        if self.lr is not None and self.lr <= 0:
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
    lr: float | None = None  # the peak learning rate used
    lr_source: str = "given"  # given | range test | checkpoint
    range_test: dict[str, Any] | None = None


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


# ---- the loop ------------------------------------------------------------------------------------

@dataclass
class _Run:
    """What one training run holds; the range test and the epochs share it."""

    teacher: Any
    student: Any
    container: Any  # the student and the hidden-state projections, one module
    model: Any  # what the epochs call: the container, wrapped in DDP under torchrun
    projections: Any
    captures: tuple  # (teacher HiddenCapture, student HiddenCapture) or (None, None)
    pairs: list
    set_mode: Callable[[Any, bool], None]
    device: Any
    amp_dtype: Any
    rank: int
    world: int
    metric: str
    val_reference: list
    train_cache: list | None
    teacher_metric: float | None = None  # the teacher's accuracy, when the validation data has labels
    params: list = field(default_factory=list)
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict | None = None
    history: list = field(default_factory=list)
    resumed: int | None = None
    stopped_early: bool = False


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
    float_test: dict | None = None,
) -> TrainResult:
    """Distil ``teacher`` into ``student`` (trained in place; the best epoch's weights are kept).

    With ``loss_config.labels_only`` this is the control run: the same loop on the labels alone.
    """
    import torch

    threads_before = torch.get_num_threads()
    run = _setup(teacher, student, train_data, val_data, loss_config, config, hidden_pairs, set_mode)
    try:
        total_steps = math.ceil(math.ceil(len(train_data) / run.world) / config.batch_size) * config.epochs
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        fingerprint = _fingerprint(run.container.state_dict()) + [["loss", [loss_config.output, loss_config.hidden or ""]]]
        payload = load_checkpoint(config.checkpoint_dir, fingerprint) if config.resume else None
        if payload is not None:
            # checkpoints of earlier versions lack "lr": the scheduler's base rate is the same number
            lr = payload.get("lr") or payload["optimizer"]["param_groups"][0]["initial_lr"]
            source, test = "checkpoint", payload.get("range_test")
        elif config.lr is not None:
            lr, source, test = config.lr, "given", None
            if float_test is not None:
                source, test = "range test (float student)", float_test
        else:
            found = _range_test(run, train_data, loss_config, config, total_steps)
            lr, source, test = found.lr, "range test", found.to_dict()
        _make_optimizer(run, config, lr, total_steps)
        state = _State()
        if payload is not None:
            _restore(run, state, payload)
        progress = Progress(enabled=not quiet and run.rank == 0)
        for epoch in range(state.epoch, config.epochs):
            if config.max_steps and state.step >= config.max_steps:
                break
            started = time.perf_counter()
            losses = _train_epoch(run, state, train_data, loss_config, config, epoch, progress)
            _end_epoch(run, state, val_data, config, epoch, losses, time.perf_counter() - started, progress)
            if config.checkpoint_dir and run.rank == 0:
                save_checkpoint(config.checkpoint_dir, _checkpoint(run, state, fingerprint, lr, source, test))
            if config.patience and state.bad_epochs >= config.patience:
                state.stopped_early = True
                break
    finally:
        for capture in run.captures:
            if capture:
                capture.remove()
        torch.set_num_threads(threads_before)
    return _finish(run, state, lr, source, test)


def find_lr(teacher, student, train_data, val_data, loss_config: LossConfig, config: TrainConfig, hidden_pairs=()):
    """The range test alone (the student is left as it was): for --qat, measured on the float student,
    since the fake-quantized graph's loss hardly reacts to the learning rate."""
    import torch

    threads_before = torch.get_num_threads()
    run = _setup(teacher, student, train_data, val_data, loss_config, config, hidden_pairs, None)
    try:
        total_steps = math.ceil(math.ceil(len(train_data) / run.world) / config.batch_size) * config.epochs
        return _range_test(run, train_data, loss_config, config, min(total_steps, config.max_steps or total_steps))
    finally:
        for capture in run.captures:
            if capture:
                capture.remove()
        torch.set_num_threads(threads_before)
        student.to("cpu")
        teacher.to("cpu")


def _setup(teacher, student, train_data, val_data, loss_config, config, hidden_pairs, set_mode) -> _Run:
    import torch
    import torch.nn as nn

    from edgekit.distill.teacher import eval_mode

    rank, world = distributed_context()
    device = resolve_device(config.device)
    threads = config.threads
    if threads is None and device.type == "cpu" and sum(p.numel() for p in student.parameters()) < SMALL_STUDENT:
        threads = 1  # intra-op threads cost more than they give on tiny layers (50x slower on a busy 2-core host)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)  # the same initial state on every rank
    set_mode = set_mode or (lambda m, training: m.train(training))
    eval_mode(teacher.to(device))
    student.to(device)
    pairs = list(hidden_pairs) if loss_config.hidden and not loss_config.labels_only else []
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
    model = container
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(container, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = None
    if device.type == "cuda" and config.amp != "off":
        fp16 = config.amp == "fp16" or (config.amp == "auto" and not torch.cuda.is_bf16_supported())
        amp_dtype = torch.float16 if fp16 else torch.bfloat16
    # the teacher's outputs over the training set, once (the hidden-state loss needs its hooks per batch)
    cached = not pairs and not loss_config.labels_only
    metric = metric_name(val_data, loss_config.output)
    reference = outputs_over(teacher, val_data, config.eval_batch_size, device)
    return _Run(
        teacher, student, container, model, projections, (t_capture, s_capture), pairs, set_mode, device, amp_dtype,
        rank, world, metric, reference,
        outputs_over(teacher, train_data, config.eval_batch_size, device) if cached else None,
        teacher_metric=score(reference, reference, val_data.labels, metric) if metric == "accuracy" else None,
        params=[p for p in container.parameters() if p.requires_grad],
    )


def _batch_loss(run: _Run, model, index, train_data, loss_config: LossConfig):
    import torch

    device = run.device
    inputs = [t[index].to(device, non_blocking=True) for t in train_data.inputs]
    labels = None if train_data.labels is None else train_data.labels[index].to(device)
    teacher_out = []
    if run.train_cache is not None:
        teacher_out = [c[index].to(device) for c in run.train_cache]
    elif not loss_config.labels_only:
        with torch.no_grad():
            teacher_out = [o.float() for o in flat(run.teacher(*inputs))]
    t_capture, s_capture = run.captures
    with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        student_out = flat(model(*inputs))
        loss, _ = distillation_loss(
            loss_config, student_out, teacher_out, labels,
            s_capture.values if s_capture else None, t_capture.values if t_capture else None,
            run.pairs, run.projections,
        )
    return loss


def _optimizer_step(run: _Run, loss, optimizer, scaler, clip: float | None) -> None:
    import torch

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, clip)
    scaler.step(optimizer)
    scaler.update()


def _range_test(run: _Run, train_data, loss_config, config: TrainConfig, total_steps: int):
    """Leslie Smith's sweep on this very loss, from the same initial weights, which it then restores.

    Every process sweeps the same batches (no DDP, no sharding); rank 0's choice is broadcast, so
    all processes train at the same rate.
    """
    import itertools

    import torch

    from edgekit.distill.lrfind import START_LR, range_test, sweep_steps

    saved = {k: v.detach().clone() for k, v in run.container.state_dict().items()}
    rng = torch.get_rng_state()
    optimizer = torch.optim.AdamW(run.params, lr=START_LR, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16)
    # a sweep of its own order of the data (epoch numbers the training never uses)
    order = itertools.chain.from_iterable(
        batches(len(train_data), config.batch_size, 10**6 + k, config.seed, 0, 1) for k in itertools.count())
    run.set_mode(run.student, True)
    run.projections.train()

    def step(lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _batch_loss(run, run.container, next(order), train_data, loss_config)
        if not torch.isfinite(loss):
            return math.inf
        _optimizer_step(run, loss, optimizer, scaler, config.clip_grad)
        return float(loss.detach())

    try:
        found = range_test(step, sweep_steps(total_steps))
    finally:
        run.container.load_state_dict(saved)
        torch.set_rng_state(rng)
        run.set_mode(run.student, False)
    if run.world > 1:
        import torch.distributed as dist

        value = torch.tensor([found.lr], dtype=torch.float64, device=run.device)
        dist.broadcast(value, 0)
        found.lr = float(value.item())
    return found


def _make_optimizer(run: _Run, config: TrainConfig, lr: float, total_steps: int) -> None:
    import torch

    run.optimizer = torch.optim.AdamW(run.params, lr=lr, weight_decay=config.weight_decay)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lr_lambda(total_steps, config.warmup))
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16)


def _train_epoch(run: _Run, state: _State, train_data, loss_config, config: TrainConfig, epoch: int, progress) -> list:
    run.set_mode(run.student, True)
    run.projections.train()
    losses: list[float] = []
    epoch_batches = batches(len(train_data), config.batch_size, epoch, config.seed, run.rank, run.world)
    for i, index in enumerate(epoch_batches):
        loss = _batch_loss(run, run.model, index, train_data, loss_config)
        _optimizer_step(run, loss, run.optimizer, run.scaler, config.clip_grad)
        run.scheduler.step()
        state.step += 1
        losses.append(float(loss.detach()))
        progress.update(epoch + 1, config.epochs, i + 1, len(epoch_batches), sum(losses) / len(losses),
                        f"best val {run.metric} {state.best:.4f}" if state.history else None)
        if config.max_steps and state.step >= config.max_steps:
            break
    return losses


def _end_epoch(run: _Run, state: _State, val_data, config: TrainConfig, epoch: int, losses, seconds, progress) -> None:
    """Score the epoch on the validation data; keep the best weights."""
    run.set_mode(run.student, False)
    outputs = outputs_over(run.student, val_data, config.eval_batch_size, run.device)
    value = score(outputs, run.val_reference, val_data.labels, run.metric)
    improved = value > state.best
    if improved:
        state.best, state.best_epoch, state.bad_epochs = value, epoch + 1, 0
        state.best_state = {k: v.detach().cpu().clone() for k, v in run.container.state_dict().items()}
    else:
        state.bad_epochs += 1
    state.epoch = epoch + 1
    state.history.append({"epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)), run.metric: value,
                          "lr": run.scheduler.get_last_lr()[0], "seconds": round(seconds, 2), "steps": state.step})
    progress.epoch_done(epoch + 1, config.epochs, state.history[-1]["loss"], run.metric, value, seconds,
                        "" if improved else "  (no better)")


def _checkpoint(run: _Run, state: _State, fingerprint, lr, source, test) -> dict:
    import torch

    return {
        "fingerprint": fingerprint, "container": run.container.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": torch.get_rng_state(),
        "epoch": state.epoch, "step": state.step, "best": state.best, "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs, "best_state": state.best_state, "history": state.history,
        "lr": lr, "lr_source": source, "range_test": test,
    }


def _restore(run: _Run, state: _State, payload: dict) -> None:
    import torch

    run.container.load_state_dict(payload["container"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["rng"])
    state.epoch, state.step = payload["epoch"], payload["step"]
    state.best, state.best_epoch, state.bad_epochs = payload["best"], payload["best_epoch"], payload["bad_epochs"]
    state.best_state, state.history = payload["best_state"], list(payload["history"])
    state.resumed = state.epoch


def _finish(run: _Run, state: _State, lr, source, test) -> TrainResult:
    if state.best_state is not None:
        run.container.load_state_dict(state.best_state)
    run.student.to("cpu")
    run.teacher.to("cpu")
    run.set_mode(run.student, False)
    return TrainResult(
        metric=run.metric, teacher_metric=run.teacher_metric, best_metric=state.best, best_epoch=state.best_epoch,
        epochs_run=len(state.history), steps=state.step, stopped_early=state.stopped_early, history=state.history,
        resumed_from_epoch=state.resumed, world_size=run.world,
        amp=None if run.amp_dtype is None else str(run.amp_dtype).replace("torch.", ""), device=str(run.device),
        lr=lr, lr_source=source, range_test=test,
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
