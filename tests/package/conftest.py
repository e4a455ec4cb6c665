"""Session fixtures: real artifacts with real manifests, made once by a real `edgekit convert` (the
pipeline), and copies of the sample apps.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def tflite_artifacts(tmp_path_factory, model_files, calibration_files, digits):
    """{"cnn_int8": path, "digits": path, "text": path}: three real TFLite conversions."""
    from edgekit.pipeline import convert

    out = tmp_path_factory.mktemp("tflite")
    labels_file = out / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    digit_labels = tuple(str(d) for d in range(10))
    (cnn,) = convert(
        model_files["small_cnn"], target="tflite", quantize="int8", calibration=calibration_files["small_cnn"],
        arch="tests.models:small_cnn", inputs=["x:1x3x32x32"], output_dir=str(out), io="int8",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=tuple(LABELS),
    )
    # The digits demo model, as a user would convert it: its pixels were mapped to [-1, 1] by
    # (p/16 - 0.5) / 0.5, i.e. mean 0.5 and std 0.5 after scaling to 0..1.
    (dig,) = convert(
        digits["model"], target="tflite", arch="edgekit.demo:digits_cnn", inputs=["x:1x1x8x8"], output_dir=str(out),
        eval_data=digits["eval"], mean=(0.5,), std=(0.5,), labels=digit_labels, name="digits_cnn",
    )
    (text,) = convert(
        None, target="tflite", model_factory="tests.package.text_model:tiny_text_classifier",
        inputs=["input_ids:1x12:int64", "attention_mask:1x12:int64"], output_dir=str(out), name="tiny_text",
        labels=("negative", "neutral", "positive"),
    )
    for art in (cnn, dig, text):
        assert art.status == "passed", (art.target, art.error, art.parity)
    return {"cnn_int8": cnn.path, "digits": dig.path, "text": text.path}


@pytest.fixture(scope="session")
def stateful_tflite(tmp_path_factory):
    """An LSTM step (x, h0, c0) -> (scores, h1, c1) as TFLite: the artifact names its inputs args_0..2,
    the manifest's state pairs name the model's (output_1 -> h0, output_2 -> c0)."""
    from edgekit.pipeline import convert

    (art,) = convert(None, target="tflite", model_factory="tests.verify.models:lstm", name="lstm_step",
                     inputs=["x:1x4x8", "h0:1x1x16", "c0:1x1x16"], output_dir=str(tmp_path_factory.mktemp("stateful")))
    assert art.status == "passed", (art.error, art.parity)
    return art.path


def _small_cnn(target: str, out: Path, model_files) -> str:
    """small_cnn through `edgekit convert` for ``target``, with the image facts the apps read."""
    from edgekit.pipeline import convert

    (art,) = convert(model_files["small_cnn"], target=target, arch="tests.models:small_cnn", inputs=["x:1x3x32x32"],
                     output_dir=str(out), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=tuple(LABELS))
    return art.path


@pytest.fixture(scope="session")
def pte_artifact(tmp_path_factory, model_files):
    """small_cnn as an ExecuTorch .pte (XNNPACK-lowered), with its manifest."""
    return _small_cnn("executorch", tmp_path_factory.mktemp("pte"), model_files)


@pytest.fixture(scope="session")
def mlpackage_artifact(tmp_path_factory, model_files):
    """small_cnn as a Core ML .mlpackage, with its manifest."""
    return _small_cnn("coreml", tmp_path_factory.mktemp("coreml"), model_files)


@pytest.fixture
def android_app(tmp_path):
    """A fresh copy of sample_apps/android (the real sources and Gradle files)."""
    return Path(shutil.copytree(REPO / "sample_apps" / "android", tmp_path / "android",
                                ignore=shutil.ignore_patterns("build", ".gradle")))


@pytest.fixture
def ios_app(tmp_path):
    return Path(shutil.copytree(REPO / "sample_apps" / "ios", tmp_path / "ios", ignore=shutil.ignore_patterns("build")))
