"""Execute a Core ML ML Program op by op with NumPy.

Every op computes in float32 or float64 from its inputs and its result is then cast to the dtype the
program declares for that output: an fp16 program (Core ML's default compute precision here) has every
intermediate tensor rounded to float16, as on the device; an fp32 program stays float32. Shapes the
program declares are checked against what each op produced, so a misread op fails loudly instead of
drifting. Constants and the constexpr ops that decompress weights are evaluated once, at load.

An op this interpreter does not implement is never guessed: ``unsupported()`` names it before
anything runs, and ``run`` refuses.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgekit.targets.coreml.mil import ops_math, ops_nn, ops_quant, ops_tensor  # noqa: F401  (fill OPS)
from edgekit.targets.coreml.mil.program import Const, Function, Op, Program, VarType
from edgekit.targets.coreml.mil.registry import OPS, Args, OpError

#: ops that only produce outputs a tensor model never reads (classifier labels), skipped when unused
_NON_TENSOR = ("classify",)


class InterpreterError(Exception):
    """The program cannot be executed here (an unsupported op) or an op failed: one line, op named."""


def unsupported(function: Function) -> list[str]:
    """Op types in ``function`` that the interpreter does not implement (sorted, unique)."""
    missing = {o.type for o in function.ops if o.type != "const" and (o.type not in OPS or o.has_blocks)}
    return sorted(missing - set(_NON_TENSOR))


def _cast(value, declared: VarType):
    if declared.dtype in ("", "str") or isinstance(value, (str, list, dict)):
        return value
    return np.asarray(value).astype(declared.dtype, copy=False)


class Interpreter:
    """One loaded program; ``run`` maps input arrays (by name) to output arrays (by name)."""

    def __init__(self, program: Program, function: str = "main"):
        self.program = program
        self.function = program.functions[function]
        missing = unsupported(self.function)
        if missing:
            raise InterpreterError(
                f"edgekit's MIL reference interpreter does not implement op{'s' if len(missing) > 1 else ''} "
                + ", ".join(missing)
            )
        self._producer = {out.name: o for o in self.function.ops for out in o.outputs}
        self._constants: dict[str, Any] = {}
        for o in self.function.ops:  # const and constexpr ops read only constants: evaluate once
            if o.type == "const" or o.type.startswith("constexpr_"):
                self._execute(o, self._constants)

    @property
    def input_types(self) -> list[VarType]:
        return list(self.function.inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.function.outputs)

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        wanted = list(outputs) if outputs is not None else self.output_names
        env: dict[str, Any] = dict(self._constants)
        for declared in self.function.inputs:
            if declared.name not in feeds:
                raise InterpreterError(f"missing input {declared.name}")
            value = np.asarray(feeds[declared.name])
            if declared.shape is not None and not _shape_fits(value.shape, declared.shape):
                raise InterpreterError(f"input {declared.name}: shape {value.shape} does not fit {declared.shape}")
            env[declared.name] = _cast(value, declared)
        for o in self._schedule(wanted, env):
            self._execute(o, env)
        return {name: env[name] for name in wanted}

    def _schedule(self, wanted: Sequence[str], known: dict[str, Any]) -> list[Op]:
        """The ops the wanted outputs depend on, in program order."""
        needed: set[int] = set()
        stack = [n for n in wanted if n not in known]
        while stack:
            name = stack.pop()
            producer = self._producer.get(name)
            if producer is None:
                raise InterpreterError(f"no op produces {name}")
            if id(producer) in needed:
                continue
            needed.add(id(producer))
            for args in producer.inputs.values():
                stack.extend(a for a in args if isinstance(a, str) and a not in known)
        return [o for o in self.function.ops if id(o) in needed]

    def _execute(self, o: Op, env: dict[str, Any]) -> None:
        if o.type == "const":
            env[o.outputs[0].name] = _cast(o.inputs["val"][0].value, o.outputs[0])
            return
        values = {key: [_operand(a, env) for a in args] for key, args in o.inputs.items()}
        try:
            result = OPS[o.type](Args(o.type, values, o.outputs))
        except (OpError, ValueError, IndexError, TypeError, KeyError) as exc:
            raise InterpreterError(f"op {o.type} ({o.name}): {exc}") from exc
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(o.outputs):
            raise InterpreterError(f"op {o.type} ({o.name}) gave {len(results)} outputs, the program declares {len(o.outputs)}")
        for declared, value in zip(o.outputs, results):
            value = _cast(value, declared)
            if declared.shape is not None and not _shape_fits(np.shape(value), declared.shape):
                raise InterpreterError(
                    f"op {o.type} ({o.name}) produced shape {tuple(np.shape(value))}, the program declares {declared.shape}"
                )
            env[declared.name] = value


def _operand(arg, env):
    value = arg.value if isinstance(arg, Const) else env[arg]
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)  # fp16 inputs compute in fp32; the result is rounded back
    return value


def _shape_fits(shape, declared) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))
