"""edgekit convert vs calling litert-torch directly, same model and precision, in fresh processes.

Goal (issue 2): edgekit convert costs at most 15 % more wall time than litert-torch directly.
Each side runs in a fresh Python process (imports included, as a user pays them), alternating, and the
fastest of --repeat runs is kept. The edgekit side is measured with --no-verify (the same work as the
direct call) and with verification on (what edgekit does by default: the extra is reported apart).

    python -m benchmarks.convert_overhead [--model benchmarks.models:efficientnet_lite0] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

DIRECT = {
    "none": """
import importlib, torch, litert_torch
mod, fn = {model!r}.split(':'); m = getattr(importlib.import_module(mod), fn)().eval()
x = torch.randn({shape})
litert_torch.convert(m, (x,)).export({out!r})
""",
    "int8": """
import importlib, numpy as np, torch, litert_torch
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from litert_torch.quantize.quant_config import QuantConfig
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, convert_pt2e
mod, fn = {model!r}.split(':'); m = getattr(importlib.import_module(mod), fn)().eval()
x = torch.randn({shape})
q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
p = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
for a in np.load({calib!r})['x'][:{n}]:
    p(torch.from_numpy(a[None]))
c = convert_pt2e(p, fold_quantize=False)
litert_torch.convert(c, (x,), quant_config=QuantConfig(pt2e_quantizer=q)).export({out!r})
""",
}


def timed(argv) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: written but failed verification, still a full conversion
        raise SystemExit(f"failed: {' '.join(argv[:4])}...\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="benchmarks.models:efficientnet_lite0")
    parser.add_argument("--input", default="x:1x3x224x224")
    parser.add_argument("--precisions", default="none,int8")
    parser.add_argument("--samples", type=int, default=32, help="calibration samples for int8")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import numpy as np

    shape = tuple(int(d) for d in args.input.split(":")[1].split("x"))
    work = tempfile.mkdtemp(prefix="edgekit-overhead-")
    calib = os.path.join(work, "calib.npz")
    if args.model == "benchmarks.models:efficientnet_lite0":
        from benchmarks.models import photos

        data = photos(shape[-1])
    else:
        data = np.random.default_rng(0).standard_normal((args.samples * 2, *shape[1:])).astype(np.float32)
    np.savez(calib, x=data)
    print(f"model {args.model}, input {args.input}, {os.cpu_count()} cores, best of {args.repeat} fresh processes")
    print(f"{'precision':10s} {'litert-torch':>13s} {'edgekit --no-verify':>20s} {'ratio':>6s} {'edgekit (verify)':>17s} {'ratio':>6s}")
    for precision in args.precisions.split(","):
        direct_src = DIRECT[precision].format(model=args.model, shape=shape, out=os.path.join(work, "direct.tflite"),
                                              calib=calib, n=args.samples)
        common = [sys.executable, "-m", "edgekit", "convert", "--model", args.model, "-i", args.input, "-o", work,
                  "--overwrite", "-q", "--quantize", precision]
        if precision == "int8":
            # the same work as the direct script: the PT2E route only (auto builds both routes)
            common += ["--calibration", calib, "--calibration-samples", str(args.samples), "--tflite-int8-route", "pt2e"]
        best = {"direct": [], "noverify": [], "verify": [], "auto": []}
        for _ in range(args.repeat):
            best["direct"].append(timed([sys.executable, "-c", direct_src]))
            best["noverify"].append(timed(common + ["--no-verify"]))
            best["verify"].append(timed(common))
            if precision == "int8":
                best["auto"].append(timed(common[:-2] + ["--no-verify"]))
        d, n, v = (min(best[k]) for k in ("direct", "noverify", "verify"))
        print(f"{precision:10s} {d:12.1f}s {n:19.1f}s {n / d:6.2f} {v:16.1f}s {v / d:6.2f}")
        if best["auto"]:
            a = min(best["auto"])
            print(f"{'':10s} int8 route auto (builds PT2E and ai-edge-quantizer, keeps the closer): {a:.1f}s, {a / d:.2f}x direct")


if __name__ == "__main__":
    main()
