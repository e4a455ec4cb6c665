"""distill() end to end on a real (small) teacher: accuracy kept, files, resume, early stopping,
hidden-state loss, unlabelled and text data, QAT, and DDP with two processes on gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from edgekit.distill import distill

FAST = dict(batch_size=50, lr=3e-3, warmup=0.0, seed=0, control=False)  # test_control.py runs the control


def _run(digits_teacher, tmp_path, name, **kwargs):
    options = dict(arch=digits_teacher["arch"], inputs=[digits_teacher["input"]], data=digits_teacher["train"],
                   val=digits_teacher["val"], output=str(tmp_path / f"{name}.pt2"), epochs=3, **FAST)
    options.update(kwargs)
    return distill(digits_teacher["teacher"], **options)


def test_distill_keeps_the_teachers_accuracy_and_writes_pt2_state_dict_and_report(digits_teacher, tmp_path):
    from edgekit.loading import load_model

    result = _run(digits_teacher, tmp_path, "student", epochs=4)
    report = result.report
    assert report["metric"]["name"] == "accuracy"
    assert report["metric"]["teacher"] == pytest.approx(digits_teacher["accuracy"])
    assert report["metric"]["student"] >= 0.9 * report["metric"]["teacher"]
    assert report["teacher"]["parameters"] / report["student"]["parameters"] > 2.5
    assert report["teacher"]["flops"] > report["student"]["flops"] > 0
    assert report["student"]["host_latency_ms"] > 0
    assert [h["epoch"] for h in report["training"]["history"]] == [1, 2, 3, 4]
    for key in ("pt2", "state_dict", "report"):
        assert os.path.exists(result.paths[key])
    assert json.loads(open(result.paths["report"]).read())["metric"]["student"] == report["metric"]["student"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".edgekit-stage")]
    # the .pt2 is the student: same outputs, the teacher's input name, loadable as convert loads it
    loaded = load_model(result.paths["pt2"])
    assert loaded.form == "exported_program" and loaded.input_names == ["x"]
    x = torch.from_numpy(digits_teacher["x_val"][:1])
    torch.testing.assert_close(loaded.exported.module()(x), result.student(x))
    state = torch.load(result.paths["state_dict"], weights_only=True)
    assert set(state) == set(result.student.state_dict())


@pytest.mark.parametrize("lr", [3e-3, None], ids=["given-lr", "range-test"])
def test_resume_after_an_interruption_gives_the_same_student(digits_teacher, tmp_path, monkeypatch, lr):
    import edgekit.distill.train as train_mod

    straight = _run(digits_teacher, tmp_path, "straight", checkpoint_dir=str(tmp_path / "ck_a"), lr=lr)
    real_save = train_mod.save_checkpoint

    def save_then_die(folder, payload):
        real_save(folder, payload)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(digits_teacher, tmp_path, "resumed", checkpoint_dir=str(tmp_path / "ck_b"), lr=lr)
    assert not os.path.exists(tmp_path / "resumed.pt2")
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = _run(digits_teacher, tmp_path, "resumed", checkpoint_dir=str(tmp_path / "ck_b"), resume=True, lr=lr)
    assert resumed.report["training"]["resumed_from_epoch"] == 1
    # the resumed run trains at the rate the first run chose (the range test is not repeated)
    assert resumed.report["training"]["lr"] == straight.report["training"]["lr"]
    assert resumed.report["training"]["lr_source"] == "checkpoint"
    assert straight.report["training"]["lr_source"] == ("given" if lr else "range test")
    def without_time(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert without_time(resumed.report["training"]["history"]) == without_time(straight.report["training"]["history"])
    for key, value in straight.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[key], value, rtol=0, atol=0)


def test_resume_refuses_a_checkpoint_of_another_student(digits_teacher, tmp_path):
    from edgekit.errors import UsageError

    _run(digits_teacher, tmp_path, "a", epochs=1, checkpoint_dir=str(tmp_path / "ck"))
    with pytest.raises(UsageError, match="was written for a different student"):
        _run(digits_teacher, tmp_path, "b", epochs=2, width=0.25, checkpoint_dir=str(tmp_path / "ck"), resume=True)


def test_early_stopping_after_patience_epochs_without_improvement(digits_teacher, tmp_path):
    result = _run(digits_teacher, tmp_path, "stop", epochs=6, lr=1e-12, patience=1)
    training = result.report["training"]
    assert training["stopped_early"] is True
    assert training["epochs_run"] == 2 and training["best_epoch"] == 1


def test_hidden_state_loss_with_projections_trains_and_stays_out_of_the_student(digits_teacher, tmp_path):
    result = _run(digits_teacher, tmp_path, "hidden", epochs=2, hidden_loss="cosine", hidden_weight=0.5)
    assert result.report["loss"]["hidden_pairs"] == [["net.0", "net.0"], ["net.2", "net.2"]]
    assert result.report["metric"]["student"] > 0.8
    assert all(k.startswith("net.") for k in result.student.state_dict())


def test_unlabelled_data_uses_teacher_agreement(digits_teacher, tmp_path):
    result = _run(digits_teacher, tmp_path, "unlabelled", data=digits_teacher["unlabelled"], val=None, val_split=0.2,
                  control=True)
    metric = result.report["metric"]
    assert metric["name"] == "agreement" and metric["teacher"] is None
    control = result.report["control"]
    assert control["ran"] is False and result.control is None
    assert control["reason"].startswith("the data has no labels")
    assert metric["student"] > 0.85
    assert result.report["training"]["data"]["samples"] == 1120


def test_a_pt2_teacher_exported_for_batch_1_teaches_a_factory_student(digits_teacher, tmp_path):
    from edgekit.errors import UsageError

    x = torch.from_numpy(digits_teacher["x_val"][:1])
    torch.export.save(torch.export.export(digits_teacher["model"], (x,)), str(tmp_path / "teacher.pt2"))
    options = dict(data=digits_teacher["train"], val=digits_teacher["val"], epochs=2, **FAST)
    result = distill(str(tmp_path / "teacher.pt2"), student="tests.models:mlp", output=str(tmp_path / "s.pt2"), **options)
    assert result.report["metric"]["teacher"] == pytest.approx(digits_teacher["accuracy"])
    assert result.report["metric"]["student"] > 0.85
    with pytest.raises(UsageError, match="--student auto cannot shrink"):
        distill(str(tmp_path / "teacher.pt2"), output=str(tmp_path / "a.pt2"), **options)


def test_labels_beyond_the_teachers_classes_are_a_data_error(digits_teacher, tmp_path):
    import numpy as np

    from edgekit.errors import DataError

    np.savez(tmp_path / "bad.npz", x=digits_teacher["x_val"], labels=digits_teacher["y_val"] + 5)
    with pytest.raises(DataError, match="labels go up to 14, but the teacher's output has 10 classes"):
        _run(digits_teacher, tmp_path, "bad", data=str(tmp_path / "bad.npz"), val=None)


def test_text_embedding_distillation_of_a_hugging_face_encoder(tiny_bert_folder, tmp_path):
    from edgekit.loading import load_model

    words = "the a cat dog sat on mat ran fast slow red blue is was and big small".split()
    rng = __import__("random").Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) for _ in range(80)]
    (tmp_path / "text.txt").write_text("\n".join(lines), encoding="utf-8")
    result = distill(tiny_bert_folder, data=str(tmp_path / "text.txt"), max_length=8, epochs=2, batch_size=16,
                     lr=1e-3, output=str(tmp_path / "bert_student.pt2"))
    metric = result.report["metric"]
    assert metric["name"] == "cosine" and result.report["loss"]["output"] == "cosine"
    assert metric["student"] > 0.8
    assert result.report["student"]["flops"] < result.report["teacher"]["flops"]
    loaded = load_model(result.paths["pt2"])
    assert loaded.input_names == ["input_ids", "attention_mask"]


@pytest.mark.slow
def test_qat_int8_reports_the_fake_quantized_accuracy(digits_teacher, tmp_path):
    result = _run(digits_teacher, tmp_path, "qat", epochs=2, qat="int8")
    metric = result.report["metric"]
    assert result.report["qat"] == "int8"
    assert metric["student_int8"] >= 0.9 * metric["teacher"]
    assert metric["student"] >= 0.9 * metric["teacher"]
    assert set(torch.load(result.paths["state_dict"], weights_only=True)) == set(result.student.state_dict())


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_matches_one_process_with_the_doubled_batch(digits_teacher, tmp_path):
    """Each of 2 ranks takes 50 samples a step; gradients are averaged: the same as 100 in one process."""
    common = ["distill", "--teacher", digits_teacher["teacher"], "--arch", digits_teacher["arch"], "-i", digits_teacher["input"],
              "--data", digits_teacher["train"], "--val", digits_teacher["val"], "--epochs", "2", "--lr", "3e-3",
              "--warmup", "0", "--device", "cpu", "--no-checkpoint", "--no-control", "-q"]
    env = dict(os.environ, EDGEKIT_DIST_BACKEND="gloo", OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "edgekit",
         *common, "--batch-size", "50", "-o", str(tmp_path / "ddp.pt2")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("% kept") == 1  # only rank 0 reports
    report = json.loads(open(tmp_path / "ddp.distill.json").read())
    assert report["training"]["world_size"] == 2
    single = distill(digits_teacher["teacher"], arch=digits_teacher["arch"], inputs=[digits_teacher["input"]],
                     data=digits_teacher["train"], val=digits_teacher["val"], epochs=2, lr=3e-3, warmup=0.0,
                     batch_size=100, device="cpu", control=False, output=str(tmp_path / "single.pt2"))
    assert single.report["training"]["steps"] == report["training"]["steps"]
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for key, value in single.student.state_dict().items():
        torch.testing.assert_close(ddp_state[key], value, rtol=1e-4, atol=1e-5)
