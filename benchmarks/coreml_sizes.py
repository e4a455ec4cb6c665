"""Core ML package and weight sizes per precision on a real model, against fp32, with conversion time.

Each precision is one `edgekit convert --target coreml` in this process (the model is loaded and
exported once per run by the pipeline; coremltools is imported once). int8 calibrates on real photos.

    python -m benchmarks.coreml_sizes [--model benchmarks.models:efficientnet_lite0] [--precisions none,fp16,...]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

DEFAULT_PRECISIONS = "none,fp16,int8-weight-only,int4-weight-only,palettize6,palettize4,int8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="benchmarks.models:efficientnet_lite0")
    parser.add_argument("--input", default="x:1x3x224x224")
    parser.add_argument("--precisions", default=DEFAULT_PRECISIONS, help="comma-separated (palettize8's k-means is slow)")
    parser.add_argument("--prune", type=float, default=None, help="also prune to this sparsity")
    args = parser.parse_args()

    import numpy as np

    import edgekit
    from benchmarks.models import photos

    work = tempfile.mkdtemp(prefix="edgekit-coreml-")
    calibration = os.path.join(work, "photos.npz")
    np.savez(calibration, x=photos()[:, None])
    rows = []
    for precision in args.precisions.split(","):
        start = time.perf_counter()
        art = edgekit.convert(
            None, model_factory=args.model, target="coreml", quantize=precision, inputs=[args.input],
            calibration=calibration if precision == "int8" else None, calibration_samples=32,
            output_dir=work, name="model", overwrite=True,
            target_options={"coreml": {"prune": args.prune}} if args.prune else {},
        )[0]
        details = art.manifest["target_details"]
        observer = (details.get("quantization") or {}).get("observer")
        status = art.status + (f" (int8 observer {observer})" if observer else "")
        rows.append((precision, art.size_bytes, details["weights"]["weights_bytes"], details["weights"]["fraction_compressed"],
                     details["deployment_target"], time.perf_counter() - start, status))
    base = next((r for r in rows if r[0] == "none"), rows[0])
    print(f"model {args.model}  input {args.input}" + (f"  prune {args.prune}" if args.prune else ""))
    print(f"{'precision':18s} {'package':>10s} {'weights':>10s} {'vs fp32':>8s} {'compressed':>10s} {'target':>7s} {'seconds':>8s}  status")
    for precision, size, weights, fraction, target, seconds, status in rows:
        print(f"{precision:18s} {size / 1e6:9.2f}M {weights / 1e6:9.2f}M {weights / base[2]:7.3f}x {fraction:10.1%} {target:>7s} {seconds:8.1f}  {status}")


if __name__ == "__main__":
    main()
