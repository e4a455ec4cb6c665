"""Which role verification gives the outputs of real models, and on how many inputs FP32 is confident.

    python -m benchmarks.verify_roles

Prints, per real output (EfficientNet-Lite0 on photos, MiniLM hidden states / sentence embeddings /
the 157-class intent logits on Debian fortunes, the digits CNN on held-out digits), the detected role,
the reason, and the share of rows where FP32's top-1 probability is >= 0.5 (edgekit/verify_roles.py).
The rule must give class_scores to every classifier and never to embeddings or hidden states.
"""
from __future__ import annotations

import numpy as np


def _describe(name: str, reference: np.ndarray) -> None:
    from edgekit.verify_roles import class_rows, confident_rows, detect_role, probabilities, row_kind

    shape = (1, *reference.shape[1:])  # one sample, as verification sees it
    rows = reference.reshape(-1, shape[-1]).astype(np.float64) if class_rows(shape) else None
    role, why = detect_role("output_0", shape, True, rows)
    extra = ""
    if rows is not None:
        kind = row_kind(rows)
        top = probabilities(rows, kind).max(axis=1)
        extra = (f"  confident {confident_rows(rows, kind).mean():.0%}  mean top-1 prob {top.mean():.3f} "
                 f"(uniform {1 / shape[-1]:.4f})")
    print(f"{name:<46} {str(tuple(shape)):<14} {role:<13} {why}{extra}")


def main() -> None:
    import torch

    from benchmarks import models

    torch.set_grad_enabled(False)
    net = models.efficientnet_lite0().eval()
    photos = torch.from_numpy(models.photos()[:32])
    _describe("EfficientNet-Lite0 logits, 32 photo crops", net(photos).numpy())

    texts = models.sentences()[:48]
    batch = {k: torch.from_numpy(v) for k, v in models.tokenized(texts).items()}
    intent = models.minilm_intent()
    hidden = intent.encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    _describe("MiniLM last_hidden_state, 48 fortunes", hidden.numpy())
    _describe("MiniLM mean-pooled embedding (not normalised)", pooled.numpy())
    _describe("MiniLM sentence embedding (L2-normalised)", torch.nn.functional.normalize(pooled, dim=-1).numpy())
    _describe("MiniLM + intent head logits (157), fortunes", intent(**batch).numpy())

    from edgekit.demo import digits_data, train_digits

    data = digits_data()
    with torch.enable_grad():
        digits = train_digits(data, epochs=6).eval()
    _describe("digits CNN logits, 360 held-out digits", digits(torch.from_numpy(data.x_test)).numpy())


if __name__ == "__main__":
    main()
