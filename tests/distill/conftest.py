"""Fixtures for the distillation tests: a real (small) teacher trained once per session.

The teacher is tests.models:mlp trained for a second on scikit-learn's digits (8x8 images
flattened to 64 features, real labels); the data is written as .npz files the way users give it.
"""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small models on a shared machine: one thread is faster than fighting over cores (50x here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_mlp_teacher(x, y, epochs: int = 30, seed: int = 0):
    import torch

    from tests.models import MLP

    torch.manual_seed(seed)
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """{teacher: state_dict path, arch, train/val/unlabelled .npz paths, accuracy, model}."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = ((digits.data.astype(np.float32) / 16.0) - 0.5) / 0.5
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
    model = train_mlp_teacher(x_train, y_train)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_val)).argmax(-1).numpy() == y_val).mean())
    folder = tmp_path_factory.mktemp("distill")
    teacher = folder / "teacher.pt"
    torch.save(model.state_dict(), teacher)
    np.savez(folder / "train.npz", x=x_train, labels=y_train)
    np.savez(folder / "val.npz", x=x_val, labels=y_val)
    np.savez(folder / "unlabelled.npz", x=x_train)
    return {
        "teacher": str(teacher), "arch": "tests.models:mlp", "input": "x:1x64",
        "train": str(folder / "train.npz"), "val": str(folder / "val.npz"),
        "unlabelled": str(folder / "unlabelled.npz"), "accuracy": accuracy, "model": model,
        "x_val": x_val, "y_val": y_val, "folder": folder,
    }


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    """A real BERT WordPiece tokenizer over a small vocabulary written here (no model hub)."""
    from transformers import BertTokenizer

    words = "the a cat dog sat on mat ran fast slow red blue is was and big small".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return tokenizer, str(folder)


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory, word_tokenizer):
    """A 4-layer BERT (random weights, real architecture) saved as a Hugging Face folder with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer, _ = word_tokenizer
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)
