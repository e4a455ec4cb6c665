"""The sample apps' sources agree with what edgekit writes: model-info keys, asset names, versions,
benchmark-mode arguments, and no numbers of their own in pre/post-processing.

The apps cannot be built here (no Android SDK or Xcode); these checks read their sources.
"""
from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from edgekit.package import (
    ANDROID_BENCH_DIR, ANDROID_PACKAGE, APPS, IOS_BENCH_DIR, IOS_BUNDLE_ID, MODEL_INFO_FILE, MODEL_INFO_KIND, app_formats,
    android_bench_command, ios_bench_command, package,
)
from tests.package.conftest import REPO

ANDROID = REPO / "sample_apps" / "android"
KOTLIN = ANDROID / "app/src/main/java/dev/edgekit/demo"
IOS = REPO / "sample_apps" / "ios"
SWIFT = IOS / "EdgekitDemo"

_KOTLIN_READERS = re.compile(
    r"\b(?:getString|getInt|getLong|getDouble|getBoolean|getJSONArray|getJSONObject|optString|optInt|optLong|"
    r"optDouble|optBoolean|optJSONArray|optJSONObject|isNull|has|stringOrNull|intOrNull|longOrNull|objects|"
    r"objectOrNull)\(\"([^\"]+)\"\)"
)


def kotlin_model_info_keys() -> set[str]:
    return set(_KOTLIN_READERS.findall((KOTLIN / "ModelInfo.kt").read_text()))


def swift_model_info_keys() -> set[str]:
    """JSON keys ModelInfo.swift decodes: each Decodable struct's CodingKeys cases, or else its stored
    `let` properties, in snake_case (ModelCatalog.parse decodes with .convertFromSnakeCase); plus
    JSONSerialization subscripts."""
    source = (SWIFT / "ModelInfo.swift").read_text()
    snake = lambda name: re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()  # noqa: E731
    keys = set()
    for body in re.findall(r"\nstruct \w+: Decodable[^{]*\{(.*?)\n\}", source, re.S):
        coding = re.search(r"enum CodingKeys: String, CodingKey \{(.*?)\}", body, re.S)
        if coding:
            names = [n.strip() for line in coding.group(1).splitlines() if line.strip().startswith("case ")
                     for n in line.strip()[len("case "):].split(",")]
        else:
            names = re.findall(r"^    let (\w+):", body, re.M)
        keys.update(snake(n) for n in names)
    keys.update(re.findall(r"\[\"([a-z_]+)\"\]", source))
    return keys


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


@pytest.fixture(scope="module")
def written_model_info(tflite_artifacts, pte_artifact, mlpackage_artifact, stateful_tflite, tmp_path_factory):
    """models.json as `edgekit package` writes it for every kind of model each app takes."""
    import shutil

    root = tmp_path_factory.mktemp("apps")
    vocab = root / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    android = Path(shutil.copytree(ANDROID, root / "android"))
    ios = Path(shutil.copytree(IOS, root / "ios"))
    package(list(tflite_artifacts.values()) + [pte_artifact, stateful_tflite], "android", android, vocab=str(vocab))
    package([mlpackage_artifact, pte_artifact], "ios", ios)
    read = lambda d, app: json.loads((d / APPS[app].models_dir / MODEL_INFO_FILE).read_text())
    return {"android": read(android, "android"), "ios": read(ios, "ios")}


@pytest.mark.slow
def test_every_key_the_kotlin_code_reads_is_written(written_model_info):
    read = kotlin_model_info_keys()
    assert {"models", "inputs", "outputs", "quantization", "zero_point", "mean", "std", "gray_weights",
            "special_tokens", "vocab_file", "labels", "top_k", "signature", "parity", "state", "output", "input"} <= read
    assert read - all_keys(written_model_info["android"]) == set()


@pytest.mark.slow
def test_every_key_the_swift_code_reads_is_written(written_model_info):
    read = swift_model_info_keys()
    assert {"models", "inputs", "quantization", "zero_point", "color_layout", "gray_weights", "special_tokens",
            "max_length", "labels", "top_k", "parity", "size_bytes", "state"} <= read
    # both apps read one model-info schema; the text block is exercised by the android file's text model
    assert read - all_keys(written_model_info["ios"]) - all_keys(written_model_info["android"]) == set()
    assert {"runtime", "format", "image", "text"} <= all_keys(written_model_info["ios"]) & read


def declared_runtimes(app: str) -> set[str]:
    """The runtimes the targets declare for an app (targets/base.py OnDevice.apps)."""
    from edgekit.registry import get_target_class, targets

    return {get_target_class(n).on_device.apps[app] for n in targets() if app in get_target_class(n).on_device.apps}


