"""The op table: MIL op type -> NumPy implementation, filled by the ``@op`` decorator.

Each implementation receives an ``Args`` (its parameters, already evaluated; float16 arrays arrive as
float32) and returns one array or a tuple of arrays; the interpreter then casts each result to the
dtype the program declares for that output (float16 rounding for fp16 programs). Semantics follow
the op definitions of coremltools (``coremltools/converters/mil/mil/ops/defs/iOS15..iOS18``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

OPS: dict[str, Callable[["Args"], Any]] = {}


def op(*names: str):
    def register(fn):
        for name in names:
            if name in OPS:
                raise ValueError(f"MIL op {name} registered twice")
            OPS[name] = fn
        return fn

    return register


class OpError(Exception):
    """An op met parameters its implementation does not cover (said with the op's name)."""


class Args:
    """The evaluated parameters of one op."""

    def __init__(self, op_type: str, values: dict[str, list[Any]], outputs: Sequence[Any]):
        self.op_type = op_type
        self._values = values
        self.outputs = outputs  # the declared VarTypes

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __getitem__(self, name: str):
        if name not in self._values:
            raise OpError(f"{self.op_type}: required parameter {name!r} is missing")
        return self._values[name][0]

    def get(self, name: str, default=None):
        return self._values[name][0] if name in self._values else default

    def list(self, name: str) -> list[Any]:
        """A variadic parameter (concat's values): every argument."""
        return list(self._values.get(name, []))

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        return default if value is None else int(value)

    def ints(self, name: str, default=None) -> list[int] | None:
        value = self.get(name)
        return default if value is None else [int(v) for v in (value.reshape(-1) if hasattr(value, "reshape") else value)]

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self.get(name)
        return default if value is None else float(value)

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        return default if value is None else bool(value)

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name)
        return default if value is None else str(value)

    def out_dtype(self, index: int = 0) -> str:
        return self.outputs[index].dtype
