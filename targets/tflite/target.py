"""The TFLite target: ExportedModel -> .tflite (litert-torch) -> quantized (ai-edge-quantizer)."""
from __future__ import annotations

import collections
import logging
import os
from importlib import metadata
from typing import Any, Sequence

from edgekit.errors import ConversionError
from edgekit.targets.base import package_version, ConvertedArtifact, Target
from edgekit.targets.tflite import metadata as tflite_metadata
from edgekit.targets.tflite import quantize as recipes
from edgekit.targets.tflite.io_types import to_float_io
from edgekit.targets.tflite.runtime import TFLiteRuntime

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"
INT8_ROUTES = ("auto", "pt2e", "aeq")


def _score(content: bytes, model, samples, workdir: str) -> float:
    """Worst-output cosine of a candidate .tflite against the eager model on ``samples``."""
    import numpy as np

    from edgekit.verify import compare, output_order, run_artifact
    from edgekit.options import Tolerance

    path = os.path.join(workdir, "candidate.tflite")
    with open(path, "wb") as fh:
        fh.write(content)
    runtime = TFLiteRuntime().load(path)
    order = output_order(model.output_names, [o.name for o in runtime.outputs()])
    reference = model.reference_many(samples)
    candidate = [[out[i] for i in order] for out in (run_artifact(runtime, s) for s in samples)]
    outputs, _ = compare(reference, candidate, model.output_names, Tolerance(cosine=0.0, top1=0.0), real_inputs=False)
    os.remove(path)
    return float(min(o.cosine for o in outputs)) if outputs else float("-inf")



class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("none",) + recipes.PRECISIONS
    default_precision = "none"
    requires = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")
    extra = "tflite"
    description = "TFLite / LiteRT flatbuffer (Android, Linux boards, microcontrollers)"
    io_types = ("float", "int8")
    supports_dynamic = False
    # measured: a dynamic batch fails to lower even for a 3-layer MLP (AssertionError on a -2^63 dim)
    dynamic_unsupported_reason = "litert-torch 0.10 cannot lower dynamic dimensions"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--tflite-int8-route", dest="tflite_int8_route", choices=INT8_ROUTES, default=None,
            help="how --quantize int8 is made: auto (default: build both, keep the one closer to the float "
            "model on the calibration samples), pt2e (quantized in PyTorch), aeq (ai-edge-quantizer on the .tflite)",
        )

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        route = getattr(args, "tflite_int8_route", None)
        return {"int8_route": route} if route else {}

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        details: dict[str, Any] = {"signature": SIGNATURE}
        final_path = os.path.join(workdir, f"model{self.suffix}")
        float_path = os.path.join(workdir, "float.tflite")
        if precision == "int8":
            route = dict(options.options_for(self.name)).get("int8_route", "auto")
            content, details["int8"] = self._static_int8(model, options, calibration or [], workdir, route)
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
            raise ConversionError(f"ai-edge-quantizer could not apply {precision}: {_first_line(exc)}") from exc

    def _static_int8(self, model, options, calibration, workdir: str, route: str) -> tuple[bytes, dict[str, Any]]:
        """Full-integer int8 by the route asked for, or by both, keeping the one that stays closer to
        the float model on (up to 16 of) the calibration samples. Neither route wins everywhere
        (benchmarks/int8_routes.py): PT2E kept cosine 0.99995 vs 0.991 on the digits CNN, while on
        EfficientNet-Lite0 with real photos ai-edge-quantizer kept 0.990 and PT2E 0.776."""
        from edgekit.export import describe_conversion_error

        candidates: dict[str, bytes] = {}
        errors: dict[str, str] = {}
        if route in ("auto", "pt2e"):
            try:
                module, quant_config = recipes.pt2e_int8_module(model, calibration)
                path = os.path.join(workdir, "pt2e.tflite")
                self._convert_float(model, path, module, quant_config)
                with open(path, "rb") as fh:
                    content = fh.read()
                candidates["pt2e"] = to_float_io(content) if options.io == "float" else content
            except ConversionError as exc:
                errors["pt2e"] = str(exc)
            except Exception as exc:
                errors["pt2e"] = str(describe_conversion_error(exc, model, "PT2E int8 quantization"))
            if route == "pt2e" and errors:
                raise ConversionError(errors["pt2e"])
        if route in ("auto", "aeq"):
            float_path = os.path.join(workdir, "float.tflite")
            try:
                self._convert_float(model, float_path)
                candidates["aeq"] = self._aeq(float_path, "int8", calibration, io=options.io)
            except ConversionError as exc:
                if route == "aeq" or not candidates:
                    raise
                errors["aeq"] = str(exc)
        scores = {name: _score(content, model, calibration[:16], workdir) for name, content in candidates.items()}
        best = max(scores, key=lambda name: scores[name])
        detail = {"route": best, "asked": route, "calibration_cosine": scores}
        if errors:
            detail["errors"] = errors
        return candidates[best], detail

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
