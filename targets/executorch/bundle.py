"""BundledProgram (.bpte): the .pte plus reference inputs and the original model's outputs for
them, so a device can check the program it runs (executorch's bundled-io API: load the bundle,
then ``verify_result_with_bundled_expected_output(method, case, rtol, atol)`` per test case).

The expected outputs are what the eager PyTorch model computes (not what the artifact computes):
a quantized program differs from them by its quantization error, which the host measures here
and records (``max_abs_error``) so the device check can use a matching ``atol``.
"""
from __future__ import annotations

from typing import Any, Sequence

from edgekit.targets.executorch.runtime import METHOD

SUFFIX = ".bpte"
DEFAULT_SAMPLES = 8


def write_bundle(pte_path: str, bundle_path: str, model, samples: Sequence[Sequence[Any]], output_dtypes) -> int:
    """Write ``bundle_path`` from a .pte and input samples; returns the number of test cases."""
    import numpy as np
    import torch
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    cases = []
    for sample in samples:
        inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in sample]
        expected = [
            torch.from_numpy(np.ascontiguousarray(out).astype(dtype, copy=False))
            for out, dtype in zip(model.reference(sample), output_dtypes)
        ]
        cases.append(MethodTestCase(inputs=inputs, expected_outputs=expected))
    bundle = BundledProgram(None, [MethodTestSuite(method_name=METHOD, test_cases=cases)], pte_file_path=pte_path)
    with open(bundle_path, "wb") as fh:
        fh.write(serialize_from_bundled_program_to_flatbuffer(bundle))
    return len(cases)


def read_bundle(path: str) -> tuple[bytes, dict[str, int]]:
    """(the program's bytes, test cases per method) of a .bpte."""
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    with open(path, "rb") as fh:
        schema = deserialize_from_flatbuffer_to_bundled_program(fh.read())
    cases = {suite.method_name: len(suite.test_cases) for suite in schema.method_test_suites}
    return bytes(schema.program), cases


def run_bundle(path: str, atol: float | None = None, rtol: float = 0.0) -> dict[str, Any]:
    """Run every test case of a .bpte through the executorch runtime, as a device would.

    Returns the largest absolute error against the bundled expected outputs, per case and overall.
    With ``atol``, executorch's own check runs too (``verify_result_with_bundled_expected_output``,
    which raises RuntimeError when a case is off by more than ``atol + rtol * |expected|``)."""
    import numpy as np
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
    from executorch.extension.pybindings import portable_lib

    with open(path, "rb") as fh:
        data = fh.read()
    schema = deserialize_from_flatbuffer_to_bundled_program(data)
    suite = next(s for s in schema.method_test_suites if s.method_name == METHOD)
    bundled = portable_lib._load_bundled_program_from_buffer(data)
    errors = []
    for index, case in enumerate(suite.test_cases):
        # an infinite tolerance makes the check only load the bundled inputs, run, and hand back outputs
        outputs = bundled.verify_result_with_bundled_expected_output(METHOD, index, rtol=0.0, atol=float("inf"))
        worst = 0.0
        for got, want in zip(outputs, case.expected_outputs):
            expected = _tensor_array(want.val)
            if expected.size:
                worst = max(worst, float(np.max(np.abs(got.double().numpy() - expected))))
        errors.append(worst)
        if atol is not None:
            bundled.verify_result_with_bundled_expected_output(METHOD, index, rtol=rtol, atol=atol)
    return {"test_cases": len(errors), "max_abs_error": max(errors, default=0.0), "per_case": errors}


def _tensor_array(tensor):
    """A bundled-program schema Tensor as a float64 numpy array."""
    import numpy as np

    dtypes = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
              7: np.float64, 11: np.bool_}
    dtype = dtypes[int(tensor.scalar_type)]
    return np.frombuffer(bytes(tensor.data), dtype=dtype).reshape(tensor.sizes).astype(np.float64)
