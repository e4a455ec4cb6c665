"""distill(): teacher + data -> a trained student as an ExportedProgram (.pt2), its state_dict and a report.

Files (beside ``output``, all written into a staging folder first and moved into place together):
``student.pt2`` (torch.export, batch 1: ``edgekit convert student.pt2`` takes it as is),
``student.pt`` (state_dict) and ``student.distill.json`` (the report). Checkpoints go to
``checkpoint_dir``.

Unless ``control=False``, the same student is also trained without the teacher, on the labels alone,
from the same budget (control.py); the report puts the two side by side.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from edgekit.distill import control as control_mod
from edgekit.distill.losses import ALPHA, TEMPERATURE, LossConfig
from edgekit.distill.train import TrainConfig
from edgekit.errors import DataError, OutputError, UsageError
from edgekit.ui import Reporter


@dataclass
class DistillResult:
    student: Any  # the trained eager nn.Module
    report: dict[str, Any]
    paths: dict[str, str]  # pt2, state_dict, report
    control: Any = None  # the student trained without the teacher (None when the control did not run)

    @property
    def path(self) -> str:
        return self.paths["pt2"]


def output_paths(output: str, qat: bool) -> dict[str, str]:
    if not output.endswith(".pt2"):
        raise UsageError(f"-o {output}: the student is written as an ExportedProgram; name it *.pt2")
    stem = output[: -len(".pt2")]
    paths = {"pt2": output, "state_dict": stem + ".pt", "report": stem + ".distill.json"}
    return paths


def _choose_output_loss(loss: str, teacher, sample_output, labelled: bool) -> str:
    if loss != "auto":
        return loss
    if teacher.output_kind == "embedding":
        return "cosine"
    if teacher.output_kind == "logits" or labelled:
        return "kl"
    from edgekit.verify import looks_like_class_scores

    return "kl" if looks_like_class_scores(tuple(sample_output.shape)) else "mse"


@dataclass
class _Trained:
    """One trained student: the distilled one or its control."""

    module: Any  # the eager student
    result: Any  # TrainResult
    metric: float  # float validation metric of the best epoch
    metric_int8: float | None  # with --qat: the fake-quantized graph's


def distill(
    teacher: Any,
    *,
    data: str,
    student: str = "auto",
    val: str | None = None,
    val_split: float = 0.1,
    output: str = "student.pt2",
    inputs: Sequence[str] | None = None,
    arch: str | None = None,
    student_arch: str | None = None,
    trust_pickle: bool = False,
    tokenizer: str | None = None,
    max_length: int = 128,
    keep_layers: str | int = 2,
    width: float = 0.5,
    loss: str = "auto",
    temperature: float = TEMPERATURE,
    alpha: float = ALPHA,
    hidden_loss: str | None = None,
    hidden_weight: float = 1.0,
    hidden_pairs: Sequence[str] | None = None,
    qat: str | None = None,
    control: bool = True,
    limit: int | None = None,
    image_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    **train_options: Any,
) -> DistillResult | None:
    """Distil ``teacher`` (a model file, HF folder, ``module:factory``, or an nn.Module with ``inputs``).

    Other keyword arguments are TrainConfig fields (epochs, batch_size, lr, patience, checkpoint_dir,
    resume, seed, ...); ``lr=None`` (the default) lets the range test choose. ``control`` also trains
    the student without the teacher, for comparison. Under torchrun every process calls this; rank 0
    writes and returns the result, the others return None.
    """
    reporter = reporter or Reporter(quiet=True)
    config = TrainConfig(**train_options)
    # validate the loss options now, before any loading; the output loss is settled once the teacher ran
    LossConfig(output=loss if loss != "auto" else "kl", temperature=temperature, alpha=alpha,
               hidden=hidden_loss, hidden_weight=hidden_weight)
    if qat is not None and hidden_loss:
        raise UsageError("--qat trains an exported graph, which has no modules to hook: drop --hidden-loss")
    paths = output_paths(output, qat is not None)
    rank = _check_outputs(paths, overwrite)
    _seed(config.seed)
    t = _load(teacher, inputs, arch, trust_pickle, tokenizer, max_length, config.seed, reporter)
    data_kwargs = dict(tokenizer=t.tokenizer, image_size=image_size, mean=mean, std=std)
    train_data, val_data = _read_data(data, val, val_split, limit, t, config.seed, data_kwargs, reporter)
    example = tuple(x[:1] for x in val_data.inputs)  # a real batch-1 sample: what the .pt2 is exported with
    output_loss = _settle_output_loss(loss, t, example, train_data, val_data, data)
    loss_config = LossConfig(output=output_loss, temperature=temperature, alpha=alpha,
                             hidden=hidden_loss, hidden_weight=hidden_weight)
    plan = dict(student=student, keep_layers=keep_layers, width=width, arch=student_arch, trust_pickle=trust_pickle,
                seed=config.seed)
    built, pairs = _build(t, example, plan, hidden_pairs, hidden_loss, reporter)
    reporter.info(f"  train: {len(train_data)} samples, validate: {len(val_data)}; loss {output_loss}"
                  + (f" + hidden {hidden_loss}" if hidden_loss else ""))
    distilled = _train_one(t, built.module, train_data, val_data, loss_config, config, pairs, qat, reporter)
    reason = control_mod.reason_not_run(control, train_data.labels is not None, output_loss)
    control_run = None
    if reason is None:
        control_run = _control(t, example, plan, train_data, val_data, loss_config, config, qat, reporter)
    if rank != 0:
        return None
    with reporter.stage("export student"):
        program = _export(distilled.module, example, [spec.name for spec in t.specs])
    report = _report(t, built, example, distilled, control_run, reason, loss_config, pairs, config, qat,
                     train_data, val_data, paths)
    warning = control_mod.warning(report)
    if warning:
        reporter.warn(warning)
    _write(paths, program, distilled.module, report)
    return DistillResult(distilled.module, report, paths, control_run.module if control_run else None)


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_outputs(paths: dict[str, str], overwrite: bool) -> int:
    """This process's rank; on rank 0, refuses existing outputs (without overwrite) and unwritable folders."""
    from edgekit.distill.train import distributed_context
    from edgekit.manifest import check_output_dir

    rank, _ = distributed_context()
    if rank == 0 and not overwrite:
        for path in paths.values():
            if os.path.exists(path):
                raise OutputError(f"{path} exists; pass --overwrite to replace it")
    if rank == 0:
        out_dir = Path(paths["pt2"]).parent
        check_output_dir(out_dir if str(out_dir) else ".")
    return rank


