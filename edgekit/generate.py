"""Decoder language models: greedy generation through any Runtime, checked token by token, and timed.

A decoder artifact is one decoding step with its cache as explicit inputs and outputs:
``(token, position, *cache) -> (logits, *new cache)``. :class:`DecoderSpec` names which input takes
the token, which the position, which output holds the logits, and which outputs feed which inputs on
the next step. :func:`detect` finds them by the usual shape of such a step (a ``[1, 1]`` integer
token, a ``[1]`` or ``[1, 1]`` integer position, a float output per cache input of the same shape, in
order); ``--decoder token=NAME,pos=NAME,logits=NAME`` declares them when detection cannot.

The same loop drives the eager model and the artifact, so verification compares the two greedy
token sequences (exact match is required where the precision keeps float32 weights) and the bench
reports prefill and decode tokens per second. Prefill runs the one-token step program once per
prompt token: the rate is that of this program, not of a batched prefill program.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edgekit.errors import UsageError

StepFn = Callable[[list], list]  # numpy arrays in the artifact's input order -> outputs in its order


@dataclass(frozen=True)
class DecoderSpec:
    token_input: str
    position_input: str
    logits_output: str
    state: tuple[tuple[str, str], ...] = ()  # (output name, input name): fed back every step

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_input": self.token_input, "position_input": self.position_input,
            "logits_output": self.logits_output, "state": [{"output": o, "input": i} for o, i in self.state],
        }

    @classmethod
    def parse(cls, text: str, inputs, outputs) -> "DecoderSpec":
        """``token=NAME,pos=NAME,logits=NAME`` (any subset; the rest is detected)."""
        given: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("token", "pos", "logits"):
                raise UsageError(f"--decoder {text!r}: expected token=NAME,pos=NAME,logits=NAME")
            given[key] = value
        return detect(inputs, outputs, **given)


@dataclass
class Generation:
    tokens: list[int]
    seconds_prefill: float = 0.0
    seconds_decode: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def detect(inputs, outputs, token: str | None = None, pos: str | None = None, logits: str | None = None) -> DecoderSpec:
    """Find the decoder roles among TensorSpec-like inputs/outputs (``name``, ``shape``, ``dtype``)."""
    ints = [s for s in inputs if _is_int(s.dtype)]
    token = token or next((s.name for s in ints if tuple(s.shape) == (1, 1)), None)
    pos = pos or next((s.name for s in ints if s.name != token and tuple(s.shape) in ((1,), (1, 1))), None)
    if token is None or pos is None:
        raise UsageError("not a decoder step: it needs a [1, 1] integer token input and a [1] integer position input "
                         "(declare them with --decoder token=NAME,pos=NAME,logits=NAME)")
    names = {s.name for s in inputs} | {s.name for s in outputs}
    for name in (token, pos) + ((logits,) if logits else ()):
        if name not in names:
            raise UsageError(f"--decoder: no input or output named {name!r} (have {', '.join(sorted(names))})")
    state_inputs = [s for s in inputs if s.name not in (token, pos)]
    logits = logits or next((s.name for s in outputs if not _is_int(s.dtype) and len(s.shape) >= 2
                             and not any(tuple(s.shape) == tuple(i.shape) for i in state_inputs)), None)
    if logits is None:
        raise UsageError("not a decoder step: no logits output (declare it with --decoder logits=NAME)")
    pairs, free = [], [s for s in outputs if s.name != logits]
    for spec in state_inputs:  # the i-th cache-shaped output feeds the i-th input of that shape
        match = next((o for o in free if tuple(o.shape) == tuple(spec.shape)), None)
        if match is None:
            raise UsageError(f"decoder input {spec.name!r} {list(spec.shape)} has no output of its shape to feed it back")
        free.remove(match)
        pairs.append((match.name, spec.name))
    return DecoderSpec(token, pos, logits, tuple(pairs))


def greedy(step: StepFn, inputs, outputs, spec: DecoderSpec, prompt: Sequence[int], new_tokens: int) -> Generation:
    """Feed ``prompt`` one token at a time, then ``new_tokens`` argmax tokens; state fed back each step."""
    import numpy as np

    in_index = {s.name: i for i, s in enumerate(inputs)}
    out_index = {s.name: i for i, s in enumerate(outputs)}
    feeds = [np.zeros(tuple(s.shape), dtype=s.dtype) for s in inputs]
    total = len(prompt) + new_tokens
    limit = _context_limit(inputs, spec)
    if limit is not None and total > limit:
        raise UsageError(f"{len(prompt)} prompt + {new_tokens} new tokens exceed the cache's {limit} positions")
    tokens, logits = list(prompt), None
    timings = [0.0, 0.0]
    step([f.copy() for f in feeds])  # warm-up: first-run allocation is not a token's cost
    for position in range(total - 1):
        token_value = tokens[position]
        feeds[in_index[spec.token_input]] = np.full(tuple(inputs[in_index[spec.token_input]].shape), token_value,
                                                    dtype=inputs[in_index[spec.token_input]].dtype)
        feeds[in_index[spec.position_input]] = np.full(tuple(inputs[in_index[spec.position_input]].shape), position,
                                                       dtype=inputs[in_index[spec.position_input]].dtype)
        start = time.perf_counter()
        result = step(feeds)
        timings[position >= len(prompt)] += time.perf_counter() - start
        for out_name, in_name in spec.state:
            feeds[in_index[in_name]] = np.asarray(result[out_index[out_name]]).astype(inputs[in_index[in_name]].dtype)
        logits = np.asarray(result[out_index[spec.logits_output]])
        if position >= len(prompt) - 1:
            tokens.append(int(np.argmax(logits.reshape(-1))))
    return Generation(tokens[len(prompt):], seconds_prefill=timings[0], seconds_decode=timings[1])


def _context_limit(inputs, spec: DecoderSpec) -> int | None:
    """The number of positions the cache holds: the largest cache dimension (None without a cache)."""
    shapes = [tuple(s.shape) for s in inputs if s.name in {i for _, i in spec.state}]
    return max((max(shape) for shape in shapes if shape), default=None)


def eager_step(module, inputs) -> StepFn:
    """The eager PyTorch model as a StepFn over numpy arrays (outputs flattened in order)."""
    import numpy as np
    import torch

    from edgekit.export import flatten_outputs

    def step(arrays):
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().numpy() for t in flatten_outputs(out)]

    return step


def compare_greedy(reference: Generation, candidate: Generation) -> dict[str, Any]:
    """Token-by-token agreement of two greedy runs from the same prompt."""
    pairs = list(zip(reference.tokens, candidate.tokens))
    first = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
    return {
        "tokens": len(pairs),
        "matching": sum(a == b for a, b in pairs),
        "first_divergence": first,
        "exact": first is None and len(reference.tokens) == len(candidate.tokens),
    }


def tokens_per_second(generation: Generation, prompt_tokens: int) -> dict[str, float | None]:
    """Prefill (every prompt token through the step program; the last step yields the first new
    token) and decode (each further generated token) rates."""
    prefill_steps = prompt_tokens
    decode_steps = max(len(generation.tokens) - 1, 0)
    return {
        "prefill_tokens_per_s": prefill_steps / generation.seconds_prefill if generation.seconds_prefill else None,
        "decode_tokens_per_s": decode_steps / generation.seconds_decode if generation.seconds_decode else None,
    }


# --- the pipeline's and the bench's entry points ---------------------------------------------------

PROMPT_TOKENS = 8
NEW_TOKENS = 32


def model_step(prepared, runtime) -> tuple[StepFn, StepFn, list, list]:
    """(eager step, artifact step, input specs, output specs), both steps in the model's names and order."""
    from edgekit.targets.base import TensorSpec
    from edgekit.verify import output_order, run_artifact

    inputs = [TensorSpec(s.name, tuple(s.shape), s.dtype) for s in prepared.inputs]
    runtime_outputs = runtime.outputs()
    order = output_order(prepared.output_names, [o.name for o in runtime_outputs])
    outputs = [TensorSpec(n, tuple(runtime_outputs[i].shape), runtime_outputs[i].dtype) for n, i in zip(prepared.output_names, order)]

    def artifact(arrays):
        result = run_artifact(runtime, arrays)
        return [result[i] for i in order]

    return eager_step(prepared.module, inputs), artifact, inputs, outputs


