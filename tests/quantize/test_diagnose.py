"""edgekit diagnose on small real models: the ranking is tested against random choices, the
numbers against the real converted int8 model, and the CLI against what a user reads."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekit.options import get_precision
from edgekit.quantize import QuantConfig
from edgekit.quantize.diagnose import GraphRunner, diagnose
from edgekit.quantize.mixed import Int8Variants
from edgekit.quantize.pt2e import quantize_program

TOLERANCE = get_precision("int8").tolerance


def test_top_ranked_layers_kept_float_fix_more_error_than_random_ones(depthwise_diagnosis, depthwise_variants):
    ranked = depthwise_diagnosis.layers
    k = 2
    baseline = depthwise_variants.evaluate({})
    top = depthwise_variants.evaluate({n: "float" for l in ranked[:k] for n in l.group})
    rng = random.Random(0)
    randoms = []
    for _ in range(4):
        chosen = rng.sample(ranked, k)
        randoms.append(depthwise_variants.evaluate({n: "float" for l in chosen for n in l.group}).snr_db)
    print(f"baseline {baseline.snr_db:.2f} dB, top-{k} {top.snr_db:.2f} dB, random {[round(r, 2) for r in randoms]}")
    assert top.snr_db - baseline.snr_db > 2 * (np.mean(randoms) - baseline.snr_db)
    assert top.snr_db > np.mean(randoms)
    assert top.cosine >= baseline.cosine


def test_simulation_is_the_converted_int8_model(depthwise_program, evaluation):
    runner = GraphRunner(depthwise_program.prepared)
    converted = depthwise_program.converted(fold_quantize=True)
    output_observer = [n for n in runner.nodes if n in runner.observers][-1]
    step = float(depthwise_program.prepared.get_submodule(output_observer.target).calculate_qparams()[0])
    same = []
    for sample in evaluation[:8]:
        simulated = runner.outputs(runner.run(sample))[0]
        with torch.no_grad():
            real = converted(torch.from_numpy(sample[0]))
        # fake-quantize rounds x * (1/scale), quantize_per_tensor x / scale: a tie may land one step apart
        assert float((simulated - real).abs().max()) <= 1.01 * step
        same.append(float((simulated == real).float().mean()))
    assert np.mean(same) >= 0.95


def test_first_layer_local_error_is_its_propagated_error(depthwise_diagnosis):
    # nothing upstream of the first layer is quantized but its own input: both measures must agree,
    # and every later layer inherits upstream error (propagated below local on average)
    first = min(depthwise_diagnosis.layers, key=lambda l: l.graph_index)
    assert first.metrics["local_snr_db"] == pytest.approx(first.metrics["propagated_snr_db"], abs=1e-6)
    later = [l for l in depthwise_diagnosis.layers if l.graph_index > 0]
    assert np.mean([l.metrics["propagated_snr_db"] for l in later]) < np.mean([l.metrics["local_snr_db"] for l in later])
    assert [l.rank for l in depthwise_diagnosis.layers] == list(range(1, len(depthwise_diagnosis.layers) + 1))
    alone = [l.metrics["solo_output_snr_db"] for l in depthwise_diagnosis.layers]
    assert alone == sorted(alone)


def test_remedies_are_measured_end_to_end_for_the_top_layers(depthwise_diagnosis, depthwise_variants):
    top, rest = depthwise_diagnosis.layers[:2], depthwise_diagnosis.layers[2:]
    baseline = depthwise_diagnosis.baseline
    for layer in top:
        assert set(layer.remedies) == {"float", "int16", "observer"}
        kept = depthwise_variants.evaluate({n: "float" for n in layer.group})
        assert layer.remedies["float"]["snr_gain_db"] == pytest.approx(kept.snr_db - baseline.snr_db, abs=1e-3)
        # int16 steps are 256x finer: the layer's output tensor then adds (almost) no error
        assert 0 < layer.remedies["int16"]["snr_gain_db"]
        assert layer.remedies["observer"]["passed"] is True  # the digits CNN keeps int8 either way
    assert all(not l.remedies for l in rest)
    assert depthwise_diagnosis.keep_float_top["2"]["snr_gain_db"] > 0


def _write_model_files(tmp_path, depthwise_model, digits_split):
    model = tmp_path / "dw.pt"
    torch.save(depthwise_model.state_dict(), model)
    np.savez(tmp_path / "calib.npz", x=digits_split.x_train[:48])
    np.savez(tmp_path / "eval.npz", x=digits_split.x_test[:48])
    return str(model), str(tmp_path / "calib.npz"), str(tmp_path / "eval.npz")


def test_cli_table_json_html_and_model_explorer(tmp_path, depthwise_model, digits_split, capsys):
    from edgekit.cli import main

    model, calib, evals = _write_model_files(tmp_path, depthwise_model, digits_split)
    out = tmp_path / "out"
    code = main(["diagnose", model, "--arch", "tests.quantize.conftest:depthwise_cnn", "--input", "x:1x1x8x8",
                 "--calibration", calib, "--eval-data", evals, "--int8-calibration", "bias-correction", "--remedies", "1",
                 "--layer-samples", "8", "--top", "4", "--json", str(out / "d.json"), "--html", str(out / "d.html"),
                 "--model-explorer", str(out / "me.json"), "-q"])
    assert code == 0
    stdout = capsys.readouterr().out
    doc = json.loads((out / "d.json").read_text())
    assert doc["schema"] == "edgekit.diagnose" and doc["schema_version"] == 1
    assert doc["evaluation"]["samples"] == 48 and doc["evaluation"]["real"] is True
    # the same algorithm choice as convert: the named recipe, bias correction applied to the diagnosed graph
    assert doc["quantization"]["chosen"] == "histogram+bias-correction"
    assert doc["quantization"]["candidates"][0]["bias_corrected_layers"] == 6
    assert "int8 (histogram+bias-correction observer) vs float on 48 samples" in stdout
    layers = doc["layers"]
    assert [l["rank"] for l in layers] == list(range(1, len(layers) + 1)) and len(layers) == 6
    assert {"node", "module_path", "module_type", "local_snr_db", "local_cosine", "propagated_snr_db",
            "propagated_cosine", "solo_output_snr_db", "remedies"} <= set(layers[0])
    assert set(layers[0]["remedies"]) == {"float", "int16", "observer"} and layers[1]["remedies"] == {}
    # the table names PyTorch module paths: 3 and 9 are the depthwise convolutions of the Sequential
    for layer in layers[:4]:
        assert f"{layer['module_path']} ({layer['module_type']})" in stdout
    assert "more layers in --json / --html" in stdout
    assert {l["module_path"] for l in layers} == {"0", "3", "6", "9", "12", "17"}
    page = (out / "d.html").read_text()
    assert page.count("<svg") == 1 and "<title>#1 " in page and '"schema": "edgekit.diagnose"' in page
    explorer = json.loads((out / "me.json").read_text())
    program = torch.export.load(str(out / "me.pt2"))
    names = {n.name for n in program.graph_module.graph.nodes}
    assert set(explorer["results"]) <= names and len(explorer["results"]) >= len(layers)
    assert explorer["results"][layers[0]["node"]]["value"] == pytest.approx(layers[0]["local_snr_db"])


def test_cli_refuses_what_it_cannot_diagnose_in_one_line(tmp_path, capsys):
    from edgekit.cli import main

    assert main(["diagnose", "m.pt", "--quantize", "fp16", "--calibration", "c.npz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: diagnose explains static int8; --quantize 'fp16' is not diagnosable (use --quantize int8)"]
    assert main(["diagnose", "m.pt", "--int8-calibration", "kl", "--calibration", "c.npz"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: --int8-calibration 'kl': choose one of auto, minmax") and "bias-correction" in last
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", "m.pt", "--bogus-flag"])
    assert exc.value.code == 2
    assert "--bogus-flag" in capsys.readouterr().err.strip().splitlines()[-1]


def test_diagnose_help_imports_no_ml_framework():
    code = ("import sys\nfrom edgekit.cli import main\ntry:\n    main(['diagnose', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'torchao', 'executorch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--model-explorer" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
