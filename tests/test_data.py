import numpy as np
import pytest

from edgekit.data import load_samples, random_samples, split_holdout
from edgekit.errors import EXIT_DATA, DataError, UsageError
from edgekit.options import InputSpec

IMG = [InputSpec("x", (1, 3, 8, 8))]
TWO = [InputSpec("image", (1, 3, 8, 8)), InputSpec("features", (1, 6))]


def test_npz_by_input_name_and_positional(tmp_path):
    rng = np.random.default_rng(0)
    by_name = tmp_path / "named.npz"
    np.savez(by_name, features=rng.standard_normal((5, 6)), image=rng.standard_normal((5, 3, 8, 8)))
    samples = load_samples(str(by_name), TWO)
    assert len(samples) == 5 and samples.real
    assert samples.samples[0][0].shape == (1, 3, 8, 8) and samples.samples[0][1].shape == (1, 6)
    assert samples.samples[0][0].dtype == np.float32
    positional = tmp_path / "pos.npz"
    np.savez(positional, rng.standard_normal((4, 1, 3, 8, 8)), rng.standard_normal((4, 1, 6)))
    assert len(load_samples(str(positional), TWO)) == 4


def test_npy_and_limit(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((30, 3, 8, 8), np.float32))
    assert len(load_samples(str(path), IMG, limit=7)) == 7


def test_nan_is_refused_with_count(tmp_path):
    arr = np.zeros((4, 3, 8, 8), np.float32)
    arr[1, 0, 0, :3] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, arr)
    with pytest.raises(DataError) as err:
        load_samples(str(path), IMG)
    assert err.value.exit_code == EXIT_DATA
    assert "contains 3 NaN/Inf values" in str(err.value)


def test_wrong_shape_names_expected_shape(tmp_path):
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((4, 3, 9, 9), np.float32))
    with pytest.raises(DataError, match=r"has shape \(4, 3, 9, 9\), expected \(N, 1, 3, 8, 8\) or \(N, 3, 8, 8\)"):
        load_samples(str(path), IMG)


def test_missing_names_listed(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, foo=np.zeros((2, 6)))
    with pytest.raises(DataError, match="expected arrays named image, features .* found foo"):
        load_samples(str(path), TWO)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_samples(str(tmp_path / "nope.npz"), IMG)


def test_image_folder_normalised(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 255 * (i % 2), np.uint8)).save(tmp_path / f"{i}.png")
    samples = load_samples(str(tmp_path), IMG, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert len(samples) == 3
    assert samples.samples[0][0].shape == (1, 3, 8, 8)
    assert samples.samples[0][0].min() == pytest.approx(-1.0) and samples.samples[1][0].max() == pytest.approx(1.0)


def test_empty_image_folder(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_samples(str(tmp_path), IMG)


def test_module_function_source():
    samples = load_samples("tests.test_data:_generator", IMG)
    assert len(samples) == 6 and samples.source == "tests.test_data:_generator"
    with pytest.raises(UsageError, match="has no attribute"):
        load_samples("tests.test_data:missing_fn", IMG)


def _generator():
    for i in range(6):
        yield (np.full((1, 3, 8, 8), i, np.float32),)


def test_holdout_never_overlaps_calibration():
    data = random_samples(IMG, 50)
    data.real = True
    calib, held = split_holdout(data, calibration_count=100)
    assert len(calib) == 40 and len(held) == 10
    assert not any(np.shares_memory(a[0], b[0]) or np.array_equal(a[0], b[0]) for a in calib.samples for b in held.samples)
    assert "held back" in held.source


def test_random_samples_flagged_and_seeded():
    a, b = random_samples(IMG, 3, seed=4), random_samples(IMG, 3, seed=4)
    assert not a.real and a.source == "random (seed 4)"
    assert np.array_equal(a.samples[2][0], b.samples[2][0])
