"""AdaRound (``--int8-calibration adaround``, edgekit/quantize/adaround.py) on the depthwise digits
CNN trained here: the learned rounding reconstructs each layer's output on held-out digits at least
as well as nearest rounding, differs from it in places, stays within one int8 step of the float
weight, and is what the shared program ships."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from edgekit.quantize.config import QuantConfig
from edgekit.quantize.pt2e import _tensors, quantize_program


@pytest.fixture(scope="session")
def adaround_program(depthwise_exported, calibration):
    """The shared int8 program with ``--int8-calibration adaround``, and what it printed."""
    from edgekit.ui import Reporter

    stream = io.StringIO()
    program = quantize_program(depthwise_exported, calibration, QuantConfig(observer="adaround"),
                               reporter=Reporter(stream=stream))
    return program, stream.getvalue()


def _layers(prepared):
    from edgekit.quantize.adaround import find_layers

    return {layer.node.name: layer for layer in find_layers(prepared)}


def _integers(layer, weight):
    scale, zero_point = layer.weight_observer.calculate_qparams()
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight.detach() / scale.reshape(shape) + zero_point.reshape(shape), scale.reshape(shape)


def _layer_errors(rounded, original, samples):
    """{layer: (nearest error, adaround error)}: mean squared output error of each conv/linear (through
    its fused clamp) against the float layer, fed the float input through its int8 input quantization,
    summed over ``samples``. Computed with the layer's own aten op, not adaround's matrix form."""
    from torchao.quantization.pt2e import ObserverBase

    layers, floats = _layers(rounded), _layers(original)
    errors = {name: [0.0, 0.0] for name in layers}

    class Probe(torch.fx.Interpreter):
        def call_module(self, target, args, kwargs):
            if isinstance(self.fetch_attr(target), ObserverBase):
                return args[0]  # the float model; observers learn nothing
            return super().call_module(target, args, kwargs)

        def run_node(self, n):
            out = super().run_node(n)
            if n.name in layers:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                layer = layers[n.name]
                scale, zero = layer.input_observer.calculate_qparams()
                xq = torch.fake_quantize_per_tensor_affine(args[0], float(scale), int(zero),
                                                           layer.input_observer.quant_min, layer.input_observer.quant_max)
                w_float = original.get_parameter(floats[n.name].weight_name)
                w_rounded = rounded.get_parameter(layer.weight_name)
                ints, step = _integers(layer, w_float)
                clamp = (lambda y: y.clamp(0, 6)) if layer.activation == "relu6" else (lambda y: y)
                reference = clamp(out)
                for slot, weight in enumerate((torch.round(ints) * step, w_rounded)):
                    got = clamp(n.target(xq, weight, *args[2:], **kwargs))
                    errors[n.name][slot] += float((got - reference).pow(2).mean())
            return out

    with torch.no_grad():
        for sample in samples:
            Probe(rounded).run(*sample)
    return errors


def test_adaround_rounds_within_one_step_and_beats_nearest_on_held_out_digits(
        adaround_program, depthwise_program, evaluation):
    program, _ = adaround_program
    rounded, original = program.prepared, depthwise_program.prepared  # same folded float weights, same weight observer
    layers, floats = _layers(rounded), _layers(original)
    assert sorted(layers) == sorted(floats) and len(layers) == 6  # 5 convolutions and the classifier
    changed = {}
    for name, layer in layers.items():
        learned, _ = _integers(layer, rounded.get_parameter(layer.weight_name))
        exact, _ = _integers(floats[name], original.get_parameter(floats[name].weight_name))
        if name == "linear":  # one row per sample (48 < 256): left as it was, convert rounds it to nearest
            assert torch.equal(learned, exact)
            continue
        assert torch.allclose(learned, learned.round(), atol=1e-3), name  # on the int8 grid: convert stores these
        assert float((learned.round() - exact).abs().max()) < 1.0 + 1e-4, name  # floor or ceil of W / s
        changed[name] = int((learned.round() != exact.round()).sum())
    assert len(changed) == 5 and all(count > 0 for count in changed.values()), changed  # every convolution
    errors = _layer_errors(rounded, original, [_tensors(s) for s in evaluation])
    convs = [n for n in layers if n != "linear"]
    assert all(errors[n][1] <= errors[n][0] for n in convs), errors
    assert sum(errors[n][1] for n in convs) < 0.95 * sum(errors[n][0] for n in convs), errors


def test_adaround_is_a_named_recipe_with_progress_and_notes(adaround_program):
    program, printed = adaround_program
    manifest = program.to_manifest()
    assert manifest["chosen"] == "histogram+adaround" and program.choice.recipe.adaround
    notes = manifest["candidates"][0]
    assert notes["adaround_layers"] + notes["adaround_kept_nearest"] == 5
    assert notes["adaround_weights_changed"] > 0 and 0 < notes["adaround_error_ratio"] < 1
    lines = [line for line in printed.splitlines() if line.startswith("int8: adaround ")]
    assert len(lines) == 6 and lines[0].startswith("int8: adaround 1/6 conv2d: output error ")
    assert lines[-1] == "int8: adaround 6/6 linear: 48 input rows (< 256), nearest rounding kept"


def test_adaround_rerun_on_the_same_weights_reuses_the_rounding(adaround_program, depthwise_program, calibration):
    """Mixed-precision variants re-run the recipe on the same float weights: no second optimisation."""
    from edgekit.quantize.adaround import adaround
    from edgekit.quantize.pt2e import split

    program, _ = adaround_program
    variant = copy.deepcopy(depthwise_program.prepared)
    records = adaround(variant, split([_tensors(s) for s in calibration], QuantConfig())[0])
    assert [r.kept for r in records] == ["cached"] * 5
    for name, layer in _layers(variant).items():
        shipped = program.prepared.get_parameter(_layers(program.prepared)[name].weight_name)
        assert torch.equal(variant.get_parameter(layer.weight_name), shipped), name
