"""A decoder language model (one decoding step, KV cache as I/O): converted to ExecuTorch, TFLite and
ONNX, verified by greedy generation token by token against eager PyTorch, benched in tokens/s."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import decoder_model as dm
from edgekit.cli import main
from edgekit.errors import UsageError
from edgekit.generate import detect
from edgekit.targets.base import TensorSpec

SPECS = dm.input_specs(dm.TINY)


@pytest.fixture(scope="module")
def eval_steps(tmp_path_factory):
    path = tmp_path_factory.mktemp("decoder") / "steps.npz"
    np.savez(path, **dm.step_inputs(dm.step_tiny().eval(), "Hello world, this is a fortune."))
    return str(path)


def _convert(tmp_path, eval_steps, target, *extra):
    args = ["convert", "--model", "benchmarks.decoder_model:step_tiny", "-t", target, "--eval-data", eval_steps,
            "--decoder", "-o", str(tmp_path), "--name", "gpt", "-q", *extra]
    for spec in SPECS:
        args += ["--input", spec]
    return main(args)


@pytest.mark.slow
@pytest.mark.parametrize("target,suffix", [("executorch", ".pte"), ("tflite", ".tflite"), ("onnx", ".onnx")])
def test_greedy_tokens_match_eager_exactly_at_fp32(tmp_path, eval_steps, target, suffix):
    assert _convert(tmp_path, eval_steps, target) == 0
    doc = json.loads((tmp_path / f"gpt{suffix}.edgekit.json").read_text())
    greedy = doc["parity"]["greedy"]
    assert greedy["exact"] and greedy["exact_required"]
    assert greedy["tokens"] == 24 and greedy["matching"] == 24  # 32-slot cache, 8-token prompt
    assert dm.decode(greedy["prompt"]) == "Hello wo"  # the prompt is the evaluation data's real text
    assert doc["decoder"]["state"] == [{"output": "output_1", "input": "k_cache"}, {"output": "output_2", "input": "v_cache"}]
    assert doc["status"] == "passed"


@pytest.mark.slow
def test_bench_reports_prefill_and_decode_tokens_per_second(tmp_path, eval_steps):
    assert _convert(tmp_path, eval_steps, "executorch") == 0
    report = tmp_path / "bench.json"
    assert main(["bench", str(tmp_path / "gpt.pte"), "--runs", "3", "--warmup", "1", "--json", str(report), "-q"]) == 0
    doc = json.loads(report.read_text())
    record = (doc.get("results", doc) if isinstance(doc, dict) else doc)[0]
    generation = record["generation"]
    assert generation["prompt_tokens"] == 8 and generation["new_tokens"] == 24
    assert generation["prefill_tokens_per_s"] > 0 and generation["decode_tokens_per_s"] > 0


def test_roles_are_detected_and_a_wrong_name_is_refused():
    inputs = [TensorSpec("token", (1, 1), "int64"), TensorSpec("pos", (1,), "int64"),
              TensorSpec("k", (2, 1, 2, 32, 16), "float32"), TensorSpec("v", (2, 1, 2, 32, 16), "float32")]
    outputs = [TensorSpec("logits", (1, 96), "float32"), TensorSpec("k_new", (2, 1, 2, 32, 16), "float32"),
               TensorSpec("v_new", (2, 1, 2, 32, 16), "float32")]
    spec = detect(inputs, outputs)
    assert (spec.token_input, spec.position_input, spec.logits_output) == ("token", "pos", "logits")
    assert spec.state == (("k_new", "k"), ("v_new", "v"))
    with pytest.raises(UsageError, match="no input or output named 'tok'"):
        detect(inputs, outputs, token="tok")
    with pytest.raises(UsageError, match="needs a \\[1, 1\\] integer token input"):
        detect(inputs[2:], outputs)
