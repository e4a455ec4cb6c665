"""edgekit package: what lands in the app agrees with the manifests; refusals; all-or-nothing."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgekit import manifest as manifest_mod
from edgekit.cli import main
from edgekit.errors import EXIT_DATA, EXIT_USAGE, DataError, UsageError
from edgekit.package import APPS, MODEL_INFO_FILE, SPECIAL_TOKENS, model_info, package

pytestmark = pytest.mark.slow


def _info(app_dir: Path, app: str) -> dict:
    return json.loads((app_dir / APPS[app].models_dir / MODEL_INFO_FILE).read_text())


def _vocab(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "movie", "is", "great", "##s", "."]) + "\n")
    return path


def test_android_model_info_agrees_with_manifests(tflite_artifacts, pte_artifact, android_app, tmp_path):
    paths = [tflite_artifacts["cnn_int8"], tflite_artifacts["digits"], tflite_artifacts["text"], pte_artifact]
    result = package(paths, "android", android_app, vocab=str(_vocab(tmp_path)))
    info = _info(android_app, "android")
    assert info["kind"] == "edgekit.model-info" and info["app"] == "android"
    assert [m["file"] for m in info["models"]] == [Path(p).name for p in paths]
    models_dir = android_app / APPS["android"].models_dir
    for path, entry in zip(paths, info["models"]):
        doc = manifest_mod.read(path)
        # the artifact and its manifest are copied byte for byte
        assert (models_dir / entry["file"]).read_bytes() == Path(path).read_bytes()
        assert json.loads((models_dir / entry["manifest_file"]).read_text()) == doc
        assert entry["sha256"] == doc["sha256"] == manifest_mod.file_digest(models_dir / entry["file"])[1]
        assert entry["size_bytes"] == doc["size_bytes"] == os.path.getsize(path)
        assert (entry["name"], entry["target"], entry["precision"], entry["flops"]) == (
            doc["name"], doc["target"], doc["precision"], doc["flops"])
        assert entry["labels"] == doc["labels"]
        assert entry["parity"] == doc["parity"]
        for tensor, spec in zip(entry["inputs"] + entry["outputs"], doc["inputs"] + doc["outputs"]):
            assert (tensor["name"], tensor["shape"], tensor["dtype"]) == (spec["name"], spec["shape"], spec["dtype"])
            assert tensor["quantization"] == spec.get("quantization")
    cnn, digits, text, pte = info["models"]
    assert [m["runtime"] for m in info["models"]] == ["litert", "litert", "litert", "executorch"]

    # int8 in and out: the app quantizes with the manifest's own scale and zero point
    cnn_doc = manifest_mod.read(paths[0])
    assert cnn["task"] == "image-classification" and cnn["signature"] == "serving_default"
    assert cnn["inputs"][0]["quantization"] == cnn_doc["inputs"][0]["quantization"]
    assert cnn["inputs"][0]["dtype"] == "int8" and cnn["inputs"][0]["role"] == "image"
    assert cnn["image"] == {
        "input": 0, "layout": "NCHW", "height": 32, "width": 32, "channels": 3, "color_layout": "RGB",
        "scale": pytest.approx(1 / 255), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "gray_weights": None, "pixel_buffer": False, "normalisation": "manifest",
    }
    assert cnn["outputs"][0]["role"] == "logits" and cnn["top_k"] == 5

    # one grey channel: a single mean/std from the manifest, luma weights for the colour photo
    assert digits["image"]["channels"] == 1 and (digits["image"]["height"], digits["image"]["width"]) == (8, 8)
    assert digits["image"]["mean"] == [0.5] and digits["image"]["std"] == [0.5]
    assert digits["image"]["gray_weights"] == [0.299, 0.587, 0.114]
    assert digits["labels"] == [str(d) for d in range(10)]

    # token ids + mask, classified: the WordPiece vocabulary travels with it
    assert text["task"] == "text-classification"
    assert [t["role"] for t in text["inputs"]] == ["token_ids", "attention_mask"]
    assert text["text"]["max_length"] == 12 and text["text"]["vocab_file"] == "tiny_text.vocab.txt"
    assert text["text"]["special_tokens"] == SPECIAL_TOKENS
    assert (models_dir / "tiny_text.vocab.txt").read_text() == _vocab(tmp_path).read_text()
    assert text["top_k"] == 3 and text["outputs"][0]["role"] == "logits"

    assert pte["format"] == "pte" and pte["method"] == "forward" and pte["task"] == "image-classification"
    assert [m["state"] for m in info["models"]] == [[], [], [], []]  # no model here feeds anything back
    assert result.model_info_path == models_dir / MODEL_INFO_FILE
    assert not [p for p in models_dir.parent.iterdir() if p.name.startswith(".edgekit")]


def test_ios_package_with_coreml_and_executorch(mlpackage_artifact, pte_artifact, ios_app):
    result = package([mlpackage_artifact, pte_artifact], "ios", ios_app)
    info = _info(ios_app, "ios")
    coreml, pte = info["models"]
    assert (coreml["runtime"], coreml["format"], pte["runtime"]) == ("coreml", "mlpackage", "executorch")
    copied = ios_app / APPS["ios"].models_dir / Path(mlpackage_artifact).name
    assert copied.is_dir()
    assert manifest_mod.file_digest(copied)[1] == manifest_mod.read(mlpackage_artifact)["sha256"]
    doc = manifest_mod.read(mlpackage_artifact)
    assert [t["name"] for t in coreml["inputs"] + coreml["outputs"]] == [t["name"] for t in doc["inputs"] + doc["outputs"]]
    assert coreml["task"] == "image-classification" and coreml["labels"] == doc["labels"]
    assert coreml["image"]["mean"] == [0.485, 0.456, 0.406]
    # a .pte needs the ExecuTorch build of the iOS app
    assert any("--spec project-executorch.yml" in c for c in result.commands)
    assert any(f"--benchmark --model {Path(mlpackage_artifact).name} --runs 50" in c for c in result.commands)


@pytest.mark.parametrize("app,artifact_key,message", [
    ("ios", "cnn_int8", "the ios app cannot load TFLite / LiteRT artifacts (it runs Core ML (.mlpackage, .mlmodel), Core AI (.aimodel) and ExecuTorch (.pte)); use --app android"),
])
def test_refuses_what_the_runtime_cannot_load(app, artifact_key, message, tflite_artifacts, ios_app, capsys):
    before = _info(ios_app, "ios")
    code = main(["package", "--app", app, "--app-dir", str(ios_app), tflite_artifacts[artifact_key]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert err == [f"error: {tflite_artifacts[artifact_key]}: {message}"]
    assert _info(ios_app, "ios") == before


def test_refuses_core_ml_for_android(mlpackage_artifact, android_app, capsys):
    code = main(["package", "--app", "android", "--app-dir", str(android_app), mlpackage_artifact])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert err == (f"error: {mlpackage_artifact}: the android app cannot load Core ML artifacts "
                   "(it runs TFLite / LiteRT (.tflite) and ExecuTorch (.pte)); use --app ios")


def test_nothing_half_copied_when_a_later_artifact_fails(tflite_artifacts, android_app, tmp_path):
    package([tflite_artifacts["digits"]], "android", android_app)
    before = _info(android_app, "android")
    tampered = tmp_path / "tampered.tflite"
    shutil.copy(tflite_artifacts["cnn_int8"], tampered)
    shutil.copy(manifest_mod.manifest_path(tflite_artifacts["cnn_int8"]), manifest_mod.manifest_path(tampered))
    with open(tampered, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DataError, match="differs from its manifest"):
        package([tflite_artifacts["text"], tampered], "android", android_app)
    models_dir = android_app / APPS["android"].models_dir
    assert _info(android_app, "android") == before
    assert sorted(p.name for p in models_dir.iterdir()) == sorted(
        ["digits_cnn.tflite", "digits_cnn.tflite.edgekit.json", MODEL_INFO_FILE])
    assert not [p for p in models_dir.parent.iterdir() if p.name.startswith(".edgekit")]


def test_write_error_midway_leaves_the_app_as_it_was(tflite_artifacts, android_app, monkeypatch):
    """A disk that fills up during the copy: the previous models stay, no staging folder remains."""
    import edgekit.package as package_mod
    from edgekit.errors import OutputError

    package([tflite_artifacts["digits"]], "android", android_app)
    models_dir = android_app / APPS["android"].models_dir
    before = {p.name: p.read_bytes() for p in models_dir.iterdir()}
    real_copy = shutil.copy2
    calls = []

    def copy_then_fail(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(package_mod.shutil, "copy2", copy_then_fail)
    with pytest.raises(OutputError) as err:
        package([tflite_artifacts["cnn_int8"], tflite_artifacts["text"]], "android", android_app)
    assert str(err.value) == f"cannot write {models_dir}: No space left on device; the app was left as it was"
    assert {p.name: p.read_bytes() for p in models_dir.iterdir()} == before
    assert not [p for p in models_dir.parent.iterdir() if p.name.startswith(".edgekit")]


def test_missing_manifest_and_failed_verification(tflite_artifacts, android_app, tmp_path):
    bare = tmp_path / "bare.tflite"
    shutil.copy(tflite_artifacts["digits"], bare)
    with pytest.raises(UsageError, match=r"no manifest beside it \(bare.tflite.edgekit.json\)"):
        package([bare], "android", android_app)
    failed = tmp_path / "failed.tflite"
    shutil.copy(tflite_artifacts["digits"], failed)
    doc = manifest_mod.read(tflite_artifacts["digits"])
    doc["status"] = "failed"
    doc["parity"] = dict(doc["parity"], status="failed", cosine=0.5)
    manifest_mod.manifest_path(failed).write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=r"failed verification \(cosine 0.5000\).*--allow-failed"):
        package([failed], "android", android_app)
    result = package([failed], "android", android_app, allow_failed=True)
    assert result.warnings == ["failed.tflite: verification status is 'failed'; its results in the app are unchecked"]


def test_manifest_that_contradicts_the_file(tflite_artifacts, android_app, tmp_path):
    wrong = tmp_path / "wrong.tflite"
    shutil.copy(tflite_artifacts["digits"], wrong)
    doc = manifest_mod.read(tflite_artifacts["digits"])
    doc["format"] = "pte"
    manifest_mod.manifest_path(wrong).write_text(json.dumps(doc))
    code = main(["package", "--app", "android", "--app-dir", str(android_app), str(wrong)])
    assert code == EXIT_DATA


def test_not_the_sample_app(tflite_artifacts, tmp_path, capsys):
    code = main(["package", "--app", "android", "--app-dir", str(tmp_path), tflite_artifacts["digits"]])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: not the edgekit android sample app (no settings.gradle.kts)"


def test_cli_prints_build_and_bench_commands(tflite_artifacts, android_app, capsys):
    code = main(["package", "--app", "android", "--app-dir", str(android_app), tflite_artifacts["cnn_int8"]])
    out = capsys.readouterr().out
    assert code == 0
    assert "small_cnn_int8_io-int8.tflite  litert   image-classification  int8" in out
    # no wrapper JAR in the app: the step that writes it comes first, so ./gradlew exists when it is run
    steps = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert steps[:2] == [f"cd {android_app} && gradle wrapper --gradle-version 8.11.1", f"cd {android_app} && ./gradlew installDebug"]
    # the line edgekit bench runs (edgekit/bench/launch.py), with the shell prefix
    assert ("adb shell am start -W -S -n dev.edgekit.demo/.BenchmarkActivity --es model small_cnn_int8_io-int8.tflite "
            "--ei runs 50 --ei warmup 5 --ei threads 4 --es delegate xnnpack") in out
    jar = android_app / "gradle" / "wrapper" / "gradle-wrapper.jar"
    jar.write_bytes(b"PK")  # once the wrapper is there, the step is not printed again
    assert main(["package", "--app", "android", "--app-dir", str(android_app), tflite_artifacts["cnn_int8"]]) == 0
    assert "gradle wrapper" not in capsys.readouterr().out
    assert "adb pull /sdcard/Android/data/dev.edgekit.demo/files/edgekit-bench/small_cnn_int8_io-int8.json" in out


def test_committed_empty_model_info_is_what_package_writes():
    from tests.package.conftest import REPO

    for app in APPS:
        committed = json.loads((REPO / "sample_apps" / app / APPS[app].models_dir / MODEL_INFO_FILE).read_text())
        assert committed == model_info([], app)


def test_core_ml_image_input_takes_raw_pixels(tflite_artifacts):
    """A Core ML image input (uint8 pixels, no quantization) is packaged with the model's own normalisation."""
    from edgekit.package import model_entry

    doc = manifest_mod.read(tflite_artifacts["cnn_int8"])
    doc.update(target="coreml", format="mlpackage",
               inputs=[{"name": "image", "shape": [1, 3, 32, 32], "dtype": "uint8", "model_input": "x"}],
               outputs=[{"name": "output_0", "shape": [1, 10], "dtype": "float32"}],
               target_details={"io": {"image_inputs": {"image": "RGB"}}})
    entry = model_entry(doc, "m.mlpackage", "ios")
    assert entry["inputs"][0]["quantization"] is None and entry["inputs"][0]["role"] == "image"
    assert {k: entry["image"][k] for k in ("pixel_buffer", "scale", "mean", "std")} == {
        "pixel_buffer": True, "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    # the same uint8 input without the Core ML image marking is an error, not a guess
    doc["target_details"] = {}
    with pytest.raises(DataError, match="uint8 tensor 'image' has no quantization scale and zero point"):
        model_entry(doc, "m.mlpackage", "ios")


def test_a_stateful_model_tells_the_app_which_outputs_feed_which_inputs(stateful_tflite, android_app):
    """The manifest's pairs name the model's tensors (output_1 -> h0); the app gets artifact positions."""
    package([stateful_tflite], "android", android_app)
    (entry,) = _info(android_app, "android")["models"]
    doc = manifest_mod.read(stateful_tflite)
    assert [(p["output"], p["input"]) for p in doc["state"]] == [("output_1", "h0"), ("output_2", "c0")]
    assert [t["name"] for t in entry["inputs"]] == ["args_0", "args_1", "args_2"]  # the artifact's own names
    assert entry["state"] == [{"output": 1, "input": 1}, {"output": 2, "input": 2}]
    assert [entry["outputs"][p["output"]]["shape"] for p in entry["state"]] == [[1, 1, 16], [1, 1, 16]]
    assert [entry["inputs"][p["input"]]["shape"] for p in entry["state"]] == [[1, 1, 16], [1, 1, 16]]


def test_a_state_pair_the_artifact_lacks_is_refused(stateful_tflite, tmp_path):
    from edgekit.package import model_entry

    doc = manifest_mod.read(stateful_tflite)
    doc["state"][1]["input"] = "cell"
    with pytest.raises(DataError, match="names 'cell', which is not among the artifact's inputs"):
        model_entry(doc, "lstm_step.tflite", "android")


def test_inspect_shows_a_real_artifacts_coverage_and_state(tflite_artifacts, stateful_tflite, capsys):
    """What the apps get from the manifest, `edgekit inspect` shows: the int8 CNN's counted coverage,
    the LSTM step's state pairs in the artifact's own names."""
    assert main(["inspect", tflite_artifacts["cnn_int8"]]) == 0
    out = capsys.readouterr().out
    coverage = manifest_mod.load(tflite_artifacts["cnn_int8"]).coverage
    assert coverage["weights_total"] > 0 and coverage["weight_share"] >= 0.5
    assert f"quantization coverage: {100 * coverage['weight_share']:.1f}% of weights" in out
    assert main(["inspect", stateful_tflite]) == 0
    out = capsys.readouterr().out
    assert "state: output 1 (output_1) feeds input 1 (args_1) at the next step" in out
    assert "state: output 2 (output_2) feeds input 2 (args_2) at the next step" in out
