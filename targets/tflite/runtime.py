"""Run a .tflite: ai-edge-litert's interpreter, else tflite_runtime, else tf.lite (whichever is installed)."""
from __future__ import annotations

import importlib.util
import re
from typing import Sequence

from edgekit.errors import MissingDependencyError
from edgekit.targets.base import Runtime, TensorSpec


def interpreter_class():
    """(Interpreter class, provider name): LiteRT first; tflite-runtime has had no release since 2023."""
    for module, attr, provider in (
        ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
        ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
        ("tensorflow.lite", "Interpreter", "tensorflow"),
    ):
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is not None:
            mod = importlib.import_module(module)
            return getattr(mod, attr), provider
    raise MissingDependencyError("a TFLite interpreter (ai-edge-litert)", "tflite")


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _spec(name: str, detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantized = scale != 0.0
    return TensorSpec(
        name,
        tuple(int(d) for d in detail["shape"]),
        detail["dtype"].__name__ if hasattr(detail["dtype"], "__name__") else str(detail["dtype"]),
        float(scale) if quantized else None,
        int(zero_point) if quantized else None,
    )


class TFLiteRuntime(Runtime):
    def __init__(self):
        self._runner = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self.provider = None
        self.interpreter = None

    def load(self, path: str, threads: int = 1) -> "TFLiteRuntime":
        cls, self.provider = interpreter_class()
        self.interpreter = cls(model_path=str(path), num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._runner = self.interpreter.get_signature_runner(key)
            in_details = self._runner.get_input_details()
            out_details = self._runner.get_output_details()
            self._inputs = [_spec(n, in_details[n]) for n in sorted(in_details, key=_natural_key)]
            self._outputs = [_spec(n, out_details[n]) for n in sorted(out_details, key=_natural_key)]
        else:  # a model without signatures (older converters): tensor order
            self.interpreter.allocate_tensors()
            self._inputs = [_spec(d["name"], d) for d in self.interpreter.get_input_details()]
            self._outputs = [_spec(d["name"], d) for d in self.interpreter.get_output_details()]
        return self

    def run(self, inputs: Sequence) -> list:
        if self._runner is not None:
            result = self._runner(**{spec.name: x for spec, x in zip(self._inputs, inputs)})
            return [result[spec.name] for spec in self._outputs]
        it = self.interpreter
        for detail, x in zip(it.get_input_details(), inputs):
            it.set_tensor(detail["index"], x)
        it.invoke()
        return [it.get_tensor(d["index"]) for d in it.get_output_details()]

    def version(self) -> str:
        from importlib import metadata

        try:
            return f"{self.provider} {metadata.version(self.provider)}"
        except metadata.PackageNotFoundError:
            return str(self.provider)
