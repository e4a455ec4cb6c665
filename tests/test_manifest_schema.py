"""The typed manifest schema: what readers accept and refuse (the round trip of every target's
manifest is in tests/test_demo.py, which writes one per installed target)."""
import json

import pytest

from edgekit import manifest as manifest_mod
from edgekit.manifest_schema import SCHEMA_VERSION, Manifest, ManifestError


def _doc(**changes):
    doc = {
        "schema_version": SCHEMA_VERSION, "name": "m", "target": "onnx", "format": "onnx", "precision": "none",
        "io": "float", "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32", "model_input": "x"}],
        "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}], "size_bytes": 10, "sha256": "ab",
        "versions": {"edgekit": "0.1.0"}, "calibration": None, "parity": {"status": "passed", "cosine": 1.0, "top1": None},
        "status": "passed", "precision_default": False, "dynamic_axes": [], "flops": 64,
        "source": {"path": "m.pt2", "form": "exported_program"}, "preprocessing": None, "labels": None,
        "target_details": {}, "command": "edgekit convert m.pt2 -t onnx",
    }
    doc.update(changes)
    return doc


def test_a_manifest_round_trips_and_answers_typed_questions():
    manifest = Manifest.from_dict(_doc())
    assert manifest.inputs[0].model_input == "x" and manifest.outputs[0].shape == [1, 2]
    assert manifest.cosine == 1.0 and manifest.top1 is None
    assert manifest.to_dict() == _doc()


def test_keys_of_a_newer_minor_version_are_kept():
    doc = _doc(schema_version="1.9", energy_mj=3.5)
    doc["outputs"][0]["role"] = "class_scores"
    assert Manifest.from_dict(doc).to_dict() == doc


@pytest.mark.parametrize("version", ["2.0", "0.9", None, "x.y"])
def test_an_unknown_major_version_is_refused(version):
    with pytest.raises(ManifestError, match="schema"):
        Manifest.from_dict(_doc(schema_version=version))


def test_missing_keys_and_bad_status_are_named():
    doc = _doc()
    del doc["sha256"], doc["io"]
    with pytest.raises(ManifestError, match="manifest lacks io, sha256"):
        Manifest.from_dict(doc)
    with pytest.raises(ManifestError, match="status 'great'"):
        Manifest.from_dict(_doc(status="great"))
    with pytest.raises(ManifestError, match=r"outputs\[0\] lacks dtype"):
        Manifest.from_dict(_doc(outputs=[{"name": "y", "shape": [1]}]))


def test_load_reads_a_file_and_says_what_is_wrong(tmp_path):
    path = tmp_path / "m.onnx.edgekit.json"
    path.write_text(json.dumps(_doc(schema_version="3.0")))
    with pytest.raises(ManifestError, match="not readable by this edgekit"):
        manifest_mod.load(tmp_path / "m.onnx")
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not JSON"):
        manifest_mod.load(path)
