"""Static int8 for TFLite: the shared PT2E decision (edgekit.quantize) converted by litert-torch,
or ai-edge-quantizer's static recipe on the float .tflite, whichever agrees better with the float
model on held-back calibration samples.

Judging: both routes are calibrated on the same calibration part and scored on the same held-back
part (never on samples they were calibrated on) by what verification enforces: top-1 agreement on
confident inputs, then cosine. The PT2E route's scores come from the shared
search (its int8 graph simulated in PyTorch, the graph litert-torch converts); ai-edge-quantizer's
from its .tflite run in the LiteRT interpreter. The earlier rule (cosine on the calibration samples)
kept a recipe that flipped half the confident predictions of a real CNN (issue 11).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence

from edgekit.errors import ConversionError, EdgekitError, UsageError

INT8_ROUTES = ("auto", "pt2e", "aeq")


def check_route(route: str) -> str:
    if route not in INT8_ROUTES:
        raise UsageError(f"unknown TFLite int8 route {route!r}; valid: {', '.join(INT8_ROUTES)}")
    return route


def static_int8(target, model, options, calibration, workdir: str, route: str,
                mixed_higher: str = "auto") -> tuple[bytes, dict[str, Any]]:
    """(flatbuffer bytes, manifest facts) of the static int8 artifact by ``route``; the layers mixed
    precision keeps above int8 run 16x8 or float as ``mixed_higher`` decides (targets/tflite/int16x8.py)."""
    from edgekit.quantize.config import Candidate, Recipe
    from edgekit.quantize.pt2e import split
    from edgekit.quantize.shared import int8_program
    from edgekit.targets.tflite.int16x8 import higher_precision

    check_route(route)
    if not calibration:
        raise UsageError("--quantize int8 needs calibration samples (--calibration PATH, or 'random')")
    detail: dict[str, Any] = {"asked": route}
    errors: dict[str, str] = {}
    pt2e_bytes = shared = None
    higher: dict[str, Any] = {}
    if route in ("auto", "pt2e"):
        try:
            shared = int8_program(model, calibration, options)
            pt2e_bytes = _pt2e_bytes(target, model, shared, options, workdir, detail)
            pt2e_bytes, higher = higher_precision(target, model, shared, calibration, options, workdir,
                                                  pt2e_bytes, detail, mixed_higher)
        except EdgekitError as exc:
            if route == "pt2e":
                raise
            errors["pt2e"] = str(exc)
        except Exception as exc:
            from edgekit.export import describe_conversion_error

            if route == "pt2e":
                raise describe_conversion_error(exc, model, "litert-torch (PT2E int8)") from exc
            errors["pt2e"] = str(describe_conversion_error(exc, model, "litert-torch (PT2E int8)"))
    if shared is not None:
        detail.update(shared.to_manifest())
        detail.update(higher)  # the kept layers' precision in this file
    calibrate_part, heldout = split(calibration, shared.config if shared else _default_config(options))
    judged = route == "auto" and pt2e_bytes is not None and heldout and shared.heldout_samples
    if route == "pt2e" or (route == "auto" and pt2e_bytes is not None and not judged):
        detail["route"] = "pt2e"
        detail["route_why"] = ("asked for" if route == "pt2e" else
                               "too few calibration samples to hold some back and compare routes: the PT2E default")
        return pt2e_bytes, _with_errors(detail, errors)
    if route == "aeq" or pt2e_bytes is None:
        detail["route"] = "aeq"
        detail["route_why"] = "asked for" if route == "aeq" else f"PT2E failed: {errors.get('pt2e')}"
        return _aeq_bytes(target, model, calibration, options, workdir), _with_errors(detail, errors)
    # auto with both: ai-edge-quantizer calibrated on the same part, scored on the same held-back part
    pt2e_score = shared.choice
    aeq_score = Candidate(Recipe("aeq-static"))
    try:
        aeq_trial = _aeq_bytes(target, model, calibrate_part, options, workdir)
        _score_tflite(aeq_score, aeq_trial, model, heldout, workdir)
    except ConversionError as exc:
        aeq_score.error = str(exc)
    detail["routes"] = {"pt2e": pt2e_score.to_dict(), "aeq": aeq_score.to_dict()}
    if aeq_score.key() > pt2e_score.key():
        detail["route"] = "aeq"
        detail["route_why"] = f"ai-edge-quantizer agreed better with FP32 on {len(heldout)} held-back samples"
        return _aeq_bytes(target, model, calibration, options, workdir), _with_errors(detail, errors)
    detail["route"] = "pt2e"
    detail["route_why"] = f"PT2E agreed at least as well with FP32 on {len(heldout)} held-back samples"
    return pt2e_bytes, _with_errors(detail, errors)


def _default_config(options):
    from edgekit.quantize.shared import config_from_options

    return config_from_options(options)


def _with_errors(detail: dict, errors: dict) -> dict:
    if errors:
        detail["errors"] = errors
    return detail


def _pt2e_bytes(target, model, shared, options, workdir: str, detail: dict | None = None) -> bytes:
    import copy

    import torch
    from litert_torch.quantize.quant_config import QuantConfig

    from edgekit.quantize.coverage import require_quantized
    from edgekit.quantize.embeddings import gather_rows
    from edgekit.targets.tflite.io_types import to_float_io

    require_quantized(shared.coverage, "tflite int8 (PT2E)")
    path = os.path.join(workdir, "pt2e.tflite")
    # litert-torch reads only ``global_config.is_dynamic`` from the quantizer (static QDQ mode)
    graph = shared.converted(fold_quantize=False)
    if any(n.target is torch.ops.aten.embedding.default for n in graph.graph.nodes):
        graph = copy.deepcopy(graph)  # the cached graph is shared with the other targets
        gather_rows(graph)  # int8 tables: GATHER int8 rows, then scale (edgekit/quantize/embeddings.py)
    target._convert_float(model, path, graph, QuantConfig(pt2e_quantizer=shared.quantizer))
    with open(path, "rb") as fh:
        content = fh.read()
    os.remove(path)
    content = to_float_io(content) if options.io == "float" else content
    fcs = fully_connected_ops(content)
    kept, unaligned = kept_float_layers(graph, fcs)
    kept_at = {fc.position for fc in kept}
    hybrid = [fc for fc in fcs if fc.float_weight and fc.position not in kept_at]
    if unaligned and hybrid:  # kept-float layers cannot be told from folded int8 ones: touch nothing
        if detail is not None:
            detail["float_output_layers"] = {"count": 0, "left_float": len(hybrid), "why": unaligned}
        return content
    if kept and detail is not None:
        detail["float_linear_layers"] = {
            "layers": [fc.module for fc in kept],
            "why": "kept float by mixed precision (linears of the int8 program without int8 weights)",
        }
    if not hybrid:
        return content
    content = int8_float_output_layers(content, keep=[fc.scope for fc in kept])
    after = fully_connected_ops(content)
    if any(not after[fc.position].float_weight for fc in kept) or len(after) != len(fcs):
        raise EdgekitError(f"edgekit bug: requantizing the float-output layers of the int8 .tflite also "
                           f"quantized a layer mixed precision kept float ({', '.join(fc.module for fc in kept)})")
    left = sum(1 for fc in after if fc.float_weight) - len(kept)
    if detail is not None:
        detail["float_output_layers"] = {
            "count": len(hybrid) - left,
            "lowered_as": "hybrid FULLY_CONNECTED: int8 per-channel weights, input quantized per call, float output "
                          "(ai-edge-quantizer dynamic-range recipe on these ops only)",
            "why": "TFLite has no static int8 FULLY_CONNECTED with a float output; these layers keep one "
                   "(the residual stream: kept_float)",
            **({"left_float": left} if left else {}),
        }
    return content


@dataclass(frozen=True)
class FullyConnected:
    """One FULLY_CONNECTED op of a .tflite flatbuffer, in operator order."""
    position: int  # among the FULLY_CONNECTED ops of the file
    scope: str  # its output tensor names, as ai-edge-quantizer's recipes match ops
    shape: tuple[int, ...]  # of its weight: (out features, in features), as torch stores a linear's
    float_weight: bool  # the weight is stored float32
    module: str = ""  # the PyTorch module path of the linear it lowers (set when aligned)


_FULLY_CONNECTED = 9  # BuiltinOperator.FULLY_CONNECTED in the TFLite schema
_FLOAT32 = 0  # TensorType.FLOAT32


def fully_connected_ops(content: bytes) -> list[FullyConnected]:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(content)
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != _FULLY_CONNECTED or len(op.inputs) < 2:
                continue
            weight = subgraph.tensors[op.inputs[1]]
            found.append(FullyConnected(len(found), fb.get_op_scope(op, subgraph.tensors),
                                        tuple(int(d) for d in weight.shape), weight.type == _FLOAT32))
    return found


def program_linears(graph) -> list[tuple[str, tuple[int, ...], bool]]:
    """(module path, weight shape, int8 weight?) of every linear of a converted PT2E GraphModule, in
    graph order. A quantized linear reads its weight through a dequantize node; a linear that mixed
    precision keeps float reads the float parameter itself."""
    import torch

    linears = []
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.linear.default:
            continue
        weight = node.args[1]
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        module = stack[-1][0] if stack else node.name
        linears.append((module, _constant_shape(graph, weight), "dequantize" in str(getattr(weight, "target", ""))))
    return linears


def _constant_shape(graph, node) -> tuple[int, ...]:
    """Shape of the constant behind ``node`` (through its quantize / dequantize chain); () if none."""
    while getattr(node, "op", None) == "call_function" and node.args:
        node = node.args[0]
    if getattr(node, "op", None) != "get_attr":
        return ()
    value = graph
    for part in node.target.split("."):
        value = getattr(value, part, None)
    return tuple(int(d) for d in getattr(value, "shape", ()))


def kept_float_layers(graph, fcs: list[FullyConnected]) -> tuple[list[FullyConnected], str]:
    """The FULLY_CONNECTED ops that lower the linears the program keeps float, and "" ; or [] and why
    they cannot be told apart. Aligned by position: litert-torch lowers every linear to one
    FULLY_CONNECTED in graph order. Weight values cannot tell them apart (a folded int8 weight and a
    float weight are both float32 constants), so the alignment is checked by structure: as many ops
    as linears, the same weight shapes, and every kept-float linear's op holding a float32 weight."""
    linears = program_linears(graph)
    if all(int8 for _, _, int8 in linears):
        return [], ""
    if len(linears) != len(fcs):
        return [], (f"{len(fcs)} FULLY_CONNECTED ops for {len(linears)} linear layers: the layers mixed "
                    "precision keeps float cannot be told from the int8 ones, so none was requantized")
    kept = []
    for (module, shape, int8), fc in zip(linears, fcs):
        if shape and shape != fc.shape or (not int8 and not fc.float_weight):
            return [], (f"FULLY_CONNECTED op {fc.position} (weight {list(fc.shape)}) does not lower linear "
                        f"{module} ({list(shape)}): the layers mixed precision keeps float cannot be told "
                        "from the int8 ones, so none was requantized")
        if not int8:
            kept.append(dataclasses.replace(fc, module=module))
    return kept, ""


