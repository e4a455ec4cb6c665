"""edgekit's reference interpreter for Core AI programs (.aimodel): the main graph, read through
coreai-core's own bindings (targets/coreai/program.py), executed op by op with NumPy.

As in the MIL interpreter (targets/coreml/mil), every op computes in float32 or wider and its result is
cast to the element type the program declares: an fp16 program has every intermediate rounded to
float16, as on the device. Declared shapes are checked after every op. An op it does not implement,
or control flow, is named before anything runs and the artifact stays ``unverified``; never guessed.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from edgekit.targets.coreai import ops as ops_table
from edgekit.targets.coreai.program import Program, ProgramError, read_program
from edgekit.targets.coreml.mil.registry import OpError

#: bumped whenever an op's semantics change, so a manifest says which interpreter verified it
VERSION = "1.0"
NAME = f"edgekit Core AI reference interpreter {VERSION}"


class InterpreterError(Exception):
    """The program cannot be executed here, or an op failed: one line, op named."""


def unsupported(program: Program) -> list[str]:
    """Ops of ``program`` this interpreter does not implement (sorted, unique), in every graph."""
    missing = {o.name for o in program.ops if (o.name not in ops_table.OPS and o.name != "invoke") or "__regions__" in o.attributes}
    missing |= {f"invoke of a missing graph {_callee(o)}" for o in program.ops if o.name == "invoke" and _callee(o) not in program.graphs}
    return sorted(missing)


def _callee(o) -> str:
    match = re.search(r"@([A-Za-z0-9_.$-]+)", o.attributes.get("callee", ""))  # #param.constant<@name> : ...
    return match.group(1) if match else o.attributes.get("callee", "")


def reason_unreadable(asset) -> tuple[Program | None, str | None]:
    """(program, None) when the interpreter can execute the asset, else (None or program, why not)."""
    try:
        program = read_program(asset)
    except ProgramError as exc:
        return None, f"edgekit's Core AI reference interpreter cannot read the program: {exc}"
    missing = unsupported(program)
    if missing:
        return program, (f"edgekit's Core AI reference interpreter does not implement "
                         f"op{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return program, None


def _fits(shape, declared) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))


def _operand(value):
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)  # fp16 operands compute in fp32; the result is rounded back
    return value


class Interpreter:
    def __init__(self, program: Program):
        missing = unsupported(program)
        if missing:
            raise InterpreterError(f"edgekit's Core AI reference interpreter does not implement {', '.join(missing)}")
        self.program = program

    @property
    def input_names(self) -> list[str]:
        return [name for name, _, _ in self.program.entry.inputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Input arrays in program order -> output arrays in program order."""
        graph = self.program.entry
        if len(feeds) != len(graph.inputs):
            raise InterpreterError(f"the program takes {len(graph.inputs)} inputs, {len(feeds)} given")
        for (name, _, declared), value in zip(graph.inputs, feeds):
            if not _fits(np.shape(value), declared.shape):
                raise InterpreterError(f"input {name}: shape {np.shape(value)} does not fit {declared.shape}")
        return self._run_graph(graph, [np.asarray(v) for v in feeds])

    def _run_graph(self, graph, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        env = dict(graph.constants)
        for (_, vid, declared), value in zip(graph.inputs, feeds):
            env[vid] = value.astype(declared.dtype, copy=False) if declared.dtype is not None else value
        for o in graph.ops:
            args = [_operand(env[v]) for v in o.operands]
            try:
                if o.name == "invoke":  # a composite (batch_norm, layer_norm, attention...): its own graph
                    result = tuple(self._run_graph(self.program.graphs[_callee(o)], [env[v] for v in o.operands]))
                else:
                    result = ops_table.OPS[o.name](args, o.attributes, o.types)
            except (OpError, ValueError, IndexError, TypeError, KeyError) as exc:
                raise InterpreterError(f"op {o.name}: {exc}") from exc
            results = result if isinstance(result, tuple) else (result,)
            if len(results) != len(o.results):
                raise InterpreterError(f"op {o.name} gave {len(results)} results, the program declares {len(o.results)}")
            for vid, declared, value in zip(o.results, o.types, results):
                value = np.asarray(value)
                if declared.dtype is not None:
                    value = value.astype(declared.dtype, copy=False)
                if not _fits(value.shape, declared.shape):
                    raise InterpreterError(f"op {o.name} produced shape {value.shape}, the program declares {declared.shape}")
                env[vid] = value
        return [env[vid] for _, vid in graph.outputs]


__all__ = ["Interpreter", "InterpreterError", "NAME", "VERSION", "reason_unreadable", "read_program", "unsupported"]
