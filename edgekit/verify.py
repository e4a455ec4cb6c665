"""Parity between an artifact and the original model: one function for every target.

The artifact runs through its target's Runtime; the original runs in eager PyTorch on the same
samples. Per output: max and mean absolute error, the error relative to the original's largest value,
cosine similarity and SNR (dB) on the positions finite in both, the NaN/Inf counts of each side, and
top-1 agreement where the output holds class scores. Each output has a role (edgekit/verify_roles.py:
class scores, regression, state, embedding, other), detected with care or declared with
``--output-role``, and is checked with that role's measure.

Why top-1 is enforced on the inputs where FP32 is confident: a flip where the original itself
hesitates (top-1 probability 0.31 against 0.29) is noise of the quantization grid, not the failure a
user fears; a flip on a clear input is. The enforced number is therefore the agreement on rows where
FP32's top-1 probability is >= 0.5 and 0.2 above the runner-up; the agreement on all rows is reported
beside it. With fewer than MIN_CONFIDENT confident rows the confident number says too little, so the
agreement on all rows is enforced instead, and the parity says which (``enforced``). Top-1 is enforced
only on real inputs: random inputs make argmax noise.

Non-finite values never raise: a model may produce NaN/Inf on some inputs (that is the user's model,
not a failure), but an artifact whose NaN/Inf pattern differs from the original's fails.

Stateful models (an output that the next call takes back as an input, e.g. an LSTM's (h, c)) are
verified over sequences of steps: each side's state outputs feed its own next step, and every step
is compared, so that an artifact that drops or corrupts its state fails even when one step matches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from edgekit.errors import UsageError
from edgekit.options import Tolerance
from edgekit.verify_roles import (
    DETECTION_VALUES, DEFAULT_STATE_STEPS, MIN_CONFIDENT, StatePair, class_rows, confident_rows, detect_role, resolve_state_pairs,
    roles_from, row_kind,
)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class OutputParity:
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    snr_db: float
    top1: float | None  # the enforced measure (see top1_on); None when the role is not class scores
    role: str = "other"
    role_reason: str = ""
    max_rel: float | None = None  # max_abs / the original's largest |value|
    top1_all: float | None = None  # agreement on every row (informational on other roles)
    top1_confident: float | None = None  # agreement on the rows where FP32 is confident
    confident_samples: int | None = None  # how many rows those are
    rows: int | None = None  # rows (samples, or samples x steps/tokens) top-1 was read on
    top1_on: str | None = None  # which of the two "top1" holds: confident | all
    enforced: str | None = None  # top1_on when top-1 is enforced (real inputs), else None
    nonfinite: dict[str, int] = field(default_factory=lambda: {"reference": 0, "artifact": 0, "mismatched": 0})

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in self.__dict__.items()}


@dataclass
class Parity:
    status: str  # passed | failed | unverified | skipped
    outputs: list[OutputParity] = field(default_factory=list)
    tolerance: Tolerance | None = None
    samples: int = 0
    data: str | None = None  # where the eval inputs came from
    real_inputs: bool = False
    reasons: list[str] = field(default_factory=list)  # why it failed or was not run
    stateful: dict[str, Any] | None = None  # sequences, steps, pairs, per-step worst values
    greedy: dict[str, Any] | None = None  # --decoder: greedy tokens vs eager (edgekit/generate.py)

    @property
    def worst_cosine(self) -> float | None:
        values = [o.cosine for o in self.outputs if o.cosine is not None and not math.isnan(o.cosine)]
        return min(values, default=None)

    def _worst_top1_output(self) -> OutputParity | None:
        scored = [o for o in self.outputs if o.top1 is not None]
        return min(scored, key=lambda o: o.top1) if scored else None

    @property
    def worst_top1(self) -> float | None:
        worst = self._worst_top1_output()
        return None if worst is None else worst.top1

    def to_dict(self) -> dict[str, Any]:
        worst = self._worst_top1_output()
        return {
            "status": self.status,
            "samples": self.samples,
            "data": self.data,
            "real_inputs": self.real_inputs,
            "tolerance": None if self.tolerance is None else self.tolerance.to_dict(),
            "cosine": self.worst_cosine,
            "top1": self.worst_top1,
            "top1_all": None if worst is None else worst.top1_all,
            "top1_confident": None if worst is None else worst.top1_confident,
            "confident_samples": None if worst is None else worst.confident_samples,
            "enforced": None if worst is None else worst.enforced,
            "nonfinite": {
                side: sum(o.nonfinite.get(side, 0) for o in self.outputs) for side in ("reference", "artifact", "mismatched")
            },
            "outputs": [o.to_dict() for o in self.outputs],
            "state": [] if not self.stateful else self.stateful["pairs"],
            "stateful": None if not self.stateful else {k: v for k, v in self.stateful.items() if k != "pairs"},
            **({"greedy": self.greedy} if self.greedy is not None else {}),
            "reasons": self.reasons,
        }


def looks_like_class_scores(shape: Sequence[int]) -> bool:
    """(batch, classes) with 2..100k classes, by shape alone (distillation's choice of KL or MSE uses
    it). Verification decides with the values too: verify_roles.detect_role."""
    return len(shape) == 2 and class_rows(shape)


def quantize_input(x, spec):
    import numpy as np

    if spec.scale is None or np.dtype(spec.dtype).kind == "f":
        return x.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    q = np.round(x / spec.scale + spec.zero_point)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize_output(y, spec):
    import numpy as np

    if spec.scale is None or np.asarray(y).dtype.kind == "f":
        return np.asarray(y, dtype=np.float32) if np.asarray(y).dtype.kind == "f" else np.asarray(y)
    return (np.asarray(y, dtype=np.float32) - spec.zero_point) * spec.scale


def run_artifact(runtime, sample: Sequence[Any]) -> list[Any]:
    """Run one float sample through a runtime, quantizing integer inputs and dequantizing outputs."""
    in_specs, out_specs = runtime.inputs(), runtime.outputs()
    feeds = [quantize_input(x, s) for x, s in zip(sample, in_specs)]
    return [dequantize_output(y, s) for y, s in zip(runtime.run(feeds), out_specs)]


def _nonfinite_codes(a):
    """0 finite, 1 NaN, 2 +Inf, 3 -Inf: two arrays have the same non-finite pattern when equal."""
    import numpy as np

    codes = np.zeros(a.shape, dtype=np.int8)
    codes[np.isnan(a)] = 1
    codes[np.isposinf(a)] = 2
    codes[np.isneginf(a)] = 3
    return codes


def _top1(ref_list, got_list, shape) -> dict[str, Any]:
    """Agreement of argmax on all rows finite on both sides, and on the rows where FP32 is confident.

    Sample by sample, so that per-token logits (batch x tokens x vocabulary) never sit in memory as
    one float64 block; whether rows are probabilities, log-probabilities or logits is read once, on up
    to DETECTION_VALUES finite values of the original."""
    import numpy as np

    classes = shape[-1]
    as_rows = lambda x: np.asarray(x, dtype=np.float64).reshape(-1, classes)  # noqa: E731
    limit = max(16, DETECTION_VALUES // classes)
    seen, count = [], 0
    for x in ref_list:
        rows = as_rows(x)
        seen.append(rows[np.isfinite(rows).all(axis=1)][: limit - count])
        count += len(seen[-1])
        if count >= limit:
            break
    detection = np.concatenate(seen)
    kind = row_kind(detection)
    rows = agree_all = confident_n = agree_confident = 0
    for x, y in zip(ref_list, got_list):
        r, g = as_rows(x), as_rows(y)
        ok = np.isfinite(r).all(axis=1) & np.isfinite(g).all(axis=1)
        r, g = r[ok], g[ok]
        agree = np.argmax(r, axis=-1) == np.argmax(g, axis=-1)
        confident = confident_rows(r, kind)
        rows += len(r)
        agree_all += int(agree.sum())
        confident_n += int(confident.sum())
        agree_confident += int(agree[confident].sum())
    return {
        "rows": rows,
        "top1_all": agree_all / rows if rows else None,
        "top1_confident": agree_confident / confident_n if confident_n else None,
        "confident_samples": confident_n,
        "ref_rows": detection,
    }


def _error_stats(ref_list, got_list) -> dict[str, Any]:
    """Errors, cosine, SNR and NaN/Inf counts, accumulated sample by sample in float64 on the
    positions finite on both sides (no (samples x values) float64 block in memory)."""
    import numpy as np

    def finite_peak(v) -> float:
        v = np.asarray(v)
        return float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0)) if v.dtype.kind == "f" else float(np.max(np.abs(v), initial=0))

    # one scale for the dot products, so that finite values whose squares overflow float64 stay finite
    scale = max((finite_peak(v) for pair in zip(ref_list, got_list) for v in pair), default=0.0)
    scale = scale if scale > 1e150 else 1.0
    stats = dict(size=0, n=0, max_abs=0.0, sum_abs=0.0, peak=0.0, dot=0.0, rr=0.0, gg=0.0, noise=0.0,
                 reference=0, artifact=0, mismatched=0)
    for r, g in zip(ref_list, got_list):
        r, g = np.asarray(r, dtype=np.float64).ravel(), np.asarray(g, dtype=np.float64).ravel()
        rc, gc = _nonfinite_codes(r), _nonfinite_codes(g)
        stats["size"] += r.size
        stats["reference"] += int((rc != 0).sum())
        stats["artifact"] += int((gc != 0).sum())
        stats["mismatched"] += int((rc != gc).sum())
        both = (rc == 0) & (gc == 0)
        r, g = r[both], g[both]
        if not r.size:
            continue
        err = np.abs(g - r)
        stats["n"] += r.size
        stats["max_abs"] = max(stats["max_abs"], float(err.max()))
        stats["sum_abs"] += float(err.sum())
        stats["peak"] = max(stats["peak"], float(np.abs(r).max()))
        rs, gs = r / scale, g / scale
        stats["dot"] += float(np.dot(rs, gs))
        stats["rr"] += float(np.dot(rs, rs))
        stats["gg"] += float(np.dot(gs, gs))
        stats["noise"] += float(np.dot(rs - gs, rs - gs))
    return stats


def _compare_output(name, ref_list, got_list, tolerance: Tolerance, real_inputs: bool, role_hint) -> tuple[OutputParity, list[str]]:
    import numpy as np

    # overflow in a norm or an exp of extreme values must not print numpy warnings on the console:
    # the numbers that matter are handled explicitly (scaled sums, finite positions)
    with np.errstate(all="ignore"):
        return _compare_output_quietly(name, ref_list, got_list, tolerance, real_inputs, role_hint)


def _compare_output_quietly(name, ref_list, got_list, tolerance, real_inputs, role_hint) -> tuple[OutputParity, list[str]]:
    import numpy as np

    tol = tolerance.for_output(name)
    shape = tuple(np.asarray(ref_list[0]).shape)
    ref_sizes = [np.asarray(r).size for r in ref_list]
    got_sizes = [np.asarray(g).size for g in got_list]
    if ref_sizes != got_sizes:
        parity = OutputParity(name, math.inf, math.inf, -1.0, -math.inf, None, role=(role_hint or ("other", ""))[0])
        got_shape = tuple(np.asarray(got_list[0]).shape)
        return parity, [f"{name}: shape {got_shape} differs from the original's {shape}"]
    reasons = []
    st = _error_stats(ref_list, got_list)
    nonfinite = {"reference": st["reference"], "artifact": st["artifact"], "mismatched": st["mismatched"]}
    if nonfinite["mismatched"]:
        reasons.append(
            f"{name}: NaN/Inf pattern differs from the original's at {nonfinite['mismatched']} of {st['size']} values "
            f"(original {nonfinite['reference']} NaN/Inf, artifact {nonfinite['artifact']})"
        )
    max_abs = st["max_abs"]
    mean_abs = st["sum_abs"] / st["n"] if st["n"] else 0.0
    peak = st["peak"]
    max_rel = (max_abs / peak) if peak > 0 else (0.0 if max_abs == 0 else math.inf)
    cosine = _cosine_from(st["dot"], st["rr"], st["gg"]) if st["n"] else math.nan
    signal, noise = st["rr"], st["noise"]
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)

    is_float = np.asarray(ref_list[0]).dtype.kind == "f"
    scores = _top1(ref_list, got_list, shape) if is_float and class_rows(shape) else None
    role, why = role_hint or detect_role(name, shape, is_float, None if scores is None else scores["ref_rows"])
    parity = OutputParity(name, max_abs, mean_abs, cosine, snr, None, role=role, role_reason=why, max_rel=max_rel, nonfinite=nonfinite)
    if scores is not None:
        parity.top1_all, parity.top1_confident = scores["top1_all"], scores["top1_confident"]
        parity.confident_samples, parity.rows = scores["confident_samples"], scores["rows"]
    if role == "class_scores" and scores is not None and scores["rows"]:
        parity.top1_on = "confident" if scores["confident_samples"] >= MIN_CONFIDENT else "all"
        parity.top1 = scores["top1_confident"] if parity.top1_on == "confident" else scores["top1_all"]
        parity.enforced = parity.top1_on if real_inputs else None

    if not math.isnan(cosine) and cosine < tol.cosine:
        reasons.append(f"{name}: cosine {cosine:.6f} < {tol.cosine}")
    if parity.enforced and parity.top1 < tol.top1:
        where = (
            f"on the {parity.confident_samples} of {parity.rows} inputs where FP32 is confident"
            if parity.enforced == "confident"
            else f"on all {parity.rows} inputs (only {parity.confident_samples} where FP32 is confident, fewer than {MIN_CONFIDENT})"
        )
        reasons.append(f"{name}: top-1 agreement {parity.top1:.3f} {where} < {tol.top1}")
    if tol.max_abs is not None and max_abs > tol.max_abs:
        reasons.append(f"{name}: max abs error {max_abs:.3g} > {tol.max_abs}")
    if tol.max_rel is not None and max_rel > tol.max_rel:
        reasons.append(f"{name}: max error relative to the largest value {max_rel:.3g} > {tol.max_rel}")
    return parity, reasons


def compare(
    reference: Sequence[Sequence[Any]],
    candidate: Sequence[Sequence[Any]],
    names: Sequence[str],
    tolerance: Tolerance,
    real_inputs: bool,
    roles: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[list[OutputParity], list[str]]:
    """Metrics over all samples per output, and the reasons (if any) the candidate fails.

    ``roles`` maps an output name to a declared (role, why); other outputs' roles are detected."""
    parities, reasons = [], []
    for j, name in enumerate(names):
        parity, why = _compare_output(
            name, [r[j] for r in reference], [c[j] for c in candidate], tolerance, real_inputs, (roles or {}).get(name)
        )
        parities.append(parity)
        reasons.extend(why)
    return parities, reasons


