"""Static int8 that keeps accuracy: every target's int8 artifact against FP32, before and after the
shared quantization layer (edgekit.quantize), on real models and real inputs.

    python -m benchmarks.int8_accuracy [--models efficientnet,minilm] [--targets tflite,executorch,onnx]
                                       [--no-before] [--dynamic] [--calibration-samples N] [--eval-samples N]

"after" = what `edgekit convert --quantize int8 --calibration DATA` builds now (each target's
convert() with the default options: the shared PT2E decision, recipe chosen on held-back
calibration samples). "before" = the recipes edgekit used until then, rebuilt here: ExecuTorch
XNNPACKQuantizer as it is; TFLite litert-torch's PT2EQuantizer and ai-edge-quantizer's static
recipe (the old auto route kept the one with the higher cosine on the calibration samples);
ONNX onnxruntime quantize_static (QDQ, MinMax, 7-bit weights). ``--dynamic`` adds int8-dynamic
on ExecuTorch and ONNX (ONNX before = 7-bit weights, the old default). Same calibration samples
(those of the suite: benchmarks/suite/cases.py, capped by --calibration-samples), same evaluation
samples, every artifact run in its own runtime. Prints top-1 agreement with FP32 on all inputs and
on confident ones (FP32 top-1 probability >= 0.5 or top-1/top-2 margin >= 0.2), cosine over all
logits, size / FP32 size, and p50 latency of one call in the host runtime (ms, and x the plain
int8 artifact = the "before" recipe of the same target, where one builds), timed in turns across
the artifacts of a target (3 rounds over the evaluation samples). For ONNX it also prints which
kernels onnxruntime runs for each artifact (integer, and float ops on dequantized weights).
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def scores(reference: np.ndarray, got: np.ndarray) -> dict:
    a, b = reference.ravel().astype(np.float64), got.ravel().astype(np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    from edgekit.verify_roles import confident_rows, row_kind

    rows = reference.reshape(len(reference), -1).astype(np.float64)
    confident = confident_rows(rows, row_kind(rows))  # verification's own rule
    agree = reference.argmax(-1) == got.argmax(-1)
    return {"cosine": cosine, "top1": float(agree.mean()), "top1_confident": float(agree[confident].mean()),
            "confident": int(confident.sum()), "n": len(agree)}


MODELS = {"efficientnet": "efficientnet_lite0", "efficientnet_lite0": "efficientnet_lite0",
          "minilm": "minilm_intent", "minilm_intent": "minilm_intent"}


def _case(name: str, calibration_samples: int = 0, eval_samples: int = 0):
    from benchmarks.suite import cases

    case = {"efficientnet_lite0": cases.efficientnet, "minilm_intent": cases.minilm}[MODELS[name]](False)
    if calibration_samples:
        case.calibration = {k: v[:calibration_samples] for k, v in case.calibration.items()}
    if eval_samples:
        case.evaluation = {k: v[:eval_samples] for k, v in case.evaluation.items()}
    return case


def _exported(case):
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec

    return prepare(load_model(model=case.factory), [InputSpec.parse(s) for s in case.inputs])


def _run_artifact(target, path: str, model, case) -> tuple[np.ndarray, float]:
    """(first output over the evaluation samples, p50 milliseconds of one call)."""
    from edgekit.verify import output_order, run_artifact

    runtime = target.runtime().load(path)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    run_artifact(runtime, case.evaluation_sample(0))  # warm-up (first-call allocations, delegate setup)
    outputs, times = [], []
    for i in range(case.eval_count()):
        start = time.perf_counter()
        outputs.append(run_artifact(runtime, case.evaluation_sample(i))[order[0]])
        times.append(time.perf_counter() - start)
    return np.concatenate(outputs), 1000 * float(np.median(times))


def _after(target_name: str, model, case, work: str, precision: str = "int8", target_options=None) -> tuple[str, dict]:
    from edgekit.options import ConvertOptions
    from edgekit.registry import get_target

    target = get_target(target_name)
    workdir = tempfile.mkdtemp(dir=work)
    options = ConvertOptions(targets=(target_name,), precision=precision,
                             target_options={target_name: target_options} if target_options else {})
    converted = target.convert(model, precision, options, case.calibration_samples() if precision == "int8" else None, workdir)
    return converted.path, converted.details


def _before(target_name: str, model, case, work: str) -> dict[str, str]:
    """The old recipes: {label: artifact path}."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    calibration = case.calibration_samples()
    workdir = tempfile.mkdtemp(dir=work)
    out = {}
    if target_name == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        from edgekit.targets.executorch import graph_fixes

        # XNNPACK's symmetric static config; with integer arithmetic kept integer (graph_fixes: the
        # only change, which lets BERT attention masks index; a CNN's graph is annotated the same)
        quantizer = graph_fixes.quantizer(is_dynamic=False)
        prepared = prepare_pt2e(copy.deepcopy(model.exported_program().module()), quantizer)
        for s in calibration:
            prepared(*(torch.from_numpy(a) for a in s))
        program = torch.export.export(convert_pt2e(prepared), model.example_inputs)
        path = os.path.join(workdir, "before.pte")
        with open(path, "wb") as fh:
            fh.write(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
        out["XNNPACKQuantizer"] = path
    elif target_name == "tflite":
        import litert_torch
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        from edgekit.registry import get_target
        from edgekit.targets.tflite.io_types import to_float_io

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        prepared = prepare_pt2e(copy.deepcopy(model.exported_program().module()), quantizer)
        for s in calibration:
            prepared(*(torch.from_numpy(a) for a in s))
        path = os.path.join(workdir, "before_pt2e.tflite")
        litert_torch.convert(convert_pt2e(prepared, fold_quantize=False), model.example_inputs,
                             quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(path)
        with open(path, "rb") as fh:
            content = to_float_io(fh.read())
        with open(path, "wb") as fh:
            fh.write(content)
        out["litert-torch PT2EQuantizer"] = path
        target = get_target("tflite")
        float_path = os.path.join(workdir, "float.tflite")
        target._convert_float(model, float_path)
        aeq = os.path.join(workdir, "before_aeq.tflite")
        try:  # one old recipe failing (int64 inputs: MiniLM) must not hide the other
            with open(aeq, "wb") as fh:
                fh.write(target._aeq(float_path, "int8", calibration))
            out["ai-edge-quantizer static"] = aeq
        except Exception as exc:
            print(f"before: ai-edge-quantizer static failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
    elif target_name == "onnx":
        from edgekit.targets.onnx import export as onnx_export
        from edgekit.targets.onnx import quantize as recipes

        float_path = os.path.join(workdir, "float.onnx")
        onnx_export.export_onnx(model, 18, float_path)
        pre = os.path.join(workdir, "pre.onnx")
        recipes.preprocess(float_path, pre)
        path = os.path.join(workdir, "before.onnx")
        recipes.quantize_static(pre, path, [s.name for s in model.inputs], calibration, True)
        recipes.tidy(path)
        out["onnxruntime quantize_static"] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet,minilm", help="efficientnet, minilm (comma-separated)")
    parser.add_argument("--targets", default="tflite,executorch,onnx")
    parser.add_argument("--no-before", action="store_true", help="skip rebuilding the old recipes")
    parser.add_argument("--dynamic", action="store_true", help="also int8-dynamic on executorch and onnx")
    parser.add_argument("--calibration-samples", type=int, default=0, help="use the first N calibration samples (0: all)")
    parser.add_argument("--eval-samples", type=int, default=0, help="use the first N evaluation samples (0: all)")
    args = parser.parse_args()
    from edgekit.registry import get_target

    work = tempfile.mkdtemp(prefix="edgekit-int8-accuracy-")
    rows = []
    for model_name in args.models.split(","):
        model_name = MODELS[model_name]
        case = _case(model_name, args.calibration_samples, args.eval_samples)
        model = _exported(case)
        reference = np.concatenate([np.asarray(model.reference(case.evaluation_sample(i))[0])
                                    for i in range(case.eval_count())])
        print(f"[{model_name}] {len(case.calibration_samples())} calibration samples, {case.eval_count()} evaluation samples",
              flush=True)
        for target_name in args.targets.split(","):
            target = get_target(target_name)
            fp32_path, _ = _after(target_name, model, case, work, precision="none")
            fp32_size = os.path.getsize(fp32_path)
            builds = {"fp32": fp32_path}
            if not args.no_before:
                try:
                    builds.update({f"before: {k}": v for k, v in _before(target_name, model, case, work).items()})
                except Exception as exc:
                    rows.append((model_name, target_name, "before", f"failed: {type(exc).__name__}: {exc}"[:200]))
            start = time.perf_counter()
            try:
                path, details = _after(target_name, model, case, work)
                label = "after: edgekit " + str(details.get("int8", {}).get("route", "pt2e") if target_name == "tflite" else "pt2e")
                builds[label] = path
                block = details.get("int8") or details.get("quantization") or {}
                print(f"[{model_name} {target_name}] chosen {block.get('chosen')} ({block.get('why')}); "
                      f"route {block.get('route', '-')}: {block.get('route_why', '-')}; routes {block.get('routes', '-')}; "
                      f"coverage {block.get('coverage')}; kept float {sorted(block.get('kept_float', {}))}; "
                      f"mixed {(block.get('mixed_precision') or {}).get('why')}; weight range "
                      f"{(block.get('weight_range') or {}).get('bits', '-')}", flush=True)
            except Exception as exc:
                rows.append((model_name, target_name, "after", f"failed: {type(exc).__name__}: {exc}"[:200]))
            print(f"[{model_name} {target_name}] converted in {time.perf_counter() - start:.0f} s", flush=True)
            if args.dynamic and target_name in ("executorch", "onnx"):
                _dynamic_builds(builds, target_name, model, case, work, rows, args.no_before)
            _score_builds(builds, target, model, case, reference, fp32_size, model_name, target_name, rows)
    print()
    print(f"{'model':18s} {'target':10s} {'recipe':40s} {'top-1 all':>9s} {'top-1 conf.':>11s} {'cosine':>8s} {'x FP32':>7s}"
          f" {'p50 ms':>7s} {'x plain':>7s}")
    for row in rows:
        print(_format(row))


def _dynamic_builds(builds, target_name, model, case, work, rows, no_before) -> None:
    variants = {"after: int8-dynamic": None}
    if target_name == "onnx" and not no_before:
        variants["before: int8-dynamic (7-bit weights)"] = {"reduce_range": True}
    for label, target_options in variants.items():
        try:
            builds[label] = _after(target_name, model, case, work, "int8-dynamic", target_options)[0]
        except Exception as exc:
            rows.append((model_name_of(case), target_name, label, f"failed: {type(exc).__name__}: {exc}"[:200]))


def model_name_of(case) -> str:
    return getattr(case, "name", "?")


def _interleaved_p50(target, builds, case, rounds: int = 3) -> dict[str, float]:
    """p50 ms of one call per artifact, timed in turns (every artifact runs each sample once per
    round): on a shared host, load that comes and goes then falls on all artifacts alike instead of
    on whichever was being timed (sequential timing moved one artifact's p50 by 30 % between runs)."""
    from edgekit.verify import run_artifact

    runtimes = {label: target.runtime().load(path) for label, path in builds.items()}
    for runtime in runtimes.values():
        run_artifact(runtime, case.evaluation_sample(0))  # warm-up
    times: dict[str, list[float]] = {label: [] for label in builds}
    for _ in range(rounds):
        for label, runtime in runtimes.items():
            for i in range(case.eval_count()):
                start = time.perf_counter()
                run_artifact(runtime, case.evaluation_sample(i))
                times[label].append(time.perf_counter() - start)
    return {label: 1000 * float(np.median(t)) for label, t in times.items()}


def _onnx_kernels(builds) -> None:
    """Which kernels onnxruntime runs for each ONNX artifact (integer kernels, and float ops still
    fed by a weight DequantizeLinear): why one int8 graph is faster than another."""
    from edgekit.targets.onnx.int8 import cpu_kernels

    for label, path in builds.items():
        ran = cpu_kernels(path)
        print(f"  onnxruntime kernels [{label}]: integer {ran.get('integer')}, float on dequantized weights "
              f"{ran.get('float_on_dequantized_weights')}", flush=True)


def _score_builds(builds, target, model, case, reference, fp32_size, model_name, target_name, rows) -> None:
    """Score every artifact; "x plain" = p50 over the fastest static "before" artifact of the target."""
    measured = {}
    for label, path in builds.items():
        got, _ = _run_artifact(target, path, model, case)
        measured[label] = (scores(reference, got), os.path.getsize(path) / fp32_size)
    if target_name == "onnx":
        _onnx_kernels(builds)
    p50s = _interleaved_p50(target, builds, case)
    measured = {label: (s, ratio, p50s[label]) for label, (s, ratio) in measured.items()}
    plain = [m[2] for label, m in measured.items() if label.startswith("before:") and "dynamic" not in label]
    plain_dynamic = [m[2] for label, m in measured.items() if label.startswith("before:") and "dynamic" in label]
    for label, (s, ratio, p50) in measured.items():
        base = plain_dynamic if "dynamic" in label else plain
        relative = p50 / min(base) if base and label.startswith("after") else None
        rows.append((model_name, target_name, label, s, ratio, p50, relative))
        print(_format(rows[-1]), flush=True)


def _format(row) -> str:
    if isinstance(row[3], str):
        return f"{row[0]:18s} {row[1]:10s} {row[2]:40s} {row[3]}"
    model_name, target_name, label, s, ratio, p50, relative = row
    conf = f"{s['top1_confident']:.4f} ({s['confident']})"
    rel = f"{relative:6.2f}x" if relative is not None else "      -"
    return (f"{model_name:18s} {target_name:10s} {label:40s} {s['top1']:9.4f} {conf:>11s} "
            f"{s['cosine']:8.5f} {ratio:6.3f}x {p50:7.2f} {rel}")


if __name__ == "__main__":
    main()
