"""Run an .onnx file with onnxruntime's CPU execution provider."""
from __future__ import annotations

from typing import Sequence

from edgekit.targets.base import Runtime, TensorSpec

# onnxruntime's type strings -> numpy dtype names
_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16",
}


def _spec(arg) -> TensorSpec:
    # a named or unknown dimension (a dynamic axis) is -1, as TFLite's shape_signature writes it
    shape = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _DTYPES.get(arg.type, arg.type))


class ONNXRuntime(Runtime):
    def __init__(self):
        self.session = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []

    def load(self, path: str, threads: int = 1) -> "ONNXRuntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings go to fd 2 and would break --json
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [_spec(arg) for arg in self.session.get_inputs()]
        self._outputs = [_spec(arg) for arg in self.session.get_outputs()]
        return self

    def run(self, inputs: Sequence) -> list:
        import numpy as np

        feeds = {spec.name: np.ascontiguousarray(x, dtype=spec.dtype) for spec, x in zip(self._inputs, inputs)}
        return self.session.run(None, feeds)

    def version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"