def _cosine_from(dot: float, rr: float, gg: float) -> float:
    if rr == 0 and gg == 0:
        return 1.0
    if rr == 0 or gg == 0:
        return 0.0
    return float(dot / math.sqrt(rr * gg)) if math.isfinite(rr * gg) else float(dot / (math.sqrt(rr) * math.sqrt(gg)))


def output_order(model_names: Sequence[str], artifact_names: Sequence[str]) -> list[int]:
    """Artifact output positions in the model's order: by name where every name matches
    (converters may sort dict outputs), else by position."""
    if sorted(model_names) == sorted(artifact_names):
        return [list(artifact_names).index(n) for n in model_names]
    return list(range(len(artifact_names)))


def verify(model, runtime, samples, tolerance: Tolerance, options=None) -> Parity:
    """Run ``samples`` (edgekit.data.Samples) through the original model and the loaded runtime.

    ``options`` (ConvertOptions, optional) carries declared output roles (``output_roles``), state
    pairs (``state``; ``(("none", "none"),)`` turns detection off) and ``state_steps``."""
    reference = model.reference_many(samples.samples)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    parity_args = (tolerance, len(samples), samples.source, samples.real)
    if len(order) != len(reference[0]):
        return Parity("failed", [], *parity_args, [f"the artifact has {len(order)} outputs, the original {len(reference[0])}"])
    pairs = resolve_state_pairs(model, getattr(options, "state", None), reference[0])
    roles = roles_from(options, pairs)
    # --decoder steps the model token by token itself (edgekit/generate.py), the better check for a
    # decoder: the state outputs keep their role, without a second stepping here
    if pairs and not (getattr(options, "decoder", None) and not getattr(options, "state", None)):
        steps = getattr(options, "state_steps", None) or DEFAULT_STATE_STEPS
        return _verify_stateful(model, runtime, samples, tolerance, pairs, steps, roles, order, reference)
    candidate = [[c[i] for i in order] for c in (run_artifact(runtime, s) for s in samples.samples)]
    outputs, reasons = compare(reference, candidate, model.output_names, tolerance, samples.real, roles)
    return Parity("failed" if reasons else "passed", outputs, *parity_args, reasons)


