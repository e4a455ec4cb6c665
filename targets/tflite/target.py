"""The TFLite target: ExportedModel -> .tflite (litert-torch) -> quantized (ai-edge-quantizer)."""
from __future__ import annotations

import collections
import logging
import os
from importlib import metadata
from types import MappingProxyType
from typing import Any, Sequence

from edgekit.errors import ConversionError, first_line
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, package_version
from edgekit.targets.tflite import metadata as tflite_metadata
from edgekit.targets.tflite import quantize as recipes
from edgekit.targets.tflite.int8 import INT8_ROUTES, static_int8
from edgekit.targets.tflite.int16x8 import HIGHER_MODES
from edgekit.targets.tflite.runtime import TFLiteRuntime
from edgekit.targets.tflite.settings import TFLiteSettings

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"


class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("none",) + recipes.PRECISIONS
    requires = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")
    io_types = ("float", "int8")
    settings_class = TFLiteSettings
    shared_int8 = True
    on_device = OnDevice(
        "TFLite / LiteRT",
        runner="benchmark_model",
        runner_help="LiteRT publishes prebuilt benchmark_model binaries (android_aarch64, android_arm) on its "
        "'Measure performance' page (ai.google.dev/edge/litert); or build "
        "//tensorflow/lite/tools/benchmark:benchmark_model with Bazel",
        python_module="ai_edge_litert",
        apps=MappingProxyType({"android": "litert"}),
    )
    # measured: a dynamic batch fails to lower even for a 3-layer MLP (AssertionError on a -2^63 dim)
    dynamic_unsupported_reason = "litert-torch 0.10 cannot lower dynamic dimensions"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--tflite-int8-route", dest="tflite_int8_route", choices=INT8_ROUTES, default=None,
            help="how --quantize int8 is made: auto (default: build both, keep the one that agrees better with the "
            "float model on held-back calibration samples), pt2e (edgekit's shared PT2E int8, converted by "
            "litert-torch), aeq (ai-edge-quantizer's static recipe on the .tflite)",
        )

        parser.add_argument(
            "--tflite-mixed-higher", dest="tflite_mixed_higher", choices=HIGHER_MODES, default=None,
            help="the layers automatic mixed precision keeps above int8: auto (default: 16x8, int16 activations and "
            "int8 weights, where it meets the tolerance on held-back calibration samples and is not slower than "
            "float there, else float), int16 (16x8 wherever it builds), float (as on the other targets)",
        )

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        values = {"int8_route": getattr(args, "tflite_int8_route", None),
                  "mixed_higher": getattr(args, "tflite_mixed_higher", None)}
        return {k: v for k, v in values.items() if v}

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        details: dict[str, Any] = {"signature": SIGNATURE}
        final_path = os.path.join(workdir, f"model{self.suffix}")
        float_path = os.path.join(workdir, "float.tflite")
        if precision == "int8":
            settings = self.read_settings(options, precision)
            content, details["int8"] = self._static_int8(model, options, calibration or [], workdir,
                                                         settings.int8_route, settings.mixed_higher)
            if options.io == "int8":  # outputs the int8 program leaves float (softmax) become int8 too
                from edgekit.targets.tflite.io_types import int8_outputs

                content, facts = int8_outputs(content, model, calibration or [], workdir)
                details["int8"].update(facts)
            with open(final_path, "wb") as fh:
                fh.write(content)
        else:
            self._convert_float(model, float_path)
            if precision == "none":
                os.replace(float_path, final_path)
            else:
                with open(final_path, "wb") as fh:
                    fh.write(self._aeq(float_path, precision, calibration))
        runtime = TFLiteRuntime().load(final_path)
        details["ops"] = self.op_histogram(final_path)
        return ConvertedArtifact(
            path=final_path,
            inputs=runtime.inputs(),
            outputs=runtime.outputs(),
            converter={
                "litert-torch": package_version("litert-torch"),
                "ai-edge-quantizer": package_version("ai-edge-quantizer"),
                **({"torchao": package_version("torchao")} if precision == "int8" else {}),
            },
            details=details,
        )

    @staticmethod
    def _convert_float(model, path: str, module=None, quant_config=None) -> None:
        from edgekit.export import describe_conversion_error

        import litert_torch

        try:
            edge_model = litert_torch.convert(
                module if module is not None else model.module, model.example_inputs,
                dynamic_shapes=model.dynamic_shapes(), quant_config=quant_config,
            )
            edge_model.export(path)
        except ConversionError:
            raise
        except Exception as exc:
            raise describe_conversion_error(exc, model, "litert-torch") from exc

    @staticmethod
    def _aeq(float_path: str, precision: str, calibration, io: str = "float") -> bytes:
        with open(float_path, "rb") as fh:
            float_bytes = fh.read()
        names = [spec.name for spec in TFLiteRuntime().load(float_path).inputs()]
        feeds = [dict(zip(names, sample)) for sample in (calibration or [])]
        try:
            return recipes.quantize(float_bytes, precision, feeds, SIGNATURE, io=io)
        except Exception as exc:
            raise ConversionError(f"ai-edge-quantizer could not apply {precision}: {first_line(exc)}") from exc

    def _static_int8(self, model, options, calibration, workdir: str, route: str,
                     mixed_higher: str = "auto") -> tuple[bytes, dict[str, Any]]:
        """Full-integer int8: the shared PT2E decision or ai-edge-quantizer's static recipe, judged on
        held-back calibration samples (targets/tflite/int8.py); layers kept above int8 at 16x8 or
        float (targets/tflite/int16x8.py)."""
        return static_int8(self, model, options, calibration, workdir, route, mixed_higher)

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
