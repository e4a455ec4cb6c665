"""Calibration and evaluation data: .npz, .npy, image folders, ``module:function``, or seeded random.

Every source becomes a list of samples; a sample is a tuple of numpy arrays, one per model input,
shaped exactly like the input spec. Data is read once per run and shared by every target.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgekit.errors import DataError, UsageError
from edgekit.options import InputSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class Samples:
    samples: list[tuple]  # each a tuple of np.ndarray, one per input
    source: str  # what a user would recognise: the path, "module:function", "random (seed 0)"
    real: bool  # False for random data: flagged in the manifest and the table

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "samples": len(self.samples), "real": self.real}


def load_samples(
    source: str,
    specs: Sequence[InputSpec],
    *,
    limit: int | None = None,
    image_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    color_layout: str = "RGB",
    seed: int = 0,
    flag: str = "--calibration",
) -> Samples:
    """Read ``source`` into samples that fit ``specs``; raise DataError with one clear line if not."""
    if source == "random":
        return random_samples(specs, limit or 100, seed)
    path = Path(source)
    if path.is_dir():
        arrays = {specs[0].name: _read_image_folder(path, specs, image_size, mean, std, color_layout, limit, flag)}
    elif path.suffix.lower() in (".npz", ".npy") or path.is_file():
        if not path.exists():
            raise DataError(f"{flag} {source}: no such file")
        arrays = _read_numpy(path, specs, flag)
    elif ":" in source and not path.exists():
        return _from_function(source, specs, limit, flag)
    else:
        raise DataError(f"{flag} {source}: no such file or folder")
    samples = _split_samples(arrays, specs, source, flag)
    if limit is not None:
        samples = samples[:limit]
    return Samples(samples, str(source), real=True)


def random_samples(specs: Sequence[InputSpec], count: int, seed: int = 0) -> Samples:
    import numpy as np

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        sample = []
        for spec in specs:
            if spec.dtype.startswith("float"):
                sample.append(rng.standard_normal(spec.shape).astype(spec.dtype))
            elif spec.dtype == "bool":
                sample.append(np.ones(spec.shape, dtype=bool))
            else:
                sample.append(rng.integers(0, 100, spec.shape).astype(spec.dtype))
        samples.append(tuple(sample))
    return Samples(samples, f"random (seed {seed})", real=False)


def split_holdout(data: Samples, calibration_count: int) -> tuple[Samples, Samples | None]:
    """First ``calibration_count`` samples calibrate; the rest (at least a fifth) are held back for eval.

    The held-back part is never used to calibrate, so parity on it is an honest measure.
    """
    n = len(data)
    if n < 2:
        return data, None
    holdout = max(n - calibration_count, max(1, n // 5))
    calib_n = n - holdout
    calib = Samples(data.samples[:calib_n], data.source, data.real)
    held = Samples(data.samples[calib_n:], f"{data.source} (held back, not used to calibrate)", data.real)
    return calib, held


def _read_numpy(path: Path, specs: Sequence[InputSpec], flag: str) -> dict[str, Any]:
    return read_numpy_arrays(path, specs, flag)[0]


def read_numpy_arrays(path: Path, specs: Sequence[InputSpec], flag: str, label_keys: Sequence[str] = (),
                      holder: str = "the model") -> tuple[dict[str, Any], Any]:
    """({input name: array}, labels or None) from a .npy (one input) or a .npz: arrays named after
    the inputs, else arr_0..., else the only array. The first of ``label_keys`` present is taken as
    the labels (distillation data), and is not an input."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{flag} {path}: cannot read as .npy/.npz ({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise DataError(f"{flag} {path}: a .npy holds one array but {holder} has {len(specs)} inputs; use .npz with one array per input name")
        return {specs[0].name: loaded}, None
    with loaded:
        keys = list(loaded.keys())
        label_key = next((k for k in label_keys if k in keys), None)
        labels = loaded[label_key] if label_key else None
        rest = [k for k in keys if k != label_key]
        names = [s.name for s in specs]
        if all(n in rest for n in names):
            return {n: loaded[n] for n in names}, labels
        positional = [f"arr_{i}" for i in range(len(specs))]
        if all(k in rest for k in positional):
            return {n: loaded[k] for n, k in zip(names, positional)}, labels
        if len(rest) == len(specs) == 1:
            return {names[0]: loaded[rest[0]]}, labels
    also = " and optionally labels" if label_keys else ""
    raise DataError(f"{flag} {path}: expected arrays named {', '.join(names)} (or arr_0...){also}; found {', '.join(keys) or 'none'}")


