"""The TFLite target: ExportedModel -> .tflite (litert-torch) -> quantized (ai-edge-quantizer)."""
from __future__ import annotations

import collections
import logging
import os
from importlib import metadata
from typing import Any, Sequence

from edgekit.errors import ConversionError
from edgekit.targets.base import ConvertedArtifact, Target
from edgekit.targets.tflite import metadata as tflite_metadata
from edgekit.targets.tflite import quantize as recipes
from edgekit.targets.tflite.io_types import to_float_io
from edgekit.targets.tflite.runtime import TFLiteRuntime

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("none",) + recipes.PT2E_PRECISIONS + recipes.RECIPES
    default_precision = "none"
    requires = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")
    extra = "tflite"
    description = "TFLite / LiteRT flatbuffer (Android, Linux boards, microcontrollers)"
    io_types = ("float", "int8")
    supports_dynamic = False
    # measured: a dynamic batch fails to lower even for a 3-layer MLP (AssertionError on a -2^63 dim)
    dynamic_unsupported_reason = "litert-torch 0.10 cannot lower dynamic dimensions"

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        from edgekit.export import describe_conversion_error

        import litert_torch

        float_path = os.path.join(workdir, "float.tflite")
        module, quant_config = model.module, None
        if precision in recipes.PT2E_PRECISIONS:
            try:
                module, quant_config = recipes.pt2e_int8_module(model, calibration or [])
            except ConversionError:
                raise
            except Exception as exc:
                raise describe_conversion_error(exc, model, "PT2E int8 quantization") from exc
        try:
            edge_model = litert_torch.convert(
                module, model.example_inputs, dynamic_shapes=model.dynamic_shapes(), quant_config=quant_config
            )
            edge_model.export(float_path)
        except ConversionError:
            raise
        except Exception as exc:
            raise describe_conversion_error(exc, model, "litert-torch") from exc
        final_path = os.path.join(workdir, f"model{self.suffix}")
        if precision in recipes.PT2E_PRECISIONS:
            with open(float_path, "rb") as fh:
                converted = fh.read()
            if options.io == "float":
                converted = to_float_io(converted)
            with open(final_path, "wb") as fh:
                fh.write(converted)
            os.remove(float_path)
        elif precision == "none":
            os.replace(float_path, final_path)
        else:
            with open(float_path, "rb") as fh:
                float_bytes = fh.read()
            runtime = TFLiteRuntime().load(float_path)
            names = [spec.name for spec in runtime.inputs()]
            feeds = [dict(zip(names, sample)) for sample in (calibration or [])]
            try:
                quantized = recipes.quantize(float_bytes, precision, feeds, SIGNATURE)
            except Exception as exc:
                raise ConversionError(f"ai-edge-quantizer could not apply {precision}: {_first_line(exc)}") from exc
            with open(final_path, "wb") as fh:
                fh.write(quantized)
            os.remove(float_path)
        runtime = TFLiteRuntime().load(final_path)
        return ConvertedArtifact(
            path=final_path,
            inputs=runtime.inputs(),
            outputs=runtime.outputs(),
            converter={
                "litert-torch": _version("litert-torch"),
                "ai-edge-quantizer": _version("ai-edge-quantizer"),
                **({"torchao": _version("torchao")} if precision in recipes.PT2E_PRECISIONS else {}),
            },
            details={"signature": SIGNATURE, "ops": self.op_histogram(final_path)},
        )

    def embed_manifest(self, path: str, manifest: dict[str, Any]) -> None:
        with open(path, "rb") as fh:
            content = fh.read()
        with open(path, "wb") as fh:
            fh.write(tflite_metadata.embed(content, manifest))

    def runtime(self) -> TFLiteRuntime:
        return TFLiteRuntime()

    @staticmethod
    def op_histogram(path: str) -> dict[str, int]:
        runtime = TFLiteRuntime().load(path)
        counts = collections.Counter(op["op_name"] for op in runtime.interpreter._get_ops_details())
        return dict(counts.most_common())

    def inspect(self, path: str) -> dict[str, Any]:
        import numpy as np

        runtime = TFLiteRuntime().load(path)
        quantized, float_weights, total_params = [], 0, 0
        for t in runtime.interpreter.get_tensor_details():
            params = t.get("quantization_parameters", {})
            scales = params.get("scales", np.array([]))
            if len(scales):
                quantized.append(
                    {
                        "name": t["name"],
                        "dtype": np.dtype(t["dtype"]).name,
                        "shape": [int(d) for d in t["shape"]],
                        "granularity": "per-channel" if len(scales) > 1 else "per-tensor",
                    }
                )
        return {
            "target": self.name,
            "inputs": [s.to_dict() for s in runtime.inputs()],
            "outputs": [s.to_dict() for s in runtime.outputs()],
            "ops": self.op_histogram(path),
            "quantized_tensors": quantized,
            "metadata": tflite_metadata.read(path),
            "size_bytes": os.path.getsize(path),
            "runtime": runtime.version(),
        }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