def int8_float_output_layers(content: bytes, keep: Sequence[str] = ()) -> bytes:
    """int8 weights for the linear layers the shared program keeps with a FLOAT output (a transformer's
    residual stream, edgekit.quantize.annotate). TFLite has no static int8 FULLY_CONNECTED with a float
    output, so litert-torch folds their int8 weights back into float32 constants (MiniLM: 36.7 MB
    instead of 23.5 MB). ai-edge-quantizer's dynamic-range recipe, restricted to FULLY_CONNECTED ops
    that still hold float weights, stores them int8 per channel and runs them as hybrid kernels
    (input quantized per call); every static int8 op, and every op whose scope is in ``keep`` (the
    linears mixed precision keeps float), is left as it is. Measured on MiniLM + intent
    head: cosine to FP32 0.9950 -> 0.9945, 0.40x -> 0.26x of FP32, 9.4 -> 3.8 ms per call here."""
    import contextlib
    import io
    import re

    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rules = recipe.dynamic_wi8_afp32()
    for rule in rules:
        rule["operation"] = "FULLY_CONNECTED"
    # later rules win: the kept-float layers by their exact scope
    rules += [{"regex": "^" + re.escape(scope) + "$", "operation": "FULLY_CONNECTED",
               "algorithm_key": AlgorithmName.NO_QUANTIZE} for scope in keep]
    qt = quantizer.Quantizer(content)
    qt.load_quantization_recipe(rules)
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints sizes and progress bars
        return bytes(qt.quantize().quantized_model)