def _load(teacher, inputs, arch, trust_pickle, tokenizer, max_length, seed, reporter):
    import torch

    from edgekit.distill.teacher import Teacher, load_teacher, load_tokenizer

    with reporter.stage("load teacher"):
        if isinstance(teacher, torch.nn.Module):
            from edgekit.export import prepare
            from edgekit.loading import LoadedModel
            from edgekit.options import InputSpec

            prepared = prepare(LoadedModel("module", module=teacher.eval(), source=type(teacher).__name__),
                               [InputSpec.parse(s) for s in inputs or []], seed=seed)
            for p in teacher.parameters():
                p.requires_grad_(False)
            t = Teacher(teacher, list(prepared.inputs), type(teacher).__name__, "module", flops=prepared.flops)
            if tokenizer:
                t.tokenizer = load_tokenizer(tokenizer)
        else:
            t = load_teacher(str(teacher), arch=arch, trust_pickle=trust_pickle, inputs=list(inputs or []),
                             max_length=max_length, tokenizer=tokenizer, seed=seed)
    for warning in t.warnings:
        reporter.warn(warning)
    return t


def _read_data(data, val, val_split, limit, t, seed, data_kwargs, reporter):
    from edgekit.distill.data import load_training_data, split_validation

    with reporter.stage("read data"):
        train_data = load_training_data(data, t.specs, limit=limit, flag="--data", **data_kwargs)
        if val is not None:
            val_data = load_training_data(val, t.specs, classes=train_data.classes, flag="--val", **data_kwargs)
        else:
            train_data, val_data = split_validation(train_data, val_split, seed)
        if (train_data.labels is None) != (val_data.labels is None):
            raise DataError("--data and --val must both have labels or both have none")
    return train_data, val_data


