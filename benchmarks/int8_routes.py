"""Why edgekit's TFLite int8 uses litert-torch's PT2E route: both static int8 routes on real models.

Route A: ai-edge-quantizer's static_wi8_ai8 recipe on the float .tflite (float I/O kept).
Route B: PT2E in PyTorch (per-channel symmetric int8), converted by litert-torch, float I/O restored
         by edgekit (what `edgekit convert --quantize int8` does).
Same calibration samples, same held-out real inputs, same LiteRT interpreter. Prints cosine to fp32
and top-1 agreement per model.

    python -m benchmarks.int8_routes [--models digits,efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def _digits():
    from edgekit.demo import digits_data, train_digits

    data = digits_data()
    return train_digits(data), data.x_train[:100], data.x_test[:200]


def _efficientnet():
    from benchmarks.models import efficientnet_lite0, photos

    images = photos(224)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    return efficientnet_lite0(), images[order[:32]], images[order[32:]]


MODELS = {"digits": _digits, "efficientnet_lite0": _efficientnet}


def _run(path: str, inputs: np.ndarray) -> np.ndarray:
    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.verify import run_artifact

    runtime = TFLiteRuntime().load(path)
    return np.concatenate([run_artifact(runtime, (x[None],))[0] for x in inputs])


def _cosine(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="digits,efficientnet_lite0")
    args = parser.parse_args()
    import litert_torch
    import torch

    from edgekit.targets.tflite.io_types import to_float_io
    from edgekit.targets.tflite.quantize import pt2e_int8_module

    work = tempfile.mkdtemp(prefix="edgekit-int8-")
    print(f"{'model':20s} {'route':28s} {'size KB':>8s} {'cosine':>9s} {'top-1':>6s}")
    for name in args.models.split(","):
        model, calib, held = MODELS[name]()
        example = (torch.from_numpy(calib[:1]),)
        float_path = os.path.join(work, f"{name}_fp32.tflite")
        litert_torch.convert(model, example).export(float_path)
        reference = _run(float_path, held)
        # route A: ai-edge-quantizer static recipe, float I/O kept by not quantizing INPUT/OUTPUT
        from ai_edge_quantizer import qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        qt = quantizer.Quantizer(open(float_path, "rb").read())
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            qt.update_quantization_recipe(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
        result = qt.quantize(qt.calibrate({"serving_default": [{"args_0": x[None]} for x in calib]}))
        aeq_path = os.path.join(work, f"{name}_aeq.tflite")
        open(aeq_path, "wb").write(bytes(result.quantized_model))

        # route B: PT2E, as edgekit does it
        class _Prepared:  # the slice of ExportedModel that pt2e_int8_module uses
            def exported_program(self):
                return torch.export.export(model, example)

        module, config = pt2e_int8_module(_Prepared(), [(x[None],) for x in calib])
        pt2e_path = os.path.join(work, f"{name}_pt2e.tflite")
        litert_torch.convert(module, example, quant_config=config).export(pt2e_path)
        with open(pt2e_path, "rb") as fh:
            int8_io = fh.read()
        with open(pt2e_path, "wb") as fh:
            fh.write(to_float_io(int8_io))
        for route, path in (("ai-edge-quantizer static", aeq_path), ("PT2E (edgekit)", pt2e_path)):
            out = _run(path, held)
            top1 = float(np.mean(out.argmax(-1) == reference.argmax(-1)))
            print(f"{name:20s} {route:28s} {os.path.getsize(path) / 1024:8.1f} {_cosine(out, reference):9.5f} {top1:6.3f}")
        print(f"{name:20s} {'fp32':28s} {os.path.getsize(float_path) / 1024:8.1f}   ({len(held)} held-out real inputs)")


if __name__ == "__main__":
    main()
