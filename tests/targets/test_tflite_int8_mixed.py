"""TFLite static int8 (PT2E route) when mixed precision keeps linears float: the kept layers stay
float32 in the file, every other linear gets int8 weights (the float-output ones as hybrid
FULLY_CONNECTED), and what the manifest says agrees with what the file holds (issue 11)."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from tests.quantize.tiny_bert import token_data, tiny_bert

KEPT_MODULE = "encoder.encoder.layer.0.attention.output.dense"  # a float-output linear (residual stream)


def _samples(data) -> list[tuple]:
    return [(data["input_ids"][i : i + 1], data["attention_mask"][i : i + 1]) for i in range(len(data["input_ids"]))]


@pytest.fixture(scope="session")
def kept_float_tflite(tmp_path_factory):
    """(model, flatbuffer bytes, manifest detail, converted graph) of tiny BERT's PT2E int8 .tflite with
    KEPT_MODULE kept float through QuantConfig.float_nodes."""
    from edgekit.quantize import QuantConfig
    from edgekit.quantize.pt2e import quantize_program
    from edgekit.targets.tflite.int8 import _pt2e_bytes
    from edgekit.targets.tflite.target import TFLiteTarget

    torch.manual_seed(0)
    model = tiny_bert()
    example = tuple(torch.from_numpy(a) for a in _samples(token_data(1, 5)[0])[0])
    exported = torch.export.export(model, example)
    kept = [n.name for n in exported.graph.nodes if n.target is torch.ops.aten.linear.default
            and list(n.meta["nn_module_stack"].values())[-1][0] == KEPT_MODULE]
    assert len(kept) == 1
    program = quantize_program(exported, _samples(token_data(16, 2)[0]),
                               QuantConfig(observer="minmax", float_nodes=tuple(kept)))
    exported_model = types.SimpleNamespace(module=exported.module(), example_inputs=example, dynamic_shapes=lambda: None,
                                           output_names=["logits"])
    detail: dict = {}
    content = _pt2e_bytes(TFLiteTarget(), exported_model, program, types.SimpleNamespace(io="float"),
                          str(tmp_path_factory.mktemp("tflite_mixed")), detail)
    return model, content, detail, program.converted(fold_quantize=False)


def _fully_connected_weights(content: bytes) -> list[np.ndarray]:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(content)
    graph = model.subgraphs[0]
    weights = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == 9:  # FULLY_CONNECTED
            weights.append(np.asarray(fb.get_tensor_data(graph.tensors[op.inputs[1]], model.buffers)))
    return weights


@pytest.mark.slow
def test_kept_float_linear_stays_float_and_every_other_linear_is_int8(kept_float_tflite, tmp_path):
    from edgekit.quantize.artifact_coverage import tflite_coverage

    model, content, detail, _ = kept_float_tflite
    weights = _fully_connected_weights(content)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(weights) == len(linears) == 13
    floats = [w for w in weights if w.dtype == np.float32]
    kept = model.get_submodule(KEPT_MODULE).weight.detach().numpy()
    # the only float32 weight in the file is the kept linear's, value for value
    assert len(floats) == 1 and floats[0].nbytes == kept.nbytes == 64 * 64 * 4
    np.testing.assert_allclose(floats[0], kept, rtol=0, atol=1e-6)
    assert sorted(str(w.dtype) for w in weights) == ["float32"] + ["int8"] * 12
    assert detail["float_linear_layers"]["layers"] == [KEPT_MODULE]
    # the three other float-output projections (the residual stream) are hybrid int8 layers
    assert detail["float_output_layers"]["count"] == 3 and "left_float" not in detail["float_output_layers"]
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    kinds = [op.kind for op in tflite_coverage(str(path), "int8").ops if op.name.startswith("fully_connected")]
    assert sorted(kinds) == ["dynamic-int8"] * 3 + ["float32"] + ["int8"] * 9


@pytest.mark.slow
def test_an_unaligned_program_touches_no_float_layer(kept_float_tflite):
    from edgekit.targets.tflite.int8 import fully_connected_ops, kept_float_layers

    _, content, _, graph = kept_float_tflite
    fcs = fully_connected_ops(content)
    kept, why = kept_float_layers(graph, fcs)
    assert [fc.module for fc in kept] == [KEPT_MODULE] and why == ""
    kept, why = kept_float_layers(graph, fcs[:-1])
    assert kept == [] and why.startswith("12 FULLY_CONNECTED ops for 13 linear layers")
    swapped = [fcs[4]] + fcs[1:4] + [fcs[0]] + fcs[5:]  # a 256x64 op where a 64x64 linear is
    kept, why = kept_float_layers(graph, swapped)
    assert kept == [] and "does not lower linear encoder.encoder.layer.0.attention.self.query ([64, 64])" in why