def _aeq_bytes(target, model, calibration, options, workdir: str) -> bytes:
    float_path = os.path.join(workdir, "float.tflite")
    if not os.path.exists(float_path):
        target._convert_float(model, float_path)
    return target._aeq(float_path, "int8", calibration, io=options.io)


def _score_tflite(candidate, content: bytes, model, samples, workdir: str) -> None:
    """Fill ``candidate``'s held-out scores from the .tflite run in the LiteRT interpreter."""
    import numpy as np
    import torch

    from edgekit.quantize.pt2e import agreement
    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.verify import output_order, run_artifact

    path = os.path.join(workdir, "candidate.tflite")
    with open(path, "wb") as fh:
        fh.write(content)
    runtime = TFLiteRuntime().load(path)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    def as_tensors(outputs) -> list:
        return [torch.from_numpy(np.asarray(o, dtype=np.float64)) for o in outputs]

    reference = [as_tensors(r) for r in model.reference_many(samples)]
    got = [as_tensors([out[i] for i in order]) for out in (run_artifact(runtime, s) for s in samples)]
    os.remove(path)
    scores = agreement(reference, got)
    candidate.cosine, candidate.top1 = scores["cosine"], scores["top1"]
    candidate.top1_confident, candidate.confident_inputs = scores["top1_confident"], scores["confident"]
    candidate.heldout_inputs = len(samples)
