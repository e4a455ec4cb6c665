"""edgekit distill: teacher + data -> a smaller student (.pt2 + state_dict + report), ready for convert."""
from __future__ import annotations

import argparse
import json
import sys

from edgekit.cli import add_common
from edgekit.distill.losses import ALPHA, TEMPERATURE
from edgekit.errors import EXIT_VERIFY_FAILED, UsageError


def _floats(text: str | None):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}") from None


def _size(text: str | None):
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        return (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise UsageError(f"--image-size {text!r}: expected N or HxW") from None


def _lr(text: str):
    """``auto`` (the range test chooses: None) or a positive number."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto or a number, e.g. 3e-3") from None


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="distil a teacher into a smaller student (.pt2 for edgekit convert)")
    p.add_argument("--teacher", required=True, metavar="MODEL",
                   help="model file (any form convert reads), Hugging Face model folder, or package.module:factory")
    p.add_argument("--arch", metavar="MODULE:FACTORY", help="builds the teacher for a state_dict file")
    p.add_argument("--student", default="auto", metavar="auto|MODULE:FACTORY|FILE",
                   help="auto (fewer transformer layers, or a narrower CNN/MLP), a factory, or a model file (default auto)")
    p.add_argument("--student-arch", metavar="MODULE:FACTORY", help="builds the student for a state_dict --student file")
    p.add_argument("--keep-layers", default="2", metavar="K|I,J,..",
                   help="auto transformer student: keep every K-th encoder layer (the last stays), or these indices (default 2)")
    p.add_argument("--width", type=float, default=0.5, help="auto CNN/MLP student: fraction of channels kept (default 0.5)")
    p.add_argument("--trust-pickle", action="store_true", help="allow fully pickled modules (can run arbitrary code)")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="teacher input, e.g. x:1x1x28x28 (taken from a .pt2 or a Hugging Face folder when omitted)")
    p.add_argument("--data", required=True, metavar="PATH",
                   help="training data: image folder (subfolder per class), .npz (inputs [+ labels]), .txt/.csv, or module:function")
    p.add_argument("--val", metavar="PATH", help="validation data (same forms); default: hold back --val-split of --data")
    p.add_argument("--val-split", type=float, default=0.1, help="fraction of --data held back for validation (default 0.1)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N training samples")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer for text data (default: the Hugging Face teacher's)")
    p.add_argument("--max-length", type=int, default=128, help="token sequence length for text (default 128)")
    p.add_argument("--image-size", metavar="HxW", help="resize images of an image folder")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean (pixels scaled to 0..1)")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std")
    loss = p.add_argument_group("loss")
    loss.add_argument("--loss", default="auto", choices=("auto", "kl", "mse", "cosine"),
                      help="output loss: kl (soft targets, for logits), mse or cosine (embeddings); auto picks (default)")
    loss.add_argument("--temperature", "-T", type=float, default=TEMPERATURE,
                      help=f"softmax temperature for kl, its term scaled by T^2 (default {TEMPERATURE:g})")
    loss.add_argument("--alpha", type=float, default=ALPHA,
                      help=f"with labels: alpha * T^2 * KL + (1 - alpha) * cross-entropy (default {ALPHA:g})")
    loss.add_argument("--hidden-loss", choices=("mse", "cosine"), help="also match hidden states (off by default)")
    loss.add_argument("--hidden-weight", type=float, default=1.0, help="weight of the hidden-state loss (default 1)")
    loss.add_argument("--hidden-pair", action="append", default=[], metavar="TEACHER_MODULE=STUDENT_MODULE",
                      help="hidden states to match (repeatable; auto students pair their layers themselves)")
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int, default=5)
    tr.add_argument("--batch-size", type=int, default=64, help="per process (default 64)")
    tr.add_argument("--lr", type=_lr, default=None, metavar="auto|LR",
                    help="AdamW peak learning rate; auto: a learning-rate range test picks it (default auto)")
    tr.add_argument("--weight-decay", type=float, default=0.01)
    tr.add_argument("--warmup", type=float, default=0.05, help="warm-up: a fraction of all steps (<1) or steps (default 0.05)")
    tr.add_argument("--clip-grad", type=float, default=1.0, help="gradient norm clip, 0 for none (default 1)")
    tr.add_argument("--patience", type=int, help="early stopping: epochs without a better validation metric")
    tr.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                    help="mixed precision on a GPU (auto: bf16 where supported, else fp16; never on CPU)")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    tr.add_argument("--threads", type=int, help="CPU threads for training (default: torch's; 1 on a busy machine)")
    tr.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint every epoch (default: <output>.ckpt)")
    tr.add_argument("--no-checkpoint", action="store_true", help="write no checkpoints")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    tr.add_argument("--qat", choices=("int8",), help="quantization-aware distillation: train with fake int8 (torchao PT2E)")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="skip the control run (the same student trained on the labels alone, without the teacher)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the distilled student does worse than its control")
    p.add_argument("-o", "--output", default="student.pt2", metavar="FILE.pt2", help="the student (default student.pt2)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    add_common(p)


def options_from_args(args) -> dict:
    """distill() keyword arguments from parsed args (shared with `edgekit run`)."""
    import math

    for flag in ("lr", "weight_decay", "warmup", "clip_grad", "temperature", "alpha", "hidden_weight", "width", "val_split"):
        value = getattr(args, flag, None)
        if value is not None and not math.isfinite(value):  # nan slips through every `<= 0` check
            raise UsageError(f"--{flag.replace('_', '-')} must be a finite number, got {value}")
    checkpoint_dir = None if args.no_checkpoint else (args.checkpoint_dir or args.output.removesuffix(".pt2") + ".ckpt")
    return dict(
        student=args.student, data=args.data, val=args.val, val_split=args.val_split, output=args.output,
        inputs=args.input, arch=args.arch, student_arch=args.student_arch, trust_pickle=args.trust_pickle,
        tokenizer=args.tokenizer, max_length=args.max_length, keep_layers=args.keep_layers, width=args.width,
        loss=args.loss, temperature=args.temperature, alpha=args.alpha, hidden_loss=args.hidden_loss,
        hidden_weight=args.hidden_weight, hidden_pairs=args.hidden_pair, qat=args.qat, control=args.control, limit=args.limit,
        image_size=_size(args.image_size), mean=_floats(args.mean), std=_floats(args.std), overwrite=args.overwrite,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
        clip_grad=args.clip_grad or None, patience=args.patience, max_steps=args.max_steps, seed=args.seed, amp=args.amp,
        device=args.device, threads=args.threads, checkpoint_dir=checkpoint_dir, resume=args.resume,
    )


def run(args) -> int:
    from edgekit.distill import distill
    from edgekit.distill.report import render
    from edgekit.distill.train import distributed_context
    from edgekit.ui import Reporter

    rank, _ = distributed_context()
    reporter = Reporter(quiet=args.quiet or args.json or rank != 0, verbose=args.verbose)
    try:
        result = distill(args.teacher, reporter=reporter, **options_from_args(args))
    finally:
        _leave_process_group()
    if result is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    print(json.dumps(result.report, indent=2, default=str) if args.json else render(result.report))
    control = result.report["control"]
    if args.strict and control["verdict"] == "worse":
        print(f"error: --strict: the distilled student ({result.report['metric']['student']:.4f}) is worse than its "
              f"control trained without the teacher ({control['metric']:.4f})", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    return 0


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
