"""Calibration algorithms of the shared int8 layer, one by one, on real models (issue 11 item 2).

    python -m benchmarks.int8_algorithms [--models efficientnet_lite0,minilm_intent]
        [--algorithms minmax,histogram,...] [--nncf] [--auto] [--calibration N] [--evaluation N]

For each algorithm (``--int8-calibration`` names: observers and named recipes, edgekit/quantize/
config.py) the exported program is quantized by ``quantize_program`` on the calibration samples of
the suite (benchmarks/suite/cases.py, full sizes, cut to ``--calibration`` / ``--evaluation``) and its int8 simulation (the converted PT2E
graph, what every target lowers) is compared with FP32 on evaluation samples it never saw: cosine
over all logits, top-1 agreement on all inputs and on those where FP32 is confident (top-1
probability >= 0.5 or top-1/top-2 margin >= 0.2), and the wall and CPU seconds ``quantize_program``
took (CPU seconds are what to compare on a shared machine).
``--nncf`` adds NNCF 3.4's ``quantize_pt2e`` with edgekit's quantizer (its default activation
ranges and global min/max, each with and without its fast / full bias correction; SmoothQuant for
transformers; needs ``pip install nncf==3.4.0``, not an edgekit dependency), the field library measured
against edgekit's own flow. ``--auto`` adds the default (candidates scored on held-back samples).
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_ALGORITHMS = {
    "efficientnet_lite0": "minmax,histogram,percentile,mse,mean-minmax,moving-average,bias-correction,cle,cle-bias-correction",
    "minilm_intent": "minmax,histogram,percentile,mse,mean-minmax,bias-correction,smoothquant",
}


def _case(name: str, calibration: int, evaluation: int):
    import numpy as np

    from benchmarks.suite import cases

    case = {"efficientnet_lite0": cases.efficientnet, "minilm_intent": cases.minilm}[name](False)
    cal = case.calibration_samples()[:calibration]
    ev = [tuple(np.asarray(a) for a in case.evaluation_sample(i)) for i in range(min(evaluation, case.eval_count()))]
    return case, cal, ev


def _exported(case):
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec

    return prepare(load_model(model=case.factory), [InputSpec.parse(s) for s in case.inputs]).exported_program()


def _nncf(exported, calibration, variant: str):
    """NNCF quantize_pt2e with edgekit's own quantizer (same annotation, NNCF's ranges/algorithms)."""
    import nncf
    from nncf.experimental.torch.fx import quantize_pt2e

    from edgekit.quantize.annotate import edgekit_quantizer
    from edgekit.quantize.config import QuantConfig, Recipe
    from edgekit.quantize.pt2e import _tensors, canonical_convolutions

    graph = copy.deepcopy(exported.module())
    canonical_convolutions(graph)
    samples = [_tensors(s) for s in calibration]
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    base, _, algorithm = variant.partition("+")
    options = {"": dict(fast_bias_correction=None), "fast-bias-correction": dict(fast_bias_correction=True),
               "bias-correction": dict(fast_bias_correction=False),
               "smoothquant": dict(fast_bias_correction=None, smooth_quant=True)}[algorithm]
    if base == "nncf-minmax":  # NNCF's default activation ranges are means of per-sample min/max
        options["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    return quantize_pt2e(graph, edgekit_quantizer(Recipe("minmax"), QuantConfig(observer="minmax")),
                         nncf.Dataset(samples, lambda s: s), subset_size=len(samples), **options)


def run(model_name: str, algorithms: list[str], calibration: int, evaluation: int) -> list[dict]:
    from edgekit.quantize.config import QuantConfig
    from edgekit.quantize.pt2e import _tensors, agreement, quantize_program, run_graph

    case, cal, ev = _case(model_name, calibration, evaluation)
    exported = _exported(case)
    ev_t = [_tensors(s) for s in ev]
    reference = run_graph(exported.module(), ev_t)
    rows = []
    for name in algorithms:
        start, cpu = time.perf_counter(), time.process_time()
        row = {"model": model_name, "algorithm": name, "calibration": len(cal), "evaluation": len(ev)}
        try:
            if name.startswith("nncf"):
                module = _nncf(exported, cal, name)
                row["chosen"] = name
            else:
                program = quantize_program(exported, cal, QuantConfig(observer=name))
                module = program.converted()
                row["chosen"] = program.choice.name
                if name == "auto":
                    row["candidates"] = {c.name: c.top1_confident for c in program.candidates}
            row["seconds"], row["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu
            row.update(agreement(reference, run_graph(module, ev_t)))
        except Exception as exc:  # report and go on: one algorithm failing must not hide the others
            row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
            row["seconds"], row["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    chosen = f" (chose {row['chosen']})" if row.get("chosen") not in (None, row["algorithm"], f"histogram+{row['algorithm']}") else ""
    head = f"| {row['model']} | {row['algorithm']}{chosen} |"
    if "error" in row:
        return f"{head} failed: {row['error']} | | | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} |"
    return (f"{head} {row['cosine']:.4f} | {row['top1']:.3f} | {row['top1_confident']:.3f} ({row['confident']}) | "
            f"{row['seconds']:.1f} | {row['cpu_seconds']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--algorithms", default=None, help="comma-separated; default: per model")
    parser.add_argument("--nncf", action="store_true", help="add NNCF quantize_pt2e variants")
    parser.add_argument("--auto", action="store_true", help="add the default 'auto' search")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--evaluation", type=int, default=176)
    args = parser.parse_args()
    print("| model | algorithm | cosine | top-1 all | top-1 confident (n) | seconds | CPU seconds |")
    print("|---|---|---|---|---|---|---|")
    for model_name in args.models.split(","):
        algorithms = (args.algorithms or DEFAULT_ALGORITHMS[model_name]).split(",")
        if args.nncf:
            algorithms += ["nncf", "nncf+fast-bias-correction", "nncf+bias-correction", "nncf-minmax",
                           "nncf-minmax+fast-bias-correction", "nncf-minmax+bias-correction"]
            if model_name == "minilm_intent":
                algorithms.append("nncf+smoothquant")
        if args.auto:
            algorithms.append("auto")
        run(model_name, algorithms, args.calibration, args.evaluation)


if __name__ == "__main__":
    main()
