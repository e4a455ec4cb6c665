"""The control run and the automatic defaults, as a user meets them: the issue's case (a 2.4k-parameter
64-32-10 student of a digits MLP, the default command), a misleading teacher that loses to its control
(a teacher trained on wrong labels: warning, and exit 1 under --strict), and the learning-rate range test's rule."""
from __future__ import annotations

import json
import math

import pytest

from edgekit.cli import main
from edgekit.errors import EXIT_OK, EXIT_USAGE, EXIT_VERIFY_FAILED


def small_student():
    """The issue's student: 64-32-10, 2,410 parameters."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _command(teacher_args, digits_teacher, output, *extra):
    return ["distill", *teacher_args, "-i", digits_teacher["input"], "--student", f"{__name__}:small_student",
            "--data", digits_teacher["train"], "--val", digits_teacher["val"], "-o", str(output), "--no-checkpoint",
            "--threads", "1", *extra]


def test_default_command_keeps_97_percent_and_shows_the_control_row(digits_teacher, tmp_path, capsys):
    teacher = ["--teacher", digits_teacher["teacher"], "--arch", digits_teacher["arch"]]
    assert main(_command(teacher, digits_teacher, tmp_path / "s.pt2", "--epochs", "10")) == EXIT_OK
    table = capsys.readouterr().out
    report = json.loads((tmp_path / "s.distill.json").read_text())
    metric, control, training = report["metric"], report["control"], report["training"]
    assert report["student"]["parameters"] == 2410
    assert metric["student"] >= 0.97 * metric["teacher"], (metric, control)
    assert control["ran"] is True and control["loss"] == "cross-entropy on the labels (no teacher)"
    assert 0.5 < control["metric"] <= 1.0 and control["epochs_run"] == training["epochs_run"] == 10
    assert control["steps"] == training["steps"]  # the same budget
    assert control["teacher_gain"] == pytest.approx(metric["student"] - control["metric"])
    assert control["verdict"] in ("better", "matches", "worse")
    # the values the run chose, recorded
    assert training["lr_source"] == "range test" and 1e-3 < training["lr"] < 1.0
    assert training["range_test"]["lr"] == training["lr"] and training["range_test"]["steps"] >= 30
    assert control["lr_source"] == "range test" and control["lr"] > 0
    assert report["loss"] == {"output": "kl", "temperature": 4.0, "alpha": 0.9, "hidden": None, "hidden_pairs": []}
    assert "cosine" in training["schedule"] and training["warmup"] == 0.05
    row = next(line for line in table.splitlines() if line.startswith("val accuracy, no teacher (control)"))
    assert f"{control['metric']:.4f}" in row
    assert f"lr {training['lr']:.3g} (range test), control lr {control['lr']:.3g}; loss kl, T 4, alpha 0.9" in table


@pytest.fixture(scope="module")
def misleading_teacher(digits_teacher, tmp_path_factory):
    """A confidently wrong teacher: the same MLP trained on labels shifted by one (it calls a 3 a 4)."""
    import numpy as np
    import torch

    from tests.distill.conftest import train_mlp_teacher

    train = np.load(digits_teacher["train"])
    model = train_mlp_teacher(train["x"], (train["labels"] + 1) % 10)
    path = tmp_path_factory.mktemp("misleading") / "teacher.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def test_a_misleading_teacher_loses_to_its_control_warns_and_fails_under_strict(digits_teacher, misleading_teacher,
                                                                               tmp_path, capsys):
    teacher = ["--teacher", misleading_teacher, "--arch", digits_teacher["arch"]]
    code = main(_command(teacher, digits_teacher, tmp_path / "u.pt2", "--epochs", "4", "--strict"))
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "u.distill.json").read_text())
    assert report["metric"]["teacher"] < 0.1
    assert report["control"]["verdict"] == "worse" and report["control"]["metric"] > 0.8
    assert report["metric"]["student"] < 0.5
    assert code == EXIT_VERIFY_FAILED
    assert "warning: the distilled student (val accuracy" in captured.err
    assert "is worse than the same student trained without the teacher" in captured.err
    assert "error: --strict: the distilled student" in captured.err
    assert "WORSE by" in captured.out


def test_no_control_skips_it_and_says_so(digits_teacher, tmp_path, capsys):
    teacher = ["--teacher", digits_teacher["teacher"], "--arch", digits_teacher["arch"]]
    code = main(_command(teacher, digits_teacher, tmp_path / "n.pt2", "--epochs", "1", "--lr", "0.01", "--no-control",
                         "--strict"))
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "control not run: turned off (--no-control)" in out
    assert "lr 0.01 (--lr)" in out
    report = json.loads((tmp_path / "n.distill.json").read_text())
    assert report["control"] == {"ran": False, "reason": "turned off (--no-control)", "metric": None, "verdict": None,
                                 "loss": "cross-entropy on the labels (no teacher)"}
    assert report["training"]["lr_source"] == "given" and report["training"]["range_test"] is None


def test_lr_flag_takes_auto_or_a_number(digits_teacher, tmp_path, capsys):
    teacher = ["--teacher", digits_teacher["teacher"], "--arch", digits_teacher["arch"]]
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        main(_command(teacher, digits_teacher, tmp_path / "x.pt2", "--lr", "fast"))
    assert exited.value.code == EXIT_USAGE
    assert "argument --lr: 'fast': expected auto or a number, e.g. 3e-3" in capsys.readouterr().err


def test_range_test_picks_a_tenth_of_the_loss_minimum_and_stops_at_divergence():
    from edgekit.distill.lrfind import range_test

    calls = []

    def step(lr):  # a loss curve with its minimum at lr = 0.1 that blows up beyond it
        calls.append(lr)
        x = math.log10(lr) + 1.0
        return 1.0 + x * x if x <= 0 else 1.0 + 50 * x

    found = range_test(step, 100)
    assert found.lr_at_minimum == pytest.approx(0.1, rel=0.35)
    assert found.lr == pytest.approx(found.lr_at_minimum / 10)
    assert found.diverged_at is not None and found.diverged_at < 1.0 and len(calls) < 100
    assert found.to_dict()["rule"] == "range test: loss minimum / 10"


def test_range_test_without_an_edge_falls_back_to_the_conventional_rate():
    from edgekit.distill.lrfind import FALLBACK_LR, range_test

    found = range_test(lambda lr: 2.0 - 0.01 * math.log10(lr), 40)  # still (barely) falling at lr = 10
    assert found.lr == FALLBACK_LR == 1e-3 and found.diverged_at is None
    assert found.rule.startswith("range test found no edge")
