"""The typed manifest schema: what readers accept and refuse (the round trip of every target's
manifest is in tests/test_demo.py, which writes one per installed target)."""
import json
import re

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


def _stateful_onnx(folder):
    """A real two-in, two-out ONNX graph (y = x + h0, h1 = h0 + h0) built without a converter."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "h0"], ["y"]), helper.make_node("Add", ["h0", "h0"], ["h1"])], "step",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "h0")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("y", "h1")],
    )
    path = folder / "step.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _stateful_doc(**changes):
    tensor = lambda name, **k: {"name": name, "shape": [1, 4], "dtype": "float32", **k}  # noqa: E731
    values = dict(
        inputs=[tensor("x", model_input="x"), tensor("h0", model_input="state_in")],
        outputs=[tensor("y", model_output="y"), tensor("h1", model_output="state_out")],
        state=[{"output": "state_out", "input": "state_in", "detected_by": "declared"}],
        quantization={"coverage": {"precision": "int8", "source": "the .onnx graph",
                                   "weight_share": 0.9712, "op_share": 0.5, "weights_quantized": 9712,
                                   "weights_total": 10000, "ops_quantized": 3, "ops_total": 6,
                                   "float_ops": ["linear_2"]}},
        size_bytes=None, sha256=None,
    )
    return _doc(**{**values, **changes})


def test_inspect_shows_coverage_and_state_pairs(tmp_path, capsys):
    from edgekit.cli import main

    artifact = _stateful_onnx(tmp_path)
    manifest_mod.manifest_path(artifact).write_text(json.dumps(_stateful_doc()))
    assert main(["inspect", str(artifact)]) == 0
    out = capsys.readouterr().out
    assert ("quantization coverage: 97.1% of weights at int8 (9712/10000), 3/6 compute ops; float: linear_2 "
            "(counted in the .onnx graph)") in out
    assert "state: output 1 (h1) feeds input 1 (h0) at the next step" in out
    assert main(["inspect", str(artifact), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["manifest"]
    assert info["state"] == [{"output": 1, "input": 1, "output_name": "h1", "input_name": "h0"}]
    assert info["coverage"]["weight_share"] == 0.9712


def test_coverage_is_found_where_a_target_recorded_it():
    """Before the shared ``quantization`` block, targets kept the graph's count in their own details."""
    doc = _stateful_doc(quantization=None, target_details={"int8": {"route": "pt2e", "coverage": {"weight_share": 0.5}}})
    assert Manifest.from_dict(doc).coverage == {"weight_share": 0.5}
    assert Manifest.from_dict(_stateful_doc(quantization=None)).coverage is None


def test_a_state_pair_naming_no_tensor_is_refused():
    with pytest.raises(ManifestError, match="names 'c_n', which is not among the artifact's outputs"):
        Manifest.from_dict(_stateful_doc(state=[{"output": "c_n", "input": "state_in"}])).state_links()
    with pytest.raises(ManifestError, match=r"state entries are \{\"output\": ..., \"input\": ...\} objects, not \['h', 'c'\]"):
        Manifest.from_dict(_stateful_doc(state=[["h", "c"]])).state_links()


def test_every_reader_refuses_an_unknown_major_version(tmp_path, capsys):
    """inspect, bench, package and the apps' model-info writer each refuse a 2.x manifest in one line."""
    from edgekit.bench import run_bench
    from edgekit.bench.measure import MeasureFailure, read_manifest
    from edgekit.cli import main
    from edgekit.errors import DataError
    from edgekit.package import model_entry, read_artifact

    artifact = _stateful_onnx(tmp_path)
    manifest_mod.manifest_path(artifact).write_text(json.dumps(_stateful_doc(schema_version="2.0")))
    refused = "step.onnx.edgekit.json: manifest schema 2.0 is not readable by this edgekit (it reads 1.x)"

    assert main(["inspect", str(artifact)]) == 0  # the artifact's own facts are still shown ...
    out = capsys.readouterr().out
    assert f"manifest: {tmp_path / refused}" in out and "its facts are not shown" in out  # ... the manifest's not
    with pytest.raises(DataError, match=re.escape(refused)):
        run_bench([str(artifact)])
    assert main(["bench", str(artifact)]) == 4
    err = capsys.readouterr().err
    assert refused in err and len(err.strip().splitlines()) == 1  # one line, no warning before it
    with pytest.raises(MeasureFailure, match=re.escape(refused)):
        read_manifest(str(artifact))
    tflite = tmp_path / "step.tflite"  # read_artifact refuses before reading the file's bytes
    tflite.write_bytes(b"x")
    manifest_mod.manifest_path(tflite).write_text(json.dumps(_stateful_doc(schema_version="2.0")))
    with pytest.raises(DataError, match="step.tflite.edgekit.json: manifest schema 2.0 is not readable"):
        read_artifact(tflite, "android")
    with pytest.raises(DataError, match="manifest schema 2.0 is not readable"):
        model_entry(_stateful_doc(schema_version="2.0"), "step.tflite", "android")
