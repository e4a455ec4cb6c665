"""What each model output is (its role), which outputs carry state back into inputs, and how
confident the original model is: the facts verification needs to choose the right measure.

Roles:
- ``class_scores``: logits, probabilities or log-probabilities over classes, per sample (batch x
  classes) or per step/token (batch x time x classes). Checked with cosine and top-1 agreement.
- ``regression``: boxes, landmarks, offsets, small vectors. Cosine plus max_abs / max_rel when given.
- ``state``: recurrent state or a cache that the next call takes back as an input. Cosine.
- ``embedding``: a feature vector (unit-norm rows, or named so). Cosine.
- ``other``: anything else (feature maps, masks, undecided vectors). Cosine; top-1 reported for
  information when the output has a class-like shape.

Detection is conservative: top-1 is enforced only where the evidence says class scores (a name, rows
that are probabilities or log-probabilities, or mixed-sign logit rows on which the original model is
confident); when unsure, top-1 is reported but not enforced, and ``--output-role NAME=ROLE`` decides.
This module imports numpy only inside functions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edgekit.errors import UsageError

ROLES = ("class_scores", "regression", "state", "embedding", "other")
MAX_CLASSES = 100_000
# A row is "confident" when FP32's top-1 probability is >= 0.5 and at least 0.2 above the runner-up
# (the margin matters for two classes, where the top probability is always >= 0.5).
CONFIDENT_PROB = 0.5
CONFIDENT_MARGIN = 0.2
# Fewer confident rows than this and a confident-only top-1 says little (one flip in 5 is 0.8):
# top-1 is then enforced on all rows, and the parity says so.
MIN_CONFIDENT = 10
# Unnamed mixed-sign rows count as logits when the original is confident on at least this share of
# them, or when its mean top-1 probability is at least LOGITS_PEAK x the uniform 1/classes. Measured
# with `python -m benchmarks.verify_roles`: EfficientNet-Lite0 on photos 50 % confident (mean top-1
# probability 0.52 = 521x uniform), the 157-class MiniLM intent head on out-of-domain fortunes only
# 10 % confident but 0.27 = 42x uniform, the digits CNN 99 %; MiniLM's hidden states 6.5x uniform and
# its mean-pooled embedding 1.5x, 0 % confident: classifiers clear the bar, features stay well below.
# Per-step/token outputs (batch x time x classes) need the confident share (or a name, or rows that
# are (log-)probabilities: CTC heads end in log_softmax).
LOGITS_CONFIDENT_SHARE = 0.25
LOGITS_PEAK = 20.0
DEFAULT_STATE_STEPS = 8
DETECTION_VALUES = 2_000_000  # values of the original read to tell probabilities, log-probabilities and logits apart

_CLASS_NAME = re.compile(r"logit|score|prob|class|cls|softmax|label|token_?ids?|vocab", re.I)
_REGRESSION_NAME = re.compile(
    r"box|landmark|keypoint|kpt|coord|offset|delta|regress|(^|[^a-z])loc($|[^a-z])|depth|disparity|pose|bbox", re.I
)
_EMBEDDING_NAME = re.compile(r"embed|(^|[^a-z])emb($|[^a-z])|feature|feat($|[^a-z])|pooler|pooled|last_hidden|vector", re.I)
_STATE_NAME = re.compile(
    r"(^|[^a-z])(h_?n|c_?n|h_?t|c_?t|h|c|hx|cx|hidden|states?|cache|past|present|memory|carry|kv)(\d*)($|[^a-z])", re.I
)


@dataclass(frozen=True)
class StatePair:
    output: str  # the model output that carries the state
    input: str  # the model input the next step takes it in
    how: str  # declared | names | position

    def to_dict(self) -> dict[str, str]:
        return {"output": self.output, "input": self.input, "detected_by": self.how}


def parse_assignments(values: Sequence[str], flag: str) -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` items of a repeatable flag, refused with one line when malformed."""
    out = []
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"{flag} {text!r}: expected NAME=VALUE, e.g. {_EXAMPLE[flag]}")
        out.append((name.strip(), value.strip()))
    return tuple(out)


_EXAMPLE = {"--output-role": "--output-role boxes=regression", "--state": "--state h_n=h0"}


def check_roles(roles: Sequence[tuple[str, str]]) -> None:
    for name, role in roles:
        if role not in ROLES:
            raise UsageError(f"--output-role {name}={role}: unknown role; choose one of {', '.join(ROLES)}")


