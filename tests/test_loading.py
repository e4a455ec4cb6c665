"""Every model-file form, detected by content; every bad file gets one clear line and exit code 3."""
import os

import pytest
import torch

from edgekit.errors import EXIT_MODEL, EXIT_USAGE, ModelLoadError, UnsafePickleError, UsageError
from edgekit.export import prepare
from edgekit.loading import load_model
from edgekit.options import InputSpec
from tests import models

X = [InputSpec("x", (1, 3, 32, 32))]


@pytest.fixture(scope="module")
def cnn():
    return models.small_cnn()


@pytest.fixture(scope="module")
def expected(cnn):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        return x, cnn(x)


def _check(loaded, expected, specs=X):
    x, y = expected
    prepared = prepare(loaded, specs)
    out = prepared.reference((x.numpy(),))
    assert torch.allclose(torch.from_numpy(out[0]), y, atol=1e-5)
    return prepared


def test_state_dict_with_arch(tmp_path, cnn, expected):
    path = tmp_path / "sd.pt"
    torch.save(cnn.state_dict(), path)
    loaded = load_model(str(path), arch="tests.models:small_cnn")
    assert loaded.form == "state_dict" and not loaded.warnings
    prepared = _check(loaded, expected)
    assert prepared.flops == pytest.approx(2 * (16 * 3 * 9 * 32 * 32 + 32 * 16 * 9 * 16 * 16 + 32 * 10), rel=0.05)


def test_checkpoint_dict_is_unwrapped(tmp_path, cnn, expected):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 7, "model_state_dict": cnn.state_dict(), "lr": 0.1}, path)
    _check(load_model(str(path), arch="tests.models:small_cnn"), expected)


def test_state_dict_without_arch_says_what_to_pass(tmp_path, cnn):
    path = tmp_path / "sd.bin"  # the extension does not matter
    torch.save(cnn.state_dict(), path)
    with pytest.raises(UsageError, match="is a state_dict .* pass --arch package.module:factory"):
        load_model(str(path))


def test_torchscript_archive(tmp_path, cnn, expected):
    path = tmp_path / "scripted.model"
    torch.jit.save(torch.jit.trace(cnn, expected[0]), path)
    loaded = load_model(str(path))
    assert loaded.form == "torchscript"
    _check(loaded, expected)


def test_exported_program_brings_its_inputs(tmp_path, cnn, expected):
    path = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(cnn, (expected[0],)), path)
    loaded = load_model(str(path))
    assert loaded.form == "exported_program"
    prepared = _check(loaded, expected, specs=None)
    assert [s.shape for s in prepared.inputs] == [(1, 3, 32, 32)]
    assert prepared.inputs[0].name == "x"


def test_factory_without_file(expected):
    loaded = load_model(None, model="tests.models:small_cnn")
    assert loaded.form == "factory"
    _check(loaded, expected)


def test_pickle_refused_without_trust(tmp_path, cnn, expected):
    path = tmp_path / "whole.pt"
    torch.save(cnn, path)
    with pytest.raises(UnsafePickleError) as err:
        load_model(str(path))
    assert err.value.exit_code == EXIT_MODEL
    text = str(err.value)
    assert "loading it can run arbitrary code" in text and "--trust-pickle" in text and "state_dict" in text
    loaded = load_model(str(path), trust_pickle=True)
    assert loaded.form == "pickle"
    _check(loaded, expected)


def test_pickle_in_training_mode_warns(tmp_path):
    model = models.mlp().train()
    path = tmp_path / "train.pt"
    torch.save(model, path)
    loaded = load_model(str(path), trust_pickle=True)
    assert not loaded.module.training
    assert loaded.warnings == ["the model was in training mode; switched to eval() (dropout and batch-norm frozen)"]


@pytest.mark.parametrize(
    "content, message",
    [
        (os.urandom(4096), "not a PyTorch model file"),
        (b"", "empty file"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model(str(path))
    assert err.value.exit_code == EXIT_MODEL


def test_truncated_archive(tmp_path, cnn):
    good = tmp_path / "good.pt"
    torch.save(cnn.state_dict(), good)
    data = good.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(str(bad), arch="tests.models:small_cnn")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "nope.pt"))
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(str(tmp_path))


def test_wrong_arch_spec(tmp_path, cnn):
    path = tmp_path / "sd.pt"
    torch.save(cnn.state_dict(), path)
    with pytest.raises(UsageError, match="cannot import 'no_such_pkg.models' \(No module named 'no_such_pkg'\)") as err:
        load_model(str(path), arch="no_such_pkg.models:net")
    assert err.value.exit_code == EXIT_USAGE
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        load_model(str(path), arch="tests.models:nope")


def test_state_dict_that_does_not_fit(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(models.mlp().state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path), arch="tests.models:small_cnn")
    text = str(err.value)
    assert text.startswith(f"{path}: state_dict does not fit --arch tests.models:small_cnn (")
    assert "missing: features.0.weight" in text and "unexpected: net.0.weight" in text


def test_input_shape_the_model_rejects(cnn):
    from edgekit.loading import LoadedModel

    with pytest.raises(ModelLoadError, match=r"the model rejects inputs x:1x5x32x32:float32: RuntimeError") as err:
        prepare(LoadedModel("module", module=cnn), [InputSpec("x", (1, 5, 32, 32))])
    assert "check --input" in str(err.value)
