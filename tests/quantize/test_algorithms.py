"""The calibration algorithms of the shared int8 layer (issue 11 item 2), on small real models trained
here on scikit-learn's digits: MSE and mean-minmax observers, cross-layer equalization (with ReLU6),
bias correction, SmoothQuant, and their registration as ``--int8-calibration`` recipes."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.demo import train_classifier
from edgekit.errors import UsageError
from edgekit.quantize.config import CALIBRATIONS, QuantConfig, Recipe
from edgekit.quantize.pt2e import _tensors, agreement, quantize_program, run_graph

OUTLIER = 40.0


class NormThenLinear(nn.Module):
    """Digits as 8 tokens of 8 pixels: token projection, LayerNorm, a linear block, mean pool; with
    ``residual`` the norm's output also feeds a residual around the block (BERT's post-LN shape)."""

    def __init__(self, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.embed = nn.Linear(8, 32)
        self.norm = nn.LayerNorm(32)
        self.proj = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        h = self.norm(self.embed(x.reshape(x.shape[0], 8, 8)))
        y = torch.relu(self.proj(h))
        return self.head((h + y if self.residual else y).mean(1))


def _train(model, data, epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    return train_classifier(model, data.x_train, data.y_train, epochs=epochs, batch_size=64, lr=5e-3)


@pytest.fixture(scope="session")
def outlier_norm_model(digits_split):
    """NormThenLinear trained, then one LayerNorm channel made an outlier (x OUTLIER) with the
    linear column that reads it scaled down: the same function, an outlier channel in the tensor
    the linear layer's int8 input quantizes, as in real transformers."""
    model = _train(NormThenLinear(), digits_split, epochs=6)
    with torch.no_grad():
        model.norm.weight[3] *= OUTLIER
        model.norm.bias[3] *= OUTLIER
        model.proj.weight[:, 3] /= OUTLIER
    return model


def _scores(exported, program, evaluation):
    samples = [_tensors(s) for s in evaluation]
    return agreement(run_graph(exported.module(), samples), run_graph(program.converted(), samples))


# --- observers ------------------------------------------------------------------------------------


def _observe(observer, batches):
    for b in batches:
        observer(b)
    return observer


def _int8_squared_error(values, low, high) -> float:
    scale = (float(high) - float(low)) / 255
    zero_point = int(round(-128 - float(low) / scale))
    quantized = torch.fake_quantize_per_tensor_affine(values, scale, zero_point, -128, 127)
    return float(((quantized - values).double() ** 2).sum())


def test_mse_observer_beats_minmax_and_histogram_on_heavy_tails():
    """On heavy-tailed activations (Student-t, 2 degrees of freedom) the grid search finds a range
    whose real int8 error is lower than min/max's and than torchao's greedy histogram search."""
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

    from edgekit.quantize.observers_extra import mse_observer_class

    torch.manual_seed(0)
    batches = [torch.distributions.StudentT(2.0).sample((4096,)) for _ in range(4)]
    mse = _observe(mse_observer_class()(dtype=torch.qint8), batches)
    histogram = _observe(HistogramObserver(dtype=torch.qint8), batches)
    minmax = _observe(MinMaxObserver(dtype=torch.qint8), batches)
    values = torch.cat(batches)
    low, high = mse._non_linear_param_search()
    err_mse = _int8_squared_error(values, low, high)
    err_hist = _int8_squared_error(values, *histogram._non_linear_param_search())
    err_minmax = _int8_squared_error(values, minmax.min_val, minmax.max_val)
    assert float(high) < float(minmax.max_val) and float(low) > float(minmax.min_val)
    assert err_mse < 0.97 * err_minmax and err_mse < 0.97 * err_hist, (err_mse, err_hist, err_minmax)


def test_mean_minmax_observer_averages_each_step():
    from edgekit.quantize.observers_extra import mean_minmax_observer_class

    observer = _observe(mean_minmax_observer_class()(dtype=torch.qint8),
                        [torch.tensor([-1.0, 1.0]), torch.tensor([-3.0, 2.0]), torch.tensor([-2.0, 9.0])])
    assert float(observer.min_val) == pytest.approx(-2.0)
    assert float(observer.max_val) == pytest.approx(4.0)


# --- cross-layer equalization ----------------------------------------------------------------------