def _settle_output_loss(loss, t, example, train_data, val_data, data) -> str:
    import torch

    from edgekit.distill.teacher import batched_forward
    from edgekit.distill.train import flat

    with torch.no_grad():
        teacher_out = flat(batched_forward(t.module, list(example)))
    output_loss = _choose_output_loss(loss, t, teacher_out[0], train_data.labels is not None)
    if output_loss == "kl" and train_data.labels is not None:
        classes = teacher_out[0].shape[-1]
        top = int(max(train_data.labels.max(), val_data.labels.max()))
        if top >= classes:
            raise DataError(f"--data {data}: labels go up to {top}, but the teacher's output has {classes} classes")
    return output_loss


def _build(t, example, plan: dict, hidden_pairs, hidden_loss, reporter):
    """The student (seeded: the control run builds the very same one) and the hidden-state pairs."""
    built = _make(t, example, plan, reporter, "build student")
    reporter.info(f"  student: {built.description}")
    pairs = list(built.hidden_pairs)
    if hidden_pairs:
        pairs = [_parse_pair(p) for p in hidden_pairs]
    if hidden_loss and not pairs:
        raise UsageError("--hidden-loss needs --hidden-pair TEACHER_MODULE=STUDENT_MODULE for this student")
    return built, pairs if hidden_loss else []


def _make(t, example, plan: dict, reporter, stage: str):
    import torch

    from edgekit.distill import students as students_mod

    with reporter.stage(stage):
        torch.manual_seed(plan["seed"])  # the same initial weights for the distilled student and its control
        return students_mod.make_student(plan["student"], t.module, example, keep_layers=plan["keep_layers"],
                                         width=plan["width"], arch=plan["arch"], trust_pickle=plan["trust_pickle"])


def _train_one(t, student_module, train_data, val_data, loss_config, config, pairs, qat, reporter) -> _Trained:
    """Train one student (optionally with fake int8 in the loop); its float and int8 validation metrics."""
    from edgekit.distill.train import train

    trainable, set_mode, float_test = student_module, None, None
    if qat is not None:
        from edgekit.distill import qat as qat_mod
        from edgekit.distill.train import find_lr

        if config.lr is None:
            with reporter.stage("learning-rate range test (float student)"):
                found = find_lr(t.module, student_module, train_data, val_data, loss_config, config, pairs)
            config, float_test = replace(config, lr=found.lr), found.to_dict()
        with reporter.stage("prepare QAT (fake int8)"):
            trainable = qat_mod.prepare(student_module, tuple(x[:2] for x in train_data.inputs), qat)
            set_mode = qat_mod.set_mode
    result = train(t.module, trainable, train_data, val_data, loss_config, config, hidden_pairs=pairs,
                   set_mode=set_mode, quiet=reporter.quiet, float_test=float_test)
    if qat is None:
        return _Trained(student_module, result, result.best_metric, None)
    from edgekit.distill import qat as qat_mod
    from edgekit.distill.train import outputs_over, score

    qat_mod.freeze_for_evaluation(trainable)
    qat_mod.load_float_weights(trainable, student_module)
    reference = outputs_over(t.module, val_data, config.eval_batch_size, "cpu")
    int8 = score(outputs_over(trainable, val_data, config.eval_batch_size, "cpu"), reference, val_data.labels, result.metric)
    float_metric = score(outputs_over(student_module, val_data, config.eval_batch_size, "cpu"), reference,
                         val_data.labels, result.metric)
    student_module.eval()
    return _Trained(student_module, result, float_metric, int8)


def _control(t, example, plan, train_data, val_data, loss_config, config, qat, reporter) -> _Trained:
    """The same student, rebuilt from the same seed, trained on the labels alone with the same budget."""
    reporter.info("  control: the same student trained without the teacher, on the labels alone")
    built = _make(t, example, plan, reporter, "build control student")
    control_loss = replace(loss_config, labels_only=True, hidden=None)
    control_config = replace(config, checkpoint_dir=None, resume=False)
    return _train_one(t, built.module, train_data, val_data, control_loss, control_config, [], qat, reporter)


