"""Run a .pte with executorch's Python runtime (executorch.runtime, over the portable_lib pybindings).

A .pte carries no tensor names. edgekit writes a constant method, ``edgekit_io``, holding the
model's input and output names as JSON, so the names travel with the artifact (apps can read it
too: ``module.execute("edgekit_io")``). A .pte without it gets ``input_<i>`` / ``output_<i>``.
Outputs come in the model's pytree order, the order edgekit's verify expects.
"""
from __future__ import annotations

import json
from typing import Sequence

from edgekit.errors import ModelLoadError
from edgekit.targets.base import Runtime, TensorSpec

IO_METHOD = "edgekit_io"
METHOD = "forward"

# executorch ScalarType codes (TensorInfo.dtype()) -> numpy dtype names
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                 7: "float64", 11: "bool", 15: "bfloat16"}


def io_names_json(input_names: Sequence[str], output_names: Sequence[str]) -> str:
    return json.dumps({"inputs": list(input_names), "outputs": list(output_names)})


class ExecuTorchRuntime(Runtime):
    def __init__(self):
        self.program = None
        self._method = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []

    def load(self, path: str, threads: int = 1) -> "ExecuTorchRuntime":
        from executorch.runtime import Runtime as ETRuntime

        from edgekit.targets.executorch.delegates import load_kernel_libraries

        load_kernel_libraries()  # int8 embeddings run on the quantized-ops kernels
        _set_threads(threads)
        try:
            self.program = ETRuntime.get().load_program(str(path))
            meta = self.program.metadata(METHOD)
        except Exception as exc:  # the runtime raises RuntimeError with an error code only
            raise ModelLoadError(f"{path}: the executorch runtime cannot load it as a program ({exc})") from exc
        inputs, outputs = self._names(meta.num_inputs(), meta.num_outputs())
        self._inputs = [_spec(name, meta.input_tensor_meta(i)) for i, name in enumerate(inputs)]
        self._outputs = [_spec(name, meta.output_tensor_meta(i)) for i, name in enumerate(outputs)]
        return self

    def _names(self, n_in: int, n_out: int) -> tuple[list[str], list[str]]:
        inputs, outputs = [f"input_{i}" for i in range(n_in)], [f"output_{i}" for i in range(n_out)]
        if IO_METHOD in self.program.method_names:
            try:
                names = json.loads(self.program.load_method(IO_METHOD).execute([])[0])
                if len(names["inputs"]) == n_in and len(names["outputs"]) == n_out:
                    inputs, outputs = names["inputs"], names["outputs"]
            except (ValueError, KeyError, TypeError, RuntimeError):
                pass  # names are a convenience: positions still work
        return inputs, outputs

    def method(self):
        """The loaded ``forward``: loading initialises its delegates, so it happens on first use
        (a program for a backend this runtime lacks still reports its inputs and outputs)."""
        if self._method is None:
            self._method = self.program.load_method(METHOD)
        return self._method

    def run(self, inputs: Sequence) -> list:
        import numpy as np
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
        outputs = self.method().execute(tensors)
        return [o.detach().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]

    def version(self) -> str:
        from edgekit.targets.executorch.delegates import executorch_version

        return f"executorch {executorch_version()}"


def _spec(name: str, info) -> TensorSpec:
    # For a dynamic axis the planned size is its upper bound.
    return TensorSpec(name, tuple(int(d) for d in info.sizes()), _SCALAR_TYPES.get(int(info.dtype()), str(info.dtype())))


def _set_threads(threads: int) -> None:
    """The runtime's CPU thread pool is process-wide; size it for this load."""
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:  # pragma: no cover - runtime without the thread pool API
        return
    if threads >= 1 and portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