def prompt_from(samples, spec: DecoderSpec, inputs) -> list[int]:
    """The token values of the first evaluation samples: a real prompt when the data is a real sequence."""
    import numpy as np

    index = [s.name for s in inputs].index(spec.token_input)
    return [int(np.asarray(sample[index]).reshape(-1)[0]) for sample in samples[:PROMPT_TOKENS]] or [0]


def check_greedy(prepared, runtime, samples, spec_text: str, exact_required: bool) -> tuple[dict[str, Any], list[str]]:
    """Greedy generation with the eager model and with the artifact from the same prompt; the
    parity block ``greedy`` and the reasons to fail (a divergence where exact match is required)."""
    eager, artifact, inputs, outputs = model_step(prepared, runtime)
    spec = DecoderSpec.parse("" if spec_text == "auto" else spec_text, inputs, outputs)
    prompt = prompt_from(samples, spec, inputs)
    limit = _context_limit(inputs, spec) or (len(prompt) + NEW_TOKENS)
    new_tokens = max(1, min(NEW_TOKENS, limit - len(prompt)))
    reference = greedy(eager, inputs, outputs, spec, prompt, new_tokens)
    candidate = greedy(artifact, inputs, outputs, spec, prompt, new_tokens)
    result = {**compare_greedy(reference, candidate), "prompt": prompt, "exact_required": exact_required,
              "decoder": spec.to_dict()}
    reasons = []
    if exact_required and not result["exact"]:
        reasons.append(f"greedy decoding diverges from eager PyTorch at generated token {result['first_divergence']} "
                       f"({result['matching']}/{result['tokens']} tokens match)")
    return result, reasons


def bench_generation(runtime, manifest: dict[str, Any]) -> dict[str, Any]:
    """Prefill and decode tokens per second of a decoder artifact, for `edgekit bench`."""
    from edgekit.targets.base import TensorSpec

    decoder = manifest["decoder"]
    inputs = [TensorSpec(e.get("model_input", e["name"]), tuple(e["shape"]), e["dtype"]) for e in manifest["inputs"]]
    outputs = [TensorSpec(e.get("model_output", e["name"]), tuple(e["shape"]), e["dtype"]) for e in manifest["outputs"]]
    spec = DecoderSpec(decoder["token_input"], decoder["position_input"], decoder["logits_output"],
                       tuple((p["output"], p["input"]) for p in decoder["state"]))
    from edgekit.verify import run_artifact

    def step(arrays):  # the manifest lists inputs and outputs in the artifact's own order
        return run_artifact(runtime, arrays)

    limit = _context_limit(inputs, spec) or (PROMPT_TOKENS + NEW_TOKENS)
    new_tokens = max(2, min(NEW_TOKENS, limit - PROMPT_TOKENS))
    generation = greedy(step, inputs, outputs, spec, [0] * PROMPT_TOKENS, new_tokens)
    return {"prompt_tokens": PROMPT_TOKENS, "new_tokens": new_tokens, **tokens_per_second(generation, PROMPT_TOKENS),
            "note": "prefill runs the one-token step program once per prompt token"}
