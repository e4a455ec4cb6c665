"""The apps call only API that exists in the pinned library versions: the Swift and Kotlin sources
are held against sample_apps/api_surface/surface.json, which extract.py derives from the
libraries' own sources (their origin, repository, path and commit, is in sources.json)."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "sample_apps" / "api_surface"
sys.path.insert(0, str(HERE))

import check  # noqa: E402
import extract  # noqa: E402

SURFACE = json.loads((HERE / "surface.json").read_text())
SOURCES = json.loads((HERE / "sources.json").read_text())


def test_the_apps_call_only_the_pinned_api():
    assert check.check(SURFACE) == []


@pytest.fixture
def app_copies(tmp_path):
    ios = Path(shutil.copytree(REPO / "sample_apps/ios/EdgekitDemo", tmp_path / "EdgekitDemo"))
    android = Path(shutil.copytree(REPO / "sample_apps/android/app/src/main/java", tmp_path / "java"))
    return {"swift": ios, "kotlin": android}


def _mutate(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_calls_that_do_not_exist_are_reported(app_copies, monkeypatch):
    monkeypatch.setattr(check, "APPS", app_copies["swift"].parent)
    swift = app_copies["swift"] / "ExecuTorchRunner.swift"
    # the defect this check was written for: ExecuTorch's Value has no `tensor` property
    _mutate(swift, "outputs[index].anyTensor", "outputs[index].tensor")
    _mutate(swift, "Module(filePath: url.path)", "Module(path: url.path)")
    kotlin = app_copies["kotlin"] / "dev/edgekit/demo/LiteRtRunner.kt"
    _mutate(kotlin, "interpreter.runSignature(feeds, fetches, sig)", "interpreter.runSignatures(feeds, fetches, sig)")
    _mutate(kotlin, "Interpreter.Options().setNumThreads(threads)", "Interpreter.Options().setThreads(threads)")
    et = app_copies["kotlin"] / "dev/edgekit/demo/ExecuTorchRunner.kt"
    _mutate(et, "tensor.dataAsFloatArray", "tensor.dataAsFloats")
    problems = check.check(SURFACE, app_copies)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "ExecuTorchRunner.swift:" in text and "Value.tensor is a method: call it" in text
    assert "Module(path:) matches no initializer in the pinned API" in text
    assert "Interpreter.runSignatures: no such member in the pinned API" in text
    assert "Options.setThreads: no such member in the pinned API" in text
    assert "Tensor.dataAsFloats: no such member in the pinned API" in text


def test_the_surface_says_where_it_came_from():
    for name, library in SOURCES["libraries"].items():
        assert library["release"] and library["files"]
        surface = SURFACE["libraries"][name]
        assert surface["files"] == library["files"]
        for item in library["files"]:
            assert item["repo"] and item["path"]
            assert item["commit"] is None and item["note"] or re.fullmatch(r"[0-9a-f]{40}", item["commit"])
        declared = {o for t in surface["types"].values() for o in t["origin"]}
        assert declared == {item["path"] for item in library["files"]}


def test_the_pins_in_the_build_files_are_the_surfaces_releases():
    toml = (REPO / "sample_apps/android/gradle/libs.versions.toml").read_text()
    versions = dict(re.findall(r'^(\w+) = "([^"]+)"', toml, re.M))
    assert versions["litert"] in SURFACE["libraries"]["litert-android"]["release"]
    assert "litert-api" in toml  # the Interpreter API classes' artifact, declared (LiteRT issue #2752)
    assert f'executorch-android {versions["executorch"]}' in SURFACE["libraries"]["executorch-android"]["release"]
    spm = re.search(r"branch: (\S+)", (REPO / "sample_apps/ios/project-executorch.yml").read_text()).group(1)
    assert SURFACE["libraries"]["executorch-apple"]["release"].startswith(spm + " ")


def test_the_extractor_reads_each_language_as_the_compiler_imports_it():
    objc = extract.objc_types(
        "NS_SWIFT_NAME(Module)\n@interface ExecuTorchModule : NSObject\n"
        "- (instancetype)initWithFilePath:(NSString *)filePath\n    loadMode:(int)loadMode;\n"
        "- (BOOL)loadMethod:(NSString *)m\n    error:(NSError **)error NS_SWIFT_NAME(load(_:));\n"
        "- (nullable NSArray<ExecuTorchValue *> *)executeMethod:(NSString *)m withInputs:(NSArray *)v\n"
        "    error:(NSError **)error NS_REFINED_FOR_SWIFT;\n"
        "- (void)forwardWithTensor:(id)t error:(NSError **)e NS_SWIFT_UNAVAILABLE(\"\");\n@end\n")
    module = objc["Module"]
    assert module["inits"] == [["filePath", "loadMode"]]
    assert module["members"] == {"load": "Void", "__executeMethod": "[Value]"}
    swift = extract.swift_types(
        "public final class Tensor<T: Scalar>: Equatable {\n  public convenience init(\n    _ scalars: [T],\n"
        "    shape: [Int] = []\n  ) {\n  }\n  func hidden() {}\n}\npublic extension Tensor {\n"
        "  func scalars() -> [T] {\n    withUnsafeBytes { Array($0) }\n  }\n}\n")
    assert swift["Tensor"]["inits"] == [["_", "shape"]] and swift["Tensor"]["members"] == {"scalars": "[T]"}
    assert swift["Tensor"]["kinds"]["scalars"] == "func"
    java = extract.java_types(
        "package a;\npublic final class Interpreter extends Impl implements Api {\n"
        "  public static class Options extends Impl.Options {\n    public Options setNumThreads(int n) { return this; }\n  }\n"
        "  public Interpreter(File f, Options o) { wrapper = new W(f); }\n  private void hidden() {}\n"
        "  public static final int MODE = 1;\n}\n")
    assert java["Interpreter"]["bases"] == ["Impl", "Api"] and java["Interpreter"]["inits"] == [[]]
    assert java["Interpreter"]["static"] == {"MODE": "int"} and java["Interpreter"]["members"] == {}
    assert java["Interpreter.Options"]["members"] == {"setNumThreads": "Options"}
