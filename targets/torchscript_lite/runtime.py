"""Run a .ptl through torch's lite interpreter, the runtime PyTorch Mobile apps embed.

A .ptl holds no input/output description, so edgekit writes one into the archive
(``extra/edgekit.json``, the lite format's extra-files slot) and reads it back here.
Quantized ops run on the QNNPACK engine when this torch has it: that is the engine PyTorch Mobile
uses on ARM phones, so verification sees the phone's integer kernels rather than x86 FBGEMM's.
"""
from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from typing import Any, Iterator, Sequence

from edgekit.errors import UsageError
from edgekit.targets.base import Runtime, TensorSpec

METADATA_NAME = "edgekit.json"


def read_metadata(path: str) -> dict[str, Any]:
    """The I/O description edgekit stored in the archive ({} for a .ptl written elsewhere)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(f"/extra/{METADATA_NAME}"):
                    return json.loads(archive.read(name).decode("utf-8"))
    except zipfile.BadZipFile:
        raise UsageError(f"{path}: not a TorchScript Lite archive (not a zip file)") from None
    return {}


@contextlib.contextmanager
def mobile_engine() -> Iterator[str]:
    """Quantized kernels of PyTorch Mobile (QNNPACK) for the duration, then the previous engine."""
    import torch

    previous = torch.backends.quantized.engine
    engine = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else previous
    torch.backends.quantized.engine = engine
    try:
        yield engine
    finally:
        torch.backends.quantized.engine = previous


class _Opaque:
    """Stands in for any class a pickle in the archive names: nothing is imported or run."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


_STORAGE_DTYPES = {"QInt8Storage": "int8", "QUInt8Storage": "uint8", "QInt32Storage": "int32"}


class _ArchiveUnpickler(pickle.Unpickler):
    """Reads bytecode.pkl / constants.pkl without importing torch classes; records quantized tensors."""

    def __init__(self, stream):
        super().__init__(stream)
        self.quantized: list[dict[str, Any]] = []

    def persistent_load(self, pid):
        return pid  # ('storage', storage class, key, location, numel): tensor data stays in the archive

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_qtensor"):
            return self._record_qtensor
        if module == "torch" and name.endswith("Storage"):
            return type(name, (), {})
        if module == "torch" and name.startswith("per_"):
            return name  # a qscheme, e.g. per_tensor_affine / per_channel_affine
        return _Opaque

    def _record_qtensor(self, storage, offset, size, stride, quantizer_params, *rest):
        storage_cls = storage[1] if isinstance(storage, tuple) and len(storage) > 1 else None
        scheme = quantizer_params[0] if isinstance(quantizer_params, tuple) and quantizer_params else "?"
        self.quantized.append(
            {
                "name": f"constant {len(self.quantized)}",
                "dtype": _STORAGE_DTYPES.get(getattr(storage_cls, "__name__", ""), "int8"),
                "shape": [int(d) for d in size],
                "granularity": "per-channel" if "channel" in str(scheme) else "per-tensor",
            }
        )
        return _Opaque()


def _archive_entry(archive: zipfile.ZipFile, suffix: str) -> str:
    return next(n for n in archive.namelist() if n.endswith(suffix))


def op_histogram(path: str) -> dict[str, int]:
    """How many times each operator is called, counted from the lite bytecode's OP instructions.

    The bytecode layout is torch-internal (format version 8 here); when it cannot be read, the
    operator list from torch's own reader is returned with each count 1.
    """
    import collections

    counts: collections.Counter = collections.Counter()
    try:
        with zipfile.ZipFile(path) as archive:
            bytecode = _ArchiveUnpickler(archive.open(_archive_entry(archive, "/bytecode.pkl"))).load()
        for method in bytecode[1:]:
            tables = dict(t for t in method[1] if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str))
            operators = tables["operators"]
            for instruction in tables["instructions"]:
                if instruction[0] == "OP":
                    op_name, overload = operators[instruction[1]][:2]
                    counts[f"{op_name}.{overload}" if overload else op_name] += 1
    except Exception:
        from torch.jit.mobile import _get_model_ops_and_info

        return {name: 1 for name in sorted(_get_model_ops_and_info(path))}
    return dict(counts.most_common())


def quantized_tensors(path: str) -> list[dict[str, Any]]:
    """Quantized weight tensors among the archive's constants (frozen modules keep no names)."""
    try:
        with zipfile.ZipFile(path) as archive:
            reader = _ArchiveUnpickler(archive.open(_archive_entry(archive, "/constants.pkl")))
            reader.load()
    except Exception:
        return []
    return reader.quantized


class TorchScriptLiteRuntime(Runtime):
    def __init__(self):
        self.module = None
        self.engine = None
        self.threads = 1
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []

    def load(self, path: str, threads: int = 1) -> "TorchScriptLiteRuntime":
        from torch.jit.mobile import _load_for_lite_interpreter

        meta = read_metadata(path)
        self._inputs = [TensorSpec.from_dict(d) for d in meta.get("inputs", [])]
        self._outputs = [TensorSpec.from_dict(d) for d in meta.get("outputs", [])]
        self.threads = threads
        with mobile_engine() as engine:  # quantized weights are packed for the engine at load
            self.module = _load_for_lite_interpreter(str(path))
            self.engine = engine
        return self

    def run(self, inputs: Sequence) -> list:
        import numpy as np
        import torch

        from edgekit.export import flatten_outputs

        tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with mobile_engine(), torch.no_grad():
                out = self.module(*tensors)
        finally:
            torch.set_num_threads(previous_threads)
        return [t.detach().numpy() for t in flatten_outputs(out)]

    def version(self) -> str:
        import torch

        return f"torch {torch.__version__} lite interpreter" + (f" ({self.engine} quantized engine)" if self.engine else "")
