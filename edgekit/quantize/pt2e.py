"""Quantize an exported program once, with PT2E, choosing the calibration recipe by measurement.

``quantize_program`` splits the calibration samples into a part that calibrates and a HELD-BACK part
that judges: each candidate recipe (activation observer, ...) is calibrated on the first and scored
on the second against the float program by what verification enforces, top-1 agreement on the
inputs where the float model is confident, then cosine. Cosine on the
calibration samples themselves is not a judge: it favoured a recipe that flipped half of the
confident predictions of a real CNN (issue 11). The winner then sees the held-back samples too
(observers accumulate), so the shipped ranges come from every calibration sample.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from edgekit.errors import ConversionError, UsageError
from edgekit.quantize.config import Candidate, QuantConfig, Recipe


@dataclass
class QuantizedProgram:
    """The shared int8 decision: the calibrated (observed) graph and how it was chosen."""

    prepared: Any  # torch.fx.GraphModule with observers, calibrated on every calibration sample
    quantizer: Any
    choice: Candidate
    candidates: list[Candidate]
    config: QuantConfig
    calibration_samples: int
    heldout_samples: int
    reason: str
    coverage: Any = None  # edgekit.quantize.coverage.Coverage of the converted graph
    mixed: dict | None = None  # the mixed-precision search (edgekit.quantize.auto_mixed), for the manifest
    recurrent: dict | None = None  # LSTMs packed before annotation (pack_recurrent), for the manifest
    source: Any = field(default=None, repr=False)  # the ExportedProgram prepared (LSTMs packed): same node names
    _converted: dict = field(default_factory=dict, repr=False)

    @property
    def module(self):
        """The converted (quantize/dequantize reference) graph, weights left as float + Q/DQ."""
        return self.converted(fold_quantize=False)

    def converted(self, fold_quantize: bool = True):
        """convert_pt2e of a copy of the calibrated graph (cached; callers must not modify it).

        ``fold_quantize=True`` stores weights as int8 constants (ExecuTorch, ONNX); litert-torch
        wants them unfolded (float weight -> quantize -> dequantize) and folds them itself.
        """
        if fold_quantize not in self._converted:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

            self._converted[fold_quantize] = convert_pt2e(copy.deepcopy(self.prepared), fold_quantize=fold_quantize)
        return self._converted[fold_quantize]

    def to_manifest(self) -> dict[str, Any]:
        out = {
            "recipe": "PT2E static int8: per-channel symmetric int8 weights, int8 activations, "
                      "conv/linear fused with clamp activations (edgekit.quantize)",
            "observer": self.choice.recipe.observer,
            "chosen": self.choice.name,
            "why": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
            "calibration_samples": self.calibration_samples,
            "heldout_samples": self.heldout_samples,
        }
        from edgekit.quantize.annotate import embedding_tables, float_decisions

        out["kept_float"] = float_decisions(self.converted(fold_quantize=True))
        if self.recurrent is not None:
            out["recurrent"] = self.recurrent
            packed = any(key.startswith("packed_") for key in self.recurrent)
            bmm = out["kept_float"].pop("bmm", None) if packed else None
            if bmm:  # not attention scores here: the recurrence of a packed LSTM/GRU/RNN (both directions per bmm)
                out["kept_float"]["recurrent_matmul"] = {
                    "count": bmm["count"],
                    "why": "a recurrent layer's state x recurrent-weight batched matmul, one per step (both directions): "
                           "edgekit's annotator quantizes no bmm, so the recurrent weights and the state fed "
                           "back each step stay float32; the input projections are int8 linears"}
        tables = embedding_tables(self.converted(fold_quantize=True))
        if tables:
            out["embeddings"] = {"scheme": "int8 weight-only, one symmetric scale per row; the artifact gathers "
                                           "int8 rows and scales only those (edgekit.quantize.embeddings)",
                                 "tables": tables}
        if self.config.float_nodes:
            out["float_nodes"] = list(self.config.float_nodes)
        if self.coverage is not None:
            out["coverage"] = self.coverage.to_dict()
        if self.mixed is not None:
            out["mixed_precision"] = self.mixed
        return out


def _tensors(sample) -> tuple:
    import numpy as np
    import torch

    return tuple(a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a)) for a in sample)


def _flat_outputs(out) -> list:
    import torch
    from torch.utils import _pytree as pytree

    return [t.detach().double() for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def run_graph(module, samples: Sequence[tuple]) -> list[list]:
    """Outputs (flattened float tensors, float64) of ``module`` for each sample."""
    import torch

    with torch.no_grad():
        return [_flat_outputs(module(*s)) for s in samples]


def agreement(reference: list[list], candidate: list[list]) -> dict[str, Any]:
    """Top-1 agreement (all / confident) over class-score-like outputs, and worst-output cosine."""
    import torch

    scores: dict[str, Any] = {"cosine": None, "top1": None, "top1_confident": None, "confident": 0}
    if not reference:
        return scores
    cosines, agree, agree_confident = [], [], []
    for k in range(len(reference[0])):
        ref = torch.stack([r[k].flatten() for r in reference])
        got = torch.stack([c[k].flatten() for c in candidate])
        cosines.append(float(torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0)))
        last = reference[0][k].shape[-1] if reference[0][k].dim() else 1
        if reference[0][k].dim() >= 1 and 2 <= last and reference[0][k].numel() == last:
            confident = _confident(ref)
            same = ref.argmax(-1) == got.argmax(-1)
            agree.append(float(same.double().mean()))
            if confident.any():
                agree_confident.append(float(same[confident].double().mean()))
            scores["confident"] = max(scores["confident"], int(confident.sum()))
    scores["cosine"] = min(cosines)
    if agree:
        scores["top1"] = min(agree)
        scores["top1_confident"] = min(agree_confident) if agree_confident else scores["top1"]
    return scores


def _confident(rows):
    """Verification's rule, the one definition (edgekit.verify_roles.confident_rows: FP32's top-1
    probability >= CONFIDENT_PROB and CONFIDENT_MARGIN above the second, rows read as probabilities,
    log-probabilities or logits as verification reads them), so that the recipe choice and the
    mixed-precision search judge the inputs verification judges."""
    import torch

    from edgekit.verify_roles import confident_rows, row_kind

    values = rows.detach().double().numpy()
    return torch.from_numpy(confident_rows(values, row_kind(values)))


def split(samples: Sequence, config: QuantConfig) -> tuple[list, list]:
    """(calibrate, held back): a seeded shuffle; nothing held back when there are too few samples."""
    import random

    n_held = max(config.min_heldout, round(len(samples) * config.heldout_fraction))
    if len(samples) - n_held < config.min_heldout:
        return list(samples), []
    order = list(range(len(samples)))
    random.Random(config.seed).shuffle(order)
    held = sorted(order[:n_held])
    rest = sorted(order[n_held:])
    return [samples[i] for i in rest], [samples[i] for i in held]


def canonical_convolutions(graph_module) -> int:
    """Rewrite ``aten.convolution`` (what TorchScript archives and some exporters produce) into
    ``aten.conv1d/2d/3d``, the ops PT2E's BatchNorm folding and the quantizers' patterns match.

    Without it a TorchScript-loaded CNN kept float convolutions and unfolded BatchNorm under
    ``--quantize int8`` (issue 11 item 6). Returns the number of ops rewritten.
    """
    import torch

    aten = torch.ops.aten
    by_rank = {1: aten.conv1d.default, 2: aten.conv2d.default, 3: aten.conv3d.default}
    count = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target not in (aten.convolution.default, aten._convolution.default):
            continue
        x, weight, bias, stride, padding, dilation, transposed, _output_padding, groups = node.args[:9]
        if transposed or len(stride) not in by_rank:
            continue
        node.target = by_rank[len(stride)]
        node.args = (x, weight, bias, list(stride), list(padding), list(dilation), groups)
        node.kwargs = {}
        count += 1
    if count:
        _buffers_as_parameters(graph_module)
        graph_module.recompile()
    return count


def _buffers_as_parameters(graph_module) -> None:
    """Conv and BatchNorm weights that a converted TorchScript graph holds as buffers become
    parameters: PT2E's BatchNorm folding re-registers the folded weight as a parameter under the
    same name and fails on a buffer ("attribute 'weight' already exists")."""
    import torch

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.linear.default}
    norms = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
    names = set()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in convs | norms:
            for arg in node.args[1:3]:
                if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                    names.add(arg.target)
    buffers = dict(graph_module.named_buffers())
    for name in names & set(buffers):
        owner_name, _, field = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        tensor = owner._buffers.pop(field)
        owner.register_parameter(field, torch.nn.Parameter(tensor, requires_grad=False))


def pack_recurrent(exported_program) -> tuple[Any, dict | None]:
    """(program, facts): every static-shape ``aten.lstm`` / ``aten.gru`` / ``aten.rnn_*`` rebuilt as
    one input-projection linear per direction and layer + a matmul per step
    (targets/executorch/recurrent.py) BEFORE annotation, so the input projections (most of a
    recurrent layer's weights when the input is wider than the state) are int8 linears; the aten
    recurrent ops themselves are quantized by no PT2E quantizer and would stay float32. Facts are
    None when the program has none; a failed packing keeps the program as it is."""
    from edgekit.targets.executorch.recurrent import pack_recurrent_layers, packable_op

    if not any(packable_op(n) for n in exported_program.graph_module.graph.nodes):
        return exported_program, None
    try:
        packed, facts = pack_recurrent_layers(exported_program)
    except Exception as exc:  # noqa: BLE001 - the unpacked layer still quantizes its other layers; the coverage check judges
        return exported_program, {"not_packed": [_first_line(exc)]}
    if packed is None:
        return exported_program, facts
    return packed, facts


def _prepare(graph_module, recipe: Recipe, config: QuantConfig, samples: Sequence[tuple], say=None):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from edgekit.quantize.annotate import edgekit_quantizer

    from edgekit.quantize.algorithms import after_calibrate, before_prepare

    quantizer = edgekit_quantizer(recipe, config)
    graph = copy.deepcopy(graph_module)
    notes = before_prepare(graph, recipe, samples)  # CLE / SmoothQuant (nothing for a plain observer)
    prepared = prepare_pt2e(graph, quantizer)
    calibrate(prepared, samples)
    notes.update(after_calibrate(prepared, recipe, samples, say=say))  # AdaRound, bias correction
    prepared.meta["edgekit_algorithms"] = notes
    return prepared, quantizer


def calibrate(prepared, samples: Sequence[tuple]) -> None:
    import torch

    with torch.no_grad():
        for sample in samples:
            prepared(*sample)


def quantize_program(exported_program, calibration_samples: Sequence, config: QuantConfig | None = None,
                     reporter=None) -> QuantizedProgram:
    """Static int8 of ``exported_program`` (see the module docstring)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgekit.quantize.coverage import graph_coverage

    config = config or QuantConfig()
    samples = [_tensors(s) for s in calibration_samples]
    if not samples:
        raise UsageError("--quantize int8 needs calibration samples (--calibration PATH, or 'random')")
    exported_program, recurrent = pack_recurrent(exported_program)
    graph = copy.deepcopy(exported_program.module())
    canonical_convolutions(graph)
    from edgekit.quantize.smoothquant import has_norm_linear

    recipes = config.candidates(norm_linear=has_norm_linear(graph))
    calibrate_part, heldout = split(samples, config)
    if not heldout or len(recipes) == 1:
        recipes = recipes[:1]
    reference = run_graph(graph, heldout) if heldout and len(recipes) > 1 else []
    tried: list[Candidate] = []
    best = None  # (candidate, prepared, quantizer)
    for recipe in recipes:
        if reporter is not None:
            reporter.info(f"int8: calibrating {recipe.name} on {len(calibrate_part)} samples"
                          + (f", scoring on {len(heldout)} held back" if reference else ""))
        start = time.perf_counter()
        candidate = Candidate(recipe, heldout_inputs=len(heldout) if reference else 0)
        try:
            prepared, quantizer = _prepare(graph, recipe, config, calibrate_part,
                                           say=reporter.info if reporter is not None else None)
            candidate.notes.update(prepared.meta.get("edgekit_algorithms", {}))
            if reference:
                scores = agreement(reference, run_graph(convert_pt2e(copy.deepcopy(prepared)), heldout))
                candidate.cosine, candidate.top1 = scores["cosine"], scores["top1"]
                candidate.top1_confident, candidate.confident_inputs = scores["top1_confident"], scores["confident"]
        except Exception as exc:  # one recipe failing must not stop the others
            candidate.error = _first_line(exc)
            prepared = quantizer = None
        candidate.seconds = time.perf_counter() - start
        tried.append(candidate)
        if prepared is not None and (best is None or candidate.key() > best[0].key()):
            best = (candidate, prepared, quantizer)
    if best is None:
        raise ConversionError(f"PT2E int8 quantization failed: {tried[0].error}")
    choice, prepared, quantizer = best
    calibrate(prepared, heldout)  # ship ranges from every calibration sample
    reason = _reason(choice, tried, heldout)
    result = QuantizedProgram(prepared, quantizer, choice, tried, config, len(samples), len(heldout) if reference else 0, reason,
                              recurrent=recurrent, source=exported_program)
    result.coverage = graph_coverage(result.converted(fold_quantize=True))
    return result


def _reason(choice: Candidate, tried: list[Candidate], heldout: list) -> str:
    if len(tried) == 1:
        if not heldout:
            return f"{choice.name}: the default (too few calibration samples to hold some back and compare)"
        return f"{choice.name}: the one asked for"
    return (f"{choice.name}: best of {len(tried)} on {len(heldout)} held-back calibration samples "
            "(top-1 agreement on confident inputs, then cosine)")


def simulate(result: QuantizedProgram, samples: Sequence) -> list[list]:
    """Outputs of the int8 simulation (the converted reference graph) on ``samples``."""
    return run_graph(result.converted(fold_quantize=True), [_tensors(s) for s in samples])


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