def test_cle_equalizes_depthwise_relu6_chains_and_keeps_the_function(depthwise_exported, calibration, evaluation):
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    from edgekit.quantize.equalize import cross_layer_equalize, weight_range_ratio

    folded = copy.deepcopy(depthwise_exported.module())
    _fuse_conv_bn_(folded)
    equalized = copy.deepcopy(depthwise_exported.module())
    pairs = cross_layer_equalize(equalized, [_tensors(s) for s in calibration])
    assert [p.activation for p in pairs] == ["relu6"] * 4  # stem->dw, dw->pw, pw->dw, dw->pw
    # the depthwise layers (one weight range per channel, the MobileNet problem) end equalized
    ratios = [(round(weight_range_ratio(folded.get_parameter(w)), 2), round(weight_range_ratio(equalized.get_parameter(w)), 2))
              for w in _depthwise_weights(folded)]
    assert len(ratios) == 2 and all(after < 0.8 * before for before, after in ratios), ratios
    samples = [_tensors(s) for s in evaluation]
    ref, got = run_graph(folded, samples), run_graph(equalized, samples)
    worst = max(float((r[0] - g[0]).abs().max() / r[0].abs().max()) for r, g in zip(ref, got))
    assert worst < 1e-3


def _depthwise_weights(graph_module) -> list[str]:
    return [n.args[1].target for n in graph_module.graph.nodes
            if n.target == torch.ops.aten.conv2d.default and len(n.args) > 6 and n.args[6] > 1]


