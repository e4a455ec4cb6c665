"""The measurement loop: per model, target and precision, edgekit's artifact and the direct tool's,
converted in the same process, scored on the same real data through the same runtime, and timed by
``edgekit bench`` in the same run.

Both sides get a fresh copy of the model and warm imports, so the convert times compare the work,
not who paid for importing the library first; which side converts first alternates row by row.
Parity is measured here, independently of edgekit's own verification, against eager FP32 PyTorch on
the whole evaluation set; edgekit's verdict (status and the exit code the CLI would return) is
recorded beside it, so a miss that edgekit let through shows up as such.
"""
from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Callable

import numpy as np

from benchmarks.suite import direct
from benchmarks.suite.cases import DIRECT_MISSING, Case, precisions_for

LOG: Callable[[str], None] = print
# runtimes timed with a fifth of the runs: the lite interpreter took 0.1-2 s per EfficientNet call on the
# shared machine, and 50 runs x 2 rounds x 4 artifacts of it was a third of the suite's time
SLOW_RUNTIMES = ("torchscript-lite",)


def artifact_size(path: str) -> int:
    """Bytes on disk: a folder (.mlpackage) in full; a file plus an ONNX external-data file beside it."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    size = os.path.getsize(path)
    if os.path.exists(path + ".data"):
        size += os.path.getsize(path + ".data")
    return size


def reference_outputs(model, case: Case, batch: int = 50) -> np.ndarray:
    """Eager FP32 PyTorch logits over the evaluation set (N x classes)."""
    import torch

    names, n = case.input_names, case.eval_count()
    outs = []
    with torch.no_grad():
        for start in range(0, n, batch):
            args = [torch.from_numpy(np.ascontiguousarray(case.evaluation[k][start : start + batch])) for k in names]
            outs.append(model(*args).float().numpy())
    return np.concatenate(outs)


def artifact_outputs(target: str, path: str, case: Case, threads: int) -> np.ndarray:
    """The artifact's logits over the evaluation set, one sample at a time, through edgekit's Runtime."""
    from edgekit.registry import get_target
    from edgekit.verify import dequantize_output, quantize_input

    runtime = get_target(target).runtime().load(path, threads=threads)
    specs = runtime.inputs()
    names = case.input_names
    # feed by name where the artifact kept the model's input names (its own order may differ), else by position
    order = [names.index(s.name) for s in specs] if sorted(s.name for s in specs) == sorted(names) else list(range(len(names)))
    out_spec = runtime.outputs()[0] if runtime.outputs() else None
    outs = []
    for i in range(case.eval_count()):
        sample = case.evaluation_sample(i)
        feeds = [quantize_input(sample[j], s) for j, s in zip(order, specs)] if specs else list(sample)
        y = runtime.run(feeds)[0]
        outs.append(np.asarray(dequantize_output(y, out_spec) if out_spec else y, dtype=np.float32).reshape(1, -1))
    return np.concatenate(outs)


def parity(outputs: np.ndarray, reference: np.ndarray, labels) -> dict[str, Any]:
    a, b = outputs.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) if np.linalg.norm(a) and np.linalg.norm(b) else 0.0
    agree = outputs.argmax(-1) == reference.argmax(-1)
    out = {"cosine": cosine, "top1": float(np.mean(agree)), "samples": len(outputs)}
    # the rule edgekit's verification enforces (README "Verification"), measured here independently
    # with the same thresholds: FP32's softmax top-1 probability and its margin over the runner-up
    from edgekit.verify_roles import CONFIDENT_MARGIN, CONFIDENT_PROB

    probs = np.exp(reference - reference.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top2 = np.sort(probs, axis=-1)[:, -2:]
    confident = (top2[:, 1] >= CONFIDENT_PROB) & (top2[:, 1] - top2[:, 0] >= CONFIDENT_MARGIN)
    out["confident_samples"] = int(confident.sum())
    out["top1_confident"] = float(np.mean(agree[confident])) if confident.any() else None
    if labels is not None:
        out["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
    if not np.isfinite(outputs).all():
        out["cosine"] = float("nan")
    return out


def _edgekit_convert(case: Case, model, target: str, precision: str, folder: str, files: dict) -> dict[str, Any]:
    from edgekit.commands.convert import exit_code
    from edgekit.errors import EdgekitError
    from edgekit.pipeline import convert

    row: dict[str, Any] = {"tool": "edgekit"}
    start = time.perf_counter()
    try:
        (art,) = convert(
            model, target=target, quantize=precision, calibration=files["calibration"], eval_data=files["evaluation"],
            calibration_samples=len(next(iter(case.calibration.values()))), eval_samples=case.verify_samples,
            inputs=case.inputs, output_dir=folder, name=case.name, overwrite=True,
        )
    except EdgekitError as exc:
        row.update(convert_s=time.perf_counter() - start, error=str(exc), exit_code=exc.exit_code, status="error")
        return row
    row["convert_s"] = time.perf_counter() - start
    row.update(path=art.path, status=art.status, exit_code=exit_code([art], strict=False), error=art.error,
               edgekit_parity={"cosine": art.parity.get("cosine"), "top1": art.parity.get("top1"),
                               "samples": art.parity.get("samples"), "reasons": art.parity.get("reasons")})
    return row


def _direct_convert(case: Case, model, target: str, precision: str, folder: str) -> dict[str, Any]:
    import torch

    row: dict[str, Any] = {"tool": "direct", "recipe": direct.RECIPES[(target, precision)]}
    path = os.path.join(folder, f"{case.name}_{precision}{direct.SUFFIX[target]}")
    example = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in case.evaluation_sample(0))
    from edgekit.ui import captured_native_output

    start = time.perf_counter()
    try:
        with captured_native_output():  # the libraries' progress output, as edgekit's own run hides it
            direct.convert(target, precision, model, example, case.calibration_samples(), path)
    except Exception as exc:  # the library's own failure is a result, shown as its first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        row.update(convert_s=time.perf_counter() - start, error=f"{type(exc).__name__}: {first}", status="error")
        return row
    row.update(convert_s=time.perf_counter() - start, path=path, status="converted")
    return row


def measure_case(case: Case, targets: list[str], work: str, settings: dict) -> dict[str, Any]:
    """Every row of one model; artifacts stay under ``work``.

    PyTorch runs with ``settings["torch_threads"]`` intra-op threads (default 1) meanwhile: on a shared,
    oversubscribed machine its spinning worker threads made a 0.3 ms batch-1 CNN call take 230 ms,
    which would charge the machine's load to whichever side runs eager PyTorch (edgekit's
    verification). Both sides convert under the same setting; latency is measured apart, by
    `edgekit bench` in its own processes at ``settings["threads"]``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(settings.get("torch_threads", 1))
    try:
        return _measure_case(case, targets, work, settings)
    finally:
        torch.set_num_threads(previous)


