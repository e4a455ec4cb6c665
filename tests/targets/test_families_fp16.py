"""ExecuTorch fp16 of recurrent models: float32 baked into the graph (an LSTM's zero initial state)
used to reach the portable kernels beside float16 tensors, and the program failed only when run
("op_addmm: dtype mismatch {Half, Float, Half}"). Now the dtypes are rewritten before export, any
mix left is cast before lowering, and the written program is run once at conversion time."""
from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn as nn

import edgekit
from tests.targets.families_common import converted, seeded

SPEC = "tests.targets.test_families_fp16"


@pytest.mark.slow
def test_bilstm_fp16_executorch_runs(tmp_path):
    fp16 = converted(tmp_path, "bilstm", "executorch", ["x:1x6x8"], 0.999, quantize="fp16")
    details = fp16.manifest["target_details"]
    assert details["lowering"]["recurrent_ops"] == ["lstm"]
    assert "float16_casts_inserted" not in details["lowering"]  # the rewrite before export sufficed
    assert details["delegation"]["delegated_percent"] >= 95


def wide_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()


@pytest.mark.slow
def test_cnn_fp16_file_is_half_of_fp32_also_from_torchscript(tmp_path):
    """XNNPACK widened fp16 convolution filters to float32 in the file (fp16 was 0.99x fp32); and
    a TorchScript archive's fp16 conversion failed (its weights are buffers that require grad)."""
    script = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(wide_cnn(), torch.randn(1, 3, 16, 16)), str(script))
    arts = {q: edgekit.convert(model=str(script), target="executorch", quantize=q, inputs=["x:1x3x16x16"],
                               output_dir=str(tmp_path / q))[0] for q in ("none", "fp16")}
    assert arts["fp16"].status == "passed", arts["fp16"].error or arts["fp16"].parity.get("reasons")
    assert arts["fp16"].parity["cosine"] >= 0.999
    assert arts["fp16"].manifest["target_details"]["lowering"]["float16_filters"].startswith("convolution filters")
    ratio = arts["fp16"].size_bytes / arts["none"].size_bytes
    assert 0.45 <= ratio <= 0.6, ratio  # 157 KB of weights: ~0.52 with the program's own bytes


def _unfixed_fp16_program(tiny):
    """The fp16 recipe as it was: weights halved, the graph's own float32 zeros left alone, and
    the LSTM decomposed by PyTorch (the packed route re-traces the graph, which the mix stops)."""
    from edgekit.targets.executorch import recurrent
    from edgekit.targets.executorch.convert import prepare_for_lowering
    from edgekit.targets.executorch.quantize import _export

    x = torch.randn(1, 3, 4)
    model = types.SimpleNamespace(example_inputs=(x,), dynamic_shapes=lambda: None)
    graph = torch.export.export(copy.deepcopy(tiny), (x,), strict=False).module().half()

    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = graph

        def forward(self, x):
            return self.inner(x.half())[0].float()

    packed = recurrent.pack_recurrent_layers
    recurrent.pack_recurrent_layers = lambda program, **_: (None, {})
    try:
        program, _ = prepare_for_lowering(_export(Half(), model))
    finally:
        recurrent.pack_recurrent_layers = packed
    return program, x


def _write(program, path):
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    # the IR check off, as for XNNPACK lowering (with it on, to_edge itself refuses the mixed addmm)
    from edgekit.targets.executorch.convert import mixed_dtype_nodes

    edge = to_edge_transform_and_lower(program, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    mixed = mixed_dtype_nodes(edge)  # on the edge program, as the target does (before out-variants)
    with open(path, "wb") as fh:
        edge.to_executorch().write_to_file(fh)
    return mixed


def test_mixed_float16_float32_is_found_in_seconds_and_cast_before_lowering(tmp_path):
    from edgekit.targets.executorch.convert import smoke_run, unify_float16

    torch.manual_seed(0)
    tiny = nn.LSTM(4, 4, batch_first=True).eval()
    program, x = _unfixed_fp16_program(tiny)
    mixed = _write(program, tmp_path / "mixed.pte")
    assert mixed and mixed[0].startswith("aten.addmm")
    error = smoke_run(str(tmp_path / "mixed.pte"), (x,))
    assert error.startswith("RuntimeError: method->execute() failed with error 0x12")
    assert "Half, Float" in error  # the runtime's own check line is kept

    program, x = _unfixed_fp16_program(tiny)
    casts = unify_float16(program)
    assert casts and {c.split(" ")[0] for c in casts} == {"linear", "add"}  # the hidden-state path of each step
    assert not _write(program, tmp_path / "unified.pte")
    assert smoke_run(str(tmp_path / "unified.pte"), (x,)) is None


class FaceStage(nn.Module):
    """Conv -> PReLU(per channel) -> permute -> view -> Linear, as in face-detection heads (issue 13
    reported XNNPACK's ChannelsLastTaggedReshapePass failing on it; not reproduced with executorch 1.5.1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.prelu = nn.PReLU(num_parameters=16)
        self.fc = nn.Linear(16 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.prelu(self.conv(x)).permute(0, 2, 3, 1).contiguous().view(1, -1))


def face_stage():
    return seeded(FaceStage)


@pytest.mark.slow
def test_conv_prelu_permute_view_linear_lowers_to_xnnpack_at_fp16(tmp_path):
    art = converted(tmp_path, f"{SPEC}:face_stage", "executorch", ["x:1x3x16x16"], 0.999, quantize="fp16")
    delegated = art.manifest["target_details"]["delegation"]["delegated_ops"]
    assert {"aten.convolution.default", "aten.permute_copy.default"} <= set(delegated)


class MaskedAttention(nn.Module):
    """An attention mask made from scalars (``torch.where(c, 0.0, -1e4)``, as in a decoder with a KV
    cache) is float32 whatever the weights are: in an fp16 graph it promoted the scores to float32 and
    the next bmm refused the mix ("expected scalar type torch.float32 but found torch.float16")."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x, pos):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        mask = torch.where(torch.arange(4) <= pos, 0.0, -1e4)
        return torch.softmax(q @ k.transpose(-2, -1) + mask, dim=-1) @ v


def test_float16_graph_casts_float32_made_from_scalars():
    from edgekit.targets.executorch.convert import float16_graph, half_module

    torch.manual_seed(0)
    model = MaskedAttention().eval()
    x, pos = torch.randn(1, 4, 8), torch.tensor([2])
    graph = half_module(torch.export.export(model, (x, pos), strict=False))
    counts = float16_graph(graph)
    assert counts["float32_sources_cast"] == 1  # the where; the chunk's pieces are not new float32
    out = graph(x.half(), pos)
    assert out.dtype == torch.float16
    want = model(x, pos)
    assert torch.allclose(out.float(), want, atol=2e-3), float((out.float() - want).abs().max())


class LoudLayerNorm(nn.Module):
    """A residual stream whose squares summed over 384 features pass float16's 65504, as in
    all-MiniLM-L6-v2 (48,900 on a real sentence): the portable layer norm accumulating in float16
    made the fp16 program's outputs wrong (all NaN on MiniLM; cosine 0.064 on this model)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(384)
        self.head = nn.Linear(384, 8)

    def forward(self, x):
        return self.head(self.norm(x * 30.0))


def loud_layer_norm():
    return seeded(LoudLayerNorm)


@pytest.mark.slow
def test_fp16_layer_norm_runs_in_float32_and_stays_finite(tmp_path):
    converted(tmp_path, f"{SPEC}:loud_layer_norm", "executorch", ["x:1x4x384"], 0.999, quantize="fp16")
