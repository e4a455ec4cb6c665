"""Session fixtures: real artifacts with real manifests, made once, and copies of the sample apps.

TFLite artifacts come from a real `edgekit convert` (the pipeline). For .pte and .mlpackage the
registered edgekit target is used when there is one; otherwise the artifact is made with the real
converter (executorch / coremltools) and its manifest is written in edgekit's schema by
`_constructed_manifest` below, marked as such in its "command" field.
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


def _constructed_manifest(artifact: Path, target: str, fmt: str, inputs, outputs, reference: dict) -> dict:
    """A manifest in edgekit's schema for an artifact made here with the real converter."""
    from edgekit import manifest as manifest_mod

    size, sha = manifest_mod.file_digest(artifact)
    doc = dict(reference)
    doc.update(
        target=target, format=fmt, precision="none", io="float", inputs=inputs, outputs=outputs,
        size_bytes=size, sha256=sha, status="unverified", target_details={},
        parity={"status": "unverified", "cosine": None, "top1": None, "samples": 0, "real_inputs": False,
                "outputs": [], "reasons": ["constructed by tests/package/conftest.py"]},
        command=f"constructed by tests/package/conftest.py: no {target!r} target in edgekit.registry",
    )
    manifest_mod.validate(doc)
    manifest_mod.manifest_path(artifact).write_text(manifest_mod.dumps(doc), encoding="utf-8")
    return doc


@pytest.fixture(scope="session")
def pte_artifact(tmp_path_factory, model_files, tflite_artifacts):
    """small_cnn as an ExecuTorch .pte (XNNPACK-lowered), with its manifest."""
    from edgekit import manifest as manifest_mod
    from edgekit.registry import TARGETS

    out = tmp_path_factory.mktemp("pte")
    if "executorch" in TARGETS:
        from edgekit.pipeline import convert

        (art,) = convert(model_files["small_cnn"], target="executorch", arch="tests.models:small_cnn",
                         inputs=["x:1x3x32x32"], output_dir=str(out), mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225), labels=tuple(LABELS))
        return art.path
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from tests import models

    program = torch.export.export(models.small_cnn(), (torch.randn(1, 3, 32, 32),))
    pte = out / "small_cnn.pte"
    pte.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    reference = manifest_mod.read(tflite_artifacts["cnn_int8"])
    _constructed_manifest(
        pte, "executorch", "pte",
        [{"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32", "model_input": "x"}],
        [{"name": "output_0", "shape": [1, 10], "dtype": "float32", "model_output": "output_0"}],
        reference,
    )
    return str(pte)


@pytest.fixture(scope="session")
def mlpackage_artifact(tmp_path_factory, model_files, tflite_artifacts):
    """small_cnn as a Core ML .mlpackage (ML program, float32 I/O), with its manifest."""
    from edgekit import manifest as manifest_mod
    from edgekit.registry import TARGETS

    out = tmp_path_factory.mktemp("coreml")
    if "coreml" in TARGETS:
        from edgekit.pipeline import convert

        (art,) = convert(model_files["small_cnn"], target="coreml", arch="tests.models:small_cnn",
                         inputs=["x:1x3x32x32"], output_dir=str(out), mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225), labels=tuple(LABELS))
        return art.path
    import coremltools as ct
    import numpy as np
    import torch

    from tests import models

    program = torch.export.export(models.small_cnn(), (torch.randn(1, 3, 32, 32),)).run_decompositions({})
    mlmodel = ct.convert(
        program, inputs=[ct.TensorType(name="x", shape=(1, 3, 32, 32), dtype=np.float32)],
        outputs=[ct.TensorType(name="logits", dtype=np.float32)], convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
    )
    package = out / "small_cnn.mlpackage"
    mlmodel.save(str(package))
    reference = manifest_mod.read(tflite_artifacts["cnn_int8"])
    _constructed_manifest(
        package, "coreml", "mlpackage",
        [{"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32", "model_input": "x"}],
        [{"name": "logits", "shape": [1, 10], "dtype": "float32", "model_output": "output_0"}],
        reference,
    )
    return str(package)


@pytest.fixture
def android_app(tmp_path):
    """A fresh copy of sample_apps/android (the real sources and Gradle files)."""
    return Path(shutil.copytree(REPO / "sample_apps" / "android", tmp_path / "android",
                                ignore=shutil.ignore_patterns("build", ".gradle")))


@pytest.fixture
def ios_app(tmp_path):
    return Path(shutil.copytree(REPO / "sample_apps" / "ios", tmp_path / "ios", ignore=shutil.ignore_patterns("build")))
