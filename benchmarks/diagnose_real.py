"""edgekit diagnose on real models: the top layers it names, and the end-to-end win of keeping its
top-k layers in float against keeping k random layers (fixed seeds), on held-out real inputs.

    python -m benchmarks.diagnose_real                      # EfficientNet-Lite0 on real photos
    python -m benchmarks.diagnose_real --models efficientnet,minilm --observer auto

Prints numbers; asserts nothing. The same measurement from the CLI:

    edgekit diagnose --model benchmarks.models:efficientnet_lite0 --input x:1x3x224x224 \\
        --calibration photos.npz --eval-data photos_eval.npz --json d.json --html d.html
"""
from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _efficientnet():
    import torch

    from benchmarks.models import efficientnet_lite0, photos

    images = photos()
    order = __import__("numpy").random.default_rng(0).permutation(len(images))
    samples = [(images[i : i + 1],) for i in order]
    model = efficientnet_lite0()
    return "EfficientNet-Lite0", model, (torch.from_numpy(samples[0][0]),), samples


def _minilm():
    import torch

    from benchmarks.models import minilm_intent, sentences, tokenized

    texts = sentences()
    rng = random.Random(0)
    texts = rng.sample(texts, 96)
    enc = tokenized(texts)
    samples = [(enc["input_ids"][i : i + 1], enc["attention_mask"][i : i + 1]) for i in range(len(texts))]
    model = minilm_intent()
    return "MiniLM-L6 + intent head", model, tuple(torch.from_numpy(a) for a in samples[0]), samples


MODELS = {"efficientnet": _efficientnet, "minilm": _minilm}


def run(name: str, args) -> None:
    import torch

    from edgekit.options import get_precision
    from edgekit.quantize import QuantConfig
    from edgekit.quantize.diagnose import diagnose
    from edgekit.quantize.mixed import Int8Variants
    from edgekit.quantize.pt2e import quantize_program

    torch.set_num_threads(args.threads)
    title, model, example, samples = MODELS[name]()
    calibration, evaluation = samples[: args.calibration], samples[args.calibration : args.calibration + args.eval]
    tolerance = get_precision("int8").tolerance
    start = time.perf_counter()
    exported = torch.export.export(model, example, strict=False)
    program = quantize_program(exported, calibration, QuantConfig(observer=args.observer))
    print(f"\n== {title}: {len(calibration)} calibration, {len(evaluation)} held-out inputs; "
          f"observer {program.choice.name} ({time.perf_counter() - start:.0f} s)")
    d = diagnose(exported, calibration, evaluation, tolerance, program=program, layer_samples=args.layer_samples,
                 remedy_layers=args.remedies, top_k=())
    base = d.baseline
    print(f"int8 vs float: cosine {base.cosine:.4f}, SNR {base.snr_db:.2f} dB, top-1 {base.top1}; "
          f"{len(d.layers)} quantized layers; diagnose took {d.seconds:.0f} s")
    print(f"{'rank':>4}  {'layer':44s} {'node':18s} {'local dB':>8} {'prop dB':>8} {'alone dB':>8} {'float win':>10} {'int16 win':>10} {'obs win':>8}")
    for layer in d.layers[: args.show]:
        m, r = layer.metrics, layer.remedies
        win = lambda k: f"{r[k]['snr_gain_db']:+.2f}" if k in r else "-"  # noqa: E731
        print(f"{layer.rank:>4}  {layer.where[:44]:44s} {layer.node[:18]:18s} {m['local_snr_db']:8.2f} "
              f"{m['propagated_snr_db']:8.2f} {m['solo_output_snr_db']:8.2f} {win('float'):>10} {win('int16'):>10} {win('observer'):>8}")
    variants = Int8Variants(exported, program, calibration, evaluation, tolerance)
    for k in args.k:
        top = variants.evaluate({n: "float" for l in d.layers[:k] for n in l.group})
        rng = random.Random(args.seed)
        randoms = [variants.evaluate({n: "float" for l in rng.sample(d.layers, k) for n in l.group})
                   for _ in range(args.random_draws)]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        top1 = "-" if top.top1 is None else f"{top.top1:.3f}"
        rtop1 = "-" if randoms[0].top1 is None else f"{mean([r.top1 for r in randoms]):.3f}"
        print(f"keep top-{k} in float: SNR {top.snr_db:.2f} dB ({top.snr_db - base.snr_db:+.2f}), cosine {top.cosine:.4f}, "
              f"top-1 {top1} | {k} random (mean of {len(randoms)}): SNR {mean([r.snr_db for r in randoms]):.2f} dB "
              f"({mean([r.snr_db for r in randoms]) - base.snr_db:+.2f}), cosine {mean([r.cosine for r in randoms]):.4f}, top-1 {rtop1}")
    print(f"total {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--observer", default="minmax", help="int8 calibration (auto tries every candidate: slower)")
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--eval", type=int, default=32)
    parser.add_argument("--layer-samples", type=int, default=8)
    parser.add_argument("--remedies", type=int, default=5)
    parser.add_argument("--show", type=int, default=10)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--random-draws", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.models.split(","):
        run(name.strip(), args)


if __name__ == "__main__":
    main()
