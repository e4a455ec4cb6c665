"""The Core AI runtime off Apple platforms: edgekit's Core AI reference interpreter.

The Core AI runtime (coreai.runtime.AIModel) executes only on iOS / macOS 27. Elsewhere the asset's main
graph is read through coreai-core's own bindings and executed op by op with NumPy
(targets/coreai/interpreter.py), every intermediate in the element type the program declares. A
program the interpreter cannot read or execute stays ``unverified``: ``reason_unverifiable`` says why.
"""
from __future__ import annotations

import platform
from typing import Sequence

from edgekit.errors import DeviceError
from edgekit.targets.base import Runtime
from edgekit.targets.coreai import analysis

NOT_ON_APPLE = "the Core AI runtime executes only on iOS / macOS 27"


def reason_unverifiable(asset) -> str | None:
    """None when the reference interpreter can execute the loaded asset, else why not (one line)."""
    from edgekit.targets.coreai import interpreter

    _, reason = interpreter.reason_unreadable(asset)
    return None if reason is None else f"numerical parity not run: {NOT_ON_APPLE}, and {reason}"


class CoreAIRuntime(Runtime):
    """Runs an .aimodel's main graph with edgekit's Core AI reference interpreter."""

    #: bench and reports can tell a reference execution from the device runtime (its speed means nothing)
    reference_interpreter = True

    def __init__(self):
        self.path: str | None = None
        self._inputs = []
        self._outputs = []
        self._interpreter = None

    def load(self, path: str, threads: int = 1) -> "CoreAIRuntime":
        from edgekit.targets.coreai import interpreter

        asset = analysis.load_asset(path)
        self._inputs, self._outputs = analysis.io_specs(asset)
        program, reason = interpreter.reason_unreadable(asset)
        if reason is not None:
            raise DeviceError(f"cannot run {path}: {reason}", hint="load it with coreai.runtime.AIModel on macOS 27 or in an iOS 27 app")
        self._interpreter = interpreter.Interpreter(program)
        self.path = str(path)
        return self

    def run(self, inputs: Sequence) -> list:
        from edgekit.targets.coreai import interpreter

        if self._interpreter is None:
            raise DeviceError("the Core AI reference runtime was asked to run before load()")
        try:
            return self._interpreter.run(list(inputs))
        except interpreter.InterpreterError as exc:
            raise DeviceError(f"the Core AI reference interpreter failed on {self.path}: {exc}") from exc

    def version(self) -> str:
        import numpy as np

        from edgekit.targets.coreai import interpreter

        return f"{interpreter.NAME} (NumPy {np.__version__}; {NOT_ON_APPLE}, this host is {platform.system()})"