def check_declarations(output_names: Sequence[str], input_names: Sequence[str], roles, state, tolerance) -> None:
    """Refuse, before any work, declarations that name no output or input of this model."""
    outputs, inputs = list(output_names), list(input_names)

    def unknown(kind: str, name: str, known: list[str], flag: str) -> None:
        if name not in known:
            raise UsageError(f"{flag}: the model has no {kind} named {name!r} ({kind}s: {', '.join(known)})")

    for name, _ in roles or ():
        unknown("output", name, outputs, "--output-role")
    for out, inp in state or ():
        unknown("output", out, outputs, "--state")
        unknown("input", inp, inputs, "--state")
    for name in tolerance.outputs_named() if tolerance is not None else ():
        unknown("output", name, outputs, "--tolerance")


def _base(name: str) -> str:
    """h_n, h0, h_in, new_h, next_state, present_key_0 -> comparable stems (h, h, h, h, state, past_key_)."""
    text = name.lower().replace("present", "past")
    text = re.sub(r"^(new|next|out|in|prev|init|initial)_+", "", text)
    text = re.sub(r"(_n|_t|_?\d+|_in|_out|_new|_next|_prev|_init)+$", "", text)
    return text


def detect_state_pairs(inputs, output_names: Sequence[str], output_shapes: Sequence[tuple], output_float: Sequence[bool]) -> list[StatePair]:
    """Outputs that the next call takes back as inputs: same shape and float dtype, paired by name
    (h_n -> h0, state_out -> state_in, present.0 -> past.0) or, for the last k outputs and the last k
    inputs in the same order when those inputs are named like state (forward(x, h0, c0) -> (y, h1, c1)),
    by position. At least one input and
    one output stay outside the pairs: a model whose every input has an output of its shape is a
    transform (an autoencoder, a denoiser), not a recurrence."""
    specs = [(s.name, tuple(s.shape), str(s.dtype).startswith("float")) for s in inputs]
    outs = list(zip(output_names, (tuple(s) for s in output_shapes), output_float))
    if len(specs) < 2 or len(outs) < 2:
        return []
    pairs: list[StatePair] = []
    used_in: set[str] = set()
    for name, shape, is_float in outs:
        if not is_float:
            continue
        stem = _base(name)
        for in_name, in_shape, in_float in specs:
            if in_float and in_shape == shape and in_name not in used_in and _base(in_name) == stem and stem:
                pairs.append(StatePair(name, in_name, "names"))
                used_in.add(in_name)
                break
    if pairs:
        return pairs if len(pairs) < len(specs) else []
    k = 0
    while k < min(len(specs), len(outs)) - 1:
        out_name, out_shape, out_float = outs[-1 - k]
        in_name, in_shape, in_float = specs[-1 - k]
        # by position only into inputs named like state (h0, c0, hx, state, hidden, cache, past, memory):
        # two float inputs and an output of the second's shape are not, by themselves, a recurrence
        if not (out_float and in_float and out_shape == in_shape and _STATE_NAME.search(in_name)):
            break
        k += 1
    return [StatePair(outs[-1 - i][0], specs[-1 - i][0], "position") for i in reversed(range(k))]


def resolve_state_pairs(model, declared, reference_outputs: Sequence[Any]) -> list[StatePair]:
    """Declared pairs (``--state OUT=IN``; ``--state none`` turns detection off), else detected ones."""
    import numpy as np

    declared = tuple(declared or ())
    if declared == (("none", "none"),) or declared == ("none",):
        return []
    if declared:
        return [StatePair(out, inp, "declared") for out, inp in declared]
    shapes = [tuple(np.asarray(r).shape) for r in reference_outputs]
    floats = [np.asarray(r).dtype.kind == "f" for r in reference_outputs]
    return detect_state_pairs(model.inputs, model.output_names, shapes, floats)


def class_rows(array_shape: Sequence[int]) -> bool:
    """(batch, classes) or (batch, time, classes) with 2..100k classes: a top-1 can be read per row."""
    return len(array_shape) in (2, 3) and 2 <= array_shape[-1] <= MAX_CLASSES


def row_kind(rows) -> str:
    """'prob' (rows sum to 1 in [0, 1]), 'logprob' (exp-rows sum to 1), 'unit' (unit L2 norm),
    'nonneg' (no negative value), or 'mixed'. ``rows``: finite float64 (n, classes)."""
    import numpy as np

    if rows.size == 0:
        return "mixed"
    if rows.min() >= -1e-6 and rows.max() <= 1 + 1e-6 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return "prob"
    if rows.max() <= 1e-5 and np.allclose(_logsumexp(rows), 0.0, atol=1e-3):
        return "logprob"
    if np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3):
        return "unit"
    if rows.min() >= 0:
        return "nonneg"
    return "mixed"


def _logsumexp(rows):
    import numpy as np

    top = rows.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))[:, 0]


