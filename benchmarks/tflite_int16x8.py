"""TFLite static int8 with mixed precision: the layers kept above int8 as float32 vs as 16x8.

    python -m benchmarks.tflite_int16x8 --model minilm [--calibration-samples 64] [--eval-samples 100]
    python -m benchmarks.tflite_int16x8 --model minilm --keep linear_5,linear_11,linear_37

Without --keep: the default command twice (``--tflite-mixed-higher float`` and ``int16``), one search
each, and what each shipped. With --keep: those PT2E nodes kept (the search is skipped), the same
program built with them float and with them 16x8 (targets/tflite/int16x8.py), so the two are compared
even where the search keeps nothing. Scores on the evaluation set against eager FP32, as
benchmarks.int8_accuracy prints them (cosine, top-1 on all and on confident inputs, size, p50).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def _kept_program(model, calibration, nodes: list[str]):
    """The shared int8 program with ``nodes`` kept, marked as a shipped mix (what the search hands on)."""
    from edgekit.quantize import QuantConfig
    from edgekit.quantize.pt2e import quantize_program

    program = quantize_program(model.exported_program(), calibration, QuantConfig(observer="histogram", float_nodes=tuple(nodes)))
    modules = {}
    for node in model.exported_program().graph.nodes:
        if node.name in nodes:
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            modules[node.name] = stack[-1][0] if stack else ""
    program.mixed = {"shipped": "mixed", "kept": [{"node": n, "module_path": modules.get(n, ""), "group": [n]} for n in nodes]}
    return program


def _forced(target, model, case, nodes, work) -> dict[str, str]:
    from edgekit.options import ConvertOptions
    from edgekit.targets.tflite.int8 import _pt2e_bytes
    from edgekit.targets.tflite.int16x8 import higher_precision

    calibration = case.calibration_samples()
    options = ConvertOptions(targets=("tflite",), precision="int8")
    program = _kept_program(model, calibration, nodes)
    detail: dict = {}
    kept_float = _pt2e_bytes(target, model, program, options, work, detail)
    kept_16x8, facts = higher_precision(target, model, program, calibration, options, work, kept_float, detail, "int16")
    print("tflite_higher", json.dumps(facts["mixed_precision"]["tflite_higher"]), flush=True)
    builds = {}
    for label, content in (("int8, kept layers float", kept_float), ("int8, kept layers 16x8", kept_16x8)):
        builds[label] = os.path.join(work, label.replace(" ", "_").replace(",", "") + ".tflite")
        with open(builds[label], "wb") as fh:
            fh.write(content)
    return builds


def _default_command(target, model, case, work) -> dict[str, str]:
    from edgekit.options import ConvertOptions

    builds = {}
    for mode in ("float", "int16"):
        options = ConvertOptions(targets=("tflite",), precision="int8", target_options={"tflite": {"mixed_higher": mode}})
        start = time.perf_counter()
        art = target.convert(model, "int8", options, case.calibration_samples(), tempfile.mkdtemp(dir=work))
        mixed = (art.details.get("int8") or {}).get("mixed_precision") or {}
        print(f"--tflite-mixed-higher {mode}: {time.perf_counter() - start:.0f} s; shipped {mixed.get('shipped')}; kept "
              f"{[(k.get('module_path'), k.get('precision')) for k in mixed.get('kept') or []]}", flush=True)
        builds[f"int8, --tflite-mixed-higher {mode}"] = art.path
    return builds


def main(argv=None) -> int:
    from benchmarks.int8_accuracy import _case, _exported, _score_builds
    from edgekit.options import ConvertOptions
    from edgekit.registry import get_target

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="a benchmarks.int8_accuracy model (minilm, efficientnet)")
    parser.add_argument("--calibration-samples", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--keep", help="comma-separated PT2E node names to keep above int8 (skips the search)")
    args = parser.parse_args(argv)
    case = _case(args.model, args.calibration_samples, args.eval_samples)
    model = _exported(case)
    reference = np.concatenate([np.asarray(model.reference(case.evaluation_sample(i))[0]) for i in range(case.eval_count())])
    target = get_target("tflite")
    work = tempfile.mkdtemp(prefix="edgekit-int16x8-")
    fp32 = target.convert(model, "none", ConvertOptions(targets=("tflite",), precision="none"), None, tempfile.mkdtemp(dir=work))
    builds = {"fp32": fp32.path}
    builds.update(_forced(target, model, case, args.keep.split(","), work) if args.keep else _default_command(target, model, case, work))
    rows: list = []
    _score_builds(builds, target, model, case, reference, os.path.getsize(fp32.path), args.model, "tflite", rows)
    for label, path in builds.items():
        print(f"{label}: {os.path.getsize(path):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