def _split_samples(arrays: dict[str, Any], specs: Sequence[InputSpec], source: str, flag: str) -> list[tuple]:
    """First axis = samples. Accept (N, *shape) or, for batch-1 specs, (N, *shape[1:])."""
    import numpy as np

    per_input = []
    counts = set()
    for spec in specs:
        arr = np.asarray(arrays[spec.name])
        shape = tuple(spec.shape)
        if arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == shape:
            items = [arr[i] for i in range(arr.shape[0])]
        elif arr.ndim == len(shape) and tuple(arr.shape[1:]) == shape[1:] and shape[0] == 1:
            items = [arr[i : i + 1] for i in range(arr.shape[0])]
        elif arr.ndim == len(shape) and tuple(arr.shape[1:]) == shape[1:] and arr.shape[0] % shape[0] == 0:
            b = shape[0]
            items = [arr[i : i + b] for i in range(0, arr.shape[0], b)]
        else:
            raise DataError(
                f"{flag} {source}: input {spec.name!r} has shape {tuple(arr.shape)}, expected (N, {', '.join(map(str, shape))})"
                + (f" or (N, {', '.join(map(str, shape[1:]))})" if shape and shape[0] == 1 else "")
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise DataError(f"{flag} {source}: input {spec.name!r} contains {bad} NaN/Inf values")
        if arr.dtype.kind in "fiub" and arr.dtype != np.dtype(spec.dtype):
            if np.dtype(spec.dtype).kind != arr.dtype.kind and not (np.dtype(spec.dtype).kind in "iu" and arr.dtype.kind in "iu"):
                raise DataError(f"{flag} {source}: input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}")
        items = [np.ascontiguousarray(x, dtype=spec.dtype) for x in items]
        per_input.append(items)
        counts.add(len(items))
    if len(counts) != 1:
        raise DataError(f"{flag} {source}: inputs have different sample counts ({sorted(counts)})")
    if counts == {0}:
        raise DataError(f"{flag} {source}: holds no samples")
    return list(zip(*per_input))


def _read_image_folder(path, specs, image_size, mean, std, color_layout, limit, flag):
    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{flag} {path}: reading an image folder needs Pillow (pip install pillow)") from None
    spec = specs[0]
    if len(specs) != 1 or len(spec.shape) != 4:
        raise DataError(f"{flag} {path}: an image folder feeds one NCHW or NHWC image input; the model has {len(specs)} inputs")
    channels_first = spec.shape[1] in (1, 3)
    c = spec.shape[1] if channels_first else spec.shape[3]
    h, w = image_size or ((spec.shape[2], spec.shape[3]) if channels_first else (spec.shape[1], spec.shape[2]))
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{flag} {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    if limit:
        files = files[:limit]
    for what, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, c):
            raise UsageError(f"{what} has {len(values)} values; the images have {c} channels (give 1 or {c})")
    mean_a = np.asarray(mean if mean is not None else [0.0] * c, dtype=np.float32)
    std_a = np.asarray(std if std is not None else [1.0] * c, dtype=np.float32)
    images = []
    for file in files:
        try:
            with Image.open(file) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except Exception as exc:
            raise DataError(f"{flag} {file}: cannot read image ({exc})") from None
        if arr.ndim == 2:
            arr = arr[..., None]
        if color_layout == "BGR":
            arr = arr[..., ::-1]
        arr = (arr - mean_a) / std_a
        images.append(arr.transpose(2, 0, 1) if channels_first else arr)
    return np.stack(images).astype(np.float32)


def _from_function(spec_text: str, specs: Sequence[InputSpec], limit: int | None, flag: str) -> Samples:
    import numpy as np

    from edgekit.loading import import_object

    fn = import_object(spec_text, flag)
    try:
        iterator = fn() if callable(fn) else fn
        samples = []
        for item in iterator:
            item = item if isinstance(item, (tuple, list)) else (item,)
            arrays = tuple(np.asarray(x.detach().numpy() if hasattr(x, "detach") else x) for x in item)
            samples.append(arrays)
            if limit is not None and len(samples) >= limit:
                break
    except UsageError:
        raise
    except Exception as exc:
        raise DataError(f"{flag} {spec_text} raised {type(exc).__name__}: {exc}") from exc
    if not samples:
        raise DataError(f"{flag} {spec_text}: yielded no samples")
    stacked = {}
    for i, spec in enumerate(specs):
        if any(len(s) != len(specs) for s in samples):
            raise DataError(f"{flag} {spec_text}: each item must hold {len(specs)} arrays (one per input)")
        stacked[spec.name] = np.stack([s[i] for s in samples])
    return Samples(_split_samples(stacked, specs, spec_text, flag), spec_text, real=True)


def describe_path(source: str | None) -> str | None:
    return None if source is None else (source if not os.path.exists(source) else os.path.abspath(source))


def check_finite_file(source: str | None, flag: str) -> None:
    """A .npz/.npy holding NaN or Inf is refused (DataError, exit 4) before anything runs on it."""
    import numpy as np

    if source is None or not str(source).lower().endswith((".npz", ".npy")) or not os.path.isfile(source):
        return
    try:
        loaded = np.load(source, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{flag} {source}: cannot read as .npy/.npz ({type(exc).__name__}: {exc})") from None
    arrays = [("", loaded)] if isinstance(loaded, np.ndarray) else list(loaded.items())
    for name, arr in arrays:
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise DataError(f"{flag} {source}: {('array ' + repr(name) + ' ') if name else ''}contains {bad} NaN/Inf values")