def probabilities(rows, kind: str):
    """Class probabilities of each row: as given, exp of log-probabilities, or a softmax of logits."""
    import numpy as np

    if kind == "prob":
        return rows
    if kind == "logprob":
        return np.exp(rows)
    shifted = rows - rows.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def confident_rows(rows, kind: str):
    """Rows where FP32's top-1 probability is >= CONFIDENT_PROB and CONFIDENT_MARGIN above the second."""
    import numpy as np

    if rows.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    p = probabilities(rows, kind)
    part = np.partition(p, p.shape[1] - 2, axis=1)  # the two largest last, without a full sort
    top, second = part[:, -1], part[:, -2]
    return (top >= CONFIDENT_PROB) & (top - second >= CONFIDENT_MARGIN)


def detect_role(name: str, shape: Sequence[int], is_float: bool, rows) -> tuple[str, str]:
    """(role, why) for one output from its name, its shape and the original's values on the
    evaluation inputs (``rows``: finite float64 (n, last dim), or None when not class-shaped)."""
    if not is_float:
        return "other", "integer output"
    if _CLASS_NAME.search(name) and class_rows(shape):
        return "class_scores", f"named {name!r}"
    if _REGRESSION_NAME.search(name):
        return "regression", f"named {name!r}"
    if _EMBEDDING_NAME.search(name):
        return "embedding", f"named {name!r}"
    if _STATE_NAME.search(name):
        return "state", f"named {name!r}"
    if not class_rows(shape) or rows is None or rows.shape[0] == 0:
        return "other", "not shaped like class scores" if not class_rows(shape) else "no finite values"
    kind = row_kind(rows)
    if kind == "prob":
        return "class_scores", "rows are probabilities (in [0, 1], summing to 1)"
    if kind == "logprob":
        return "class_scores", "rows are log-probabilities (exp sums to 1)"
    if kind == "unit":
        return "embedding", "rows have unit L2 norm"
    if shape[-1] <= 4:
        return "regression", f"last dimension {shape[-1]} (boxes, points, offsets)"
    if kind == "nonneg":
        return "other", "non-negative values that are not probabilities (coordinates, sigmoid scores or features)"
    share = float(confident_rows(rows, kind).mean())
    peak = float(probabilities(rows, kind).max(axis=1).mean()) * shape[-1]
    # the peak rule only for (batch, classes): over a transformer's width, hidden states with a large
    # spread are "peaked" too (random N(0, 3) rows over 30,522 dims: 3,500x uniform, 2 % confident)
    if share >= LOGITS_CONFIDENT_SHARE or (len(shape) == 2 and peak >= LOGITS_PEAK):
        return "class_scores", f"logit-like rows: FP32 confident on {share:.0%}, top-1 {peak:.0f}x as likely as uniform"
    return "other", (
        f"mixed-sign rows, FP32 confident on only {share:.0%}, top-1 {peak:.1f}x uniform "
        f"(--output-role {name}=class_scores enforces top-1)"
    )


def declared_roles(options) -> dict[str, str]:
    return dict(getattr(options, "output_roles", ()) or ())


def roles_from(options, pairs: Sequence[StatePair]) -> Mapping[str, tuple[str, str]]:
    """Declared roles (and the outputs of state pairs) as name -> (role, why)."""
    out = {pair.output: ("state", f"feeds input {pair.input!r}") for pair in pairs}
    text = getattr(options, "tolerance", None)
    if text:  # a per-output top-1 threshold asks for top-1 on that output
        from edgekit.options import Tolerance

        for name, key, _ in Tolerance.parse(text, Tolerance(cosine=1.0, top1=1.0)).per_output:
            if key == "top1":
                out[name] = ("class_scores", f"--tolerance {name}:top1 given")
    out.update({name: (role, "declared") for name, role in declared_roles(options).items()})
    return out


def parse_state(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--state OUT=IN`` (repeatable), or ``--state none`` to turn state detection off."""
    if [v.strip().lower() for v in values] == ["none"]:
        return (("none", "none"),)
    return parse_assignments(values, "--state")


def normalise_assignments(value, flag: str) -> tuple[tuple[str, str], ...]:
    """A dict, ``NAME=VALUE`` strings, or (name, value) pairs -> a tuple of (name, value) pairs."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    if isinstance(value, str):
        value = [value]
    items = list(value)
    if all(isinstance(item, str) for item in items):
        return parse_state(items) if flag == "--state" else parse_assignments(items, flag)
    try:
        return tuple((str(a), str(b)) for a, b in items)
    except (TypeError, ValueError):
        raise UsageError(f"{flag}: expected NAME=VALUE items, got {value!r}") from None