def _report(t, built, example, distilled, control_run, reason, loss_config, pairs, config, qat,
            train_data, val_data, paths) -> dict:
    from edgekit.distill.report import model_facts
    from edgekit.distill.train import SCHEDULE

    result = distilled.result
    control = (control_mod.summary(control_run.result, control_run.metric, control_run.metric_int8, distilled.metric)
               if control_run is not None else control_mod.not_run(reason))
    return {
        "teacher_source": t.source,
        "student_description": built.description,
        "teacher": model_facts(t.module, example),
        "student": model_facts(distilled.module, example),
        "metric": {"name": result.metric, "teacher": result.teacher_metric, "student": distilled.metric,
                   "student_int8": distilled.metric_int8, "data": val_data.describe()},
        "control": control,
        "loss": {"output": loss_config.output, "temperature": loss_config.temperature, "alpha": loss_config.alpha,
                 "hidden": loss_config.hidden, "hidden_pairs": [list(p) for p in pairs]},
        "training": {"lr": result.lr, "lr_source": result.lr_source, "range_test": result.range_test,
                     "schedule": SCHEDULE, "warmup": config.warmup, "weight_decay": config.weight_decay,
                     "epochs_run": result.epochs_run, "steps": result.steps, "best_epoch": result.best_epoch,
                     "stopped_early": result.stopped_early, "world_size": result.world_size, "device": result.device,
                     "amp": result.amp, "resumed_from_epoch": result.resumed_from_epoch, "history": result.history,
                     "data": train_data.describe(), "config": dict(config.__dict__)},
        "qat": qat,
        "inputs": [s.to_dict() for s in t.specs],
        "files": dict(paths),
    }


def _parse_pair(text: str) -> tuple[str, str]:
    teacher_name, sep, student_name = text.partition("=")
    if not sep or not teacher_name or not student_name:
        raise UsageError(f"--hidden-pair {text!r}: expected TEACHER_MODULE=STUDENT_MODULE, e.g. features.3=features.3")
    return teacher_name.strip(), student_name.strip()


def _with_input_names(module, names: Sequence[str]):
    """The module behind a forward() whose arguments carry the teacher's input names.

    The .pt2 takes its input names from forward()'s signature; with the teacher's names, the data
    files used for distillation also calibrate and verify in ``edgekit convert student.pt2``.
    """
    import inspect
    import keyword

    import torch

    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    usable = all(n.isidentifier() and not keyword.iskeyword(n) for n in names) and len(set(names)) == len(names)
    if not usable or [p.name for p in params[: len(names)]] == list(names):
        return module
    arguments = ", ".join(names)
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {arguments}):\n    return self.student({arguments})\n", namespace)  # noqa: S102

    class Student(torch.nn.Module):
        def __init__(self, student):
            super().__init__()
            self.student = student

    Student.forward = namespace["forward"]
    return Student(module).eval()


def _export(module, example, names: Sequence[str] = ()):
    import torch

    from edgekit.errors import ConversionError

    try:
        return torch.export.export(_with_input_names(module, names), tuple(example), strict=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"torch.export of the trained student failed ({type(exc).__name__}: {first})") from exc


def _write(paths: dict[str, str], program, student_module, report: dict) -> None:
    """Stage every file, then move them into place together."""
    import torch

    from edgekit.manifest import _json_default

    destination = Path(paths["pt2"]).parent
    stage = Path(tempfile.mkdtemp(prefix=".edgekit-stage-", dir=destination if str(destination) else "."))
    try:
        staged = {}
        for key, path in paths.items():
            staged[key] = stage / Path(path).name
        torch.export.save(program, str(staged["pt2"]))
        torch.save(student_module.state_dict(), staged["state_dict"])
        staged["report"].write_text(json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")
        for key, path in paths.items():
            os.replace(staged[key], path)
    except OSError as exc:
        raise OutputError(f"cannot write {paths['pt2']}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
