"""How the TFLite target realises the layers automatic mixed precision keeps above int8.

The search (edgekit.quantize.auto_mixed) decides WHICH nodes leave int8, and the shared program keeps
them float for every target. TFLite has a precision between int8 and float: 16x8 (int16 activations,
int8 weights, LiteRT's integer kernels). Here the kept linears (FULLY_CONNECTED ops, found by
position: int8.kept_float_layers) are tried at 16x8 with ai-edge-quantizer's static recipe
``a16w8`` (int16 symmetric per-tensor activations, int8 symmetric per-channel weights), restricted by
regex to exactly those ops on the PT2E int8 file; ai-edge-quantizer calibrates them on the
calibration samples and inserts the QUANTIZE / DEQUANTIZE ops at the boundaries, so that two kept
linears in a row share an int16 tensor. That file and the float one are run in the LiteRT
interpreter on the held-back calibration samples the search judged, by the search's judge
(edgekit.quantize.mixed.score: what verification enforces). 16x8 ships when it meets the
tolerance and is not slower there than the float layers (``MAX_SLOWDOWN``; ``--tflite-mixed-higher
auto``, the default); else float, as on the other targets.

Why not 16x8 in the PT2E program itself (measured, litert-torch 0.10): an int8 producer feeding a
16x8 layer gives quantize(int16) of dequantize(int8), which litert-torch folds away, leaving a
FULLY_CONNECTED with int8 input and int16 output whose output the LiteRT interpreter returns as NaN
(outlier digits CNN, fc3 at int16); and a float op between the int16 output and an int8 reader
(BERT's GELU) is fused into one op that fails to verify ('tfl.gelu' op failed to verify that input
and output must have same element type).

The manifest's ``mixed_precision`` block gives each kept layer its ``precision`` (``int16x8`` or
``float``) and ``precision_why``, and ``tflite_higher`` both files' held-back scores and sizes.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from typing import Any

HIGHER_MODES = ("auto", "int16", "float")
#: 16x8 may be this much slower than the float layers in the LiteRT interpreter on the held-back
#: samples (ratio of medians, plus an absolute slack for models timed in microseconds). Measured why:
#: on MiniLM three kept 384x1536 / 1536x384 linears at 16x8 took the p50 from 6.56 to 38.46 ms
#: (XNNPACK has no int16 activations; the interpreter's builtin 16x8 kernels run them)
MAX_SLOWDOWN, SLACK_MS = 1.1, 0.05

#: ai-edge-quantizer's op config for 16x8 (its default_a16w8_recipe.json, one op at a time)
A16W8 = {
    "activation_tensor_config": {"num_bits": 16, "symmetric": True, "granularity": "TENSORWISE", "dtype": "INT"},
    "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
    "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0,
}


def higher_precision(target, model, shared, calibration, options, workdir: str, content: bytes, detail: dict,
                     mode: str = "auto") -> tuple[bytes, dict]:
    """(flatbuffer, manifest facts to merge into the int8 block) for the PT2E int8 file ``content``
    of ``shared``, whose kept layers it holds float (``detail``: what _pt2e_bytes recorded)."""
    from edgekit.quantize.pt2e import split
    from edgekit.targets.tflite.int8 import fully_connected_ops, kept_float_layers

    kept_layers = (shared.mixed or {}).get("kept") or []
    if (shared.mixed or {}).get("shipped") != "mixed" or not kept_layers:
        return content, {}
    facts: dict[str, Any] = {"asked": mode}
    kept_fcs, unaligned = kept_float_layers(shared.converted(fold_quantize=False), fully_connected_ops(content))
    by_module = {fc.module: fc for fc in kept_fcs}
    chosen = {k["node"]: by_module[k["module_path"]] for k in kept_layers if k.get("module_path") in by_module}
    not_linear = ("not a linear: 16x8 is realised for the FULLY_CONNECTED ops the kept linears lower to "
                  "(found by position); other kept ops stay float")
    float_why = {k["node"]: unaligned or not_linear for k in kept_layers if k["node"] not in chosen}
    if mode == "float" or not chosen or getattr(options, "io", "float") != "float":
        facts["chosen"] = "float"
        facts["why"] = ("asked for (--tflite-mixed-higher float)" if mode == "float" else
                        "no kept layer can run 16x8" if not chosen else
                        "--io int8: 16x8 is tried on float-I/O files only (ai-edge-quantizer calibrates with float feeds)")
        return content, _block(shared, facts, {}, float_why)
    heldout = split(list(calibration), shared.config)[1]
    try:
        content16 = int16x8_layers(content, [fc.scope for fc in chosen.values()], calibration, workdir)
        ops16 = _int16x8_ops(content16, workdir)
        judge = _Judge(model, options, heldout, workdir)
        float_score, int16_score = judge(content), judge(content16)
    except Exception as exc:  # noqa: BLE001 - 16x8 is an improvement: the float layers still ship
        from edgekit.errors import first_line

        facts["chosen"], facts["why"] = "float", f"16x8 failed: {type(exc).__name__}: {first_line(exc)}"
        return content, _block(shared, facts, {}, float_why)
    facts["heldout_samples"] = len(heldout)
    facts["float"] = {"bytes": len(content), "p50_ms": round(judge.p50[0], 4), **float_score.to_json()}
    facts["int16x8"] = {"bytes": len(content16), "p50_ms": round(judge.p50[1], 4), "ops_16x8": ops16,
                        **int16_score.to_json()}
    if mode == "auto" and ops16 < len(chosen):
        facts["chosen"] = "float"
        facts["why"] = f"the 16x8 file runs {ops16} of the {len(chosen)} kept linears with int16 activations"
    elif mode == "auto" and not int16_score.passed:
        facts["chosen"] = "float"
        facts["why"] = (f"16x8 misses the tolerance on {len(heldout)} held-back samples in the LiteRT interpreter "
                        f"({'; '.join(int16_score.reasons[:2])}); float: cosine {float_score.cosine:.6f}"
                        + ("" if float_score.passed else " (misses it too)"))
    elif mode == "auto" and judge.p50[1] > MAX_SLOWDOWN * judge.p50[0] + SLACK_MS:
        facts["chosen"] = "float"
        facts["why"] = (f"16x8 meets the tolerance but runs slower in the LiteRT interpreter here: p50 "
                        f"{judge.p50[1]:.3f} ms vs {judge.p50[0]:.3f} ms with the layers float (more than "
                        f"{MAX_SLOWDOWN}x; XNNPACK has no int16 activations)")
    else:
        facts["chosen"] = "int16x8"
        facts["why"] = ("asked for (--tflite-mixed-higher int16)" if mode == "int16" else
                        f"16x8 meets the tolerance on {len(heldout)} held-back samples in the LiteRT interpreter "
                        f"(cosine {int16_score.cosine:.6f}, float: {float_score.cosine:.6f}) and stores the kept "
                        f"weights int8: {len(content16):,} bytes instead of {len(content):,}")
    if facts["chosen"] == "float":
        return content, _block(shared, facts, {}, float_why)
    if "float_linear_layers" in detail:
        detail["int16x8_linear_layers"] = {"layers": [fc.module for fc in chosen.values()],
                                           "why": "kept above int8 by mixed precision: 16x8 (int16 activations, "
                                                  "int8 weights; ai-edge-quantizer a16w8 on these ops only)"}
        detail.pop("float_linear_layers")
    return content16, _block(shared, facts, chosen, float_why)


def int16x8_layers(content: bytes, scopes, calibration, workdir: str) -> bytes:
    """``content`` with the FULLY_CONNECTED ops named by ``scopes`` (their output tensor names, as
    ai-edge-quantizer's recipes match ops) at 16x8, calibrated on ``calibration``; every other op
    left as it is."""
    import io

    from ai_edge_quantizer import quantizer

    from edgekit.targets.tflite.runtime import TFLiteRuntime
    from edgekit.targets.tflite.target import SIGNATURE

    rules = [{"regex": "^" + re.escape(scope) + "$", "operation": "FULLY_CONNECTED",
              "algorithm_key": "min_max_uniform_quantize", "op_config": copy.deepcopy(A16W8)} for scope in scopes]
    with _written(content, workdir, "int16x8_inputs.tflite") as path:
        inputs = TFLiteRuntime().load(path).inputs()
    # the file's own input types (token ids: int32 in the file, int64 in PyTorch)
    feeds = [{spec.name: _as_dtype(x, spec.dtype) for spec, x in zip(inputs, sample)} for sample in calibration]
    qt = quantizer.Quantizer(content)
    qt.load_quantization_recipe(rules)
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints sizes and progress bars
        result = qt.calibrate({SIGNATURE: feeds})
        return bytes(qt.quantize(result).quantized_model)


def _as_dtype(value, dtype: str):
    import numpy as np

    array = np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)
    return array.astype(np.dtype(dtype)) if dtype else array


def _int16x8_ops(content: bytes, workdir: str) -> int:
    """Compute ops of the file with int16 activations and int8 weights."""
    from edgekit.quantize.artifact_coverage import tflite_coverage

    with _written(content, workdir, "int16x8_check.tflite") as path:
        return sum(1 for op in tflite_coverage(path, "int8").ops if op.kind == "int16x8")


@contextlib.contextmanager
def _written(content: bytes, workdir: str, name: str):
    """``content`` as a file in ``workdir`` for as long as the block runs (LiteRT and the coverage
    reader take paths)."""
    path = os.path.join(workdir, name)
    with open(path, "wb") as fh:
        fh.write(content)
    try:
        yield path
    finally:
        os.remove(path)


class _Judge:
    """Scores a .tflite on held-back samples in the LiteRT interpreter by the search's judge."""

    def __init__(self, model, options, heldout, workdir: str):
        from edgekit.quantize.shared import judging

        self.model, self.heldout, self.workdir = model, heldout, workdir
        self.judging = judging(model, options)
        self.reference = [[_as_dtype(o, "") for o in out] for out in model.reference_many(heldout)]
        self.p50: list[float] = []  # median ms of one call, per file judged

    def __call__(self, content: bytes):
        from edgekit.quantize.mixed import score
        from edgekit.targets.tflite.runtime import TFLiteRuntime
        from edgekit.verify import output_order, run_artifact

        with _written(content, self.workdir, "judged.tflite") as path:
            runtime = TFLiteRuntime().load(path)
            order = output_order(self.model.output_names, [o.name for o in runtime.outputs()])
            run_artifact(runtime, self.heldout[0])  # warm-up (allocations, delegate set-up)
            got, times = [], []
            for sample in self.heldout:
                start = time.perf_counter()
                out = run_artifact(runtime, sample)
                times.append(1000 * (time.perf_counter() - start))
                got.append([_as_dtype(out[i], "") for i in order])
            self.p50.append(float(sorted(times)[len(times) // 2]))
        j = self.judging
        return score(self.reference, got, j["tolerance"], j["real_inputs"], j["names"], j["roles"])


def _block(program, facts: dict, int16: dict, float_why: dict) -> dict:
    """The manifest's mixed_precision block for this file: each kept layer's precision and why (a
    copy: the shared program's block is every target's)."""
    mixed = copy.deepcopy(program.mixed or {})
    for kept in mixed.get("kept") or []:
        if kept["node"] in int16:
            kept["precision"] = "int16x8"
            kept["precision_why"] = "TFLite 16x8 (int16 activations, int8 weights): " + facts["why"]
        else:
            kept["precision"] = "float"
            kept["precision_why"] = float_why.get(kept["node"]) or facts["why"]
    mixed["tflite_higher"] = facts
    return {"mixed_precision": mixed}
