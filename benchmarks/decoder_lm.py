"""A small GPT-style decoder trained here on Debian's fortunes, taken to ExecuTorch and TFLite (and
ONNX) with its KV cache as explicit I/O, verified by greedy generation token by token against eager
PyTorch, and benched in tokens per second.

    python -m benchmarks.decoder_lm [--steps 400] [--work DIR]

Needs `apt-get install fortunes`. Prints a table and writes benchmarks/results/sections/decoder_lm.md,
which RESULTS.md includes. Training takes about 5 minutes of this machine's 2 cores; the trained
weights are cached in --work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORTUNES = Path("/usr/share/games/fortunes")
RUNS = [
    ("executorch", "none"), ("executorch", "fp16"), ("executorch", "int8-dynamic"), ("executorch", "int8-int4"),
    ("tflite", "none"), ("tflite", "fp16"), ("tflite", "int8-weight-only"), ("tflite", "int4-weight-only"),
    ("onnx", "none"), ("onnx", "int8-dynamic"),
]


def corpus() -> tuple[str, str]:
    """(training text, held-out text): whole fortune files, the last one held out."""
    if not FORTUNES.is_dir():
        raise SystemExit("no fortunes: apt-get install fortunes")
    files = sorted(p for p in FORTUNES.iterdir() if p.is_file() and not p.suffix)
    texts = [p.read_text(encoding="utf-8", errors="replace").replace("%\n", "\n") for p in files]
    return "\n".join(texts[:-1]), texts[-1]


def trained_model(work: Path, steps: int):
    import torch

    from benchmarks import decoder_model as dm

    cache = work / f"decoder_lm_{steps}.pt"
    gpt = dm.TinyGPT(dm.SMALL)
    if cache.exists():
        gpt.load_state_dict(torch.load(cache, weights_only=True))
        gpt.eval()
        return gpt, None
    train_text, held_out = corpus()
    start = time.perf_counter()
    loss = dm.train(gpt, train_text, steps)
    torch.save(gpt.state_dict(), cache)
    return gpt, {"steps": steps, "final_loss": loss, "seconds": time.perf_counter() - start}


def held_out_loss(gpt, text: str) -> float:
    import torch
    import torch.nn.functional as F

    from benchmarks import decoder_model as dm

    ids = torch.tensor(dm.encode(text)[: 64 * dm.SMALL.context + 1])
    n = (len(ids) - 1) // dm.SMALL.context * dm.SMALL.context
    x, y = ids[:n].view(-1, dm.SMALL.context), ids[1 : n + 1].view(-1, dm.SMALL.context)
    with torch.no_grad():
        return float(F.cross_entropy(gpt(x).reshape(-1, dm.SMALL.vocab), y.reshape(-1)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--work", default="/tmp/edgekit-decoder-lm")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    import edgekit
    from benchmarks import decoder_model as dm

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gpt, training = trained_model(work, args.steps)
    _, held_out = corpus()
    step = dm.DecodeStep(gpt).eval()
    params = sum(t.numel() for t in gpt.parameters())
    eval_path = work / "steps.npz"
    np.savez(eval_path, **dm.step_inputs(step, held_out[:48]))
    rows = []
    for target, precision in RUNS:
        start = time.perf_counter()
        try:
            art = edgekit.convert(step, target=target, quantize=precision, inputs=dm.input_specs(dm.SMALL),
                                  eval_data=str(eval_path), decoder="auto", output_dir=str(work / "out"),
                                  name="gpt", overwrite=True)[0]
        except edgekit.errors.EdgekitError as exc:
            rows.append({"target": target, "precision": precision, "error": str(exc)})
            continue
        seconds = time.perf_counter() - start
        record = edgekit.run_bench([art.path], ["host"], threads=2, runs=20, warmup=3)[0]
        greedy = art.parity.get("greedy") or {}
        generation = record.get("generation") or {}
        rows.append({
            "target": target, "precision": precision, "status": art.status, "size_bytes": art.size_bytes,
            "convert_s": seconds, "greedy": f"{greedy.get('matching')}/{greedy.get('tokens')}",
            "exact_required": greedy.get("exact_required"), "cosine": art.parity.get("cosine"),
            "prefill_tps": generation.get("prefill_tokens_per_s"), "decode_tps": generation.get("decode_tokens_per_s"),
        })
        print(json.dumps(rows[-1]))
    write_section(rows, params, training, held_out_loss(gpt, held_out), args)
    return 0


def write_section(rows, params, training, loss, args) -> None:
    lines = [
        "## A GPT-style decoder trained here (fortunes), KV cache as I/O",
        "",
        f"{params / 1e6:.2f}M parameters (4 layers, width 192, 6 heads, 128-position cache, character vocabulary), "
        f"trained for {args.steps} steps on Debian's fortunes (held-out loss {loss:.3f} nats/char"
        + (f", {training['seconds'] / 60:.1f} min of training" if training else "") + "). "
        "Each artifact is one decoding step `(token, pos, k_cache, v_cache) -> (logits, k_cache, v_cache)`, "
        "converted with `--decoder`; edgekit verifies it by greedy generation from the held-out text's first "
        "8 characters against eager PyTorch (exact match required at float32) and `edgekit bench` reports "
        "prefill and decode tokens per second (host, 2 threads; prefill runs the step program once per "
        "prompt token).",
        "",
        f"- command: `python -m benchmarks.decoder_lm --steps {args.steps}`; {platform.machine()}, "
        f"{os.cpu_count()} cores, shared machine",
        "",
        "| target | precision | status | size | greedy tokens matching | exact required | cosine | prefill tok/s | decode tok/s | convert s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['precision']} | error: {r['error'][:120]} | | | | | | | |")
            continue
        lines.append(
            f"| {r['target']} | {r['precision']} | {r['status']} | {r['size_bytes'] / 1e6:.2f} MB | {r['greedy']} | "
            f"{'yes' if r['exact_required'] else 'no'} | {r['cosine']:.5f} | {_num(r['prefill_tps'])} | "
            f"{_num(r['decode_tps'])} | {r['convert_s']:.1f} |"
        )
    out = HERE / "results" / "sections" / "decoder_lm.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def _num(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
