"""The Core ML Runtime off macOS: edgekit's MIL reference interpreter (targets/coreml/mil).

Core ML executes only on macOS and iOS. Elsewhere an ML Program (.mlpackage) is executed op by op
with NumPy, with every intermediate tensor in the dtype the program declares (float16 for the default
fp16 compute precision), so parity predicts what the device computes rather than an idealised float32
run. A program with an op the interpreter does not implement, or a legacy neural network (.mlmodel),
cannot be verified here: ``reason_unverifiable`` says why, and the artifact stays ``unverified``.
"""
from __future__ import annotations

import platform
from typing import Sequence

from edgekit.errors import DeviceError
from edgekit.targets.coreml import analysis
from edgekit.targets.coreml.runtime import PackageRuntime

NOT_ON_MACOS = "Core ML executes only on macOS"


def reason_unverifiable(path: str, spec=None) -> str | None:
    """None when the reference interpreter can execute the artifact, else why not (one line)."""
    from edgekit.targets.coreml import mil

    spec = spec if spec is not None else analysis.read_spec(path)
    if analysis.model_type(spec) != "mlProgram":
        return (f"numerical parity not run: {NOT_ON_MACOS}, and edgekit's MIL reference interpreter reads ML "
                f"Programs (.mlpackage) only, not a {analysis.model_type(spec)} (.mlmodel)")
    try:
        program = mil.read_program(path, spec)
    except mil.ProgramError as exc:
        return f"numerical parity not run: {NOT_ON_MACOS}, and the reference interpreter cannot read it: {exc}"
    missing = mil.unsupported(program.main)
    if missing:
        return (f"numerical parity not run: {NOT_ON_MACOS}, and edgekit's MIL reference interpreter does not "
                f"implement op{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return None


class MILReferenceRuntime(PackageRuntime):
    """Runs an .mlpackage's main function with edgekit's MIL reference interpreter."""

    #: bench and reports can tell a reference execution from the device runtime (its speed means nothing)
    reference_interpreter = True

    def __init__(self):
        super().__init__()
        self._interpreter = None

    def load(self, path: str, threads: int = 1) -> "MILReferenceRuntime":
        from edgekit.targets.coreml import mil

        spec = analysis.read_spec(path)
        reason = reason_unverifiable(path, spec)
        if reason is not None:
            raise DeviceError(f"cannot run {path}: {reason.removeprefix('numerical parity not run: ')}",
                              hint="run it on a Mac, or benchmark it on an iOS device")
        self.path = str(path)
        self._images, self._inputs, self._outputs = analysis.fed_io(spec)  # image inputs become pixels in run()
        self._interpreter = mil.Interpreter(mil.read_program(path, spec))
        return self

    def run(self, inputs: Sequence) -> list:
        import numpy as np

        from edgekit.targets.coreml import mil

        if self._interpreter is None:
            raise DeviceError("the Core ML reference runtime was asked to run before load()")
        feeds = {}
        for spec, value in zip(self._inputs, inputs):
            value = np.asarray(value)
            feeds[spec.name] = self._to_pixels(spec.name, value) if spec.name in self._images else value
        names = self._program_outputs()
        try:
            result = self._interpreter.run(feeds, names)
        except mil.InterpreterError as exc:
            raise DeviceError(f"the MIL reference interpreter failed on {self.path}: {exc}") from exc
        return [np.asarray(result[name]) for name in names]

    def _program_outputs(self) -> list[str]:
        """The program variables behind the tensor outputs (by name; renamed outputs by position)."""
        program_outputs = self._interpreter.output_names
        wanted = [s.name for s in self._outputs]
        if all(name in program_outputs for name in wanted):
            return wanted
        return program_outputs[: len(wanted)]

    def _to_pixels(self, name: str, value):
        """Model-space float (1, C, H, W) -> the 8-bit pixel values Core ML would hand the program."""
        return self._pixels(name, value).astype("float32")

    def version(self) -> str:
        import numpy as np

        from edgekit.targets.coreml import mil

        return f"{mil.NAME} (NumPy {np.__version__}; {NOT_ON_MACOS}, this host is {platform.system()})"