def _measure_case(case: Case, targets: list[str], work: str, settings: dict) -> dict[str, Any]:
    from edgekit.registry import get_target_class

    os.makedirs(work, exist_ok=True)
    files = {"calibration": os.path.join(work, "calibration.npz"), "evaluation": os.path.join(work, "evaluation.npz")}
    np.savez(files["calibration"], **case.calibration)
    np.savez(files["evaluation"], **case.evaluation)
    model = case.model()
    started = time.perf_counter()
    reference = reference_outputs(model, case)
    result: dict[str, Any] = {
        "name": case.name, "title": case.title, "data_notes": case.data_notes, "eval_samples": case.eval_count(),
        "fp32_accuracy": None if case.labels is None else float(np.mean(reference.argmax(-1) == case.labels)),
        "parameters": sum(p.numel() for p in model.parameters()), "rows": [],
    }
    LOG(f"[{case.name}] eager FP32 reference over {case.eval_count()} samples in {time.perf_counter() - started:.1f} s"
        + (f"; test accuracy {result['fp32_accuracy']:.4f}" if result["fp32_accuracy"] is not None else ""))
    row_index = 0
    for target in targets:
        if not get_target_class(target).available():
            LOG(f"[{case.name}] {target}: not installed, skipped")
            continue
        direct.warm_imports(target)
        runs_here = target != "coreml" or _coreml_executes()
        chosen = (settings.get("precisions") or {}).get(target) or precisions_for(case, target)
        for precision in chosen:
            sides = ["edgekit", "direct"] if row_index % 2 == 0 else ["direct", "edgekit"]
            row_index += 1
            rows = {}
            for side in sides:
                fresh = copy.deepcopy(model)  # neither side sees what the other's quantizer did to the module
                if side == "edgekit":
                    rows[side] = _edgekit_convert(case, fresh, target, precision, os.path.join(work, "edgekit"), files)
                elif not settings.get("direct", True):
                    continue
                elif (target, precision) in DIRECT_MISSING:
                    rows[side] = {"tool": "direct", "status": "n/a", "error": DIRECT_MISSING[(target, precision)]}
                else:
                    rows[side] = _direct_convert(case, fresh, target, precision, os.path.join(work, "direct"))
                del fresh
            for side in [s for s in ("edgekit", "direct") if s in rows]:
                row = rows[side]
                row.update(model=case.name, target=target, precision=precision, first=sides[0] == side)
                if row.get("path"):
                    row["size_bytes"] = artifact_size(row["path"])
                    if runs_here:
                        start = time.perf_counter()
                        try:
                            outputs = artifact_outputs(target, row["path"], case, settings.get("eval_threads", 1))
                            row["parity"] = parity(outputs, reference, case.labels)
                        except Exception as exc:
                            row["parity_error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
                        row["eval_s"] = time.perf_counter() - start
                result["rows"].append(row)
                LOG(_row_line(row))
    bench_rows(result["rows"], settings)
    return result


def _coreml_executes() -> bool:
    from edgekit.targets.coreml.runtime import can_execute

    return can_execute()


def _row_line(row: dict) -> str:
    p = row.get("parity") or {}
    bits = [f"[{row['model']}] {row['target']:16s} {row['precision']:16s} {row['tool']:7s}"]
    if row.get("size_bytes"):
        bits.append(f"{row['size_bytes'] / 1e6:7.2f} MB")
    if "convert_s" in row:
        bits.append(f"convert {row['convert_s']:5.1f} s")
    if p:
        bits.append(f"cos {p['cosine']:.5f} top1 {p['top1']:.4f}" + (f" acc {p['accuracy']:.4f}" if "accuracy" in p else ""))
    if row["tool"] == "edgekit" and row.get("status"):
        bits.append(f"edgekit: {row['status']} (exit {row.get('exit_code')})")
    if row.get("error"):
        bits.append(f"error: {row['error'][:160]}")
    return "  ".join(bits)


def bench_rows(rows: list[dict], settings: dict) -> None:
    """`edgekit bench` (run_bench, host, --threads) over every runnable artifact of the model, in rounds
    whose order alternates (A B ... B A), so that neither side always runs first on a noisy machine."""
    from edgekit.bench import run_bench

    paths = [r["path"] for r in rows if r.get("path") and r["target"] != "coreml" and "parity_error" not in r]
    if not paths:
        return
    per_path: dict[str, list[dict]] = {p: [] for p in paths}
    target_of = {r["path"]: r["target"] for r in rows if r.get("path")}
    for round_no in range(settings["rounds"]):
        order = paths if round_no % 2 == 0 else list(reversed(paths))
        start = time.perf_counter()
        for runs, group in ((settings["runs"], [p for p in order if target_of[p] not in SLOW_RUNTIMES]),
                            (max(5, settings["runs"] // 5), [p for p in order if target_of[p] in SLOW_RUNTIMES])):
            if not group:
                continue
            records = run_bench(group, ["host"], threads=settings["threads"], warmup=settings["warmup"], runs=runs,
                                peak=False, timeout=settings.get("bench_timeout", 300.0))
            for path, record in zip(group, records):
                per_path[path].append(record)
        LOG(f"  bench round {round_no + 1}/{settings['rounds']}: {len(order)} artifacts in {time.perf_counter() - start:.0f} s")
    for row in rows:
        records = per_path.get(row.get("path"), [])
        ok = [r for r in records if r["status"] == "ok"]
        if records and not ok:
            row["bench_error"] = f"{records[0]['status']}: {records[0]['error']}"
            continue
        if not ok:
            continue
        row["bench"] = {
            "p50_ms": _mean([r["timings_ms"]["p50"] for r in ok]),
            "p90_ms": _mean([r["timings_ms"]["p90"] for r in ok]),
            "rounds_p50_ms": [r["timings_ms"]["p50"] for r in ok],
            "rounds_p90_ms": [r["timings_ms"]["p90"] for r in ok],
            "runs": sum(r["timings_ms"]["count"] for r in ok),
            "peak_rss_bytes": _max([(r.get("memory") or {}).get("peak_rss_bytes") for r in ok]),
            "model_rss_bytes": _max([(r.get("memory") or {}).get("model_rss_bytes") for r in ok]),
            "runtime": (ok[0].get("runtime") or {}).get("name", "") + " " + ((ok[0].get("runtime") or {}).get("version") or ""),
            "threads": ok[0]["settings"]["threads"],
        }


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None
