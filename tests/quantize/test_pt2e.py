"""The shared PT2E int8 layer on small real models: numbers a user would see in the manifest."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from edgekit.errors import ConversionError, UsageError
from edgekit.quantize import QuantConfig
from edgekit.quantize.config import Candidate, Recipe
from edgekit.quantize.coverage import Coverage, require_quantized
from edgekit.quantize.pt2e import agreement, quantize_program, simulate, split
from tests.quantize.conftest import logits


def _cosine(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="session")
def auto_result(depthwise_exported, calibration):
    return quantize_program(depthwise_exported, calibration, QuantConfig())


def test_clamp_activations_fuse_with_their_conv(auto_result):
    # ReLU6 is aten.hardtanh: its input must not get its own quantize op (the root cause of the
    # EfficientNet-Lite0 collapse), so every hardtanh reads the float conv output directly
    graph = auto_result.converted(fold_quantize=True).graph
    clamps = [n for n in graph.nodes if n.target == torch.ops.aten.hardtanh.default]
    assert len(clamps) == 5
    assert all(n.args[0].target == torch.ops.aten.conv2d.default for n in clamps)
    assert all(any("quantize_per_tensor" in str(u.target) for u in n.users) for n in clamps)


def test_fused_clamps_beat_xnnpack_alone(depthwise_model, depthwise_exported, calibration, digits_split):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    plain = prepare_pt2e(copy.deepcopy(depthwise_exported.module()),
                         XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    for sample in calibration:
        plain(torch.from_numpy(sample[0]))
    plain = convert_pt2e(plain)
    ours = quantize_program(depthwise_exported, calibration, QuantConfig(observer="histogram"))
    x = digits_split.x_test[:120]
    reference = logits(depthwise_model, x)
    error_plain = np.abs(logits(plain, x) - reference).mean()
    error_ours = np.abs(logits(ours.converted(), x) - reference).mean()
    assert error_ours < error_plain
    assert _cosine(reference, logits(ours.converted(), x)) > 0.999


def test_auto_scores_every_candidate_on_held_back_samples_and_keeps_the_best(auto_result):
    names = [c.name for c in auto_result.candidates]
    assert names == ["histogram", "histogram+bias-correction", "minmax", "percentile"]
    assert all(c.heldout_inputs == 16 and c.error is None for c in auto_result.candidates)
    assert auto_result.choice.key() == max(c.key() for c in auto_result.candidates)
    assert auto_result.heldout_samples == 16 and auto_result.calibration_samples == 64
    block = auto_result.to_manifest()
    assert block["chosen"] == auto_result.choice.name
    assert "held-back" in block["why"]
    assert [c["name"] for c in block["candidates"]] == names
    assert all(0.0 <= c["top1"] <= 1.0 and c["cosine"] > 0.99 for c in block["candidates"])


def test_simulated_int8_keeps_the_digits_answers(auto_result, depthwise_model, digits_split):
    x = digits_split.x_test[:200]
    reference = logits(depthwise_model, x)
    got = np.concatenate([o[0].numpy() for o in simulate(auto_result, [(x[i : i + 1],) for i in range(len(x))])])
    assert float(np.mean(reference.argmax(1) == got.argmax(1))) >= 0.99
    assert _cosine(reference, got) > 0.999


def test_quantized_share_of_a_conv_net(auto_result):
    coverage = auto_result.coverage
    assert coverage.ops_total == 6  # 5 convolutions and the classifier
    assert coverage.op_share == 1.0 and coverage.weight_share == 1.0
    # every conv and linear weight element: 16*9 + 16*9 + 16*32 + 32*9 + 32*64 + 64*10
    assert coverage.weights_total == coverage.weights_quantized == 3776


def test_selection_is_by_confident_agreement_before_cosine():
    # a recipe that keeps more confident answers wins even with a lower cosine (cosine is the wrong judge)
    flips = Candidate(Recipe("histogram"), top1_confident=0.90, top1=0.80, cosine=0.995)
    keeps = Candidate(Recipe("minmax"), top1_confident=1.00, top1=0.78, cosine=0.980)
    broken = Candidate(Recipe("percentile"), error="RuntimeError: boom")
    assert max([flips, keeps, broken], key=Candidate.key) is keeps
    assert max([broken, flips], key=Candidate.key) is flips


def test_held_back_split_never_overlaps_calibration(calibration):
    calibrate, held = split(calibration, QuantConfig())
    assert (len(calibrate), len(held)) == (48, 16)
    ids = {id(s) for s in calibrate}
    assert not any(id(s) in ids for s in held)
    # too few samples to judge: everything calibrates, nothing is held back, one recipe is used
    assert split(calibration[:6], QuantConfig()) == (calibration[:6], [])


def test_few_samples_use_the_default_recipe_and_say_so(depthwise_exported, calibration):
    result = quantize_program(depthwise_exported, calibration[:6], QuantConfig())
    assert [c.name for c in result.candidates] == ["histogram"]
    assert "too few calibration samples" in result.reason


def test_agreement_counts_confident_inputs_only_where_fp32_is_sure():
    reference = [[torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)],
                 [torch.tensor([[1.0, 0.95, 0.0]], dtype=torch.float64)]]
    flipped_unsure = [[reference[0][0].clone()], [torch.tensor([[0.9, 1.0, 0.0]], dtype=torch.float64)]]
    scores = agreement(reference, flipped_unsure)
    assert scores["confident"] == 1 and scores["top1_confident"] == 1.0 and scores["top1"] == 0.5


def test_keeping_nodes_float_lowers_the_quantized_share(depthwise_exported, calibration):
    names = [n.name for n in depthwise_exported.module().graph.nodes if n.target == torch.ops.aten.conv2d.default]
    result = quantize_program(depthwise_exported, calibration, QuantConfig(observer="minmax", float_nodes=tuple(names[:2])))
    assert result.coverage.ops_quantized == 4 and result.coverage.ops_total == 6
    assert result.coverage.float_ops == names[:2]
    assert result.to_manifest()["float_nodes"] == names[:2]


def test_a_mostly_float_int8_artifact_is_refused():
    with pytest.raises(ConversionError, match=r"only 20.0% of weights and 1/5 compute ops quantized"):
        require_quantized(Coverage(weights_total=100, weights_quantized=20, ops_total=5, ops_quantized=1,
                                   float_ops=["conv_1"]), "executorch int8")


def test_unknown_calibration_lists_the_valid_ones():
    with pytest.raises(UsageError, match="valid: auto, minmax, histogram, percentile, moving-average"):
        QuantConfig(observer="kl")


def test_percentile_observer_clips_a_rare_outlier():
    from torchao.quantization.pt2e.observer import MinMaxObserver

    from edgekit.quantize.observers import percentile_observer_class

    data = torch.cat([torch.linspace(-1, 1, 100_000), torch.tensor([50.0])])
    percentile = percentile_observer_class()(dtype=torch.int8, qscheme=torch.per_tensor_symmetric, percentile=99.9)
    minmax = MinMaxObserver(dtype=torch.int8, qscheme=torch.per_tensor_symmetric)
    percentile(data)
    minmax(data)
    scale_percentile = float(percentile.calculate_qparams()[0])
    scale_minmax = float(minmax.calculate_qparams()[0])
    assert scale_minmax == pytest.approx(50.0 / 127.5, rel=0.01)
    assert scale_percentile < scale_minmax / 10


def test_a_torchscript_archive_gets_the_same_int8_as_any_other_form(depthwise_model, calibration, tmp_path):
    # TorchScript reaches torch.export as aten.convolution: once convs stayed float and BatchNorm
    # unfolded while the artifact was published as int8 (issue 11 item 6)
    from edgekit.export import prepare
    from edgekit.loading import load_model
    from edgekit.options import InputSpec

    path = tmp_path / "depthwise.pt"
    torch.jit.save(torch.jit.trace(depthwise_model, torch.zeros(1, 1, 8, 8)), str(path))
    program = prepare(load_model(str(path)), [InputSpec.parse("x:1x1x8x8")]).exported_program()
    result = quantize_program(program, calibration, QuantConfig(observer="minmax"))
    assert (result.coverage.ops_quantized, result.coverage.ops_total) == (6, 6)
    assert result.coverage.weight_share == 1.0
    ops = {str(n.target) for n in result.converted().graph.nodes}
    assert "aten.batch_norm.default" not in ops and "aten.convolution.default" not in ops
