"""edgekit's reference interpreter for Core ML ML Programs: reads an .mlpackage and executes its MIL
program op by op with NumPy, so that Core ML artifacts can be verified where Core ML does not run
(Linux, Windows CI). Imports no ML framework but coremltools' protobuf and weight readers."""
from edgekit.targets.coreml.mil.interpreter import Interpreter, InterpreterError, unsupported
from edgekit.targets.coreml.mil.program import Program, ProgramError, read_program

#: bumped whenever an op's semantics change, so a manifest says which interpreter verified it
VERSION = "1.0"
NAME = f"edgekit MIL reference interpreter {VERSION}"

__all__ = ["Interpreter", "InterpreterError", "Program", "ProgramError", "read_program", "unsupported", "VERSION", "NAME"]
