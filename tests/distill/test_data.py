"""Training data: every source form, labels, the validation split, and bad data with its message."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.distill.data import load_training_data, split_validation
from edgekit.errors import EXIT_DATA, DataError
from edgekit.options import InputSpec

SPEC = [InputSpec("x", (1, 4))]


def test_npz_with_and_without_labels(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "l.npz", x=x, labels=np.array([0, 1, 2, 0, 1, 2]))
    np.savez(tmp_path / "u.npz", x=x)
    labelled = load_training_data(str(tmp_path / "l.npz"), SPEC)
    assert len(labelled) == 6 and labelled.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert tuple(labelled.inputs[0].shape) == (6, 4)
    assert load_training_data(str(tmp_path / "u.npz"), SPEC).labels is None
    # (N, 1, 4): a per-sample batch axis of one is accepted
    np.savez(tmp_path / "b.npz", x=x[:, None, :])
    assert tuple(load_training_data(str(tmp_path / "b.npz"), SPEC).inputs[0].shape) == (6, 4)


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(40, dtype=np.float32).reshape(10, 4))
    data = load_training_data(str(tmp_path / "d.npz"), SPEC)
    train, val = split_validation(data, 0.2, seed=3)
    again, val_again = split_validation(data, 0.2, seed=3)
    assert len(train) == 8 and len(val) == 2
    assert val.inputs[0].equal(val_again.inputs[0])
    rows = {tuple(r.tolist()) for r in train.inputs[0]} | {tuple(r.tolist()) for r in val.inputs[0]}
    assert len(rows) == 10


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = load_training_data(str(tmp_path), [InputSpec("image", (1, 3, 8, 8))])
    assert tuple(data.inputs[0].shape) == (6, 3, 8, 8)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_text_and_csv_are_tokenised_with_the_teachers_tokenizer(tmp_path, word_tokenizer):
    tokenizer, _ = word_tokenizer
    specs = [InputSpec("input_ids", (1, 8), "int64"), InputSpec("attention_mask", (1, 8), "int64")]
    (tmp_path / "a.txt").write_text("the cat sat\n\nthe dog ran fast\n", encoding="utf-8")
    data = load_training_data(str(tmp_path / "a.txt"), specs, tokenizer=tokenizer)
    assert len(data) == 2 and data.labels is None
    assert data.inputs[0][0].tolist()[:5] == tokenizer("the cat sat")["input_ids"]
    assert data.inputs[1][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    (tmp_path / "b.csv").write_text("text,label\nthe red cat,pet\nthe big mat,thing\na dog,pet\n", encoding="utf-8")
    labelled = load_training_data(str(tmp_path / "b.csv"), specs, tokenizer=tokenizer)
    assert labelled.classes == ["pet", "thing"] and labelled.labels.tolist() == [0, 1, 0]


def samples_with_labels():
    for i in range(5):
        yield np.full((4,), i, dtype=np.float32), i % 2


def test_module_function_iterator_with_labels():
    data = load_training_data("tests.distill.test_data:samples_with_labels", SPEC)
    assert len(data) == 5 and data.labels.tolist() == [0, 1, 0, 1, 0]
    assert data.inputs[0][3].tolist() == [3.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("make, message", [
    (lambda p: np.savez(p, x=np.array([[1, np.nan, 0, 0]], dtype=np.float32)), "input 'x' contains 1 NaN/Inf values"),
    (lambda p: np.savez(p, x=np.zeros((3, 5), np.float32)), "input 'x' has shape (3, 5), expected (N, 4)"),
    (lambda p: np.savez(p, x=np.zeros((3, 4), np.float32), labels=np.zeros(2)), "labels have shape (2,), expected (3,)"),
    (lambda p: np.savez(p, x=np.zeros((3, 4), np.float32), labels=np.array([0.5, 1, 2])), "labels must be integer"),
    (lambda p: np.savez(p, a=np.zeros((3, 4)), b=np.zeros((3, 4))), "expected arrays named x (or arr_0...) and optionally labels; found a, b"),
])
def test_bad_npz_is_a_data_error_with_one_line(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(DataError) as info:
        load_training_data(str(path), SPEC)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == EXIT_DATA


def test_empty_folder_and_text_without_tokenizer(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images and no .txt/.csv files"):
        load_training_data(str(tmp_path / "empty"), SPEC)
    (tmp_path / "t.txt").write_text("hello\n", encoding="utf-8")
    with pytest.raises(DataError, match="text data needs a tokenizer"):
        load_training_data(str(tmp_path / "t.txt"), SPEC)