def test_cle_leaves_relu6_channels_the_clamp_cuts():
    """A channel whose pre-activation exceeds 6 on the calibration data keeps scale 1 (ReLU6 is not
    scale-equivariant there); the network's output is unchanged."""
    from edgekit.quantize.equalize import cross_layer_equalize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU6(), nn.Conv2d(4, 4, 3, groups=4, padding=1)).eval()
    with torch.no_grad():
        model[0].weight[0] *= 40.0  # channel 0 saturates the clamp; the others stay under 6
        model[0].weight[1:] *= 0.2
        model[2].weight[1:] *= 9.0
    x = torch.randn(8, 3, 6, 6)
    exported = torch.export.export(model, (x[:1],))
    graph = copy.deepcopy(exported.module())
    conv = [n for n in graph.graph.nodes if n.target == torch.ops.aten.conv2d.default][0]
    w0 = graph.get_parameter(conv.args[1].target).detach().clone()
    pairs = cross_layer_equalize(graph, [(x[i : i + 1],) for i in range(8)])
    w1 = graph.get_parameter(conv.args[1].target).detach()
    assert pairs[0].activation == "relu6" and pairs[0].scaled_channels == 3
    assert torch.equal(w0[0], w1[0]) and not torch.equal(w0[1], w1[1])
    got = torch.cat([graph(x[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)


def test_cle_removes_an_outlier_unit_between_linear_layers(digits_split, calibration, evaluation):
    """The outlier CNN (one fc2 unit 300x the others, fc3 scaled back) fails plain int8; CLE through
    the ReLU restores it: the fixture mixed precision exists for, fixed without any float layer."""
    from tests.quantize.outlier_model import train_outlier_cnn

    model = train_outlier_cnn(digits_split, epochs=4)
    exported = torch.export.export(model, (torch.zeros(1, 1, 8, 8),))
    plain = _scores(exported, quantize_program(exported, calibration, QuantConfig(observer="histogram")), evaluation)
    cle = quantize_program(exported, calibration, QuantConfig(observer="cle"))
    equalized = _scores(exported, cle, evaluation)
    assert cle.choice.notes["cle_pairs"] >= 1
    assert equalized["cosine"] > 0.999 > plain["cosine"], (plain, equalized)


# --- bias correction -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corrected_program(depthwise_exported, calibration):
    return quantize_program(depthwise_exported, calibration, QuantConfig(observer="bias-correction"))


def test_bias_correction_removes_the_mean_output_shift(depthwise_exported, calibration, evaluation, corrected_program):
    """Same observer (histogram) with and without the correction: the int8 logits' mean offset from
    FP32 on held-out digits shrinks, and the output does not get worse."""
    plain = quantize_program(depthwise_exported, calibration, QuantConfig(observer="histogram"))
    ev = [_tensors(s) for s in evaluation]
    ref = torch.cat([r[0] for r in run_graph(depthwise_exported.module(), ev)])

    def errors(program):
        got = torch.cat([g[0] for g in run_graph(program.converted(), ev)])
        return float((got - ref).mean(0).abs().mean()), float(((got - ref) ** 2).mean())

    (offset_plain, mse_plain), (offset_corrected, mse_corrected) = errors(plain), errors(corrected_program)
    assert offset_corrected < 0.7 * offset_plain, (offset_plain, offset_corrected)
    assert mse_corrected < mse_plain


# --- SmoothQuant -----------------------------------------------------------------------------------


def test_smoothquant_fixes_layernorm_outliers(outlier_norm_model, digits_split):
    calibration = [(digits_split.x_train[i : i + 1],) for i in range(64)]
    evaluation = [(digits_split.x_test[i : i + 1],) for i in range(64)]
    exported = torch.export.export(outlier_norm_model, (torch.from_numpy(digits_split.x_test[:1]),))
    plain = _scores(exported, quantize_program(exported, calibration, QuantConfig(observer="histogram")), evaluation)
    smooth_program = quantize_program(exported, calibration, QuantConfig(observer="smoothquant"))
    after = _scores(exported, smooth_program, evaluation)
    assert smooth_program.choice.notes == {"smoothquant_norms": 1, "smoothquant_linears": 1}
    assert 1 - after["cosine"] < 0.5 * (1 - plain["cosine"]), (plain, after)


def test_smoothquant_keeps_a_post_ln_residual_exact(outlier_norm_model, digits_split):
    """The norm's output also feeds a residual: that reader gets a mul by s, the function stays."""
    from edgekit.quantize.smoothquant import smooth

    model = NormThenLinear(residual=True)
    model.load_state_dict(outlier_norm_model.state_dict())
    model.eval()
    x = torch.from_numpy(digits_split.x_test[:32])
    graph = copy.deepcopy(torch.export.export(model, (x[:1],)).module())
    smoothed = smooth(graph, [(x[i : i + 1],) for i in range(16)])
    assert [(len(s.linears), s.restored_users) for s in smoothed] == [(1, 1)]
    assert smoothed[0].max_scale > 5 * smoothed[0].min_scale  # the outlier channel is scaled most
    got = torch.cat([graph(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)


# --- registration ----------------------------------------------------------------------------------


def test_recipes_are_named_and_validated():
    assert {"mse", "mean-minmax", "cle", "bias-correction", "cle-bias-correction", "smoothquant", "adaround"} <= set(CALIBRATIONS)
    assert QuantConfig(observer="cle-bias-correction").candidates()[0].name == "histogram+cle+bias-correction"
    assert Recipe("mse", smoothquant=0.5).name == "mse+smoothquant0.5"
    assert QuantConfig(observer="adaround").candidates()[0].name == "histogram+adaround"
    with pytest.raises(UsageError, match="unknown int8 calibration 'gptq'; valid: auto, minmax"):
        QuantConfig(observer="gptq")


def test_manifest_records_the_algorithm_and_its_notes(corrected_program):
    manifest = corrected_program.to_manifest()
    candidate = manifest["candidates"][0]
    assert manifest["chosen"] == "histogram+bias-correction"
    assert candidate["bias_corrected_layers"] == 6  # 5 convolutions and the classifier
    assert np.isfinite(candidate["seconds"])


def test_auto_tries_smoothquant_where_a_layernorm_feeds_a_linear(depthwise_exported):
    """By graph structure, not by name: the norm -> linear block gets the SmoothQuant candidate, a CNN does not."""
    from edgekit.quantize.smoothquant import has_norm_linear

    transformer_like = torch.export.export(NormThenLinear().eval(), (torch.zeros(1, 64),)).module()
    assert has_norm_linear(transformer_like) and not has_norm_linear(depthwise_exported.module())
    assert [r.name for r in QuantConfig().candidates(norm_linear=True)] == [
        "histogram", "histogram+bias-correction", "histogram+smoothquant0.5", "minmax"]
    assert [r.name for r in QuantConfig().candidates()] == ["histogram", "histogram+bias-correction", "minmax", "percentile"]