def test_current_build_forms_not_deprecated_ones():
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    manifest = (ANDROID / "app/src/main/AndroidManifest.xml").read_text()
    assert "kotlinOptions" not in gradle and "extractNativeLibs" not in manifest
    assert re.search(r"packaging \{\s*jniLibs \{\s*useLegacyPackaging = true", gradle)
    assert re.search(r"kotlin \{\s*compilerOptions \{\s*jvmTarget\.set\(JvmTarget\.JVM_17\)", gradle)
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    # a Swift language mode, the values Xcode's SWIFT_VERSION accepts
    assert spec["settings"]["base"]["SWIFT_VERSION"] in ("4.0", "4.2", "5.0", "6.0")
    coreml = (SWIFT / "CoreMLRunner.swift").read_text()
    assert "try await MLModel.compileModel(at: url)" in coreml and "try MLModel.compileModel" not in coreml


def test_android_asset_and_gradle_names_agree():
    kotlin = (KOTLIN / "ModelInfo.kt").read_text()
    models_dir = re.search(r'const val MODELS_DIR = "([^"]+)"', kotlin).group(1)
    assert f"app/src/main/assets/{models_dir}" == APPS["android"].models_dir
    assert re.search(r'const val MODEL_INFO_FILE = "([^"]+)"', kotlin).group(1) == MODEL_INFO_FILE
    assert re.search(r'const val MODEL_INFO_KIND = "([^"]+)"', kotlin).group(1) == MODEL_INFO_KIND
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    no_compress = re.search(r"noCompress \+= listOf\(([^)]*)\)", gradle).group(1)
    assert set(re.findall(r'"([^"]+)"', no_compress)) == {x.lstrip(".") for xs in app_formats("android").values() for x in xs}
    assert re.search(r'applicationId = "([^"]+)"', gradle).group(1) == ANDROID_PACKAGE
    assert re.search(r"minSdk = (\d+)", gradle).group(1) == "24"
    manifest = (ANDROID / "app/src/main/AndroidManifest.xml").read_text()
    assert 'android:name=".BenchmarkActivity"\n            android:exported="true"' in manifest
    # the runtimes Runners.open dispatches on are the ones edgekit package writes
    runners = (KOTLIN / "Runners.kt").read_text()
    assert set(re.findall(r'"(\w+)" ->', runners)) == declared_runtimes("android")
    assert sorted(p.name for p in (ANDROID / "app/src/main/assets/samples").glob("*.jpg")) == ["china.jpg", "flower.jpg"]


def test_android_benchmark_extras_match_the_runner_command():
    activity = (KOTLIN / "BenchmarkActivity.kt").read_text()
    extras = dict(re.findall(r'const val EXTRA_(\w+) = "([^"]+)"', activity))
    command = android_bench_command("m.tflite")
    used = re.findall(r"--e[si] (\w+) ", command + " ")
    assert sorted(used) == sorted(extras.values())
    assert re.search(r'const val BENCH_DIR = "([^"]+)"', activity).group(1) == ANDROID_BENCH_DIR.rsplit("/", 1)[1]
    assert ANDROID_BENCH_DIR == f"/sdcard/Android/data/{ANDROID_PACKAGE}/files/edgekit-bench"


def test_gradle_versions_are_pinned_and_match_the_exporter():
    catalog = tomllib.loads((ANDROID / "gradle/libs.versions.toml").read_text())
    versions = catalog["versions"]
    assert {"agp", "kotlin", "litert", "executorch"} <= set(versions)
    for name, version in versions.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} = {version!r} is not a pinned version"
    # a .pte loads on the runtime of the release line that exported it
    exporter = metadata.version("executorch").split("+")[0]
    assert versions["executorch"].split(".")[:2] == exporter.split(".")[:2]
    modules = {lib["module"] for lib in catalog["libraries"].values()}
    assert {"com.google.ai.edge.litert:litert", "com.google.ai.edge.litert:litert-api",
            "com.google.ai.edge.litert:litert-gpu", "org.pytorch:executorch-android"} <= modules
    # the 1.x line: LiteRT 2.x's litert artifact has no org.tensorflow.lite.Interpreter (issue #4775)
    assert versions["litert"].startswith("1.")
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    for alias in re.findall(r"implementation\(libs\.([\w.]+)\)", gradle):
        assert alias.replace(".", "-") in catalog["libraries"], alias
    wrapper = (ANDROID / "gradle/wrapper/gradle-wrapper.properties").read_text()
    assert re.search(r"gradle-(\d+\.\d+\.\d+)-bin\.zip", wrapper)