def _fit(array, spec, flag: str):
    """A state output reshaped and cast to the input it feeds."""
    import numpy as np

    array = np.asarray(array)
    if array.size != math.prod(spec.shape):
        raise UsageError(f"{flag}: the output has shape {tuple(array.shape)}, input {spec.name!r} takes {tuple(spec.shape)}")
    return np.ascontiguousarray(array.reshape(spec.shape), dtype=spec.dtype)


def _verify_stateful(model, runtime, samples, tolerance, pairs: Sequence[StatePair], steps: int, roles, order, first_reference) -> Parity:
    """Sequences of ``steps`` calls, each side feeding its own state outputs into its next call.

    The non-state inputs of step t of sequence k are eval sample (k * steps + t) mod N, so N samples
    make ceil(N / steps) sequences; step 0 takes its state from the data too. Every step is compared
    (cosine, errors, NaN/Inf pattern); the outputs' metrics are over all steps, top-1 included, and the
    worst step is recorded."""
    data, names = samples.samples, model.output_names
    n = len(data)
    sequences = max(1, math.ceil(n / steps))
    in_index = {spec.name: i for i, spec in enumerate(model.inputs)}
    out_index = {name: i for i, name in enumerate(names)}
    feeds = [(in_index[p.input], out_index[p.output], f"--state {p.output}={p.input}") for p in pairs]
    # roles are decided once, on the plain samples, so that every step is judged the same way
    plain, _ = compare(first_reference, first_reference, names, tolerance, False, roles)
    roles = {o.name: (o.role, o.role_reason) for o in plain}
    ref_prev: list[list[Any]] = []
    cand_prev: list[list[Any]] = []
    all_ref, all_cand, per_step, step_reasons = [], [], [], {}
    for t in range(steps):
        ref_in, cand_in = [], []
        for k in range(sequences):
            r = list(data[(k * steps + t) % n])
            c = list(r)
            for i, o, flag in feeds if t else ():
                r[i] = _fit(ref_prev[k][o], model.inputs[i], flag)
                c[i] = _fit(cand_prev[k][o], model.inputs[i], flag)
            ref_in.append(tuple(r))
            cand_in.append(tuple(c))
        if t == 0:  # step 0 is plain data: its reference was computed already
            ref_t = [first_reference[(k * steps) % n] for k in range(sequences)]
        else:
            ref_t = model.reference_many(ref_in)
        cand_t = [[out[i] for i in order] for out in (run_artifact(runtime, s) for s in cand_in)]
        ref_prev, cand_prev = ref_t, cand_t
        all_ref.extend(ref_t)
        all_cand.extend(cand_t)
        step_outputs = []
        for j, name in enumerate(names):
            out, why = _compare_output(name, [x[j] for x in ref_t], [x[j] for x in cand_t], tolerance, False, roles[name])
            step_outputs.append(out)
            if why and name not in step_reasons:
                step_reasons[name] = [f"step {t + 1} of {steps}: {w}" for w in why]
        cosines = [o.cosine for o in step_outputs if not math.isnan(o.cosine)]
        per_step.append({
            "step": t + 1,
            "cosine": min(cosines, default=None),
            "max_abs": max((o.max_abs for o in step_outputs), default=None),
            "nonfinite_mismatched": sum(o.nonfinite["mismatched"] for o in step_outputs),
        })
    outputs, reasons = compare(all_ref, all_cand, names, tolerance, samples.real, roles)
    for name in names:  # a step that fails is named, unless the pooled numbers already fail that output
        if not any(r.startswith(f"{name}: ") for r in reasons):
            reasons.extend(step_reasons.get(name, []))
    worst = min(per_step, key=lambda s: s["cosine"] if s["cosine"] is not None else math.inf)
    stateful = {
        "pairs": [p.to_dict() for p in pairs],
        "steps": steps,
        "sequences": sequences,
        "worst_step": worst["step"],
        "per_step": per_step,
    }
    return Parity("failed" if reasons else "passed", outputs, tolerance, n, samples.source, samples.real, reasons, stateful)


def describe_state(model, options=None) -> list[dict[str, str]]:
    """The state pairs of a prepared model, for the manifest (also when verification is skipped)."""
    import numpy as np

    cached = getattr(model, "_edgekit_state_pairs", None)
    if cached is None:  # one forward pass per prepared model, however many targets ask
        sample = [np.asarray(t.detach().numpy()) for t in model.example_inputs]
        cached = [p.to_dict() for p in resolve_state_pairs(model, getattr(options, "state", None), model.reference(sample))]
        model._edgekit_state_pairs = cached
    return cached


def verify_declarations(model, options) -> None:
    """Refuse --output-role, --state and per-output --tolerance names that this model does not have."""
    from edgekit.options import Tolerance
    from edgekit.verify_roles import check_declarations

    tolerance = Tolerance.parse(options.tolerance, Tolerance(cosine=1.0, top1=1.0)) if options.tolerance else None
    state = [p for p in getattr(options, "state", ()) if p != ("none", "none")]
    check_declarations(model.output_names, [s.name for s in model.inputs], getattr(options, "output_roles", ()), state, tolerance)
