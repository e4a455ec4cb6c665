"""Distil a Fashion-MNIST CNN into a student with >= 4x fewer parameters; print accuracies and ratios.

Goal (issues 6, 16): the student keeps >= 99 % of the teacher's test accuracy with >= 4x fewer parameters.
Data: Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), real labels. The teacher
is trained here; the student is edgekit's ``--student auto`` (width reduced, initialised from the
teacher's strongest filters) distilled with soft targets + labels. Both are scored on the full
10,000-image test set, which neither saw. To stay within a few minutes on 2 shared cores the training
uses a seeded subsample of the 60,000 training images (--train-samples; 2,000 more are held out for
validation).

    python -m benchmarks.distill_fashion_mnist [--train-samples 20000] [--teacher-epochs 8] [--epochs 4]
        [--width 0.45] [--threads 1] [--int8] [--qat]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time



def teacher_cnn():
    """The suite's Fashion-MNIST CNN architecture (benchmarks/models.py), trained here from scratch."""
    from benchmarks.models import _fashion_architecture

    return _fashion_architecture()


def load(split: str):
    """Fashion-MNIST images in [-1, 1] and labels: the suite's shared loader (benchmarks/models.py)."""
    from benchmarks.models import fashion_mnist

    return fashion_mnist(split)


def train_teacher(x, y, epochs: int, seed: int = 0):
    import torch

    from edgekit.demo import train_classifier

    torch.manual_seed(seed)
    return train_classifier(teacher_cnn(), x, y, epochs=epochs, weight_decay=1e-4, one_cycle=True)


def accuracy(model, x, y) -> float:
    import numpy as np
    import torch

    with torch.no_grad():
        preds = np.concatenate([model(torch.from_numpy(x[i : i + 1000])).argmax(-1).numpy() for i in range(0, len(x), 1000)])
    return float((preds == y).mean())


def tflite_accuracy(path: str, x, y) -> float:
    import numpy as np

    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.verify import run_artifact

    runtime = TFLiteRuntime().load(path)
    preds = np.array([np.argmax(run_artifact(runtime, (x[i : i + 1],))[0]) for i in range(len(x))])
    return float((preds == y).mean())


def main() -> None:
    import numpy as np
    import torch

    from edgekit.distill import distill
    from edgekit.distill.report import render
    from edgekit.ui import Reporter

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-samples", type=int, default=20000)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=float, default=0.45)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8", action="store_true", help="also convert the student to int8 TFLite and score it")
    parser.add_argument("--qat", action="store_true",
                        help="also distil with --qat int8 and compare its int8 TFLite with the float student's (implies --int8)")
    parser.add_argument("--keep", metavar="DIR", help="keep the files here (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x_all, y_all = load("train")
    x_test, y_test = load("test")
    order = np.random.default_rng(0).permutation(len(x_all))
    train_idx, val_idx = order[: args.train_samples], order[args.train_samples : args.train_samples + 2000]
    folder = args.keep or tempfile.mkdtemp(prefix="edgekit-fmnist-")
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, "train.npz"), x=x_all[train_idx], labels=y_all[train_idx])
    np.savez(os.path.join(folder, "val.npz"), x=x_all[val_idx], labels=y_all[val_idx])

    started = time.perf_counter()
    teacher = train_teacher(x_all[train_idx], y_all[train_idx], args.teacher_epochs)
    teacher_seconds = time.perf_counter() - started
    teacher_acc = accuracy(teacher, x_test, y_test)
    print(f"teacher: {sum(p.numel() for p in teacher.parameters()):,} parameters, trained {args.teacher_epochs} epochs "
          f"on {args.train_samples:,} images in {teacher_seconds:.0f} s; test accuracy {teacher_acc:.4f}")

    started = time.perf_counter()
    result = distill(
        teacher, inputs=["x:1x1x28x28"], data=os.path.join(folder, "train.npz"), val=os.path.join(folder, "val.npz"),
        width=args.width, epochs=args.epochs, threads=args.threads, output=os.path.join(folder, "student.pt2"), overwrite=True, reporter=Reporter(),
    )
    distill_seconds = time.perf_counter() - started
    print(render(result.report))
    student_acc = accuracy(result.student, x_test, y_test)
    report = result.report
    ratio = report["teacher"]["parameters"] / report["student"]["parameters"]
    print()
    print(f"test accuracy (10,000 images): teacher {teacher_acc:.4f}, student {student_acc:.4f} "
          f"-> {100 * student_acc / teacher_acc:.1f} % kept (goal >= 99 %)")
    if result.control is not None:
        control_acc = accuracy(result.control, x_test, y_test)
        print(f"control (the same student trained on the labels alone, same budget): test accuracy {control_acc:.4f}; "
              f"the teacher adds {100 * (student_acc - control_acc):+.2f} points")
    training = report["training"]
    print(f"chosen: lr {training['lr']:.3g} ({training['lr_source']}), control lr {report['control'].get('lr') or 0:.3g}, "
          f"T {report['loss']['temperature']:g}, alpha {report['loss']['alpha']:g}, {training['schedule']}")
    print(f"parameters: {report['teacher']['parameters']:,} -> {report['student']['parameters']:,} = {ratio:.2f}x fewer (goal >= 4x)")
    print(f"FLOPs: {report['teacher']['flops'] / report['student']['flops']:.2f}x fewer; host latency "
          f"{report['teacher']['host_latency_ms']:.3f} -> {report['student']['host_latency_ms']:.3f} ms "
          f"({report['teacher']['host_latency_ms'] / report['student']['host_latency_ms']:.2f}x faster, batch 1, 1 thread)")
    print(f"distillation: {args.epochs} epochs in {distill_seconds:.0f} s ({args.threads} thread(s))")
    if args.int8 or args.qat:
        int8_acc = int8_accuracy(result.path, folder, x_test, y_test, teacher_acc, "float-distilled student")
    if args.qat:
        started = time.perf_counter()
        qat = distill(
            teacher, inputs=["x:1x1x28x28"], data=os.path.join(folder, "train.npz"), val=os.path.join(folder, "val.npz"),
            width=args.width, epochs=args.epochs, qat="int8",
            threads=args.threads, output=os.path.join(folder, "student_qat.pt2"), overwrite=True, reporter=Reporter(),
        )
        print(f"QAT distillation: {args.epochs} epochs in {time.perf_counter() - started:.0f} s; float test accuracy "
              f"{accuracy(qat.student, x_test, y_test):.4f}; fake-int8 val accuracy {qat.report['metric']['student_int8']:.4f}")
        qat_acc = int8_accuracy(qat.path, folder, x_test, y_test, teacher_acc, "QAT-distilled student")
        print(f"int8 TFLite test accuracy: post-training quantization {int8_acc:.4f}, quantization-aware distillation "
              f"{qat_acc:.4f} ({100 * (qat_acc - int8_acc):+.2f} points)")


def int8_accuracy(model_path: str, folder: str, x_test, y_test, teacher_acc: float, what: str) -> float:
    from edgekit.pipeline import convert

    (art,) = convert(model_path, target="tflite", quantize="int8", calibration=os.path.join(folder, "val.npz"),
                     calibration_samples=200, output_dir=folder, overwrite=True)
    acc = tflite_accuracy(art.path, x_test, y_test)
    print(f"{what}, int8 TFLite ({art.size_bytes:,} bytes, edgekit verify: {art.status}, top-1 agreement "
          f"{art.parity.get('top1')}): test accuracy {acc:.4f} -> {100 * acc / teacher_acc:.1f} % of the float teacher")
    return acc


if __name__ == "__main__":
    main()
