"""Static int8 that keeps accuracy: every target's int8 artifact against FP32, before and after the
shared quantization layer (edgekit.quantize), on real models and real inputs.

    python -m benchmarks.int8_accuracy [--models efficientnet_lite0,minilm_intent] [--targets tflite,executorch,onnx]
                                       [--no-before]

"after" = what `edgekit convert --quantize int8 --calibration DATA` builds now (each target's
convert() with the default options: the shared PT2E decision, recipe chosen on held-back
calibration samples). "before" = the recipes edgekit used until then, rebuilt here: ExecuTorch
XNNPACKQuantizer as it is; TFLite litert-torch's PT2EQuantizer and ai-edge-quantizer's static
recipe (the old auto route kept the one with the higher cosine on the calibration samples);
ONNX onnxruntime quantize_static (QDQ, MinMax, 7-bit weights). Same calibration samples (those of
the suite: benchmarks/suite/cases.py), same evaluation samples, every artifact run in its own
runtime. Prints top-1 agreement with FP32 on all inputs and on confident ones (FP32 top-1
probability >= 0.5 or top-1/top-2 margin >= 0.2), cosine over all logits, size / FP32 size.
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
    z = reference - reference.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    top2 = np.sort(probs, -1)[:, -2:]
    confident = (top2[:, 1] >= 0.5) | (top2[:, 1] - top2[:, 0] >= 0.2)
    agree = reference.argmax(-1) == got.argmax(-1)
    return {"cosine": cosine, "top1": float(agree.mean()), "top1_confident": float(agree[confident].mean()),
            "confident": int(confident.sum()), "n": len(agree)}


def _case(name: str):
    from benchmarks.suite import cases

    return {"efficientnet_lite0": cases.efficientnet, "minilm_intent": cases.minilm}[name](False)


def _exported(case):
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec

    return prepare(load_model(model=case.factory), [InputSpec.parse(s) for s in case.inputs])


def _run_artifact(target, path: str, model, case) -> np.ndarray:
    from edgekit.verify import output_order, run_artifact

    runtime = target.runtime().load(path)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    return np.concatenate([run_artifact(runtime, case.evaluation_sample(i))[order[0]]
                           for i in range(case.eval_count())])


def _after(target_name: str, model, case, work: str, precision: str = "int8") -> tuple[str, dict]:
    from edgekit.options import ConvertOptions
    from edgekit.registry import get_target

    target = get_target(target_name)
    workdir = tempfile.mkdtemp(dir=work)
    options = ConvertOptions(targets=(target_name,), precision=precision)
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
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
        from executorch.exir import to_edge_transform_and_lower

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
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
        with open(aeq, "wb") as fh:
            fh.write(target._aeq(float_path, "int8", calibration))
        out["ai-edge-quantizer static"] = aeq
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
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--targets", default="tflite,executorch,onnx")
    parser.add_argument("--no-before", action="store_true", help="skip rebuilding the old recipes")
    args = parser.parse_args()
    from edgekit.registry import get_target

    work = tempfile.mkdtemp(prefix="edgekit-int8-accuracy-")
    rows = []
    for model_name in args.models.split(","):
        case = _case(model_name)
        model = _exported(case)
        reference = np.concatenate([np.asarray(model.reference(case.evaluation_sample(i))[0])
                                    for i in range(case.eval_count())])
        for target_name in args.targets.split(","):
            target = get_target(target_name)
            fp32_path, _ = _after(target_name, model, case, work, precision="none")
            fp32_size = os.path.getsize(fp32_path)
            builds = {}
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
                      f"coverage {block.get('coverage')}", flush=True)
            except Exception as exc:
                rows.append((model_name, target_name, "after", f"failed: {type(exc).__name__}: {exc}"[:200]))
            print(f"[{model_name} {target_name}] converted in {time.perf_counter() - start:.0f} s", flush=True)
            for label, path in builds.items():
                s = scores(reference, _run_artifact(target, path, model, case))
                rows.append((model_name, target_name, label, s, os.path.getsize(path) / fp32_size))
                print(_format(rows[-1]), flush=True)
    print()
    print(f"{'model':18s} {'target':10s} {'recipe':40s} {'top-1 all':>9s} {'top-1 conf.':>11s} {'cosine':>8s} {'x FP32':>7s}")
    for row in rows:
        print(_format(row))


def _format(row) -> str:
    if isinstance(row[3], str):
        return f"{row[0]:18s} {row[1]:10s} {row[2]:40s} {row[3]}"
    model_name, target_name, label, s, ratio = row
    conf = f"{s['top1_confident']:.4f} ({s['confident']})"
    return (f"{model_name:18s} {target_name:10s} {label:40s} {s['top1']:9.4f} {conf:>11s} "
            f"{s['cosine']:8.5f} {ratio:6.3f}x")


if __name__ == "__main__":
    main()
