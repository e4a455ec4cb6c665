"""Training data for distillation: inputs, with labels when the data has them.

Sources (``--data`` / ``--val``):
- an image folder: one subfolder per class gives labels (sorted names); loose images are unlabelled
- ``.npz``: one array per model input (by input name, or ``arr_0``...) plus an optional ``labels``
  (or ``label``, ``y``, ``targets``) array; ``.npy``: inputs only
- text: a ``.txt`` file (one sample per line), a ``.csv``/``.tsv`` (a ``text`` column, an optional
  ``label`` column), or a folder of them; tokenised with the teacher's tokenizer
- ``package.module:function``: an iterable of samples; a sample is an array (one input), a tuple of
  arrays (one per input, plus a trailing label if there is one more), or a dict of input names and
  an optional ``label``

Everything is held in memory as tensors with the sample axis first. Bad data raises DataError with
one line: NaN/Inf, a shape that does not fit the teacher's inputs, an empty folder, stray labels.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgekit.errors import DataError, UsageError
from edgekit.options import InputSpec

LABEL_KEYS = ("labels", "label", "y", "targets")
TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
_TEXT_COLUMNS = ("text", "sentence", "sentences", "query", "utterance")
_LABEL_COLUMNS = ("label", "labels", "intent", "class", "target")


@dataclass
class TrainData:
    inputs: list  # torch tensors, one per model input, sample axis first
    labels: Any  # torch int64 of shape (N,), or None
    source: str
    classes: list[str] | None = None

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def subset(self, index) -> "TrainData":
        labels = None if self.labels is None else self.labels[index]
        return TrainData([t[index] for t in self.inputs], labels, self.source, self.classes)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "samples": len(self), "labelled": self.labels is not None,
                "classes": len(self.classes) if self.classes else None}


def load_training_data(
    source: str,
    specs: Sequence[InputSpec],
    *,
    tokenizer=None,
    limit: int | None = None,
    image_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    color_layout: str = "RGB",
    classes: list[str] | None = None,
    flag: str = "--data",
) -> TrainData:
    """Read ``source`` into tensors shaped for ``specs``; ``classes`` maps class names (e.g. of --val)."""
    import numpy as np

    path = Path(source)
    found_classes = None
    if path.is_dir():
        images = _image_files(path)
        texts = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES)
        if images:
            arrays, labels, found_classes = _image_folder(path, images, specs, image_size, mean, std, color_layout, limit, classes, flag)
        elif texts:
            arrays, labels, found_classes = _text(texts, specs, tokenizer, classes, flag, source)
        else:
            raise DataError(f"{flag} {source}: the folder holds no images and no .txt/.csv files")
    elif path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        arrays, labels, found_classes = _text([path], specs, tokenizer, classes, flag, source)
    elif path.is_file():
        arrays, labels = _numpy(path, specs, flag)
    elif ":" in source and not path.exists():
        arrays, labels = _function(source, specs, flag)
    else:
        raise DataError(f"{flag} {source}: no such file or folder")
    if limit is not None:
        arrays = {k: v[:limit] for k, v in arrays.items()}
        labels = None if labels is None else labels[:limit]
    tensors = _check(arrays, labels, specs, source, flag)
    import torch

    label_tensor = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return TrainData(tensors, label_tensor, str(source), found_classes)


def split_validation(data: TrainData, fraction: float, seed: int) -> tuple[TrainData, TrainData]:
    """A seeded random ``fraction`` of the data for validation, the rest for training."""
    import torch

    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--val-split {fraction}: expected a fraction between 0 and 1, e.g. 0.1")
    n = len(data)
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise DataError(f"--data {data.source}: {n} samples are too few to hold back a validation split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return data.subset(order[n_val:]), data.subset(order[:n_val])


def _check(arrays: dict[str, Any], labels, specs: Sequence[InputSpec], source: str, flag: str) -> list:
    """Shapes, dtypes and finiteness against the input specs; returns tensors (N, *spec.shape[1:])."""
    import numpy as np
    import torch

    tensors, counts = [], set()
    for spec in specs:
        arr = np.asarray(arrays[spec.name])
        sample_shape = tuple(spec.shape[1:])
        if arr.ndim == len(spec.shape) + 1 and arr.shape[1] == 1 and tuple(arr.shape[2:]) == sample_shape:
            arr = arr.reshape(arr.shape[0], *sample_shape)  # (N, 1, ...): per-sample batch axis of one
        if tuple(arr.shape[1:]) != sample_shape or arr.ndim != len(spec.shape):
            expected = ", ".join(map(str, sample_shape))
            raise DataError(f"{flag} {source}: input {spec.name!r} has shape {tuple(arr.shape)}, expected (N, {expected})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(f"{flag} {source}: input {spec.name!r} contains {int((~np.isfinite(arr)).sum())} NaN/Inf values")
        want = np.dtype(spec.dtype)
        if arr.dtype.kind in "fiub" and arr.dtype.kind != want.kind and not (arr.dtype.kind in "iu" and want.kind in "iu"):
            if not (arr.dtype.kind in "iub" and want.kind == "f"):  # integer pixels are fine for float inputs
                raise DataError(f"{flag} {source}: input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}")
        tensors.append(torch.from_numpy(np.ascontiguousarray(arr, dtype=want)))
        counts.add(arr.shape[0])
    if len(counts) != 1:
        raise DataError(f"{flag} {source}: inputs have different sample counts ({sorted(counts)})")
    n = counts.pop()
    if n == 0:
        raise DataError(f"{flag} {source}: holds no samples")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise DataError(f"{flag} {source}: labels have shape {labels.shape}, expected ({n},), one per sample")
        if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
            raise DataError(f"{flag} {source}: labels must be integer class indices, got dtype {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise DataError(f"{flag} {source}: labels must be non-negative class indices")
    return tensors


def _numpy(path: Path, specs: Sequence[InputSpec], flag: str):
    from edgekit.data import read_numpy_arrays  # the one .npy/.npz reader; labels ride along here

    return read_numpy_arrays(path, specs, flag, label_keys=LABEL_KEYS, holder="the teacher")


def _image_files(path: Path) -> list[Path]:
    from edgekit.data import IMAGE_SUFFIXES

    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _image_folder(path, files, specs, image_size, mean, std, color_layout, limit, classes, flag):
    from edgekit.data import _read_image_folder  # the one image reader (resize, scale, mean/std)

    if limit is not None:
        files = files[:limit]
    images = _read_image_folder(path, specs, image_size, mean, std, color_layout, limit, flag)
    parents = [f.relative_to(path).parts for f in files]
    if all(len(p) >= 2 for p in parents):
        names = [p[0] for p in parents]
        labels, found = _label_indices(names, classes, flag, str(path))
        return {specs[0].name: images}, labels, found
    return {specs[0].name: images}, None, None


def _label_indices(names: list[str], classes: list[str] | None, flag: str, source: str):
    """Class names -> indices: integers stay integers; names use ``classes`` (of --data) or sorted order."""
    import numpy as np

    if all(n.lstrip("-").isdigit() for n in names):
        return np.asarray([int(n) for n in names], dtype=np.int64), classes
    known = classes or sorted(set(names))
    index = {c: i for i, c in enumerate(known)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(f"{flag} {source}: class {unknown[0]!r} does not occur in the training data's classes")
    return np.asarray([index[n] for n in names], dtype=np.int64), known


def _read_texts(path: Path, flag: str) -> tuple[list[str], list[str] | None]:
    try:
        if path.suffix.lower() == ".txt":
            lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
            return [line for line in lines if line], None
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except OSError as exc:
        raise DataError(f"{flag} {path}: {exc.strerror or exc}") from None
    if not rows:
        return [], None
    columns = list(rows[0].keys())
    text_col = next((c for c in columns if c and c.strip().lower() in _TEXT_COLUMNS), columns[0])
    label_col = next((c for c in columns if c and c.strip().lower() in _LABEL_COLUMNS), None)
    texts = [(r.get(text_col) or "").strip() for r in rows]
    labels = [(r.get(label_col) or "").strip() for r in rows] if label_col else None
    keep = [i for i, t in enumerate(texts) if t]
    return [texts[i] for i in keep], (None if labels is None else [labels[i] for i in keep])


def _text(files: list[Path], specs, tokenizer, classes, flag: str, source: str):
    if tokenizer is None:
        raise DataError(f"{flag} {source}: text data needs a tokenizer: use a Hugging Face teacher folder or pass --tokenizer")
    texts, labels, labelled = [], [], None
    for file in files:
        t, l = _read_texts(file, flag)
        if labelled is not None and labelled != (l is not None):
            raise DataError(f"{flag} {source}: some files have a label column and some do not")
        labelled = l is not None
        texts += t
        labels += l or []
    if not texts:
        raise DataError(f"{flag} {source}: holds no text")
    length = specs[0].shape[-1]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    missing = [s.name for s in specs if s.name not in encoded]
    if missing:
        raise DataError(f"{flag} {source}: the tokenizer gives {', '.join(encoded.keys())}, not {', '.join(missing)}")
    arrays = {s.name: encoded[s.name].astype("int64") for s in specs}
    if not labelled:
        return arrays, None, None
    indices, found = _label_indices(labels, classes, flag, source)
    return arrays, indices, found


def _function(spec_text: str, specs, flag: str):
    import numpy as np

    from edgekit.loading import import_object

    fn = import_object(spec_text, flag)
    names = [s.name for s in specs]
    columns: dict[str, list] = {n: [] for n in names}
    labels: list = []
    try:
        for item in (fn() if callable(fn) else fn):
            label = None
            if isinstance(item, dict):
                label = item.get("label")
                missing = [n for n in names if n not in item]
                if missing:
                    raise DataError(f"{flag} {spec_text}: a sample lacks input {missing[0]!r}")
                values = [item[n] for n in names]
            else:
                values = list(item) if isinstance(item, (tuple, list)) else [item]
                if len(values) == len(names) + 1:
                    label = values.pop()
                elif len(values) != len(names):
                    raise DataError(f"{flag} {spec_text}: a sample holds {len(values)} arrays; the teacher has {len(names)} inputs")
            for n, v in zip(names, values):
                columns[n].append(np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v))
            labels.append(label)
    except (DataError, UsageError):
        raise
    except Exception as exc:
        raise DataError(f"{flag} {spec_text} raised {type(exc).__name__}: {exc}") from exc
    if not labels:
        raise DataError(f"{flag} {spec_text}: yielded no samples")
    has = {label is not None for label in labels}
    if len(has) > 1:
        raise DataError(f"{flag} {spec_text}: some samples have labels and some do not")
    try:
        arrays = {n: np.stack(v) for n, v in columns.items()}
    except ValueError:
        raise DataError(f"{flag} {spec_text}: samples have different shapes") from None
    label_array = np.asarray([int(np.asarray(x)) for x in labels]) if has == {True} else None
    return arrays, label_array
