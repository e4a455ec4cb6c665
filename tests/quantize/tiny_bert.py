"""A 2-layer BERT encoder (transformers' BertModel) + mean pooling + a 4-class head, trained here in
seconds on a synthetic token-counting task, with one outlier feature in its residual stream.

Task: which of 4 token-id buckets is the most frequent among the non-padding tokens of a sequence
(padded with attention_mask 0, as a tokenizer pads). After training, one hidden feature of the
embedding LayerNorm and of every sublayer's output projection is scaled up by OUTLIER: the residual
stream then carries one feature tens of units wide beside values near 1, as trained transformers
grow (Bondarenko et al. 2021); int8 is judged against this float model.

``--arch tests.quantize.tiny_bert:tiny_bert`` builds the architecture for a saved state_dict.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

VOCAB, LENGTH, HIDDEN, CLASSES = 256, 16, 64, 4
OUTLIER = 40.0


class TinyBertClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=4 * HIDDEN, max_position_embeddings=LENGTH, type_vocab_size=1,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))


def tiny_bert() -> TinyBertClassifier:
    return TinyBertClassifier().eval()


def token_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({"input_ids", "attention_mask"} int64 N x LENGTH, labels): real padding, 6 to 16 tokens."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, LENGTH), np.int64)
    mask = np.zeros((n, LENGTH), np.int64)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        length = int(rng.integers(6, LENGTH + 1))
        favourite = int(rng.integers(CLASSES))
        buckets = np.where(rng.random(length) < 0.55, favourite, rng.integers(CLASSES, size=length))
        ids[i, :length] = 1 + buckets * ((VOCAB - 1) // CLASSES) + rng.integers((VOCAB - 1) // CLASSES, size=length)
        mask[i, :length] = 1
        labels[i] = np.bincount(buckets, minlength=CLASSES).argmax()
    return {"input_ids": ids, "attention_mask": mask}, labels


def train_tiny_bert(steps: int = 100, seed: int = 0) -> TinyBertClassifier:
    """Adam, 100 batches of 32 sequences (about 5 s on 2 cores), then the outlier feature (module doc)."""
    torch.manual_seed(seed)
    model = TinyBertClassifier()
    data, labels = token_data(2048, seed)
    ids, mask, y = (torch.from_numpy(a) for a in (data["input_ids"], data["attention_mask"], labels))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        nn.functional.cross_entropy(model(ids[idx], mask[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():  # feature 7 of every sublayer's output and of the embeddings grows OUTLIER x
        for layer in model.encoder.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight[7] *= OUTLIER
                dense.bias[7] *= OUTLIER
        norm = model.encoder.embeddings.LayerNorm
        norm.weight[7] *= OUTLIER
        norm.bias[7] *= OUTLIER
    return model.eval()
