"""The console table: which top-1 it shows, and the notes under it."""
from __future__ import annotations

from edgekit.pipeline import Artifact
from edgekit.report import render_convert


def _artifact(parity, status="passed"):
    return Artifact("onnx", "int8", status, "out/model_int8.onnx", size_bytes=2048, parity=parity)


def _output(name, role, **kw):
    base = {"name": name, "role": role, "top1": None, "top1_all": None, "top1_confident": None, "confident_samples": None,
            "rows": None, "max_abs": 0.01, "max_rel": 0.002, "enforced": None,
            "nonfinite": {"reference": 0, "artifact": 0, "mismatched": 0}}
    return {**base, **kw}


def test_table_marks_the_top1_basis_and_notes_roles_nan_and_state():
    parity = {
        "status": "passed", "samples": 120, "real_inputs": True, "cosine": 0.9991, "top1": 0.995, "enforced": "confident",
        "outputs": [
            _output("logits", "class_scores", top1=0.995, top1_all=0.97, top1_confident=0.995, confident_samples=80,
                    rows=120, enforced="confident"),
            _output("boxes", "regression", top1_all=0.41,
                    nonfinite={"reference": 3, "artifact": 3, "mismatched": 0}),
            _output("h_n", "state"),
        ],
        "state": [{"output": "h_n", "input": "h0", "detected_by": "names"}],
        "stateful": {"steps": 8, "sequences": 15, "worst_step": 8,
                     "per_step": [{"step": 8, "cosine": 0.99912, "max_abs": 0.02, "nonfinite_mismatched": 0}]},
        "reasons": [],
    }
    text = render_convert([_artifact(parity)])
    lines = text.splitlines()
    assert "0.995 (c)" in lines[2]
    assert lines[3] == (
        "onnx [int8]: logits: class_scores, top-1 0.995 on 80 confident, 0.970 on all 120; "
        "boxes: regression, max_abs 0.01, rel 0.002, NaN/Inf 3 in the original, the same in the artifact; "
        "state h_n->h0: 15 sequences x 8 steps, worst step 8 (cosine 0.999120)"
    )
    assert lines[4] == "(c) top-1 agreement on the inputs where FP32 is confident (enforced)"


def test_informational_top1_when_nothing_is_enforced():
    parity = {"status": "passed", "samples": 32, "real_inputs": False, "cosine": 1.0, "top1": None,
              "outputs": [_output("output_0", "other", top1_all=0.875)], "reasons": []}
    text = render_convert([_artifact(parity)])
    assert "0.875 (i)" in text and "random*" in text
    assert "(i) top-1 reported, not enforced (random inputs, or no output holds class scores)" in text


def test_quantized_column_and_mixed_precision_lines():
    coverage = {"precision": "int8", "weight_share": 0.9406, "op_share": 0.6, "weights_quantized": 37520,
                "weights_total": 39888, "ops_quantized": 3, "ops_total": 5}
    kept = [{"node": "linear_2", "module_path": "fc3"}, {"node": "linear_1", "module_path": "fc2"}]
    mixed = {"searched": True, "met": True, "shipped": "mixed", "kept": kept, "weight_share": 0.0594, "heldout_samples": 25,
             "final": {"cosine": 0.999995, "top1": 1.0}}
    art = _artifact({"status": "passed", "samples": 360, "real_inputs": True, "cosine": 0.99999, "top1": 1.0,
                     "enforced": "confident", "reasons": []})
    art.manifest = {"quantization": {"coverage": coverage, "mixed_precision": mixed}}
    lines = render_convert([art]).splitlines()
    assert lines[0].split()[6] == "quantized" and "94% w, 3/5 ops" in lines[2]
    assert lines[3] == ("onnx [int8]: mixed precision kept 2 layers float (fc3, fc2; 5.9% of weights) for cosine "
                        "0.999995, top-1 1.000 on 25 held-back samples")
    art.manifest["quantization"]["mixed_precision"] = {**mixed, "met": False, "shipped": "int8", "kept": kept[:1],
                                                       "final": {"cosine": 0.9238, "top1": 0.96}}
    assert render_convert([art]).splitlines()[3] == (
        "onnx [int8]: mixed precision found no mix within the budget that meets the tolerance; best: fc3 float, "
        "cosine 0.923800, top-1 0.960 (manifest: quantization.mixed_precision)")
    art.manifest = {}  # float32, or a manifest without the block: nothing claimed
    row = render_convert([art]).splitlines()[2].split()
    assert row[row.index("real") + 1] == "-"
