"""Apple targets verified on Linux: every precision of `--target coreml` (and `coreai` where installed)
on real models, each artifact verified by edgekit's reference interpreter, with real evaluation data.

    python -m benchmarks.apple_linux [--models digits,efficientnet_lite0,minilm_intent] [--targets coreml,coreai]
                                     [--precisions none,fp16,...] [--eval-samples 16]

Models and data: the demo's digits CNN (trained here on scikit-learn digits, real test images), and
the suite's EfficientNet-Lite0 (real photos) and MiniLM + intent head (real sentences) cases
(benchmarks/suite/cases.py, quick split). Each row is one `edgekit.convert` with --eval-data (held-out
samples) and, for int8, --calibration; the table prints status, cosine and top-1 agreement that the
interpreter measured, the artifact size, how it was verified, and the wall time (convert + verify).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PRECISIONS = {
    "coreml": "none,fp16,int8-weight-only,int4-weight-only,palettize6,palettize4,int8",
    "coreai": "none,fp16,int8-weight-only,int4-weight-only,palettize8,palettize6,palettize4,int8",
}


def _digits(work: str) -> tuple[str, list[str], str, str]:
    import torch

    from edgekit.demo import digits_data, train_digits

    data = digits_data()
    model = train_digits(data, epochs=6)
    path = os.path.join(work, "digits_cnn.pt")  # a state_dict with the demo's --arch, as `edgekit demo` does
    torch.save(model.state_dict(), path)
    calibration, evaluation = os.path.join(work, "digits_cal.npz"), os.path.join(work, "digits_eval.npz")
    np.savez(calibration, x=data.x_train[:200, None])
    np.savez(evaluation, x=data.x_test[:, None])
    shape = "x".join(str(d) for d in data.x_test.shape[1:])
    return path, [f"x:1x{shape}"], calibration, evaluation


def _suite_case(name: str, work: str):
    from benchmarks.suite import cases

    case = {"efficientnet_lite0": cases.efficientnet, "minilm_intent": cases.minilm}[name](True)
    calibration, evaluation = os.path.join(work, f"{name}_cal.npz"), os.path.join(work, f"{name}_eval.npz")
    np.savez(calibration, **{k: v[:, None] for k, v in case.calibration.items()})
    np.savez(evaluation, **{k: v[:, None] for k, v in case.evaluation.items()})
    return case.factory, case.inputs, calibration, evaluation


def measure(model: str, target: str, precisions: list[str], eval_samples: int, work: str) -> list[dict]:
    import edgekit

    extra = {}
    if model == "digits":
        source, inputs, calibration, evaluation = _digits(work)
        factory, extra = None, {"arch": "edgekit.demo:digits_cnn"}
    else:
        factory, inputs, calibration, evaluation = _suite_case(model, work)
        source = None
    rows = []
    for precision in precisions:
        start = time.perf_counter()
        try:
            art = edgekit.convert(
                source, model_factory=factory, target=target, quantize=precision, inputs=inputs or None,
                calibration=calibration if precision == "int8" else None, calibration_samples=32,
                eval_data=evaluation, eval_samples=eval_samples, output_dir=work, name=model, overwrite=True, **extra,
            )[0]
        except Exception as exc:  # noqa: BLE001  (a row says why; the other rows still run)
            rows.append({"model": model, "target": target, "precision": precision, "status": "error",
                         "note": str(exc).splitlines()[0][:160], "seconds": time.perf_counter() - start})
            continue
        parity = art.parity or {}
        details = (art.manifest or {}).get("target_details", {})
        by = (details.get("verification") or {}).get("by") or "-"
        note = art.error or "; ".join(parity.get("reasons") or [])
        rows.append({
            "model": model, "target": target, "precision": precision, "status": art.status,
            "cosine": parity.get("cosine"), "top1": parity.get("top1"), "samples": parity.get("samples"),
            "size": art.size_bytes, "by": by, "note": note[:160], "seconds": time.perf_counter() - start,
        })
    return rows


def render(rows: list[dict]) -> str:
    head = "| model | target | precision | status | cosine | top-1 | samples | size | verified by | seconds | note |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        cosine = f"{r['cosine']:.6f}" if r.get("cosine") is not None else ""
        top1 = f"{r['top1']:.3f}" if r.get("top1") is not None else ""
        size = f"{r['size'] / 1e6:.2f} MB" if r.get("size") else ""
        lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {r['status']} | {cosine} | {top1} | "
                     f"{r.get('samples') or ''} | {size} | {r.get('by', '')} | {r['seconds']:.0f} | {r.get('note', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="digits,efficientnet_lite0,minilm_intent")
    parser.add_argument("--targets", default="coreml,coreai")
    parser.add_argument("--precisions", default=None, help="comma-separated; default: every precision the target builds here")
    parser.add_argument("--eval-samples", type=int, default=16, help="held-out samples verified per artifact")
    args = parser.parse_args()

    from edgekit.registry import resolve_targets

    installed = set(resolve_targets(("all",)))
    work = tempfile.mkdtemp(prefix="edgekit-apple-")
    rows = []
    for target in args.targets.split(","):
        if target not in installed:
            print(f"# {target}: not installed here, skipped")
            continue
        precisions = (args.precisions or PRECISIONS[target]).split(",")
        for model in args.models.split(","):
            rows += measure(model, target, precisions, args.eval_samples, work)
            print(render(rows[-len(precisions):]), flush=True)
    print("\n" + render(rows))


if __name__ == "__main__":
    main()
