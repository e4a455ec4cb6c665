"""pipeline.toml: a valid file parses; a wrong key, value or section is one error line naming it."""
from __future__ import annotations

import pytest

from edgekit.cli import main
from edgekit.errors import EXIT_OK, EXIT_USAGE, UsageError
from edgekit.pipeline_file import load, parse

VALID = """
[distill]
teacher = "teacher.pt"
arch = "tests.models:mlp"
inputs = ["x:1x64"]
data = "data/train.npz"
epochs = 3
keep_layers = 2
output = "out/student.pt2"

[convert]
targets = ["tflite", "litert"]
precisions = ["none", "fp32", "int8"]
calibration = "data/train.npz"
output_dir = "out"

[verify]
eval_data = "data/val.npz"
tolerance = "cosine=0.99,top1=0.9"

[bench]
devices = ["host"]
runs = 10
"""


def test_a_valid_file_resolves_paths_against_its_folder(tmp_path):
    (tmp_path / "pipeline.toml").write_text(VALID, encoding="utf-8")
    pipeline = load(str(tmp_path / "pipeline.toml"))
    assert pipeline.distill["data"] == str(tmp_path / "data" / "train.npz")
    assert pipeline.distill["arch"] == "tests.models:mlp"  # a factory, not a path
    assert pipeline.distill["keep_layers"] == "2"
    assert pipeline.convert["targets"] == ["tflite"]  # the alias folds into its target
    assert pipeline.convert["precisions"] == ["none", "none", "int8"]
    assert pipeline.verify["tolerance"] == "cosine=0.99,top1=0.9"
    assert pipeline.bench == {"devices": ["host"], "runs": 10}


@pytest.mark.parametrize("document, message", [
    ({"distill": {"teacher": "t.pt", "data": "d.npz", "epoch": 3}},
     "[distill] unknown key 'epoch'; did you mean 'epochs'?"),
    ({"distill": {"teacher": "t.pt", "data": "d.npz", "epochs": "five"}},
     "[distill] epochs must be an integer >= 1, got 'five'"),
    ({"distill": {"teacher": "t.pt", "data": "d.npz", "alpha": 1.5}},
     "[distill] alpha must be a number >= 0 and <= 1, got 1.5"),
    ({"distill": {"teacher": "t.pt", "data": "d.npz", "loss": "kld"}},
     "[distill] loss must be one of 'auto', 'kl', 'mse', 'cosine', got 'kld'"),
    ({"distill": {"data": "d.npz"}}, "[distill] needs 'teacher'"),
    ({"convert": {"model": "m.pt", "targets": ["tflight"]}}, "unknown target 'tflight'; did you mean 'tflite'?"),
    ({"convert": {"model": "m.pt", "precisions": ["int7"]}}, "[convert] precisions must be a precision"),
    ({"convert": {"model": "m.pt", "targets": ["tflite"], "precisions": ["palettize4"]}},
     "the tflite target does not support precision 'palettize4'"),
    ({"convert": {"targets": ["tflite"]}}, "[convert] needs 'model' when there is no [distill] section"),
    ({"convert": {"model": "m.pt"}, "verify": {"tolerance": "cosine=high"}}, "[verify] tolerance must be a tolerance"),
    ({"convert": {"model": "m.pt"}, "bench": {"runs": 0}}, "[bench] runs must be an integer >= 1, got 0"),
    ({"bench": {"runs": 5}, "distill": {"teacher": "t", "data": "d"}}, "[bench] needs a [convert] section"),
    ({"benchmark": {}}, "unknown section [benchmark]; did you mean 'bench'?"),
    ({}, "nothing to do"),
])
def test_wrong_keys_and_values_name_what_is_wrong(document, message):
    with pytest.raises(UsageError) as info:
        parse(document, "pipeline.toml")
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith("pipeline.toml")
    assert info.value.exit_code == EXIT_USAGE


def test_run_check_validates_without_running(tmp_path, capsys):
    (tmp_path / "good.toml").write_text(VALID, encoding="utf-8")
    assert main(["run", str(tmp_path / "good.toml"), "--check"]) == EXIT_OK
    assert "valid (distill, convert, verify, bench)" in capsys.readouterr().out
    (tmp_path / "bad.toml").write_text(VALID.replace("epochs = 3", "epochs = 3\nbatch = 8"), encoding="utf-8")
    assert main(["run", str(tmp_path / "bad.toml"), "--check"]) == EXIT_USAGE
    assert "[distill] unknown key 'batch'; did you mean 'batch_size'?" in capsys.readouterr().err
    (tmp_path / "broken.toml").write_text("[distill\n", encoding="utf-8")
    assert main(["run", str(tmp_path / "broken.toml")]) == EXIT_USAGE
    assert "not valid TOML" in capsys.readouterr().err
