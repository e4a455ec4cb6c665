"""Automatic mixed precision inside `edgekit convert --quantize int8`, measured end to end: what the
default budget keeps in float, the size against FP32 and plain int8, the verified scores, and how
long the search takes.

    python -m benchmarks.mixed_convert                       # the outlier digits CNN (seconds)
    python -m benchmarks.mixed_convert --models efficientnet --targets executorch

Prints numbers; asserts nothing. The same from the CLI (outlier CNN):

    edgekit convert outlier.pt --arch tests.quantize.outlier_model:outlier_cnn --input x:1x1x8x8 \\
        --quantize int8 --calibration calib.npz --eval-data eval.npz -t tflite -t onnx -t executorch
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _outlier(folder):
    import numpy as np

    from edgekit.demo import digits_data
    from tests.quantize.outlier_model import train_outlier_cnn

    data = digits_data()
    np.savez(os.path.join(folder, "calib.npz"), x=data.x_train[:200])
    np.savez(os.path.join(folder, "eval.npz"), x=data.x_test)
    return "outlier digits CNN", train_outlier_cnn(data), ["x:1x1x8x8"]


def _efficientnet(folder):
    import numpy as np

    from benchmarks.models import efficientnet_lite0, photos

    images = photos()
    order = np.random.default_rng(0).permutation(len(images))
    half = len(order) // 2
    np.savez(os.path.join(folder, "calib.npz"), x=images[order[:half]])
    np.savez(os.path.join(folder, "eval.npz"), x=images[order[half:]])
    return "EfficientNet-Lite0", efficientnet_lite0(), ["x:1x3x224x224"]


MODELS = {"outlier": _outlier, "efficientnet": _efficientnet}


def main(argv=None) -> None:
    import edgekit
    from edgekit.ui import Reporter

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="outlier")
    parser.add_argument("--targets", default="tflite,onnx,executorch")
    parser.add_argument("--budgets", default="off,auto", help="--mixed-precision values to compare")
    args = parser.parse_args(argv)
    for key in args.models.split(","):
        with tempfile.TemporaryDirectory() as folder:
            name, model, inputs = MODELS[key](folder)
            common = dict(target=args.targets.split(","), inputs=inputs, calibration=os.path.join(folder, "calib.npz"),
                          eval_data=os.path.join(folder, "eval.npz"), output_dir=folder, overwrite=True)
            fp32 = {a.target: a.size_bytes for a in edgekit.convert(model, quantize="none", verify=False, **common)}
            for budget in args.budgets.split(","):
                start = time.perf_counter()
                arts = edgekit.convert(model, quantize="int8", mixed_precision=budget, name=f"m_{budget.replace('=', '_').replace(',', '_')}",
                                       reporter=Reporter(stream=sys.stderr), **common)
                seconds = time.perf_counter() - start
                for art in arts:
                    q = (art.manifest or {}).get("quantization") or {}
                    mixed, cov = q.get("mixed_precision") or {}, q.get("coverage") or {}
                    kept = [k.get("module_path") or k.get("node") for k in mixed.get("kept") or []]
                    size = art.size_bytes or 0
                    print(f"{name} | {art.target} | --mixed-precision {budget} | {art.status} | cosine {art.parity.get('cosine')} | "
                          f"top-1 {art.parity.get('top1')} | {size / 1024:.1f} KB = {size / max(fp32.get(art.target) or 1, 1):.3f}x FP32 | "
                          f"weights int8 {cov.get('weight_share')} ops {cov.get('ops_quantized')}/{cov.get('ops_total')} | "
                          f"kept float {kept} (met {mixed.get('met')}, shipped {mixed.get('shipped')}) | {seconds:.0f} s all targets",
                          flush=True)


if __name__ == "__main__":
    main()