def test_ios_resources_and_project_agree():
    spec = yaml.safe_load((IOS / "project.yml").read_text())
    target = spec["targets"]["EdgekitDemo"]
    folders = {s["path"]: s for s in target["sources"] if isinstance(s, dict) and s.get("type") == "folder"}
    assert folders[APPS["ios"].models_dir]["buildPhase"] == "resources"
    assert "EdgekitDemo/Samples" in folders
    assert target["settings"]["base"]["PRODUCT_BUNDLE_IDENTIFIER"] == IOS_BUNDLE_ID
    assert target["deploymentTarget"] == "16.0"
    swift = (SWIFT / "ModelInfo.swift").read_text()
    assert "EdgekitDemo/" + re.search(r'static let folder = "([^"]+)"', swift).group(1) == APPS["ios"].models_dir
    assert re.search(r'static let infoFile = "([^"]+)"', swift).group(1) == MODEL_INFO_FILE
    executorch = yaml.safe_load((IOS / "project-executorch.yml").read_text())
    assert executorch["include"] == ["project.yml"]
    branch = executorch["packages"]["ExecuTorch"]["branch"]
    exporter = metadata.version("executorch").split("+")[0]
    assert branch.removeprefix("swiftpm-").split(".")[:2] == exporter.split(".")[:2]
    assert executorch["targets"]["EdgekitDemo"]["deploymentTarget"] == "17.0"
    runners = (SWIFT / "ModelRunner.swift").read_text()
    assert set(re.findall(r'case "(\w+)":', runners)) == declared_runtimes("ios")
    assert "#if canImport(ExecuTorch)" in (SWIFT / "ExecuTorchRunner.swift").read_text()


def test_ios_benchmark_arguments_match_the_runner_command():
    source = (SWIFT / "Benchmark.swift").read_text()
    parsed = set(re.findall(r'value\("(--[\w-]+)"\)', source)) | {"--benchmark"}
    command = ios_bench_command("m.mlpackage")
    passed = set(re.findall(r"(--[\w-]+)", command.split(IOS_BUNDLE_ID, 1)[1]))
    assert passed <= parsed
    assert re.search(r'static let folder = "([^"]+)"', source).group(1) == IOS_BENCH_DIR.rsplit("/", 1)[1]


PROCESSING = [KOTLIN / "Preprocess.kt", KOTLIN / "Postprocess.kt", SWIFT / "Preprocess.swift", SWIFT / "Postprocess.swift"]


@pytest.mark.parametrize("path", PROCESSING, ids=lambda p: p.name)
def test_processing_uses_the_model_info_numbers(path):
    source = path.read_text()
    # no decimal constants (ImageNet mean/std, 127.5, 1/255 ...), no 255 divisor, no label lists
    assert [n for n in re.findall(r"(?<![\w.])\d+\.\d+", source) if n != "0.0"] == []
    assert "255" not in source
    assert not re.search(r"(listOf|arrayOf)\(\s*\"|\[\s*\"[A-Za-z]", source)
    if "Preprocess" in path.name:
        for field in ("image.scale", "image.mean[ch]", "image.std[ch]", "image.layout", "image.colorLayout"):
            assert field in source, field


def test_apps_read_labels_and_top_k_from_the_model_info():
    kotlin = (KOTLIN / "MainActivity.kt").read_text()
    swift = (SWIFT / "ContentView.swift").read_text()
    assert "Postprocess.topK(values, entry.topK, entry.labels)" in kotlin
    assert "Postprocess.topK(values, k: entry.topK, labels: entry.labels)" in swift


def test_apps_feed_a_stateful_models_outputs_back_at_the_next_step():
    """models.json "state": the demo screens run every step through feedState (Tensors.kt / Tensors.swift),
    which puts output `link.output` of the last step into input `link.input`, zero at the first step."""
    kotlin_run = (KOTLIN / "MainActivity.kt").read_text()
    swift_run = (SWIFT / "ContentView.swift").read_text()
    assert "r.run(feedState(fresh, stateOutputs, entry.state))" in kotlin_run
    assert "runner.run(inputs: try feedState(fresh, previous: stateOutputs, links: entry.state))" in swift_run
    kotlin = (KOTLIN / "Tensors.kt").read_text()
    swift = (SWIFT / "Tensors.swift").read_text()
    assert "previous?.get(link.output)?.toReal() ?: FloatArray(info.elementCount)" in kotlin
    assert "fed[link.input] = TensorData.fromReal(info, values)" in kotlin
    assert "previous.map { $0[link.output].toReal() } ?? [Float](repeating: 0, count: info.elementCount)" in swift
    assert "fed[link.input] = try .fromReal(info, values)" in swift
