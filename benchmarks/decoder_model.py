"""A small GPT-style decoder (character level) with a static KV cache, for edgekit's decoder path.

Two forms share one set of weights:
- ``TinyGPT.forward(tokens)``: the whole sequence at once with a causal mask (training, reference);
- ``DecodeStep.forward(token, pos, k_cache, v_cache) -> (logits, k_cache, v_cache)``: one token, the
  cache as explicit inputs and outputs (edgekit pairs the cache outputs with the cache inputs), the
  form that converts to ExecuTorch and TFLite with static shapes. The cache update is a one-hot blend
  rather than index_copy/scatter, so every converter lowers it to plain elementwise ops.

Factories for edgekit (``--arch benchmarks.decoder_model:step_small``) and the vocabulary of the
fortunes corpus live here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# printable ASCII plus newline: fortunes text maps onto it, anything else becomes '?'
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = len(VOCAB)
    context: int = 128
    width: int = 192
    heads: int = 6
    layers: int = 4
    ffn: int = 768


SMALL = GPTConfig()  # about 1.9M parameters: the benchmark model
TINY = GPTConfig(context=32, width=32, heads=2, layers=2, ffn=64)  # tests


def encode(text: str) -> list[int]:
    index = {ch: i for i, ch in enumerate(VOCAB)}
    return [index.get(ch, index["?"]) for ch in text]


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.width // cfg.heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.ffn), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn, cfg.width))

    def _split(self, x):  # [B, T, C] -> [B, H, T, D]
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def attend(self, x, keys_values, mask):
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        k, v = keys_values(k, v)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = torch.softmax(att + mask, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x)), k, v


class TinyGPT(nn.Module):
    def __init__(self, cfg: GPTConfig = SMALL):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.width)
        for table in (self.tok, self.pos):  # GPT-2's scale: tied output logits start near uniform
            nn.init.normal_(table.weight, std=0.02)

    def head(self, x):
        return self.ln(x) @ self.tok.weight.t()  # tied embeddings

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(t))
        mask = torch.full((t, t), -1e4).triu(1)
        for block in self.blocks:
            x, _, _ = block.attend(x, lambda k, v: (k, v), mask)
        return self.head(x)


class DecodeStep(nn.Module):
    """One decoding step of a TinyGPT with the KV cache as explicit inputs and outputs."""

    def __init__(self, gpt: TinyGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, token, pos, k_cache, v_cache):
        # token [1, 1] int64, pos [1] int64, caches [layers, 1, heads, context, head_dim]
        cfg = self.gpt.cfg
        slots = torch.arange(cfg.context)
        here = (slots == pos).to(k_cache.dtype).view(1, 1, cfg.context, 1)
        mask = torch.where(slots <= pos, 0.0, -1e4).view(1, 1, 1, cfg.context)
        x = self.gpt.tok(token) + self.gpt.pos(pos).view(1, 1, -1)
        new_k, new_v = [], []
        for i, block in enumerate(self.gpt.blocks):
            def write(k, v, i=i):
                return k_cache[i] * (1 - here) + k * here, v_cache[i] * (1 - here) + v * here

            x, k, v = block.attend(x, write, mask)
            new_k.append(k)
            new_v.append(v)
        return self.gpt.head(x)[:, -1, :], torch.stack(new_k), torch.stack(new_v)


def cache_shape(cfg: GPTConfig) -> tuple[int, ...]:
    return (cfg.layers, 1, cfg.heads, cfg.context, cfg.width // cfg.heads)


def input_specs(cfg: GPTConfig) -> list[str]:
    """edgekit --input strings for the decode step."""
    cache = "x".join(map(str, cache_shape(cfg)))
    return ["token:1x1:int64", "pos:1:int64", f"k_cache:{cache}", f"v_cache:{cache}"]


def step_small() -> DecodeStep:
    return DecodeStep(TinyGPT(SMALL))


def step_tiny() -> DecodeStep:
    torch.manual_seed(0)
    return DecodeStep(TinyGPT(TINY))


def train(model: TinyGPT, text: str, steps: int, batch: int = 32, lr: float = 3e-3, seed: int = 0, log=print) -> float:
    """Next-character training on ``text``; returns the last loss."""
    torch.manual_seed(seed)
    data = torch.tensor(encode(text), dtype=torch.long)
    ctx = model.cfg.context
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        starts = torch.randint(0, len(data) - ctx - 1, (batch,))
        x = torch.stack([data[s : s + ctx] for s in starts])
        y = torch.stack([data[s + 1 : s + ctx + 1] for s in starts])
        loss = F.cross_entropy(model(x).reshape(-1, model.cfg.vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (step % 100 == 0 or step == steps - 1):
            log(f"step {step}: loss {loss.item():.3f}")
    model.eval()
    return float(loss.item())


def step_inputs(step: DecodeStep, text: str) -> dict:
    """The decode step's inputs along ``text`` (token, position, cache before the step): real
    evaluation data for edgekit (--eval-data), whose first tokens are also the greedy prompt."""
    import numpy as np

    cfg = step.gpt.cfg
    k = torch.zeros(cache_shape(cfg))
    v = torch.zeros(cache_shape(cfg))
    rows: dict[str, list] = {"token": [], "pos": [], "k_cache": [], "v_cache": []}
    with torch.no_grad():
        for i, t in enumerate(encode(text)[: cfg.context]):
            token, pos = torch.tensor([[t]]), torch.tensor([i])
            for name, value in (("token", token), ("pos", pos), ("k_cache", k), ("v_cache", v)):
                rows[name].append(value.numpy())
            _, k, v = step(token, pos, k, v)
    return {name: np.stack(values) for name, values in rows.items()}
