"""A tiny text classifier for the package tests: token ids + attention mask in, 3 logits out.

Vocabulary of 100 ids, the range edgekit's random verification inputs and the apps' random
benchmark inputs draw token ids from.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class TinyTextClassifier(nn.Module):
    def __init__(self, vocab: int = 100, dim: int = 16, classes: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def tiny_text_classifier():
    torch.manual_seed(0)
    return TinyTextClassifier().eval()
